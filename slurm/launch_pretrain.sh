#!/bin/bash
# Shared launcher of the pretraining sbatch files (pretrain_lev_1b2.sh, pretrain_tied_1b2.sh):
# one `srun` rank per GPU running `python -m pretrain.train`, auto-resume, and a self-requeue
# when the training saved and stopped early (exit 75: preemption / time-limit signal).
#
# Runs as (exec'd by) the batch shell, so `#SBATCH --signal=B:USR1@600` and
# `scancel --signal=USR1 --batch JOB` signal *this* process. It forwards USR1/TERM to srun,
# srun delivers them to every training process, those finish the step, save and exit 75,
# and this script runs `scontrol requeue`. The requeued run resumes from the newest
# checkpoint (checkpoint.resume=auto). Exit 0 ends the job; any other code fails it.
#
# Environment (all optional except where the sbatch file sets a default):
#   CONFIG           YAML config (the sbatch file sets it)
#   RUN_NAME         names the default SAVE_DIR (the sbatch file sets it)
#   DATA_DIR         shard directory (data.path)            default $REPO_DIR/data/pile_neox_512
#   SAVE_DIR         checkpoints + metrics.jsonl; must be on a filesystem every node sees
#                                                           default $REPO_DIR/runs/$RUN_NAME
#   TRAIN_OVERRIDES  extra "section.field=value ..." overrides (word-split); arguments
#                    given to the sbatch file are appended after them
#   TENSOR_PARALLEL, ZERO_STAGE, MICRO_BATCH_SIZE, GLOBAL_BATCH_SIZE, TRAIN_STEPS
#                    shortcuts for parallel.tensor_parallel, train.zero_stage,
#                    train.micro_batch_size, train.global_batch_size, train.train_steps
#   PYTHON           interpreter (default python; e.g. /path/to/venv/bin/python)
#   REPO_DIR         checkout to run from (the sbatch file finds it)
#   MASTER_ADDR, MASTER_PORT   default: first node of the allocation, 20000 + job id % 12000
#   SRUN_ARGS        extra srun options (word-split), e.g. "--cpu-bind=cores"
#   SRUN_WAIT_S      after the first rank exits, kill the others after this many seconds
#                    (a crashed rank otherwise leaves its peers blocked in NCCL); default 600
#   ALLOW_LOCAL_SAVE_DIR=1     accept a SAVE_DIR under /tmp, /dev/shm, $TMPDIR, ... (tests,
#                    a one-node local Slurm); a requeued job may land on another node
#   DRY_RUN=1        print the srun command line and exit 0
set -uo pipefail  # not -e: the training's exit code decides what happens next

