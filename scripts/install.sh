#!/usr/bin/env bash
# Installs the pinned Python stack (CPU torch) and this package in editable mode.
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -r requirements.txt
python3 -m pip install -q --no-deps --no-build-isolation -e .
