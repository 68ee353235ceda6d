#!/usr/bin/env bash
# The approximate backward's time as a share of the same layer's forward, for every CNMF layer of the benchmarks
# (L1, L1g, L2, L3, L4) at batch 1, 32 and 128, one thread: the target of issue #3 (<= 15 % for every layer and
# batch). ROUNDS runs; per case it prints the median over the rounds (of each round's median of 5 repetitions of
# backward and forward) and the range, and marks the cases whose median is over 15 %.
#
#   benchmarks/backward_ratios.sh [BUILD_DIR] [ROUNDS]      (defaults: build/native, 3)
#
# BUILD_DIR holds benchmarks/nmfdsl_bench (see benchmarks/peak_fractions.sh for the native and AVX2 builds).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/rounds.sh
build=${1:-build/native}
rounds=${2:-3}
run_rounds backward_ratios "$build" "$rounds" '^(peak_fma|cnmf_(forward|backward)/(L1|L1g|L2|L3|L4)/(1|32|128))$' 0.2
/usr/bin/python3 - "$out" "$rounds" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
ratios, isa = {}, ""
for i in range(1, rounds + 1):
    medians = {b["run_name"]: b for b in json.load(open(f"{out}/round_{i}.json"))["benchmarks"]
               if b.get("aggregate_name") == "median"}
    isa = medians.get("peak_fma", {}).get("label", isa)
    for name, b in medians.items():
        if name.startswith("cnmf_backward/"):
            forward = medians.get(name.replace("backward", "forward", 1))
            if forward is None:
                sys.exit(f"backward_ratios: round {i} has no forward for {name}")
            ratios.setdefault(name[len("cnmf_backward/"):], []).append(100 * b["real_time"] / forward["real_time"])
print(f"ISA {isa}; {rounds} rounds, one thread; approximate backward as % of the forward (target <= 15 %)")
for case in sorted(ratios, key=lambda c: (c.split("/")[0], int(c.split("/")[1]))):
    values = ratios[case]
    median = statistics.median(values)
    flag = "" if median <= 15 else "   over 15 %"
    print(f"{case:10s} {median:5.1f} %  (range {min(values):.1f}-{max(values):.1f}){flag}")
EOF
