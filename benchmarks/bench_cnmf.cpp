// CNMF layer benchmarks at T = 20, single thread, on channels-last buffers (no layout conversion timed):
//   cnmf_forward/<layer>/<batch>           the fused forward (im2col + patch L1 + 20 NMF iterations)
//   cnmf_backward/<layer>/<batch>          the approximate backward (eq. (1), (2) + chain to V, L1, col2im)
//   cnmf_backward_unrolled/<layer>/<batch> the exact backward through all 20 iterations (recomputed tile by tile)
//   cnmf_T/<pass>/L2/32/<T>                 the same passes on L2 at batch 32 with T = 1 … 40 iterations
//   nmf_layout/<rows|lanes>/<I>/<H>        the NMF forward kernel alone in each of its two layouts
// Layers are the paper's: L1 (I=75, H=32, 24×24 positions), L1g (I=25, one input channel), L2 (I=800, H=64, 8×8),
// L3 (I=1024, H=96, 1×1), L4 (I=96, H=10, 1×1). GFLOPS counts 4·N·I·H per iteration for the forward
// (N = batch × positions), 8·N·I·H for the approximate backward (four GEMMs) and 12·N·I·H·T for the unrolled one
// (the recomputed forward's two products per iteration and the backward's four).
// saved_bytes is what the layer keeps between forward and backward.
#include <benchmark/benchmark.h>

#include <nmfdsl/nmfdsl.hpp>
#include <nmfdsl/testing/naive.hpp>

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
        benchmark::RegisterBenchmark((prefix + tag).c_str(),
                                     [which = which](benchmark::State& s) { run<Layer, In>(s, which); })
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

/// nmf_layout/<rows|lanes>/<I>/<H>: the NMF forward kernel alone (T = 20, one thread, about 0.3 GFLOP of rows of
/// random x̂ on the simplex) in each layout, whichever nmf_rows_in_lanes would choose, so the rule can be checked
/// against measurement. The kernel is called through a pointer the compiler cannot see through, as the library
/// calls it through function_ref (inlined into the benchmark loop the code generated differs).
void register_layouts()
{
    using T = float;
    using task_kernel = void (*)(const nd::kernels::nmf_weights<T>&,
                                 nd::function_ref<const T*(std::size_t, std::size_t)>, std::size_t, std::size_t,
                                 std::size_t, std::size_t, const std::optional<T>&, T*, const std::size_t*);
    // the row layout with its default choice of when to solve blocks of rows on their supports
    const task_kernel rows_layout = [](const nd::kernels::nmf_weights<T>& w,
                                       nd::function_ref<const T*(std::size_t, std::size_t)> tile_rows, std::size_t rows,
                                       std::size_t first, std::size_t last, std::size_t iterations,
                                       const std::optional<T>& eps, T* h, const std::size_t* out_rows) {
        nd::kernels::detail::nmf_forward_tiles<T>(w, tile_rows, rows, first, last, iterations, eps, h, out_rows);
    };
    const std::pair<const char*, task_kernel> layouts[] = {{"rows", rows_layout},
                                                           {"lanes", &nd::kernels::detail::nmf_forward_lanes<T>}};
    const std::size_t shapes[][2] = {{25, 32},  {75, 32},  {27, 16},  {100, 48}, {147, 64},
                                     {290, 64}, {800, 64}, {801, 64}, {96, 10}};
    for (const auto& [name, kernel] : layouts)
        for (const auto& sh : shapes) {
            const std::size_t I = sh[0], H = sh[1];
            benchmark::RegisterBenchmark(
                (std::string("nmf_layout/") + name + "/" + std::to_string(I) + "/" + std::to_string(H)).c_str(),
                [I, H, kernel = kernel](benchmark::State& state) {
                    namespace k = nd::kernels;
                    const std::size_t rows = std::max<std::size_t>(48, 300'000'000 / (80 * I * H) / 48 * 48);
                    nd::rng g(nd::seed{3});
                    std::vector<T> W(H * I);
                    nd::testing::random_simplex_rows(g, W.data(), H, I, I);
                    k::nmf_weights<T> wts;
                    wts.assign(W.data(), H, I);
                    nd::aligned_vector<T> x(k::nmf_layout<T>::pad_rows(rows) * wts.ip, T(0)), h(rows * H);
                    nd::testing::random_simplex_rows(g, x.data(), rows, I, wts.ip);
                    auto tile_rows = [&](std::size_t t0, std::size_t) {
                        return static_cast<const T*>(x.data() + t0 * wts.ip);
                    };
                    const std::size_t tiles = k::nmf_layout<T>::pad_rows(rows) / k::nmf_layout<T>::tile_rows;
                    task_kernel run = kernel;
                    for (auto _ : state) {
                        benchmark::DoNotOptimize(run);
                        for (std::size_t first = 0; first < tiles; first += k::nmf_tiles_per_task)
                            run(wts, tile_rows, rows, first, std::min(tiles, first + k::nmf_tiles_per_task), 20,
                                std::nullopt, h.data(), nullptr);
                        benchmark::ClobberMemory();
                    }
                    state.counters["GFLOPS"] = benchmark::Counter(4.0 * double(rows) * I * H * 20 * 1e-9,
                                                                  benchmark::Counter::kIsIterationInvariantRate);
                    state.SetLabel(k::nmf_rows_in_lanes<T>(I, H) ? "rule: lanes" : "rule: rows");
                })
                ->Unit(benchmark::kMillisecond);
        }
}

const bool registered = [] {
    register_iteration_scaling();
    register_layouts();
    register_layer<nd::CNMFCore<32, 5>, nd::Shape<3, 28, 28>>("L1");
    register_layer<nd::CNMFCore<32, 5>, nd::Shape<1, 28, 28>>("L1g");
    register_layer<nd::CNMFCore<64, 5>, nd::Shape<32, 12, 12>>("L2");
    register_layer<nd::CNMFCore<96, nd::whole_map>, nd::Shape<64, 4, 4>>("L3");
    register_layer<nd::CNMFCore<10, 1>, nd::Shape<96, 1, 1>>("L4");
    return true;
}();

} // namespace
