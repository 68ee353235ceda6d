// The two roofs the kernel numbers are compared with, single core:
//   peak_fma           the peak FLOP rate: 12 independent FMA chains of full-width xsimd batches held in registers
//                      (2 flops per lane per FMA)
//   stream_triad/<KB>  memory bandwidth: a[i] = b[i] + s·c[i] over three float arrays of <KB> KiB each, counted as
//                      3 × 4 bytes per element (STREAM's convention, without the write-allocate read of a)
#include <benchmark/benchmark.h>

#include <vector>

#include <xsimd/xsimd.hpp>

#include <nmfdsl/core/params.hpp>

namespace {

void peak_fma(benchmark::State& state)
{
    using batch = xsimd::batch<float>;
    constexpr int chains = 12;
    constexpr long steps = 4096;
    batch acc[chains];
    for (int c = 0; c < chains; ++c)
        acc[c] = batch(float(c) * 1e-3f);
    const batch a(0.999999f), b(1e-7f);
    for (auto _ : state) {
        for (long s = 0; s < steps; ++s)
#pragma GCC unroll 12
            for (int c = 0; c < chains; ++c)
                acc[c] = xsimd::fma(acc[c], a, b);
        for (int c = 0; c < chains; ++c)
            benchmark::DoNotOptimize(acc[c]);
    }
    state.counters["GFLOPS"] = benchmark::Counter(2e-9 * double(chains) * double(steps) * double(batch::size),
                                                  benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(std::string(xsimd::default_arch::name()) + ", " + std::to_string(batch::size) + " floats");
}

void stream_triad(benchmark::State& state)
{
    using batch = xsimd::batch<float>;
    const std::size_t n = static_cast<std::size_t>(state.range(0)) * 1024 / sizeof(float) / batch::size * batch::size;
    nmfdsl::aligned_vector<float> a(n, 0.f), b(n, 1.f), c(n, 2.f);
    const batch s(0.5f);
    for (auto _ : state) {
        for (std::size_t i = 0; i < n; i += batch::size)
            xsimd::fma(s, batch::load_aligned(c.data() + i), batch::load_aligned(b.data() + i))
                .store_aligned(a.data() + i);
        benchmark::ClobberMemory();
    }
    state.counters["GBps"] = benchmark::Counter(3e-9 * double(n) * sizeof(float),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

} // namespace

BENCHMARK(peak_fma)->Unit(benchmark::kMicrosecond);
// 256 KiB per array: in L2; 8 MiB: L3; 128 MiB: main memory
BENCHMARK(stream_triad)->Arg(256)->Arg(8 * 1024)->Arg(128 * 1024)->Unit(benchmark::kMicrosecond);
