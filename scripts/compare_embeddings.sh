#!/usr/bin/env bash
# LEV vs tied vs untied, controlled: the same shards, steps, seed and backbone
# (pretrain/configs/tiny_{lev,tied,untied}.yaml differ only in model.embedding), trained one
# after another on NPROC ranks (DP, gloo on CPU), then one evaluation + comparison report:
# validation ppl overall and per train-frequency bucket, tokens-to-target, plots.
#
#   bash scripts/compare_embeddings.sh                       # sample corpus, 1000 steps
#   DATA_DIR=/data/shards STEPS=2000 bash scripts/compare_embeddings.sh
#
# Environment (defaults): OUT (runs/compare_tiny) holds shards/runs; REPORT_DIR
# ($OUT/report); DATA_DIR (built under $OUT/shards from data_prep/sample_corpus.py, vocab
# 4096, seq 128); STEPS (1000); NPROC (2); EVAL_INTERVAL (50) and EVAL_SAMPLES (512) for the
# val curves in metrics.jsonl that tokens-to-target reads. A finished run is not retrained
# (checkpoint.resume=auto finds its last step); delete $OUT/runs to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/compare_tiny}
REPORT_DIR=${REPORT_DIR:-$OUT/report}
STEPS=${STEPS:-1000}
NPROC=${NPROC:-2}
EVAL_INTERVAL=${EVAL_INTERVAL:-50}
EVAL_SAMPLES=${EVAL_SAMPLES:-512}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if [ -z "${DATA_DIR:-}" ]; then
  DATA_DIR="$OUT/shards"
  if [ ! -f "$DATA_DIR/manifest.json" ]; then
    echo "== building the sample corpus, tokenizer (vocab 4096) and shards (seq 128)"
    python3 data_prep/sample_corpus.py "$OUT/corpus"
    python3 data_prep/train_tokenizer.py --input "$OUT/corpus" --output "$OUT/tokenizer.json" \
      --vocab-size 4096
    python3 data_prep/shard.py --input "$OUT/corpus" --tokenizer "$OUT/tokenizer.json" \
      --output "$DATA_DIR" --seq-length 128 --val-fraction 0.05 --shard-size-mb 2 --no-progress
  fi
fi

for emb in lev tied untied; do
  meta="$OUT/runs/$emb/$(cat "$OUT/runs/$emb/latest" 2>/dev/null || echo none)/meta.json"
  if [ -f "$meta" ]; then  # resume only a run of this schedule (preempted or finished)
    saved=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["train"]["train_steps"])' "$meta")
    if [ "$saved" != "$STEPS" ]; then
      echo "error: $OUT/runs/$emb was trained with STEPS=$saved, not $STEPS: delete it or set OUT" >&2
      exit 2
    fi
  fi
  echo "== training $emb for $STEPS steps on $NPROC ranks ($(date +%T))"
  start=$SECONDS
  python3 -m torch.distributed.run --standalone --nproc-per-node "$NPROC" \
    -m pretrain.train --config "pretrain/configs/tiny_$emb.yaml" \
    data.path="$DATA_DIR" checkpoint.save_dir="$OUT/runs/$emb" checkpoint.resume=auto \
    train.train_steps="$STEPS" optimizer.decay_steps="$STEPS" \
    train.eval_interval="$EVAL_INTERVAL" train.eval_samples="$EVAL_SAMPLES" \
    checkpoint.save_interval=0
  echo "== $emb trained in $((SECONDS - start)) s"
done

echo "== evaluating and comparing ($(date +%T))"
python3 -m torch.distributed.run --standalone --nproc-per-node "$NPROC" \
  -m pretrain.evaluate --checkpoint "$OUT/runs/lev" \
  --compare "$OUT/runs/tied" "$OUT/runs/untied" --data "$DATA_DIR" --output "$REPORT_DIR"
cat "$REPORT_DIR/report.md"
