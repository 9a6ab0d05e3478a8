#!/usr/bin/env bash
# Installs the pinned Python stack and this package in editable mode into the Python that
# `python3` runs: an activated venv (a bare `python -m venv` is enough) or the system's.
# torch goes in before the other requirements, pinned, so none of them can pull an
# unpinned (CUDA, multi-GB) torch.
set -euo pipefail
cd "$(dirname "$0")/.."
# A fresh venv has setuptools 65 and no `wheel` package: it cannot build the editable
# install below ("invalid command 'bdist_wheel'"). setuptools >= 70.1 builds wheels on its
# own and torch 2.13 requires >= 77.0.3 anyway; an older one is upgraded, a newer one kept.
python3 -m pip install -q "setuptools>=77"
# TORCH_INDEX_URL: PyTorch's CPU wheel index on hosts whose pip would otherwise pick the
# CUDA build (hosts that already have a CPU wheel of torch 2.13.0 need nothing).
python3 -m pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
python3 -m pip install -q -r requirements.txt
# --no-deps: requirements.txt is the lock and is installed; --no-build-isolation: build
# with the setuptools above instead of fetching one into a throwaway environment.
python3 -m pip install -q --no-deps --no-build-isolation -e .
