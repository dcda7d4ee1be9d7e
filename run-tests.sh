#!/usr/bin/env bash
# The whole test suite from a fresh machine: makes .venv, installs the project with its test extras, runs pytest.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON_EXEC="${PYTHON_EXEC:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON_EXEC" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet --prefer-binary -e ".[test]"
exec .venv/bin/python -m pytest -q "$@"
