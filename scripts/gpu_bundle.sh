#!/usr/bin/env bash
# Builds, on this (CPU, networked) machine, the wheels the GPU host lacks, for its Python
# 3.12 on x86_64: scripts/gpu_check.sh installs them there into a throw-away directory.
#
#   bash scripts/gpu_bundle.sh [OUT_DIR]        # default gpu_bundle/ (git-ignored)
#
# The GPU host it targets (an offline image) has torch 2.11 + CUDA 13, numpy, packaging, psutil,
# py-cpuinfo, msgpack, ninja, einops, tqdm, pyyaml, tokenizers, pyarrow, transformers,
# mpi4py; it has no network and none of the packages below. Versions are the ones the CPU
# test suite runs with (requirements.txt and what pip resolved on this machine), one
# version of each. typing-extensions is on the host too, but pydantic-core 2.46 needs
# >= 4.14.1 (`Sentinel`) and the host's version is not ours to assume: the bundle's copy
# comes first on PYTHONPATH, and the check's JSON names the copy that was imported.
#
# Nothing is installed into this machine's Python: binary wheels come straight from PyPI
# for the target's tags, and DeepSpeed (an sdist only) is built in pip's isolated build
# environment, which holds no torch, so no op is compiled and no CUDA is involved
# (DS_BUILD_OPS=0 says so explicitly): a py3-none-any wheel whose ops would JIT-compile on
# first use (the training path uses torch's AdamW and needs none).
# The result is checked (`scripts/gpu_check bundle-check`: tags, one version each,
# dependencies covered, no compiled DeepSpeed ops, <= 64 MiB, so it travels in one copy
# to a host with a size limit on uploads) before it replaces OUT_DIR; any failure leaves OUT_DIR as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_bundle}

# OUT_DIR is replaced wholesale at the end, so it may only be a previous bundle (a
# directory of .whl files, or empty): a mistyped ".", "$HOME" or a symlink is refused now,
# before the download, and again right before the replacement.
check_out() {
  if [ -L "$out" ] || { [ -e "$out" ] && { [ ! -d "$out" ] ||
      [ -n "$(find "$out" -mindepth 1 \( ! -name '*.whl' -o ! -type f \) -print -quit)" ]; }; }; then
    echo "gpu_bundle.sh: error: OUT_DIR=$out exists and is not a bundle (a directory of .whl" \
         "files only); it would be deleted. Choose another OUT_DIR, or remove it yourself" >&2
    exit 2
  fi
}
check_out

# Binary or pure wheels, fetched for the target interpreter, never for this one.
wheels=(
  megatron-core==0.16.1      # has a compiled dataset helper: a cp312 manylinux wheel
  webdataset==1.0.2
  wids==0.1.11
  zstandard==0.25.0
  braceexpand==0.1.7         # webdataset, wids
  hjson==3.1.0               # deepspeed
  pydantic==2.13.4           # deepspeed (its config classes)
  pydantic-core==2.46.4      # pydantic pins this exact version
  annotated-types==0.7.0     # pydantic
  typing-inspection==0.4.2   # pydantic
  typing-extensions==4.16.0  # pydantic, pydantic-core (>= 4.14.1); the host's may be older
)
deepspeed=deepspeed==0.19.8

staging=$(mktemp -d "${TMPDIR:-/tmp}/lev-gpu-bundle.XXXXXX")
trap 'rm -rf "$staging"' EXIT
mkdir "$staging/wheels" "$staging/sdist"

echo "== downloading ${#wheels[@]} wheels for CPython 3.12, manylinux x86_64"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 \
  --dest "$staging/wheels" "${wheels[@]}"

echo "== building $deepspeed from its sdist (DS_BUILD_OPS=0, isolated build without torch)"
python3 -m pip download --quiet --no-deps --no-binary=:all: --dest "$staging/sdist" "$deepspeed"
DS_BUILD_OPS=0 python3 -m pip wheel --quiet --no-deps --wheel-dir "$staging/wheels" \
  "$staging"/sdist/deepspeed-*.tar.gz

echo "== checking the bundle"
python3 scripts/gpu_check bundle-check "$staging/wheels"

check_out
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$staging/wheels" "$out"
ls -l "$out"
echo "bundle: $out ($(ls "$out"/*.whl | wc -l) wheels, $(du -sb "$out" | cut -f1) bytes)"
