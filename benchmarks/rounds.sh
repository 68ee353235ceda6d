# Sourced by the benchmark scripts that judge medians over rounds (peak_fractions.sh, backward_ratios.sh).
#   run_rounds NAME BUILD_DIR ROUNDS FILTER MIN_TIME
# checks that BUILD_DIR/benchmarks/nmfdsl_bench exists and ROUNDS is a positive integer (else a message naming the
# script NAME, exit 2), then runs the benchmarks matching FILTER ROUNDS times on one thread, 5 repetitions each, and
# leaves each round's medians as Google Benchmark JSON in "$out/round_<i>.json" ($out: a temporary directory,
# removed when the script exits).
run_rounds() {
  local name=$1 build=$2 rounds=$3 filter=$4 min_time=$5
  local bench=$build/benchmarks/nmfdsl_bench
  [[ -x $bench ]] || { echo "$name: $bench not found (build it first, see the header of this script)" >&2; exit 2; }
  [[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "$name: ROUNDS must be a positive integer, got '$rounds'" >&2; exit 2; }
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  local i
  for i in $(seq "$rounds"); do
    NMFDSL_THREADS=1 "$bench" --benchmark_filter="$filter" --benchmark_min_time="$min_time" \
      --benchmark_repetitions=5 --benchmark_report_aggregates_only=true --benchmark_format=json \
      2>/dev/null >"$out/round_$i.json"
  done
}
