#!/bin/sh
# Container entry. As root (the default): create the data folders (a bind mount Docker created is root's), give
# them to the service user $ML_USER, then run as that user (setpriv, util-linux). As any other user: run as is.
# Then `bash`/`sh` opens a shell, `demo` runs the demo listening on 0.0.0.0, anything else is `ml-service serve`.
set -eu
ML_USER="${ML_USER:-ml}"
ML_DATA_DIR="${ML_DATA_DIR:-/etc/ml/data}"
ML_MODELS_DIR="${ML_MODELS_DIR:-$ML_DATA_DIR/models}"
ML_LOGS_DIR="${ML_LOGS_DIR:-$ML_DATA_DIR/train_logs}"
export ML_MODELS_DIR ML_LOGS_DIR

if [ "$(id -u)" = "0" ] && [ "$ML_USER" != "root" ]; then
  if ! id "$ML_USER" >/dev/null 2>&1; then
    echo "docker-entrypoint: user $ML_USER (ML_USER) does not exist" >&2; exit 1
  fi
  uid="$(id -u "$ML_USER")"; gid="$(id -g "$ML_USER")"
  for dir in "$ML_DATA_DIR" "$ML_MODELS_DIR" "$ML_LOGS_DIR"; do
    mkdir -p "$dir"
    # Only what is not the user's yet: a large model folder is not rewritten at every start.
    find "$dir" \( ! -user "$uid" -o ! -group "$gid" \) -exec chown "$uid:$gid" {} +
  done
  home="$(getent passwd "$ML_USER" 2>/dev/null | cut -d: -f6 || true)"
  export HOME="${home:-$ML_DATA_DIR}"
  exec setpriv --reuid="$uid" --regid="$gid" --init-groups --inh-caps=-all -- /bin/sh "$0" "$@"
fi

for dir in "$ML_MODELS_DIR" "$ML_LOGS_DIR"; do
  if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
    echo "docker-entrypoint: $dir is not writable by uid $(id -u): start the container as root (the default)" \
         "so the folders are prepared, or chown the mounted folder to uid $(id -u)" >&2
    exit 1
  fi
done
if [ "${1:-}" = "bash" ] || [ "${1:-}" = "sh" ]; then exec /bin/sh; fi
if [ "${1:-}" = "demo" ]; then shift; exec ml-service demo --host 0.0.0.0 --workdir "$ML_DATA_DIR/demo" "$@"; fi
exec ml-service serve "$@"
