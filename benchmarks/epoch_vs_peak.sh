#!/usr/bin/env bash
# One Fashion-MNIST epoch of CNMF+1x1 (training on 60,000 images + evaluation on 10,000), timed by nmfdsl-train, against
# the time its arithmetic would take at the measured FMA peak of the cores it runs on.
#
#   benchmarks/epoch_vs_peak.sh [BUILD_DIR] [THREADS]     (defaults: build/native, 2)
#
# BUILD_DIR must hold benchmarks/nmfdsl_bench and examples/nmfdsl-train of one build, e.g.
#   cmake -S . -B build/avx2 -DCMAKE_BUILD_TYPE=Release -DNMFDSL_ARCH=haswell -DNMFDSL_BUILD_TESTS=OFF
#   cmake --build build/avx2 -j2 --target nmfdsl_bench nmfdsl-train
#
# Arithmetic counted (floating-point operations, an FMA = 2), per image, T = 20 NMF iterations, 1x28x28 input:
#   NMF forward 4·P·I·H·T per CNMF layer (P positions, I patch size, H outputs):
#     L1 576·25·32, L2 64·800·64, L3 1·1024·96, L4 1·96·10      -> 306.9 MFLOP
#   approximate NMF backward 8·P·I·H (training only)            ->  30.7 MFLOP
#   1x1 mixing 2·P·H² forward, twice that backward (L1–L4)      ->   1.7 MFLOP forward, 3.4 backward
# Pooling, normalisations, softmax, the loss and Adam are left out (under 0.1 % of the total). The peak is
# peak_fma's median (one core, FMA chains in registers) times THREADS, measured before and after the epoch; the
# higher of the two counts (on a shared machine a slow moment makes the peak look low and the ratio look good).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/native}
threads=${2:-2}
bench=$build/benchmarks/nmfdsl_bench
train=$build/examples/nmfdsl-train
for f in "$bench" "$train"; do
  [[ -x $f ]] || { echo "epoch_vs_peak: $f not found (build it first, see the header of this script)" >&2; exit 2; }
done
[[ $threads =~ ^[1-9][0-9]*$ ]] || { echo "epoch_vs_peak: THREADS must be a positive integer, got '$threads'" >&2; exit 2; }
# peak_fma before and after the epoch, as Google Benchmark JSON; one Python step below reads everything
measure_peak() {
  "$bench" --benchmark_filter='^peak_fma$' --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_format=json 2>/dev/null >"$1"
}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
measure_peak "$out/peak_before.json"
"$train" --model cnmf1x1 --data fashion-mnist --epochs 1 --threads "$threads" --quiet --out "$out/run" >/dev/null
measure_peak "$out/peak_after.json"
/usr/bin/python3 - "$out" "$threads" <<'EOF'
import csv, json, sys
out, threads = sys.argv[1], int(sys.argv[2])
def peak(name):  # (GFLOP/s, label) of peak_fma's median
    for b in json.load(open(f"{out}/{name}"))["benchmarks"]:
        if b.get("aggregate_name") == "median":
            return b["GFLOPS"], b["label"]
    sys.exit(f"epoch_vs_peak: no peak_fma median in {name}")
(before, isa), (after, _) = peak("peak_before.json"), peak("peak_after.json")
peak1 = max(before, after)
# the epoch's "seconds" column, found by its name (later columns hold the activation statistics)
seconds = float(list(csv.DictReader(open(f"{out}/run/metrics.csv")))[-1]["seconds"])
layers = [(576, 25, 32), (64, 800, 64), (1, 1024, 96), (1, 96, 10)]          # P, I, H of the CNMF layers
mixes = [(576, 32), (64, 64), (1, 96), (1, 10)]                                 # P, H of the 1x1 mixing layers
nmf_fwd = sum(4 * p * i * h * 20 for p, i, h in layers)
nmf_bwd = sum(8 * p * i * h for p, i, h in layers)
mix_fwd = sum(2 * p * h * h for p, h in mixes)
train_image = nmf_fwd + nmf_bwd + 3 * mix_fwd
test_image = nmf_fwd + mix_fwd
total = 60000 * train_image + 10000 * test_image
peak = peak1 * threads
ideal = total / (peak * 1e9)
print(f"ISA {isa}; peak_fma {peak1:.1f} GFLOP/s per core, {peak:.1f} on {threads} threads")
print(f"arithmetic of one epoch: {total / 1e12:.2f} TFLOP -> {ideal:.1f} s at that peak")
print(f"measured epoch (train + evaluation): {seconds:.1f} s = {seconds / ideal:.2f}x the arithmetic at peak")
EOF
