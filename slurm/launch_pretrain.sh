#!/bin/bash
# Shared launcher of the pretraining sbatch files (pretrain_lev_1b2.sh, pretrain_tied_1b2.sh):
# one `srun` rank per GPU running `python -m pretrain.train`, auto-resume, requeues when the
# run should continue, and no requeue when it should not (slurm/README.md, "How a job stops").
#
# Runs as (exec'd by) the batch shell, so `#SBATCH --signal=B:USR1@600`, `scancel --batch`
# and `scancel` reach *this* process. What it does with each (the training saves on USR1,
# TERM and INT alike and exits 75, or 76 when it had not taken a step yet):
#   USR1 (time limit, `scancel --signal=USR1 --batch`)  -> forwards USR1 -> save -> requeue
#   TERM/INT to this shell (`scancel`, `--signal=TERM --batch`) -> forwards USR1 (a TERM to
#        srun becomes SIGKILL for every task) -> save -> no requeue; the job ends CANCELLED
#   the first of these decides: a TERM after a USR1 (the time limit during a slow save) is
#        ignored, and so is a USR1 after a TERM
#   nothing here, ranks exit 75 (Slurm preemption TERMs the steps only; the time budget)
#        -> requeue
#   exit 76 (signalled during set-up, no step taken) -> requeue; when the signal was the
#        time limit's USR1 to this shell, at most MAX_NO_PROGRESS_RESTARTS times in a row,
#        then the job fails saying why (a stop from outside, such as preemption, never counts)
#   a crash or hang (any other code but 0, 2, 3) -> requeue if a newer checkpoint was
#        written during this run (always: that is progress); else MAX_FAILURE_RETRIES times
#        in a row (once) -- the count restarts when `latest` advances. The node that failed
#        (from srun's messages) is excluded from the requeued job if the partition has spares
# Exit 0 ends the job; 2 (config/data), 3 (non-finite loss) and 78 (refused input: a
# checkpoint that would run code, a listed path outside its directory; docs/trust.md) are
# never retried. The exit
# code is the one the ranks agreed on (LEV_EXIT_CODE_FILE, written by the training), else
# srun's.
#
# Environment (all optional except where the sbatch file sets a default):
#   CONFIG           YAML config (the sbatch file sets it)
#   RUN_NAME         names the default SAVE_DIR (the sbatch file sets it)
#   DATA_PATH        shard directory (data.path)            default $REPO_DIR/data/pile_neox_512
#                    (DATA_DIR, its old name, is still accepted with a deprecation note)
#   SAVE_DIR         checkpoints + metrics.jsonl; must be on a filesystem every node sees
#                                                           default $REPO_DIR/runs/$RUN_NAME
#   TRAIN_OVERRIDES  extra "section.field=value ..." overrides (word-split, never
#                    glob-expanded); arguments
#                    given to the sbatch file are appended after them
#   TENSOR_PARALLEL, ZERO_STAGE, MICRO_BATCH_SIZE, GLOBAL_BATCH_SIZE, TRAIN_STEPS
#                    shortcuts for parallel.tensor_parallel, train.zero_stage,
#                    train.micro_batch_size, train.global_batch_size, train.train_steps
#   PYTHON           interpreter (default python; e.g. /path/to/venv/bin/python)
#   REPO_DIR         checkout to run from (the sbatch file finds it)
#   MASTER_ADDR, MASTER_PORT   default: first node of the allocation, 20000 + job id % 12000
#   SRUN_ARGS        extra srun options (word-split, never glob-expanded), e.g.
#                    "--cpu-bind=cores"
#   SRUN_WAIT_S      after the first rank exits, kill the others after this many seconds
#                    (a crashed rank otherwise leaves its peers blocked in NCCL); default 60
#   MAX_NO_PROGRESS_RESTARTS  requeues in a row without a training step (exit 76 after the
#                    time limit's USR1); default 2
#   MAX_FAILURE_RETRIES       failed runs in a row without a new checkpoint that are retried
#                    (a failure after a new checkpoint is always retried); default 1
#   ALLOW_LOCAL_SAVE_DIR=1     accept a SAVE_DIR under /tmp, /dev/shm, $TMPDIR, ... (tests,
#                    a one-node local Slurm); a requeued job may land on another node
#   DRY_RUN=1        print the srun command line and exit 0
set -uo pipefail  # not -e: the training's exit code decides what happens next

