#!/usr/bin/env bash
# Start the ML Service in the foreground (supervisor/systemd friendly). `./start.sh --demo` runs on sample data.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/ml-service ]; then
  ./install.sh
fi
if [ "${1:-}" = "--demo" ]; then
  shift
  exec .venv/bin/ml-service demo "$@"
fi
export ML_MODELS_DIR="${ML_MODELS_DIR:-$PWD/data/models}"
export ML_LOGS_DIR="${ML_LOGS_DIR:-$PWD/data/logs}"
[ -n "${ML_TOTARA_URL:-}" ] || { echo "ML_TOTARA_URL is not set: the base URL of your Totara site" >&2; exit 1; }
[ -n "${ML_TOTARA_KEY:-}" ] || { echo "ML_TOTARA_KEY is not set: the same secret as Totara's \$CFG->ml_service_key" >&2; exit 1; }
mkdir -p "$ML_MODELS_DIR" "$ML_LOGS_DIR"
if [ "${ML_DEV:-}" = "1" ]; then
  export ML_BIND="${ML_BIND:-0.0.0.0:5000}"
fi
exec .venv/bin/ml-service serve "$@"
