#pragma once
// Argument lists shared by the benchmark files.
#include <benchmark/benchmark.h>

namespace nmfdsl_bench {

/// The NMF iteration counts of the T-scaling benchmarks: 1, 5, 10, 20 (the paper's) and 40.
inline void iteration_counts(benchmark::internal::Benchmark* b)
{
    for (int t : {1, 5, 10, 20, 40})
        b->Arg(t);
}

} // namespace nmfdsl_bench
