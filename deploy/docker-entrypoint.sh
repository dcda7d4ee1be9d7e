#!/bin/sh
# Container entry: `bash` opens a shell, `demo` runs the demo, anything else creates the dirs and serves.
set -e
if [ "${1:-}" = "bash" ] || [ "${1:-}" = "sh" ]; then exec /bin/sh; fi
if [ "${1:-}" = "demo" ]; then shift; exec ml-service demo --workdir /etc/ml/data/demo "$@"; fi
mkdir -p "$ML_MODELS_DIR" "$ML_LOGS_DIR"
exec ml-service serve "$@"
