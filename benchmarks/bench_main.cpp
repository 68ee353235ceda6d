// nmfdsl_bench: Google Benchmark microbenchmarks. Build with -DNMFDSL_NATIVE=ON for meaningful numbers, e.g.
//   ./nmfdsl_bench --benchmark_filter='gemm/512' --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