# The whole script is one { ... } block: bash parses it completely before running it, so
# editing this file while jobs run (bash otherwise reads scripts as it goes) cannot change them.
{

say() { echo "launch_pretrain: $*"; }
fail() { echo "launch_pretrain: error: $*" >&2; exit "${2:-2}"; }
# What this job creates (its state files, and through the training every checkpoint) is
# never writable by others nor readable by everyone, whatever the submitter's umask; the
# training narrows group read further with checkpoint.group_access=none (docs/trust.md).
umask g-w,o=

# ------------------------------------------------------------------ signals
# Trap before anything slow, or an early signal kills the shell with the job still queued.
# `wait` below returns as soon as a trapped signal arrives, so the handler only records it
# and forwards it; the loop then keeps waiting for srun's real exit code.
step_pid=""
# The first signal this shell receives decides: USR1 (save + requeue), TERM/INT (save +
# stop). Later ones are logged and ignored: the time limit's TERM that follows its USR1
# during a slow save is not a cancel, and the ranks already save for the first one.
received=""
interrupted=0
# shellcheck disable=SC2317  # invoked by the traps
forward() {
  interrupted=1
  if [ -n "$received" ]; then
    say "got SIG$1 after SIG$received: ignored (the first stop request decides)"
    return
  fi
  received=$1
  if [ -n "$step_pid" ]; then
    # Always USR1: srun turns a TERM it receives into SIGKILL for every task.
    say "got SIG$1: asking every rank to save and stop (USR1 to srun pid $step_pid)"
    kill -s USR1 "$step_pid" 2>/dev/null || true
  else
    say "got SIG$1 before the training started"
  fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
trap 'forward INT' INT

# ------------------------------------------------------------------ paths
REPO_DIR=${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
[ -f "$REPO_DIR/pretrain/train.py" ] || fail "REPO_DIR=$REPO_DIR is not the repository (no pretrain/train.py)"
RUN_NAME=${RUN_NAME:-lev_1b2}
CONFIG=${CONFIG:-$REPO_DIR/pretrain/configs/$RUN_NAME.yaml}
if [ -z "${DATA_PATH:-}" ] && [ -n "${DATA_DIR:-}" ]; then
    DATA_PATH=$DATA_DIR
    say "warning: DATA_DIR is deprecated, use DATA_PATH (accepted until the next release)"
fi
DATA_PATH=${DATA_PATH:-$REPO_DIR/data/pile_neox_512}
SAVE_DIR=${SAVE_DIR:-$REPO_DIR/runs/$RUN_NAME}
PYTHON=${PYTHON:-python}

# Relative paths are relative to the job's working directory (the sbatch submit dir); make
# them absolute before moving to REPO_DIR. A relative CONFIG may also be relative to REPO_DIR.
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
if [ ! -f "$CONFIG" ] && [ -f "$REPO_DIR/$CONFIG" ]; then CONFIG=$REPO_DIR/$CONFIG; fi
CONFIG=$(abspath "$CONFIG"); DATA_PATH=$(abspath "$DATA_PATH"); SAVE_DIR=$(abspath "$SAVE_DIR")
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
    # The rendezvous store runs in rank 0, on the allocation's first node (where this batch
    # shell runs too). Its address is Slurm's NodeAddr: the node name on most clusters, but
    # not where node names are not host names (renamed nodes, several slurmd on one host).
    first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    MASTER_ADDR=$(scontrol show node -o "$first_node" 2>/dev/null |
                  sed -n 's/.*[[:space:]]NodeAddr=\([^[:space:]]*\).*/\1/p')
    MASTER_ADDR=${MASTER_ADDR:-$first_node}
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
# Word splitting of the override string is intended; globbing is not (set -f): a value such
# as "data.path=/data/*" must reach the training as written.
set -f
# shellcheck disable=SC2206
OVERRIDES=(${TRAIN_OVERRIDES:-})
# shellcheck disable=SC2206
SRUN_EXTRA=(${SRUN_ARGS:-})
set +f
[ -n "${TENSOR_PARALLEL:-}" ] && OVERRIDES+=("parallel.tensor_parallel=$TENSOR_PARALLEL")
[ -n "${ZERO_STAGE:-}" ] && OVERRIDES+=("train.zero_stage=$ZERO_STAGE")
[ -n "${MICRO_BATCH_SIZE:-}" ] && OVERRIDES+=("train.micro_batch_size=$MICRO_BATCH_SIZE")
[ -n "${GLOBAL_BATCH_SIZE:-}" ] && OVERRIDES+=("train.global_batch_size=$GLOBAL_BATCH_SIZE")
[ -n "${TRAIN_STEPS:-}" ] && OVERRIDES+=("train.train_steps=$TRAIN_STEPS")
OVERRIDES+=("$@")  # arguments of the sbatch file win
# --kill-on-bad-exit=0: every rank exits 75 after a save, and killing the slower ones on the
# first 75 would turn srun's exit code into 137. --wait ends the others SRUN_WAIT_S after the
# first rank exits: ranks that saved exit together, a crashed rank's peers would otherwise
# wait in a collective for NCCL's timeout (10 min and more).
CMD=(srun --kill-on-bad-exit=0 --wait="${SRUN_WAIT_S:-60}" "${SRUN_EXTRA[@]}"
     "$PYTHON" -m pretrain.train --config "$CONFIG"
     "data.path=$DATA_PATH" "checkpoint.save_dir=$SAVE_DIR" checkpoint.resume=auto
     "${OVERRIDES[@]}")

say "job ${SLURM_JOB_ID:-none} (${SLURM_JOB_NAME:-}) restart ${SLURM_RESTART_COUNT:-0} on" \
    "${SLURM_JOB_NUM_NODES:-1} node(s) [${SLURM_JOB_NODELIST:-$(hostname)}]," \
    "${SLURM_NTASKS:-1} ranks; master $MASTER_ADDR:$MASTER_PORT; OMP_NUM_THREADS=$OMP_NUM_THREADS"
say "$(date -u +%FT%TZ) ${CMD[*]}"
if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi
cd "$REPO_DIR" || fail "cannot cd to REPO_DIR=$REPO_DIR"

# Counters that must survive a requeue live next to the checkpoints, per job id: a new
# sbatch of the same run starts counting afresh.
STATE_DIR="$SAVE_DIR/.launcher/job-${SLURM_JOB_ID:-local}"
mkdir -p "$STATE_DIR" || fail "cannot create $STATE_DIR (is SAVE_DIR writable?)"
# Whoever can write the state could feed this shell what it reads back: both levels must
# be real directories of this user, and nobody else may write them from now on. One of
# ours that others could write (made under umask 002 by an earlier launcher) is closed
# with chmod go-w: every file in it is checked as it is read (counters are numbers only,
# state files are replaced, never written through).
for dir in "$SAVE_DIR/.launcher" "$STATE_DIR"; do
  if [ -L "$dir" ] || [ "$(stat -c %u "$dir")" != "$(id -u)" ]; then
    fail "$dir is a symlink or another user's ($(stat -c '%U %A' "$dir")): its files decide requeues. Remove it" 78
  fi
  if [ $(( 8#$(stat -c %a "$dir") & 8#022 )) -ne 0 ]; then
    say "$dir was writable by others ($(stat -c %A "$dir")): chmod go-w"
    chmod go-w "$dir" || fail "cannot chmod go-w $dir: its files decide requeues" 78
  fi
done
# State files are replaced by a rename from a fresh temporary file (never written through
# a name someone could have planted as a symlink).
write_state() {
  local tmp
  tmp=$(mktemp "$STATE_DIR/.$1.XXXXXX") || return 1
  printf '%s\n' "$2" > "$tmp" && mv -fT "$tmp" "$STATE_DIR/$1" || { rm -f "$tmp"; return 1; }
}
# A counter is a decimal count and nothing else: bash arithmetic evaluates what a variable
# holds, so a file holding 'a[$(cmd)]' would run cmd here. Sets $count (in this shell, so
# that a refusal ends the job, not a subshell).
counter() {
  local value
  value=$(cat "$STATE_DIR/$1" 2>/dev/null) || value=0
  [ -n "$value" ] || value=0  # a write cut short by a crash
  [[ $value =~ ^[0-9]+$ ]] ||
    fail "counter $STATE_DIR/$1 holds '${value:0:40}', not a count: refusing to use it (someone else wrote it?). Remove the file to start counting afresh" 78
  count=$((10#$value))
}
set_counter() { write_state "$1" "$2"; }
MAX_NO_PROGRESS_RESTARTS=${MAX_NO_PROGRESS_RESTARTS:-2}
MAX_FAILURE_RETRIES=${MAX_FAILURE_RETRIES:-1}
newest_checkpoint() { cat "$SAVE_DIR/latest" 2>/dev/null || echo none; }

# Per run (a requeue is a new run of the same job): srun's own messages, for telling which
# node failed, and the exit code the ranks agreed on, if they got as far as agreeing.
RUN_ID="run${SLURM_RESTART_COUNT:-0}"
SRUN_LOG="$STATE_DIR/srun.$RUN_ID.err"
# The training publishes the job's code here before its teardown (pretrain/runtime/
# exit_code.py: rank 0 for a code all ranks agreed on, else the first rank with a final
# error). srun's own code cannot be trusted for that: it reports 128+n as soon as any task
# is killed, e.g. by --wait during a slow teardown after a clean save.
export LEV_EXIT_CODE_FILE="$STATE_DIR/exit_code.$RUN_ID"
rm -f "$SRUN_LOG" "$SRUN_LOG.done" "$LEV_EXIT_CODE_FILE" "$LEV_EXIT_CODE_FILE".rank*.tmp

# The nodes of this allocation, in order, and the node of each task under srun's default
# block distribution ("2(x3),1": 2 tasks on each of 3 nodes, then 1).
task_node() {
  local task=$1 spec count repeat i
  local -a nodes specs counts=()
  mapfile -t nodes < <(scontrol show hostnames "${SLURM_JOB_NODELIST:-}" 2>/dev/null)
  IFS=, read -r -a specs <<< "${SLURM_TASKS_PER_NODE:-1}"
  for spec in "${specs[@]}"; do
    count=${spec%%(*}; repeat=1
    case "$spec" in *"(x"*) repeat=${spec#*(x}; repeat=${repeat%)} ;; esac
    for ((i = 0; i < repeat; i++)); do counts+=("$count"); done
  done
  for ((i = 0; i < ${#nodes[@]} && i < ${#counts[@]}; i++)); do
    if [ "$task" -lt "${counts[i]}" ]; then echo "${nodes[i]}"; return; fi
    task=$((task - counts[i]))
  done
}
expand_ids() {  # "1-3,5" -> 1 2 3 5
  local part
  local -a parts
  IFS=, read -r -a parts <<< "$1"
  for part in "${parts[@]}"; do
    case "$part" in *-*) seq "${part%-*}" "${part#*-}" ;; *) echo "$part" ;; esac
  done
}
# The node(s) to blame for a failed run, from srun's messages (Slurm 22.05 wording):
#   1. "srun: error: Node failure on NODE": Slurm declared the node dead;
#   2. tasks srun listed as still running when its --wait ran out ("srun: StepId=J.S
#      tasks 1-3: running") and that never reported an exit after it: srun could not even
#      kill them, their node is gone;
#   3. those listed tasks, if the first rank to end exited 77: its watchdog saw no progress
#      because it was waiting for them (a hung rank; srun killed it after the wait);
#   4. else the node of the first task that ended ("srun: error: NODE: task N: Killed",
#      "...: Exited with exit code 1"): the rank that crashed first. Ranks still running
#      then were waiting for it in a collective, not at fault.
failing_nodes() {
  local running exited first unreported id
  [ -s "$SRUN_LOG" ] || return 0
  if grep -q '^srun: error: Node failure on ' "$SRUN_LOG"; then
    sed -n 's/^srun: error: Node failure on \([^ ;:]*\).*/\1/p' "$SRUN_LOG" | sort -u
    return 0
  fi
  running=$(sed -n 's/^srun: StepId=[^ ]* tasks\{0,1\} \([0-9,-]*\): running$/\1/p' "$SRUN_LOG" | paste -sd, -)
  exited=$(sed -n 's/^srun: error: [^ :]*: tasks\{0,1\} \([0-9,-]*\): .*/\1/p' "$SRUN_LOG" | paste -sd, -)
  first=$(grep -m 1 '^srun: error: [^ :]*: tasks\{0,1\} [0-9,-]*: ' "$SRUN_LOG")
  if [ -n "$running" ]; then
    unreported=$(comm -23 <(expand_ids "$running" | sort -u) <(expand_ids "$exited" | sort -u))
    if [ -n "$unreported" ]; then
      for id in $unreported; do task_node "$id"; done | sort -u
      return 0
    fi
    case "$first" in *": Exited with exit code 77")
      for id in $(expand_ids "$running"); do task_node "$id"; done | sort -u
      return 0 ;;
    esac
  fi
  sed -n 's/^srun: error: \([^ :]*\): tasks\{0,1\} [0-9,-]*: .*/\1/p' <<< "$first"
}

# Keep the requeued job off the nodes in EXCLUDE (added to any it already avoids) when the
# partition keeps enough other nodes for it (else it could never start again); says what
# it did. Slurm accepts an ExcNodeList only for a pending job, so this runs right after
# `scontrol requeue`. The exclusion lasts for the rest of the job's life.
EXCLUDE=""
exclude_nodes() {
  local info current all total excluded
  [ -n "${SLURM_JOB_ID:-}" ] && [ -n "$EXCLUDE" ] || return 0
  info=$(scontrol show job -o "$SLURM_JOB_ID" 2>/dev/null)
  current=$(sed -n 's/.*[[:space:]]ExcNodeList=\([^[:space:]]*\).*/\1/p' <<< "$info")
  [ "$current" = "(null)" ] && current=""
  all=$( { [ -n "$current" ] && scontrol show hostnames "$current"; echo "$EXCLUDE" | tr ' ' '\n'; } |
         grep -v '^$' | sort -u | paste -sd, -)
  total=$(scontrol show partition -o "${SLURM_JOB_PARTITION:-}" 2>/dev/null |
          sed -n 's/.*[[:space:]]TotalNodes=\([0-9]*\).*/\1/p')
  excluded=$(echo "$all" | tr ',' '\n' | grep -c .)
  if [ -z "$total" ] || [ $((total - excluded)) -lt "${SLURM_JOB_NUM_NODES:-1}" ]; then
    say "excluding node(s) $all would leave $((${total:-0} - excluded)) of partition" \
        "${SLURM_JOB_PARTITION:-?}'s ${total:-?} nodes for a job of ${SLURM_JOB_NUM_NODES:-1}; not excluding $EXCLUDE"
    return 0
  fi
  if scontrol update "JobId=$SLURM_JOB_ID" "ExcNodeList=$all"; then
    say "the next run of job $SLURM_JOB_ID avoids node(s) $all (ExcNodeList)"
  else
    say "warning: could not exclude node(s) $all from job $SLURM_JOB_ID"
  fi
}

requeue() {
  if [ -z "${SLURM_JOB_ID:-}" ]; then
    say "not a Slurm job: run this again to resume from $SAVE_DIR"
  else
    # The requeue TERMs this shell (KillWait before KILL): stay alive to set the exclusion.
    trap '' TERM INT
    if scontrol requeue "$SLURM_JOB_ID"; then
      say "requeued job $SLURM_JOB_ID; it resumes from the newest checkpoint in $SAVE_DIR"
      exclude_nodes
    else
      echo "launch_pretrain: error: scontrol requeue $SLURM_JOB_ID failed (job cancelled, submitted with --no-requeue, or JobRequeue=0?); submit again with the same SAVE_DIR to resume" >&2
    fi
  fi
  exit "$1"
}

stop_on_request() {
  say "stopped on request (SIG$received to the batch shell) at checkpoint $(newest_checkpoint);" \
      "not requeueing. Submit again with SAVE_DIR=$SAVE_DIR to resume"
  # End as CANCELLED, like a plain scancel (which it usually was); no-op if it already is.
  if [ -n "${SLURM_JOB_ID:-}" ]; then scancel "$SLURM_JOB_ID" 2>/dev/null || true; fi
  exit 0
}

if [ -n "$received" ]; then  # signalled within a second of the start: see the note below
  echo "launch_pretrain: error: got SIG$received before the training started; not starting it." \
       "Submit again to resume from $SAVE_DIR (is --time shorter than the --signal lead?)" >&2
  exit 1
fi

checkpoint_at_start=$(newest_checkpoint)
# srun's stderr (its own messages and the ranks' stderr) also goes to SRUN_LOG. The tee
# ignores the job's signals: if it died first, srun would write into a closed pipe.
"${CMD[@]}" 2> >(trap '' TERM INT USR1 HUP; tee -a "$SRUN_LOG" >&2; : > "$SRUN_LOG.done") &
step_pid=$!
while :; do
  interrupted=0
  wait "$step_pid"
  rc=$?
  # A trapped signal interrupts `wait` (rc > 128) while srun still runs: wait again. Once
  # srun has exited, `wait` returns its status (bash keeps it for an unreaped pid).
  [ "$interrupted" = 1 ] || break
done
for _ in $(seq 50); do [ -e "$SRUN_LOG.done" ] && break; sleep 0.1; done  # the tee's last lines
# Keep srun's own messages only: the ranks' stderr is in the job log already.
srun_only=$(mktemp "$STATE_DIR/.srun.XXXXXX") &&
  { grep '^srun: ' "$SRUN_LOG" > "$srun_only" 2>/dev/null; mv -fT "$srun_only" "$SRUN_LOG"; }
rm -f "$SRUN_LOG.done"
srun_rc=$rc
agreed=$(cat "$LEV_EXIT_CODE_FILE" 2>/dev/null || true)
case "$agreed" in
  ''|*[!0-9]*) say "$(date -u +%FT%TZ) training exited with code $rc" ;;
  *) rc=$agreed
     say "$(date -u +%FT%TZ) training exited with code $rc (agreed by the ranks; srun: $srun_rc)" ;;
esac

case "$rc" in
  0)
    say "finished: train_steps reached, final checkpoint in $SAVE_DIR"
    exit 0 ;;
  75)  # saved after progress
    set_counter no_progress 0
    if [ "$received" = TERM ] || [ "$received" = INT ]; then stop_on_request; fi
    requeue 75 ;;
  76)  # signalled before a step: nothing new saved
    if [ "$received" = TERM ] || [ "$received" = INT ]; then stop_on_request; fi
    if [ -z "$received" ]; then
      # The ranks were signalled, this shell was not: Slurm preemption (or a signal to the
      # steps). Not the job's fault, and no reason to give up a long run: not counted.
      counter no_progress
      say "stopped from outside during set-up (preemption?); not counted against" \
          "MAX_NO_PROGRESS_RESTARTS ($count such restarts in a row so far)"
      requeue 76
    fi
    # USR1 to this shell: the time-limit signal (`--signal=B:USR1@...`) came before the
    # first step. Every run would do the same if --time is too short: count them.
    counter no_progress
    n=$((count + 1))
    set_counter no_progress "$n"
    if [ "$n" -gt "$MAX_NO_PROGRESS_RESTARTS" ]; then
      echo "launch_pretrain: error: $n restarts in a row stopped before a single training step" \
           "(signalled during set-up every time: is --time shorter than the --signal lead plus" \
           "start-up?); not requeueing again (MAX_NO_PROGRESS_RESTARTS=$MAX_NO_PROGRESS_RESTARTS)." \
           "The newest checkpoint ($(newest_checkpoint)) is intact: fix the cause and submit again" >&2
      exit 76
    fi
    say "no step taken in this run ($n of $MAX_NO_PROGRESS_RESTARTS such restarts in a row allowed)"
    requeue 76 ;;
  2|3)
    echo "launch_pretrain: error: training failed with exit code $rc (2: config/data error," \
         "3: non-finite loss; see the log above); never retried" >&2
    exit "$rc" ;;
  78)
    echo "launch_pretrain: error: training refused its input (exit 78: a checkpoint file that" \
         "would run code when loaded, or a listed path outside its directory; see the log" \
         "above and docs/trust.md); not requeued, not retried: a rerun would meet the same" \
         "files" >&2
    exit 78 ;;
esac
if [ -n "$received" ] && [ "$rc" -gt 128 ]; then
  # The signal ended the ranks before pretrain.train installed its handler (still importing).
  echo "launch_pretrain: error: the forwarded SIG$received ended the training before it could" \
       "save (during start-up). The last checkpoint in $SAVE_DIR is intact: submit again to" \
       "resume. If this happens at every start, --time is shorter than the --signal lead." >&2
  exit "$rc"
fi
# A crash (a rank or node died: srun --wait ended the others) or a hang (77: the watchdog).
# A run that wrote a new checkpoint is always retried: it made progress, and a long run
# meets many such failures. Failed runs in a row that did not get that far are retried
# MAX_FAILURE_RETRIES times (default once), each away from the node that failed; the count
# restarts whenever `latest` advances.
checkpoint_now=$(newest_checkpoint)
what="training failed with exit code $rc (77: hang detected, 1: error, >128: killed; see the log above)"
mapfile -t culprits < <(failing_nodes)
EXCLUDE="${culprits[*]}"
blame=""
[ -n "$EXCLUDE" ] && blame=" on node(s) $EXCLUDE"
if [ "$(cat "$STATE_DIR/failures_since" 2>/dev/null)" != "$checkpoint_now" ]; then
  set_counter failure_retries 0
  write_state failures_since "$checkpoint_now"
fi
if [ "$checkpoint_now" != "$checkpoint_at_start" ]; then
  echo "launch_pretrain: error: $what$blame after writing $checkpoint_now; retrying from it" >&2
  requeue "$rc"
fi
counter failure_retries
retries=$count
if [ "$retries" -lt "$MAX_FAILURE_RETRIES" ]; then
  set_counter failure_retries $((retries + 1))
  from=$checkpoint_now
  [ "$from" = none ] && from="the start"
  echo "launch_pretrain: error: $what$blame before a new checkpoint; retry $((retries + 1)) of" \
       "$MAX_FAILURE_RETRIES from $from" >&2
  requeue "$rc"
fi
echo "launch_pretrain: error: $what$blame; not retrying: $retries run(s) in a row already failed" \
     "before a new checkpoint (MAX_FAILURE_RETRIES=$MAX_FAILURE_RETRIES); the newest checkpoint" \
     "($checkpoint_now) is intact: fix the cause and submit again" >&2
exit "$rc"
}
