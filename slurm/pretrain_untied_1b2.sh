#!/bin/bash
# 1.2B untied-embedding baseline on 4 nodes x 8 GPUs (config: pretrain/configs/untied_1b2.yaml,
# the LEV run's backbone, data and schedule with a full input table and a separate head).
#
#   cd /path/to/repo     # submit from the checkout (the job finds the launcher through it)
#   DATA_PATH=/shared/data/pile_neox_512 SAVE_DIR=/shared/runs/untied_1b2 sbatch slurm/pretrain_untied_1b2.sh
#
# Everything below is a default: sbatch options on the command line override these #SBATCH
# lines (e.g. `sbatch --nodes=8 --time=48:00:00 ...`), environment variables override the
# paths and sizes, and arguments after the script are config overrides
# (`sbatch slurm/pretrain_untied_1b2.sh train.train_steps=50000`). See slurm/launch_pretrain.sh
# for the variables and slurm/README.md for watching, resuming and changing the node count.
#
#SBATCH --job-name=untied-1b2
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --time=24:00:00
# USR1 to the batch shell 600 s before the time limit (Slurm may send it up to 60 s earlier):
# room to finish the step and save a 1.2B checkpoint. The launcher forwards it to the ranks.
#SBATCH --signal=B:USR1@600
#SBATCH --requeue
# One job at a time per job name (and user): two live jobs on one SAVE_DIR would delete or
# abandon each other's checkpoints. Give every run its own --job-name; a second submission
# of the same name waits (Reason=Dependency) until the first has ended.
#SBATCH --dependency=singleton
# append: a requeued run reuses the job id, and the default (truncate) would erase the log
#SBATCH --open-mode=append
# In the submit directory: Slurm does not create directories, a missing one fails the job silently.
#SBATCH --output=%x-%j.out

RUN_NAME=${RUN_NAME:-untied_1b2}  # names the default SAVE_DIR, runs/$RUN_NAME
# sbatch runs a copy of this file from a spool directory; the checkout is the submit dir.
REPO_DIR=${REPO_DIR:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}
if [ ! -f "$REPO_DIR/slurm/launch_pretrain.sh" ]; then
  echo "error: $REPO_DIR/slurm/launch_pretrain.sh not found: submit from the repository root or set REPO_DIR" >&2
  exit 2
fi
export RUN_NAME REPO_DIR CONFIG=${CONFIG:-$REPO_DIR/pretrain/configs/untied_1b2.yaml}
# exec: the launcher keeps this process id, which is the one Slurm's batch signals reach.
exec bash "$REPO_DIR/slurm/launch_pretrain.sh" "$@"
