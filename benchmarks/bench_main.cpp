// nmfdsl_bench: Google Benchmark microbenchmarks. Build with -DNMFDSL_NATIVE=ON for meaningful numbers, e.g.
//   ./nmfdsl_bench --benchmark_filter='gemm/512' --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// Threads: NMFDSL_THREADS (default 1 here, so kernel numbers are single-threaded unless asked otherwise).
#include <cstdlib>

#include <benchmark/benchmark.h>

#include <nmfdsl/core/parallel.hpp>

int main(int argc, char** argv)
{
    nmfdsl::set_threads(std::getenv("NMFDSL_THREADS") ? nmfdsl::thread_pool::default_threads() : 1);
    benchmark::AddCustomContext("nmfdsl_threads", std::to_string(nmfdsl::threads()));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
