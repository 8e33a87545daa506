#!/usr/bin/env bash
# Install the project with its test extras into .venv and run lint and the test suite.
# Tests on real footage and weights need REID_ASSETS (the offline assets folder); without it they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev,viewer,ray]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
export YOLO_AUTOINSTALL=false YOLO_OFFLINE=true
.venv/bin/python -m pytest "$@"
