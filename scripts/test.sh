#!/usr/bin/env bash
# Installs everything the tests need (Python stack + Slurm/munge for the local-Slurm
# tests) and runs the whole suite. This is what CI runs (.ci/run).
#
#   bash scripts/test.sh                            # everything (what CI runs)
#   bash scripts/test.sh -k resume tests/pretrain   # arguments go to pytest
#   bash scripts/test.sh --quick                    # the developer loop: single-process
#                                                   # tests only, no install step
#
# --quick deselects the tests marked multiproc (several real processes), slurm, venv and
# slow (pyproject.toml lists the markers); run the full command once first so the stack
# is installed. Both print the 25 slowest tests.
#
# LEV_REQUIRE_SLURM=1 is set: the Slurm tests fail rather than skip without slurm-wlm.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "usage: bash scripts/test.sh [-h] [PYTEST_ARGS ...]"
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"  # this header
  exit 0
fi
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--quick" ]; then
  shift
  exec python3 -m pytest -q --durations=25 -m "not multiproc and not slurm and not venv and not slow" "$@"
fi

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
# Three workers on two cores: the Slurm tests (one worker per local cluster) mostly wait on
# requeues and timeouts, so they run beside the CPU-bound tests instead of after them. Each
# test file, and each group of files sharing an expensive session fixture, stays on one
# worker (tests/conftest.py), so fixtures are built once. LEV_TEST_WORKERS=0 runs serially.
workers=${LEV_TEST_WORKERS:-3}
if [ "$workers" = 0 ]; then
  exec python3 -m pytest -q --durations=25 "$@"
fi
exec python3 -m pytest -q --durations=25 -n "$workers" --dist loadgroup --no-loadscope-reorder "$@"
