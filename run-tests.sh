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
# The dashboard's browser tests drive Debian's headless Chromium; install it when missing and we may.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "run-tests.sh: could not install chromium + chromium-driver; the browser tests will be skipped" >&2
  else
    echo "run-tests.sh: chromium / chromedriver not found and not root: the browser tests will be skipped" \
         "(install Debian's chromium and chromium-driver to run them)" >&2
  fi
fi
exec .venv/bin/python -m pytest -q "$@"
