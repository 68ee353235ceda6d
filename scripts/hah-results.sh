#!/usr/bin/env bash
# Reproduces the sparse-activation section of docs/results.md: the HaH network and its standard twin (nmfdsl-train
# --model hah | hah-baseline) on Fashion-MNIST, the same epoch budget for both, two seeds; then writes the table
# between the section's markers in docs/results.md.
#   bash scripts/hah-results.sh            # EPOCHS=5 SEEDS="1 2": four runs of about 10 minutes each on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-5}
SEEDS=${SEEDS:-"1 2"}
BATCH=${BATCH:-128}
OUT=${OUT:-runs/results-hah}
bash scripts/build-trainer.sh "$OUT"
for seed in $SEEDS; do
  for model in hah hah-baseline; do
    dir="$OUT/$model-seed$seed"
    if [ -f "$dir/done" ]; then echo "hah-results: $dir done already"; continue; fi
    echo "hah-results: $model, seed $seed, $EPOCHS epochs, batch $BATCH"
    ./build/native/examples/nmfdsl-train --model "$model" --data fashion-mnist --epochs "$EPOCHS" --batch "$BATCH" \
      --threads 2 --seed "$seed" --out "$dir" --quiet
    touch "$dir/done"
  done
done
python3 scripts/summarise_hah.py "$OUT" "$EPOCHS" "$BATCH" docs/results.md
echo "hah-results: updated docs/results.md"
