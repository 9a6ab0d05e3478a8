#!/usr/bin/env bash
# Installs everything the tests need (Python stack + Slurm/munge for the local-Slurm
# tests) and runs the whole suite. This is what CI runs (.ci/run).
#
#   bash scripts/test.sh                            # everything
#   bash scripts/test.sh -k resume tests/pretrain   # arguments go to pytest
#
# LEV_REQUIRE_SLURM=1 is set: the Slurm tests fail rather than skip without slurm-wlm.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "usage: bash scripts/test.sh [-h] [PYTEST_ARGS ...]"
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"  # this header
  exit 0
fi
cd "$(dirname "$0")/.."

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[test.sh] installing slurm-wlm and munge (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  else
    echo "[test.sh] slurm-wlm/munge missing and apt-get unavailable (or not root):" \
         "install them, or the Slurm tests will fail" >&2
  fi
fi
bash scripts/install.sh

# Slurm tests must run in CI, never silently skip.
export LEV_REQUIRE_SLURM=1
exec python3 -m pytest -q "$@"
