#!/usr/bin/env bash
# A/B comparison of two nmfdsl_bench binaries on a noisy machine: runs them alternately ROUNDS times on the same
# benchmarks and prints, per benchmark, the median real time of each and their ratio (new / old), and the ratio of
# the best runs. Alternating spreads the machine's drift over both binaries.
#   benchmarks/ab.sh OLD_BENCH NEW_BENCH 'peak_fma|cnmf_forward/(L1|L2)/32$' [ROUNDS=6]
# Environment: THREADS (default 1), MIN_TIME (default 0.1 s per benchmark and round).
set -euo pipefail
old=$1 new=$2 filter=$3 rounds=${4:-6}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for i in $(seq "$rounds"); do
  for which in old new; do
    bin=$old; [ "$which" = new ] && bin=$new
    NMFDSL_THREADS=${THREADS:-1} "$bin" --benchmark_filter="$filter" --benchmark_min_time="${MIN_TIME:-0.1}" \
      --benchmark_format=json 2>/dev/null > "$dir/${which}_$i.json"
  done
done
/usr/bin/python3 - "$dir" <<'PY'
import collections, glob, json, statistics, sys
runs = {}
for which in ("old", "new"):
    times = collections.defaultdict(list)
    for f in glob.glob(f"{sys.argv[1]}/{which}_*.json"):
        for b in json.load(open(f))["benchmarks"]:
            times[b["name"]].append(b["real_time"])
    runs[which] = times
for name, old in runs["old"].items():
    new = runs["new"][name]
    print(f"{name:36s} old {statistics.median(old):10.3f}  new {statistics.median(new):10.3f}  "
          f"new/old {statistics.median(new) / statistics.median(old):.3f}  best new/old {min(new) / min(old):.3f}")
PY
