// peak_fma: this machine's single-core peak FLOP rate, measured with 12 independent FMA chains of full-width xsimd
// batches held in registers (2 flops per lane per FMA). The roofline that the kernel numbers are compared with.
#include <benchmark/benchmark.h>

#include <xsimd/xsimd.hpp>

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

} // namespace

BENCHMARK(peak_fma)->Unit(benchmark::kMicrosecond);
