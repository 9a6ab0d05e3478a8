#!/usr/bin/env bash
# Installs the pinned Python stack and this package in editable mode. torch goes first
# and pinned, so no other requirement can pull an unpinned (CUDA, multi-GB) torch.
set -euo pipefail
cd "$(dirname "$0")/.."
# TORCH_INDEX_URL: PyTorch's CPU wheel index on hosts whose pip would otherwise pick the
# CUDA build (these machines carry the CPU wheel locally and need nothing).
python3 -m pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
python3 -m pip install -q -r requirements.txt
python3 -m pip install -q --no-deps --no-build-isolation -e .
