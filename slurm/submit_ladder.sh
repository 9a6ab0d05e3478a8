#!/bin/bash
# Submit the size ladder (docs/ladder.md): lev, tied and untied at each rung, one sbatch job
# per arm through the existing templates (pretrain_{lev,tied,untied}_1b2.sh) with the rung's
# config, so every job gets their signals, requeues and auto-resume.
#
#   cd /path/to/repo     # submit from the checkout, as with the templates
#   DATA_PATH=/shared/data/pile_neox_512 RUNS_DIR=/shared/runs/ladder slurm/submit_ladder.sh 200m
#   DATA_PATH=... RUNS_DIR=... slurm/submit_ladder.sh all           # the whole ladder
#
# usage: slurm/submit_ladder.sh [--arms lev,tied,untied] [--tag TAG] [--print-only]
#                               [SBATCH_OPTION ...] RUNG... | all [-- OVERRIDE ...]
#
#   RUNG          200m, 400m or 1b2 (all: every rung, smallest first). Run 200m first: it is
#                 the cheapest test of the paper's claim (docs/ladder.md).
#   --arms LIST   comma-separated subset of lev,tied,untied (default: all three)
#   --tag TAG     appended to job names and run directories (a second seed, a variant):
#                 jobs of one name run one at a time (the templates' --dependency=singleton)
#   --print-only  print each sbatch command line, submit nothing
#   SBATCH_OPTION any other option starting with '-' goes to every sbatch call, after the
#                 rung's defaults below (so it wins); one word each, --name=value form:
#                 --partition=gpu --account=lev --nodes=2
#   OVERRIDE      section.field=value config overrides for every arm (after TRAIN_OVERRIDES)
#
# Per arm: job name ARM-RUNG[-TAG], config pretrain/configs/ARM_RUNG.yaml,
# SAVE_DIR=$RUNS_DIR/ARM_RUNG[_TAG] (what `python -m pretrain.study.ladder report $RUNS_DIR`
# reads), log $RUNS_DIR/logs/ARM-RUNG[-TAG]-JOBID.out. Rung defaults (8 GPUs per node, as
# the templates): 200m 1 node --time=06:00:00, 400m 1 node --time=12:00:00, 1b2 the
# templates' 4 nodes and 24:00:00; a run that outlives its time limit saves and requeues.
#
# Environment: RUNS_DIR (default $REPO/runs; must be on a filesystem every node sees),
# DATA_PATH and everything else slurm/launch_pretrain.sh reads (TRAIN_OVERRIDES, PYTHON, ...)
# reach the jobs through sbatch's default --export=ALL. CONFIG, SAVE_DIR and RUN_NAME are set
# per arm. Prints one "submitted ARM-RUNG job JOBID" line per job.
# Exit codes: 0 all submitted; 2 bad arguments or a missing config (nothing submitted);
# 1 an sbatch call failed (the jobs submitted before it stay queued; the error says which).
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
fail() { echo "submit_ladder: error: $1" >&2; exit "${2:-2}"; }

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNGS_KNOWN=(200m 400m 1b2)  # smallest first: `all` submits in this order
ARMS_KNOWN=(lev tied untied)

arms=("${ARMS_KNOWN[@]}") tag="" print_only=0
rungs=() sbatch_opts=() overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --arms) [ $# -ge 2 ] || fail "--arms needs a value (e.g. --arms lev,tied)"
            IFS=, read -r -a arms <<< "$2"; shift 2 ;;
    --arms=*) IFS=, read -r -a arms <<< "${1#--arms=}"; shift ;;
    --tag) [ $# -ge 2 ] || fail "--tag needs a value (e.g. --tag seed2)"; tag=$2; shift 2 ;;
    --tag=*) tag=${1#--tag=}; shift ;;
    --print-only) print_only=1; shift ;;
    --) shift; overrides=("$@"); break ;;
    -*) sbatch_opts+=("$1"); shift ;;
    all) rungs+=("${RUNGS_KNOWN[@]}"); shift ;;
    *) rungs+=("$1"); shift ;;
  esac
