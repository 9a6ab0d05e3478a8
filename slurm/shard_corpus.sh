#!/bin/bash
# Tokenize a corpus into webdataset shards across nodes (data_prep/shard.py under srun).
#
#   INPUT=/data/pile/train TOKENIZER=/data/tok.json OUTPUT_DIR=/data/shards sbatch slurm/shard_corpus.sh
#
# Every path and setting is an environment variable (defaults below). The job is resumable:
# resubmit the same command after a failure or time limit and finished work units are kept.
# LAUNCHER=srun (default) works with or without an MPI world: if mpi4py sees one it is used,
# else ranks coordinate through files in OUTPUT_DIR (SLURM_PROCID / SLURM_NTASKS).
# LAUNCHER=mpiexec runs `mpiexec -n $SLURM_NTASKS` instead (mpich's hydra uses Slurm itself).
#
#SBATCH --job-name=lev-shard
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=32
#SBATCH --cpus-per-task=1
#SBATCH --mem=0
#SBATCH --time=04:00:00
#SBATCH --output=%x-%j.out
#SBATCH --requeue

set -euo pipefail

REPO_DIR=${REPO_DIR:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}}
INPUT=${INPUT:?set INPUT to the corpus files, directories or a quoted glob (space separated)}
TOKENIZER=${TOKENIZER:?set TOKENIZER to a tokenizers JSON (python data_prep/train_tokenizer.py makes one)}
OUTPUT_DIR=${OUTPUT_DIR:?set OUTPUT_DIR to the shard directory to write (on a shared filesystem)}
SEQ_LENGTH=${SEQ_LENGTH:-2048}
VAL_FRACTION=${VAL_FRACTION:-0.01}
SHARD_SIZE_MB=${SHARD_SIZE_MB:-256}
UNIT_SIZE_MB=${UNIT_SIZE_MB:-auto}   # auto: total input / 64 within [1, 256] MB
TEXT_KEY=${TEXT_KEY:-text}
DTYPE=${DTYPE:-auto}
EOD_TOKEN=${EOD_TOKEN:-<|endoftext|>}
PYTHON=${PYTHON:-python}
LAUNCHER=${LAUNCHER:-srun}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-0}
EXTRA_ARGS=${EXTRA_ARGS:-}          # e.g. "--overwrite": clears OUTPUT_DIR once per job; a
                                    # requeued run of the same job resumes what it finished
LOG_EVERY_S=${LOG_EVERY_S:-60}      # seconds between progress lines in the job log

# One tokenizer thread per task: parallelism comes from tasks, not from rayon threads.
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}
export TOKENIZERS_PARALLELISM=false

# INPUT may hold several space-separated entries; globs are expanded by shard.py, not the shell.
read -r -a INPUT_ARR <<< "$INPUT"
# Split into words, never glob-expanded (set -f): the flags reach shard.py as written.
set -f
# shellcheck disable=SC2206
EXTRA_ARR=($EXTRA_ARGS)
set +f
CMD=("$PYTHON" "$REPO_DIR/data_prep/shard.py"
     --input "${INPUT_ARR[@]}" --tokenizer "$TOKENIZER" --output "$OUTPUT_DIR"
     --seq-length "$SEQ_LENGTH" --val-fraction "$VAL_FRACTION" --shard-size-mb "$SHARD_SIZE_MB"
     --unit-size-mb "$UNIT_SIZE_MB" --text-key "$TEXT_KEY" --dtype "$DTYPE" --eod-token "$EOD_TOKEN"
     --wait-timeout "$WAIT_TIMEOUT" --log-every-s "$LOG_EVERY_S" "${EXTRA_ARR[@]}")

echo "lev-shard: job ${SLURM_JOB_ID:-?} ntasks=${SLURM_NTASKS:-1} launcher=$LAUNCHER output=$OUTPUT_DIR"
set -f  # keep globs in INPUT literal for shard.py
case "$LAUNCHER" in
  srun)    srun --kill-on-bad-exit=1 "${CMD[@]}" ;;
  mpiexec) mpiexec -n "${SLURM_NTASKS:-1}" "${CMD[@]}" ;;
  *)       echo "LAUNCHER must be srun or mpiexec, got '$LAUNCHER'" >&2; exit 2 ;;
esac
set +f

"$PYTHON" "$REPO_DIR/data_prep/verify.py" "$OUTPUT_DIR"
