#!/usr/bin/env bash
# One-shot check of the CUDA path on a GPU host (H100 or H200), in at most
# 6 minutes: installs the wheel bundle (scripts/gpu_bundle.sh) into a throw-away directory,
# then runs every part of scripts/gpu_check/ (environment: imports, NCCL all-reduce, bf16
# matmul ceiling; 1.2B lev/tied throughput + MFU; LEV's overhead; a bf16 NCCL train ->
# save -> resume run; evaluation).
#
#   bash scripts/gpu_check.sh                       # GPU host; bundle in GPU_BUNDLE (gpu_bundle/)
#   GPU_CHECK_DRY_RUN=1 bash scripts/gpu_check.sh   # CPU: tiny shapes, bf16, gloo, no install
#
# Writes OUT/gpu_check.json (each part pass / fail / skipped, with its numbers or reason) and
# OUT/gpu_check.log (everything, the install included); OUT defaults to gpu_check_out/.
# Exit 0 when every part passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
# The budget counts from here, install included.
GPU_CHECK_T0=$(date +%s.%N)
export GPU_CHECK_T0
out=${OUT:-gpu_check_out}
bundle=${GPU_BUNDLE:-gpu_bundle}
mkdir -p "$out"
log="$out/gpu_check.log"
: >"$log"

if [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then
  export GPU_CHECK_INSTALL="skipped: GPU_CHECK_DRY_RUN=1 uses this machine's installed packages"
else
  site=$(mktemp -d "${TMPDIR:-/tmp}/lev-gpu-site.XXXXXX")
  echo "== install: $bundle -> $site" | tee -a "$log"
  # --no-deps: pip resolves nothing, so the host's torch (and everything else) is untouched;
  # PYTHONPATH puts the bundle first for this run only.
  if python3 scripts/gpu_check bundle-check "$bundle" 2>&1 | tee -a "$log" &&
     python3 -m pip install --no-index --no-deps --no-compile --no-cache-dir \
       --target "$site" "$bundle"/*.whl 2>&1 | tee -a "$log"; then
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    export GPU_CHECK_SITE="$site"  # the JSON names each imported package's origin by it
    export GPU_CHECK_INSTALL="pass: $(ls "$bundle"/*.whl | wc -l) wheels from $bundle into $site"
  else
    export GPU_CHECK_INSTALL="fail: the bundle did not install (the log says why)"
  fi
fi
exec python3 scripts/gpu_check run --out "$out"