done

[ ${#rungs[@]} -gt 0 ] || fail "no rung given: name one or more of ${RUNGS_KNOWN[*]}, or all (--help)"
for rung in "${rungs[@]}"; do
  case " ${RUNGS_KNOWN[*]} " in *" $rung "*) ;;
    *) fail "unknown rung '$rung': choose from ${RUNGS_KNOWN[*]}, or all" ;; esac
done
[ ${#arms[@]} -gt 0 ] || fail "--arms is empty: give a comma-separated subset of ${ARMS_KNOWN[*]}"
for arm in "${arms[@]}"; do
  case " ${ARMS_KNOWN[*]} " in *" $arm "*) ;;
    *) fail "unknown arm '$arm' in --arms: choose from ${ARMS_KNOWN[*]}" ;; esac
done
case "$tag" in *[!A-Za-z0-9._-]*) fail "--tag '$tag' may hold only letters, digits, '.', '_' and '-' (it names jobs and directories)" ;; esac
# Every config first, so a typo submits nothing rather than half a rung.
for rung in "${rungs[@]}"; do
  for arm in "${arms[@]}"; do
    [ -f "$REPO_DIR/pretrain/configs/${arm}_$rung.yaml" ] ||
      fail "config pretrain/configs/${arm}_$rung.yaml not found (is this checkout complete?)"
  done
done

RUNS_DIR=${RUNS_DIR:-$REPO_DIR/runs}
case "$RUNS_DIR" in /*) ;; *) RUNS_DIR=$PWD/$RUNS_DIR ;; esac  # the jobs run elsewhere
# Slurm does not create the log directory; a missing one fails the job without a word.
[ "$print_only" = 1 ] || mkdir -p "$RUNS_DIR/logs" || fail "cannot create $RUNS_DIR/logs (RUNS_DIR)"

# Nodes and time limit per rung: the 1.2B keeps the templates' own #SBATCH lines. The limits
# are generous next to the computed GPU-hours in docs/ladder.md (a lower MFU than assumed
# costs time, not the run: the job saves and requeues at its limit).
rung_defaults() {
  case "$1" in
    200m) echo "--nodes=1 --time=06:00:00" ;;
    400m) echo "--nodes=1 --time=12:00:00" ;;
    1b2) echo "" ;;
  esac
}

suffix=${tag:+-$tag}
for rung in "${rungs[@]}"; do
  # shellcheck disable=SC2207  # the defaults are plain words
  defaults=($(rung_defaults "$rung"))
  for arm in "${arms[@]}"; do
    run=${arm}_$rung${tag:+_$tag} name=$arm-$rung$suffix
    cmd=(sbatch --parsable "--job-name=$name" "--output=$RUNS_DIR/logs/%x-%j.out"
         "${defaults[@]}" "${sbatch_opts[@]}" "$REPO_DIR/slurm/pretrain_${arm}_1b2.sh"
         "${overrides[@]}")
    if [ "$print_only" = 1 ]; then
      echo "CONFIG=pretrain/configs/${arm}_$rung.yaml SAVE_DIR=$RUNS_DIR/$run RUN_NAME=$run ${cmd[*]}"
      continue
    fi
    # From the checkout: the templates find the launcher through the submit directory.
    if ! job=$(cd "$REPO_DIR" && CONFIG=$REPO_DIR/pretrain/configs/${arm}_$rung.yaml \
               SAVE_DIR=$RUNS_DIR/$run RUN_NAME=$run "${cmd[@]}"); then
      fail "sbatch failed for $name (jobs submitted before it stay queued)" 1
    fi
    echo "submitted $name job ${job%%;*} (SAVE_DIR=$RUNS_DIR/$run)"
  done
done