# The whole script is one { ... } block: bash parses it completely before running it, so
# editing this file while jobs run (bash otherwise reads scripts as it goes) cannot change them.
{

REQUEUE_EXIT_CODE=75  # pretrain.stopping.ExitCode.REQUEUE
say() { echo "launch_pretrain: $*"; }
fail() { echo "launch_pretrain: error: $*" >&2; exit "${2:-2}"; }

# ------------------------------------------------------------------ signals
# Trap before anything slow, or an early signal kills the shell with the job still queued.
# `wait` below returns as soon as a trapped signal arrives, so the handler only records it
# and forwards it; the loop then keeps waiting for srun's real exit code.
step_pid=""
forwarded=""   # last signal forwarded to the training, e.g. USR1
interrupted=0
# shellcheck disable=SC2317  # invoked by the traps
forward() {
  forwarded=$1
  interrupted=1
  if [ -n "$step_pid" ]; then
    say "got SIG$1: forwarding it to the training (srun pid $step_pid); it saves and exits $REQUEUE_EXIT_CODE"
    kill -s "$1" "$step_pid" 2>/dev/null || true
  else
    say "got SIG$1 before the training started"
  fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM

# ------------------------------------------------------------------ paths
REPO_DIR=${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
[ -f "$REPO_DIR/pretrain/train.py" ] || fail "REPO_DIR=$REPO_DIR is not the repository (no pretrain/train.py)"
RUN_NAME=${RUN_NAME:-lev_1b2}
CONFIG=${CONFIG:-$REPO_DIR/pretrain/configs/$RUN_NAME.yaml}
DATA_DIR=${DATA_DIR:-$REPO_DIR/data/pile_neox_512}
SAVE_DIR=${SAVE_DIR:-$REPO_DIR/runs/$RUN_NAME}
PYTHON=${PYTHON:-python}

# Relative paths are relative to the job's working directory (the sbatch submit dir); make
# them absolute before moving to REPO_DIR. A relative CONFIG may also be relative to REPO_DIR.
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
if [ ! -f "$CONFIG" ] && [ -f "$REPO_DIR/$CONFIG" ]; then CONFIG=$REPO_DIR/$CONFIG; fi
CONFIG=$(abspath "$CONFIG"); DATA_DIR=$(abspath "$DATA_DIR"); SAVE_DIR=$(abspath "$SAVE_DIR")
[ -f "$CONFIG" ] || fail "CONFIG=$CONFIG does not exist (pretrain/configs/*.yaml)"

# Checkpoints must outlive the node: a requeued or resumed job may run on other nodes, and
# every rank writes its own shard of the checkpoint into the same directory.
check_shared_save_dir() {
  local dir=$1 local_dir fstype
  for local_dir in /tmp /var/tmp /dev/shm /run /scratch/local /local /localscratch \
                   "${TMPDIR:-}" "${SLURM_TMPDIR:-}" "${LOCAL_SCRATCH:-}"; do
    [ -n "$local_dir" ] || continue
    case "$dir/" in "${local_dir%/}/"*)
      fail "SAVE_DIR=$dir is on node-local storage ($local_dir): checkpoints would be lost when the job moves to another node. Use a shared filesystem path, or set ALLOW_LOCAL_SAVE_DIR=1 (one-node tests only)" ;;
    esac
  done
  local existing=$dir  # the training creates SAVE_DIR; look at what already exists
  while [ ! -e "$existing" ] && [ "$existing" != / ]; do existing=$(dirname "$existing"); done
  fstype=$(stat -f -c %T "$existing" 2>/dev/null || echo unknown)
  case "$fstype" in tmpfs|ramfs)
    fail "SAVE_DIR=$dir is on $fstype (node memory); use a shared filesystem or ALLOW_LOCAL_SAVE_DIR=1" ;;
  esac
}
[ "${ALLOW_LOCAL_SAVE_DIR:-0}" = 1 ] || check_shared_save_dir "$SAVE_DIR"

# ------------------------------------------------------------------ rendezvous and environment
if [ -z "${MASTER_ADDR:-}" ]; then
  if [ -n "${SLURM_JOB_NODELIST:-}" ]; then
    MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  else
    MASTER_ADDR=127.0.0.1
  fi
fi
# The same job id (also after a requeue) always gives the same port; two jobs sharing a
# node get different ones. 20000-31999 stays below Linux's ephemeral range (32768+), where
# any outgoing connection (NCCL, gloo, the shared filesystem) may hold the port.
MASTER_PORT=${MASTER_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 12000))}
export MASTER_ADDR MASTER_PORT

# Threads per rank = the CPUs Slurm gave the task (torch otherwise starts one per core of
# the node in every rank: 8 ranks x 96 threads fight over 96 cores).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
# Since Slurm 22.05 srun no longer inherits --cpus-per-task from sbatch; without this each
# rank would be bound to a single CPU (data loading and the loader thread starve).
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then export SRUN_CPUS_PER_TASK=${SRUN_CPUS_PER_TASK:-$SLURM_CPUS_PER_TASK}; fi
# A failed or hung collective raises in every rank instead of blocking until the job's end
# (the old name for torch < 2.2, the new one for later torch).
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
export NCCL_ASYNC_ERROR_HANDLING=${NCCL_ASYNC_ERROR_HANDLING:-1}
# NCCL prints its version and real errors; set NCCL_DEBUG=INFO to debug network selection.
# Site-specific choices (NCCL_SOCKET_IFNAME, NCCL_IB_HCA, ...) belong in the environment
# you submit from; this script does not guess them.
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
# megatron-core needs one CUDA work queue for its TP communication/compute ordering
# (required with sequence parallelism, harmless without).
export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}
# Fewer out-of-memory errors from fragmentation with changing activation sizes.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1  # log lines reach the job log as they happen
export PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"

