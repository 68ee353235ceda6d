#pragma once
// Argument lists and the training-step loop shared by the benchmark files.
#include <chrono>
#include <cstddef>
#include <vector>

#include <benchmark/benchmark.h>

namespace nmfdsl_bench {

/// The NMF iteration counts of the T-scaling benchmarks: 1, 5, 10, 20 (the paper's) and 40.
inline void iteration_counts(benchmark::internal::Benchmark* b)
{
    for (int t : {1, 5, 10, 20, 40})
        b->Arg(t);
}

/// The benchmark's loop over one batch x: a forward, and in training the loss, zero_grad, the backward, the layers'
/// local costs and an optimiser step; one step before the timed ones. Sets the counter images_per_second from the wall
/// clock (the library's worker threads do not show in the main thread's CPU time).
template <class M, class X, class Loss, class Opt>
void run_steps(benchmark::State& state, M& model, const X& x, const std::vector<std::size_t>& labels, const Loss& loss,
               Opt& opt, bool train)
{
    const auto step = [&] {
        const auto p = model.forward(x);
        if (train) {
            const auto l = loss(p, labels);
            model.zero_grad();
            benchmark::DoNotOptimize(model.backward_parameters_and_local_costs(l.grad));
            opt.step();
        }
        benchmark::DoNotOptimize(p.data());
    };
    step();  // untimed: the first step allocates and first touches every buffer, which a training run does once
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state)
        step();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.counters["images_per_second"] = double(x.shape()[0]) * double(state.iterations()) / seconds;
}

} // namespace nmfdsl_bench
