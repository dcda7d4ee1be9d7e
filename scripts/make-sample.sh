#!/usr/bin/env bash
# Regenerates the bundled demo export in src/ml_service/demo/sample/ (committed; keep it under ~1 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
rm -rf src/ml_service/demo/sample
"$PYTHON" -m ml_service.demo.generate --out src/ml_service/demo/sample \
  --seed 7 --users 300 --items 120 --interactions 6000 --tenants 2
