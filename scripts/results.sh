#!/usr/bin/env bash
# Reproduces docs/results.md: the paper's four networks (and the two standard-convolution CNN baselines) on
# Fashion-MNIST, the same epoch budget for all, several seeds; then writes the table.
#   bash scripts/results.sh                 # EPOCHS=8 SEEDS="21 22" by default, about an hour on 2 cores
#   EPOCHS=3 SEEDS=21 bash scripts/results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-8}
SEEDS=${SEEDS:-"21 22"}
MODELS=${MODELS:-"cnmf1x1 cnmf cnn1x1 cnn cnn1x1-plain cnn-plain"}
OUT=${OUT:-runs/results}
bash scripts/build-trainer.sh "$OUT"
for seed in $SEEDS; do
  for model in $MODELS; do
    dir="$OUT/$model-seed$seed"
    if [ -f "$dir/done" ]; then echo "results: $dir done already"; continue; fi
    echo "results: $model, seed $seed, $EPOCHS epochs"
    ./build/native/examples/nmfdsl-train --model "$model" --data fashion-mnist --epochs "$EPOCHS" \
      --seed "$seed" --out "$dir" --quiet
    touch "$dir/done"
  done
done
python3 scripts/summarise_results.py "$OUT" "$EPOCHS" > docs/results.md
echo "results: wrote docs/results.md"
