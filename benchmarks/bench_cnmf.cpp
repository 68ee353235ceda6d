// CNMF layer benchmarks at T = 20, single thread, on channels-last buffers (no layout conversion timed):
//   cnmf_forward/<layer>/<batch>           the fused forward (im2col + patch L1 + 20 NMF iterations)
//   cnmf_backward/<layer>/<batch>          the approximate backward (eq. (1), (2) + chain to V, L1, col2im)
//   cnmf_backward_unrolled/<layer>/<batch> the exact backward through all 20 iterations (recomputed tile by tile)
//   cnmf_T/<pass>/L2/32/<T>                 the same passes on L2 at batch 32 with T = 1 … 40 iterations
// Layers are the paper's: L1 (I=75, H=32, 24×24 positions), L1g (I=25, one input channel), L2 (I=800, H=64, 8×8),
// L3 (I=1024, H=96, 1×1), L4 (I=96, H=10, 1×1). GFLOPS counts 4·N·I·H per iteration for the forward
// (N = batch × positions), 8·N·I·H for the approximate backward (four GEMMs) and 12·N·I·H·T for the unrolled one
// (the recomputed forward's two products per iteration and the backward's four).
// saved_bytes is what the layer keeps between forward and backward.
#include <benchmark/benchmark.h>

#include <nmfdsl/nmfdsl.hpp>

#include "bench_args.hpp"

namespace {
namespace nd = nmfdsl;

enum class pass { forward, backward, backward_unrolled };

template <class Layer, class In>
void run(benchmark::State& state, pass which, std::size_t T = 20, std::size_t fixed_batch = 0)
{
    using Entries = typename nd::detail::resolve<true, Layer, In>::entries;
    using Engine = nd::detail::engine<Entries>;
    using Out = nd::output_shape_t<Layer, In>;
    const std::size_t batch = fixed_batch != 0 ? fixed_batch : static_cast<std::size_t>(state.range(0));
    nd::aligned_vector<float> params(Engine::param_size), grads(Engine::param_size), buffers(Engine::buffer_size + 1);
    nd::rng g(nd::seed{1});
    Engine::template init<float>(params.data(), buffers.data(), g);
    typename Engine::options opt{};
    std::get<0>(opt).iterations(T);
    if (which == pass::backward_unrolled)
        std::get<0>(opt).gradient(nd::nmf_gradient::unrolled);
    nd::aligned_vector<float> x(batch * In::size), dy(batch * Out::size), dx(batch * In::size);
    for (auto& v : x)
        v = g.uniform01<float>();
    for (auto& v : dy)
        v = g.uniform(-1.f, 1.f);
    typename Engine::template workspace<float> ws;
    Engine::template forward<float>(opt, params.data(), buffers.data(), x.data(), batch, ws, true);
    for (auto _ : state) {
        if (which == pass::forward)
            Engine::template forward<float>(opt, params.data(), buffers.data(), x.data(), batch, ws, true);
        else
            Engine::template backward<float>(opt, params.data(), grads.data(), buffers.data(), x.data(), dy.data(),
                                             dx.data(), ws);
        benchmark::ClobberMemory();
    }
    constexpr std::size_t I = Layer::template patch<In>, H = Out::c, P = Out::h * Out::w;
    const double n = double(batch * P);
    const double flops = which == pass::forward    ? 4.0 * n * I * H * T
                         : which == pass::backward ? 8.0 * n * I * H
                                                   : 12.0 * n * I * H * T;
    state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["saved_bytes"] = double(std::get<0>(ws.caches).saved_bytes(batch * P));
}

template <class Layer, class In>
void register_layer(const std::string& tag)
{
    const std::pair<const char*, pass> passes[] = {
        {"cnmf_forward/", pass::forward}, {"cnmf_backward/", pass::backward},
        {"cnmf_backward_unrolled/", pass::backward_unrolled}};
    for (const auto& [prefix, which] : passes)
        benchmark::RegisterBenchmark((prefix + tag).c_str(), [which = which](benchmark::State& s) { run<Layer, In>(s, which); })
            ->Arg(1)
            ->Arg(32)
            ->Arg(128)
            ->Unit(benchmark::kMillisecond);
}

/// cnmf_T/<pass>/L2/32/<T>: how the L2 layer's cost at batch 32 grows with the number of iterations T.
void register_iteration_scaling()
{
    using Layer = nd::CNMFCore<64, 5>;
    using In = nd::Shape<32, 12, 12>;
    const std::pair<const char*, pass> passes[] = {
        {"forward", pass::forward}, {"backward", pass::backward}, {"backward_unrolled", pass::backward_unrolled}};
    for (const auto& [name, which] : passes)
        benchmark::RegisterBenchmark((std::string("cnmf_T/") + name + "/L2/32").c_str(),
                                     [which = which](benchmark::State& s) {
                                         run<Layer, In>(s, which, static_cast<std::size_t>(s.range(0)), 32);
                                     })
            ->Apply(nmfdsl_bench::iteration_counts)
            ->Unit(benchmark::kMillisecond);
}

const bool registered = [] {
    register_iteration_scaling();
    register_layer<nd::CNMFCore<32, 5>, nd::Shape<3, 28, 28>>("L1");
    register_layer<nd::CNMFCore<32, 5>, nd::Shape<1, 28, 28>>("L1g");
    register_layer<nd::CNMFCore<64, 5>, nd::Shape<32, 12, 12>>("L2");
    register_layer<nd::CNMFCore<96, nd::whole_map>, nd::Shape<64, 4, 4>>("L3");
    register_layer<nd::CNMFCore<10, 1>, nd::Shape<96, 1, 1>>("L4");
    return true;
}();

} // namespace
