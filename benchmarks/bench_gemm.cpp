// gemm/<M>/<N>/<K>: single-threaded C = A·B (row-major, no transposes) with a GFLOPS counter (2·M·N·K per call).
#include <benchmark/benchmark.h>

#include <nmfdsl/core/params.hpp>
#include <nmfdsl/core/rng.hpp>
#include <nmfdsl/kernels/gemm.hpp>

namespace {

void gemm(benchmark::State& state)
{
    const auto M = static_cast<std::size_t>(state.range(0)), N = static_cast<std::size_t>(state.range(1)),
               K = static_cast<std::size_t>(state.range(2));
    nmfdsl::rng g(nmfdsl::seed{1});
    nmfdsl::aligned_vector<float> A(M * K), B(K * N), C(M * N);
    for (auto& v : A)
        v = g.uniform(-1.f, 1.f);
    for (auto& v : B)
        v = g.uniform(-1.f, 1.f);
    for (auto _ : state) {
        nmfdsl::kernels::gemm<float>(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
        benchmark::DoNotOptimize(C.data());
        benchmark::ClobberMemory();
    }
    state.counters["GFLOPS"] =
        benchmark::Counter(2e-9 * double(M) * double(N) * double(K), benchmark::Counter::kIsIterationInvariantRate);
}

} // namespace

BENCHMARK(gemm)
    ->Args({64, 64, 64})
    ->Args({256, 256, 256})
    ->Args({512, 512, 512})
    ->Args({1024, 1024, 1024})
    ->Args({1728, 32, 75})   // a CNMF L1-like product: 3·576 positions × 32 outputs × 75 patch
    ->Args({2048, 64, 800})  // an L2-like product
    ->Unit(benchmark::kMicrosecond);