# ------------------------------------------------------------------ command
# shellcheck disable=SC2206  # word splitting of the override string is intended
OVERRIDES=(${TRAIN_OVERRIDES:-})
[ -n "${TENSOR_PARALLEL:-}" ] && OVERRIDES+=("parallel.tensor_parallel=$TENSOR_PARALLEL")
[ -n "${ZERO_STAGE:-}" ] && OVERRIDES+=("train.zero_stage=$ZERO_STAGE")
[ -n "${MICRO_BATCH_SIZE:-}" ] && OVERRIDES+=("train.micro_batch_size=$MICRO_BATCH_SIZE")
[ -n "${GLOBAL_BATCH_SIZE:-}" ] && OVERRIDES+=("train.global_batch_size=$GLOBAL_BATCH_SIZE")
[ -n "${TRAIN_STEPS:-}" ] && OVERRIDES+=("train.train_steps=$TRAIN_STEPS")
OVERRIDES+=("$@")  # arguments of the sbatch file win
# shellcheck disable=SC2206
SRUN_EXTRA=(${SRUN_ARGS:-})
# --kill-on-bad-exit=0: every rank exits 75 after a save, and killing the slower ones on the
# first 75 would turn srun's exit code into 137. --wait bounds a crashed rank's aftermath.
CMD=(srun --kill-on-bad-exit=0 --wait="${SRUN_WAIT_S:-600}" "${SRUN_EXTRA[@]}"
     "$PYTHON" -m pretrain.train --config "$CONFIG"
     "data.path=$DATA_DIR" "checkpoint.save_dir=$SAVE_DIR" checkpoint.resume=auto
     "${OVERRIDES[@]}")

say "job ${SLURM_JOB_ID:-none} (${SLURM_JOB_NAME:-}) restart ${SLURM_RESTART_COUNT:-0} on" \
    "${SLURM_JOB_NUM_NODES:-1} node(s) [${SLURM_JOB_NODELIST:-$(hostname)}]," \
    "${SLURM_NTASKS:-1} ranks; master $MASTER_ADDR:$MASTER_PORT; OMP_NUM_THREADS=$OMP_NUM_THREADS"
say "$(date -u +%FT%TZ) ${CMD[*]}"
if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi
cd "$REPO_DIR" || fail "cannot cd to REPO_DIR=$REPO_DIR"

requeue() {
  if [ -z "${SLURM_JOB_ID:-}" ]; then
    say "not a Slurm job: run this again to resume from $SAVE_DIR"
  elif scontrol requeue "$SLURM_JOB_ID"; then
    say "requeued job $SLURM_JOB_ID; it resumes from the newest checkpoint in $SAVE_DIR"
  else
    echo "launch_pretrain: error: scontrol requeue $SLURM_JOB_ID failed (job cancelled, submitted with --no-requeue, or JobRequeue=0?); submit again with the same SAVE_DIR to resume" >&2
  fi
  exit "$REQUEUE_EXIT_CODE"
}

if [ -n "$forwarded" ]; then  # signalled within a second of the start: see the note below
  echo "launch_pretrain: error: got SIG$forwarded before the training started; not starting it." \
       "Submit again to resume from $SAVE_DIR (is --time shorter than the --signal lead?)" >&2
  exit 1
fi

"${CMD[@]}" &
step_pid=$!
while :; do
  interrupted=0
  wait "$step_pid"
  rc=$?
  # A trapped signal interrupts `wait` (rc > 128) while srun still runs: wait again. Once
  # srun has exited, `wait` returns its status (bash keeps it for an unreaped pid).
  [ "$interrupted" = 1 ] || break
done
say "$(date -u +%FT%TZ) training exited with code $rc"

case "$rc" in
  0)
    say "finished: train_steps reached, final checkpoint in $SAVE_DIR"
    exit 0 ;;
  "$REQUEUE_EXIT_CODE")
    requeue ;;
esac
if [ -n "$forwarded" ] && [ "$rc" -gt 128 ]; then
  # The signal ended the ranks before pretrain.train installed its handler (still importing
  # or loading). Not requeued on purpose: with --time shorter than the --signal lead every
  # run would be signalled at start-up and requeue forever without a single step.
  echo "launch_pretrain: error: the forwarded SIG$forwarded ended the training before it could" \
       "save (during start-up). The last checkpoint in $SAVE_DIR is intact: submit again to" \
       "resume. If this happens at every start, --time is shorter than the --signal lead." >&2
  exit "$rc"
fi
echo "launch_pretrain: error: training failed with exit code $rc (2: config/data error," \
     "3: non-finite loss, 1: other; see the log above); not requeueing" >&2
exit "$rc"
}
