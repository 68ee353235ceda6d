#!/usr/bin/env bash
# The single-thread kernel figures of issue #11 as fractions of the FMA peak, robust to a noisy shared machine:
# ROUNDS runs of peak_fma + gemm/512/512/512 + the CNMF layers' forward and approximate backward at batch 32, each
# fraction taken against the peak_fma of its own round. Prints, per benchmark, the median over the rounds (of each
# round's median of 5 repetitions), the range, and the target with "met" or "not met" judged on the median.
#
#   benchmarks/peak_fractions.sh [BUILD_DIR] [ROUNDS]      (defaults: build/native, 3)
#
# BUILD_DIR holds benchmarks/nmfdsl_bench, e.g. a native build
#   cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release -DNMFDSL_NATIVE=ON -DNMFDSL_BUILD_TESTS=OFF
#   cmake --build build/native -j2 --target nmfdsl_bench
# or an AVX2 build run on an AVX-512 CPU (-DNMFDSL_ARCH=haswell in build/avx2).
# Targets (issue #11, one thread): forward L1 and L2 >= 0.75 of the peak, L1g and L3 >= 0.6; the approximate
# backward <= 15 % of the same layer's forward time; gemm/512/512/512 >= 0.80.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/rounds.sh
build=${1:-build/native}
rounds=${2:-3}
run_rounds peak_fractions "$build" "$rounds" '^(peak_fma|gemm/512/512/512|cnmf_(forward|backward)/(L1|L1g|L2|L3)/32)$' 0.3
/usr/bin/python3 - "$out" "$rounds" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
fractions, backward, peaks, isa = {}, {}, [], ""
for i in range(1, rounds + 1):
    medians = {b["run_name"]: b for b in json.load(open(f"{out}/round_{i}.json"))["benchmarks"]
               if b.get("aggregate_name") == "median"}
    if "peak_fma" not in medians:
        sys.exit(f"peak_fractions: round {i} has no peak_fma median")
    peak = medians["peak_fma"]["GFLOPS"]
    peaks.append(peak)
    isa = medians["peak_fma"].get("label", "")
    for name, b in medians.items():
        if name.startswith("gemm/") or name.startswith("cnmf_forward/"):
            fractions.setdefault(name, []).append(b["GFLOPS"] / peak)
        elif name.startswith("cnmf_backward/"):
            forward = medians.get(name.replace("backward", "forward"))
            if forward:
                backward.setdefault(name, []).append(b["real_time"] / forward["real_time"])
print(f"ISA {isa}; peak_fma median {statistics.median(peaks):.1f} GFLOP/s per core "
      f"(rounds: {', '.join(f'{p:.1f}' for p in peaks)}); {rounds} rounds, one thread")
targets = {"L1": 0.75, "L2": 0.75, "L1g": 0.6, "L3": 0.6}
def verdict(ok):
    return "met" if ok else "NOT MET"
for name, f in fractions.items():
    target = 0.80 if name.startswith("gemm/") else targets[name.split("/")[1]]
    m = statistics.median(f)
    print(f"{name:24s} {m:5.2f} of peak  (range {min(f):.2f}-{max(f):.2f})  target >= {target:.2f}: "
          f"{verdict(m >= target)}")
for name, r in backward.items():
    m = statistics.median(r)
    print(f"{name:24s} {100 * m:5.1f} % of the forward  (range {100 * min(r):.1f}-{100 * max(r):.1f})  "
          f"target <= 15 %: {verdict(m <= 0.15)}")
if len(fractions) + len(backward) != 9:
    sys.exit(f"peak_fractions: expected 9 results, found {len(fractions) + len(backward)}")
EOF
