#!/usr/bin/env bash
# Reproduces docs/robustness.md: every network of nmfdsl-train trained on Fashion-MNIST with two seeds, then each
# evaluated by nmfdsl-eval — Gaussian noise on the whole test set, PGD and APGD-CE + APGD-T on the first
# ATTACK_IMAGES test images through the exact (unrolled) gradient, the gradient-masking checks (with a transfer
# attack from the standard-convolution CNN of the same seed), the gradient cosine, SNR and sparsity — and finally
# the table (between the markers in docs/robustness.md) and the curves (docs/robustness.png).
#   bash scripts/robustness.sh                       # EPOCHS=3 SEEDS="1 2" ATTACK_IMAGES=1000 NMF_APGD_IMAGES=100
#   STAGE=train bash scripts/robustness.sh           # only the training runs
#   STAGE=quick bash scripts/robustness.sh           # without the last stage (APGD on all images for NMF networks)
# Resumable: each finished training or evaluation leaves a marker and is skipped when the script runs again; the
# seconds each stage took are kept in $OUT/times.csv and summed in the document.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-3}
SEEDS=${SEEDS:-"1 2"}
MODELS=${MODELS:-"cnn-plain cnn cnn1x1 cnmf cnmf1x1 hah hah-baseline"}
ATTACK_IMAGES=${ATTACK_IMAGES:-1000}
# APGD-CE + APGD-T (9 targets × 100 iterations on the survivors) through the exact gradient of 20 NMF updates per
# layer costs hours per NMF network on 2 cores: those networks get it on the first NMF_APGD_IMAGES images
NMF_APGD_IMAGES=${NMF_APGD_IMAGES:-100}
IMAGES=${IMAGES:-10000}
STAGE=${STAGE:-all}
OUT=${OUT:-runs/robustness}
THREADS=${THREADS:-2}

bash scripts/install-deps.sh
cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release -DNMFDSL_NATIVE=ON -DNMFDSL_BUILD_TESTS=OFF > /dev/null
cmake --build build/native -j2 --target nmfdsl-train nmfdsl-eval
mkdir -p "$OUT"
git rev-parse --short HEAD > "$OUT/commit" 2>/dev/null || true
[ -f "$OUT/times.csv" ] || echo "stage,model,seed,seconds,isa" > "$OUT/times.csv"
isa=$(grep -o -m1 'avx512f' /proc/cpuinfo || grep -o -m1 'avx2' /proc/cpuinfo || uname -m)

timed() {  # timed <stage> <model> <seed> <command...>: runs the command and appends its wall time to times.csv
  local stage=$1 model=$2 seed=$3 t0
  shift 3
  t0=$(date +%s)
  "$@"
  echo "$stage,$model,$seed,$(( $(date +%s) - t0 )),$isa" >> "$OUT/times.csv"
}

for seed in $SEEDS; do
  for model in $MODELS; do
    dir="$OUT/$model-seed$seed"
    [ -f "$dir/trained" ] && continue
    batch=50
    case $model in hah*) batch=128 ;; esac  # the HaH recipe's batch (docs/results.md)
    echo "robustness: training $model, seed $seed, $EPOCHS epochs, batch $batch"
    timed train "$model" "$seed" ./build/native/examples/nmfdsl-train --model "$model" --data fashion-mnist \
      --epochs "$EPOCHS" --batch "$batch" --threads "$THREADS" --seed "$seed" --out "$dir" --quiet
    touch "$dir/trained"
  done
done
[ "$STAGE" = train ] && exit 0

# the quick networks first, the NMF networks (exact gradients through 20 updates per layer) last
EVAL_ORDER=$(for m in $MODELS; do case $m in cnmf*) ;; *) echo "$m" ;; esac; done
             for m in $MODELS; do case $m in cnmf*) echo "$m" ;; esac; done)
for seed in $SEEDS; do
  source_cnn="$OUT/cnn-plain-seed$seed/checkpoint.nmfd"
  for model in $EVAL_ORDER; do
    dir="$OUT/$model-seed$seed"
    [ -f "$dir/evaluated" ] && continue
    extra=()
    [ "$model" != cnn-plain ] && extra=(--transfer-from "$source_cnn")
    case $model in cnmf*) extra+=(--apgd-images "$NMF_APGD_IMAGES") ;; esac
    echo "robustness: evaluating $model, seed $seed"
    timed eval "$model" "$seed" ./build/native/examples/nmfdsl-eval --checkpoint "$dir/checkpoint.nmfd" \
      --name "$model" --eval clean,noise,pgd,apgd,gradients,snr,sparsity --images "$IMAGES" \
      --attack-images "$ATTACK_IMAGES" "${extra[@]}" --threads "$THREADS" --csv "$dir/robustness.csv" \
      --plot "$dir/robustness.png" --quiet > "$dir/eval.log"
    touch "$dir/evaluated"
  done
done

# the curves of every model (first seed) in one picture, and the table
summarise() {
  local first_seed=${SEEDS%% *} csvs=()
  for model in $MODELS; do csvs+=(--from-csv "$OUT/$model-seed$first_seed/robustness.csv"); done
  ./build/native/examples/nmfdsl-eval "${csvs[@]}" --plot docs/robustness.png
  python3 scripts/summarise_robustness.py "$OUT" docs/robustness.md
  echo "robustness: updated docs/robustness.md and docs/robustness.png"
}
summarise
[ "$STAGE" = quick ] && exit 0

# Last, APGD on all ATTACK_IMAGES images for the NMF networks (about half an hour per network and radius pair on 2
# cores): its rows (robustness-apgd.csv, marker apgd-full) replace the NMF_APGD_IMAGES ones in the table.
if [ "$NMF_APGD_IMAGES" -lt "$ATTACK_IMAGES" ]; then
  for seed in $SEEDS; do
    for model in $MODELS; do
      case $model in cnmf*) ;; *) continue ;; esac
      dir="$OUT/$model-seed$seed"
      [ -f "$dir/apgd-full" ] && continue
      echo "robustness: APGD on $ATTACK_IMAGES images, $model, seed $seed"
      timed eval "$model" "$seed" ./build/native/examples/nmfdsl-eval --checkpoint "$dir/checkpoint.nmfd" \
        --name "$model" --eval apgd --no-checks --images "$ATTACK_IMAGES" --attack-images "$ATTACK_IMAGES" \
        --threads "$THREADS" --csv "$dir/robustness-apgd.csv" --quiet > "$dir/eval-apgd.log"
      touch "$dir/apgd-full"
      summarise
    done
  done
fi
