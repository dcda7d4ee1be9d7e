#!/usr/bin/env bash
# Install the ML Service into ./.venv: checks Python (>= 3.10), creates the data folders, installs the package.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON_EXEC="${PYTHON_EXEC:-python3}"
ML_MODELS_DIR="${ML_MODELS_DIR:-$PWD/data/models}"
ML_LOGS_DIR="${ML_LOGS_DIR:-$PWD/data/logs}"

command -v "$PYTHON_EXEC" >/dev/null 2>&1 || { echo "Python not found: install Python 3.10 or newer, or set PYTHON_EXEC" >&2; exit 1; }
if ! "$PYTHON_EXEC" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "Python 3.10 or newer is required; $PYTHON_EXEC is $("$PYTHON_EXEC" -V 2>&1)" >&2; exit 1
fi
if [ "$(realpath -m "$ML_MODELS_DIR")" = "$(realpath -m "$ML_LOGS_DIR")" ]; then
  echo "ML_MODELS_DIR and ML_LOGS_DIR must be different folders" >&2; exit 1
fi
mkdir -p "$ML_MODELS_DIR" "$ML_LOGS_DIR"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON_EXEC" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# --prefer-binary: take a wheel where one exists (lightfm-next 1.19 has no cp311 wheel and compiles for minutes).
.venv/bin/python -m pip install --quiet --prefer-binary .
echo "Installed. Start with ./start.sh (or ./start.sh --demo to try it on sample data)."
