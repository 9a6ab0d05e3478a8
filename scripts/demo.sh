#!/usr/bin/env bash
# The main job end to end on a fresh machine, on CPU:
#   install -> real corpus (Shakespeare, Pile jsonl.zst format) -> BPE tokenizer ->
#   webdataset shards -> LEV training on 2 ranks (DP=2, gloo) -> stop at half way with a
#   checkpoint -> resume to the end -> validation perplexity (overall and per frequency
#   bucket) -> a Hugging Face export (LEV materialised) -> a few generated lines.
#   Output: demo_out/. Finishes in a few minutes on 2 cores.
#
#   bash scripts/demo.sh
#
# Environment (defaults): OUT (demo_out: corpus, shards, runs, eval, hf export; shards
# already there are reused), STEPS (400: training steps, half before the resume), NPROC
# (2: training ranks), OMP_NUM_THREADS (1: per rank).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "usage: bash scripts/demo.sh [-h]"
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"  # this header
  exit 0
fi
cd "$(dirname "$0")/.."
OUT=${OUT:-demo_out}
STEPS=${STEPS:-400}
NPROC=${NPROC:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

bash scripts/install.sh

if [ ! -f "$OUT/shards/manifest.json" ]; then
  python3 data_prep/sample_corpus.py "$OUT/corpus"
  # --val-fraction as for shard.py: the tokenizer never sees the validation documents.
  python3 data_prep/train_tokenizer.py --input "$OUT/corpus" --output "$OUT/tokenizer.json" \
    --vocab-size 4096 --val-fraction 0.05
  python3 data_prep/shard.py --input "$OUT/corpus" --tokenizer "$OUT/tokenizer.json" \
    --output "$OUT/shards" --seq-length 128 --val-fraction 0.05 --shard-size-mb 2
  python3 data_prep/verify.py "$OUT/shards"
fi

train() {  # train up to step $1 (the LR schedule is fixed to $STEPS, so halves compose)
  python3 -m torch.distributed.run --standalone --nproc-per-node "$NPROC" \
    -m pretrain.train --config pretrain/configs/tiny_lev.yaml \
    data.path="$OUT/shards" checkpoint.save_dir="$OUT/runs/lev" \
    train.train_steps="$1" optimizer.decay_steps="$STEPS" train.eval_interval=100 \
    train.eval_samples=512 checkpoint.save_interval=100
}
echo "== training to step $((STEPS / 2)), then stopping (as a preempted job would)"
train $((STEPS / 2))
echo "== resuming from the newest checkpoint to step $STEPS"
train "$STEPS"

echo "== evaluating the final checkpoint"
python3 -m torch.distributed.run --standalone --nproc-per-node "$NPROC" \
  -m pretrain.evaluate --checkpoint "$OUT/runs/lev" --data-path "$OUT/shards" --output "$OUT/eval"
cat "$OUT/eval/report.md"

echo "== exporting to Hugging Face (a plain LlamaForCausalLM) and generating from it"
python3 -m pretrain.export_hf --checkpoint "$OUT/runs/lev" --output "$OUT/hf" --force
python3 -m pretrain.generate --checkpoint "$OUT/hf" --prompt "ROMEO:" --max-new-tokens 40
