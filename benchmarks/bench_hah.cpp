// Benchmarks of the sparse-activation method (docs/method.md §6):
//   hah_block/<forward|backward>/<Cin>-<Cout>/<H>x<W>/32   one HaH block of HaH-VGG16 (WNConv 3×3 pad 1 → ReLU →
//       DivisiveNorm → FractionalThreshold), batch 32; backward = the block's backward plus its HaH cost (α > 0).
//       Counters: GFLOPS of the convolution part (its FLOPs over the time of WNConv + ReLU alone, measured right
//       after the block in the same benchmark) and competition_share, the fraction of the block's time spent
//       outside that part (DivisiveNorm, threshold and, in backward, the HaH cost).
//   train_step/<hah|hah-baseline>/1/128   the training step of nmfdsl-train's Fashion-MNIST HaH network and its
//       standard twin with their recipe: forward, cross-entropy, backward, the HaH costs, Adam.
//   inference/<hah|hah-baseline>/1/128    forward only (evaluation mode).
// Thread count from NMFDSL_THREADS (default 1 in this binary).
#include <chrono>
#include <string>

#include <benchmark/benchmark.h>

#include <nmfdsl/nmfdsl.hpp>

#include "../examples/hah_models.hpp"
#include "bench_args.hpp"

namespace {
namespace nd = nmfdsl;

template <class In>
xt::xtensor<float, 4> random_images(std::size_t batch, std::uint64_t s)
{
    nd::rng g(nd::seed{s});
    xt::xtensor<float, 4> x = xt::xtensor<float, 4>::from_shape({batch, In::c, In::h, In::w});
    for (auto& v : x)
        v = g.uniform01<float>();
    return x;
}

/// Seconds per call of f, over `calls` calls.
template <class F>
double seconds_per_call(std::size_t calls, F&& f)
{
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < calls; ++i)
        f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / double(calls);
}

/// One pass (forward, or backward after one forward) of model m on x; backward includes the local costs.
template <class M>
void run_pass(M& m, const xt::xtensor<float, 4>& x, const xt::xtensor<float, 4>& dy, bool backward)
{
    if (!backward) {
        benchmark::DoNotOptimize(m.forward(x).data());
        return;
    }
    m.zero_grad();
    benchmark::DoNotOptimize(m.backward(dy).data());
    m.add_local_costs();
}

template <std::size_t Cout, class In>
void hah_block(benchmark::State& state, bool backward)
{
    constexpr std::size_t batch = 32;
    using Block = nd::Model<nd::HaHBlock<Cout>, In>;
    using ConvPart = nd::Model<nd::Seq<nd::WNConv<Cout, 3, 1, 1>, nd::ReLU>, In>;
    Block block{nd::seed{3}};
    ConvPart conv{nd::seed{3}};
    block.template configure<typename nd::WNConvCore<Cout, 3>::options>([](auto& o) { o.hah_alpha(0.001); });
    const auto x = random_images<In>(batch, 5);
    auto g = random_images<nd::Shape<Cout, In::h, In::w>>(batch, 6);  // dL/dy of the block's output
    block.forward(x);
    conv.forward(x);
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state)
        run_pass(block, x, g, backward);
    const double t_block =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / double(state.iterations());
    const double t_conv = seconds_per_call(std::max<std::size_t>(3, state.iterations()),
                                           [&] { run_pass(conv, x, g, backward); });
    // the convolution's GEMMs: forward 2·rows·Cout·I; backward twice that (dW and dx; the HaH cost's own dW GEMM
    // belongs to the competition share)
    const double rows = double(batch * In::h * In::w), I = double(9 * In::c);
    const double flops = 2 * rows * double(Cout) * I * (backward ? 2 : 1);
    state.counters["GFLOPS"] = flops / t_conv * 1e-9;
    state.counters["competition_share"] = std::max(0.0, 1 - t_conv / t_block);
}

template <class Net>
void hah_step(benchmark::State& state, bool train)
{
    using In = nd::Shape<1, 28, 28>;
    const std::size_t batch = static_cast<std::size_t>(state.range(0));
    nd::Model<Net, In> model{nd::seed{21}};
    hah::apply_hah_recipe<Net>(model, {0.2860}, {0.3530});
    nd::optim::learning_rates lr = nd::optim::learning_rates::paper();
    for (double& r : lr.lr)
        r = 1e-3;
    nd::optim::Adam<float> adam(model.parameters(), lr);
    const auto x = random_images<In>(batch, 1);
    nd::rng g(nd::seed{2});
    std::vector<std::size_t> labels(batch);
    for (auto& l : labels)
        l = static_cast<std::size_t>(g.below(10));
    model.set_training(train);
    nmfdsl_bench::run_steps(state, model, x, labels, nd::loss::CrossEntropy{}, adam, train);
}

template <std::size_t Cout, class In>
void register_block()
{
    const std::string shape = std::to_string(In::c) + "-" + std::to_string(Cout) + "/" + std::to_string(In::h) + "x" +
                              std::to_string(In::w) + "/32";
    for (const bool backward : {false, true})
        benchmark::RegisterBenchmark(
            ("hah_block/" + std::string(backward ? "backward/" : "forward/") + shape).c_str(),
            [backward](benchmark::State& s) { hah_block<Cout, In>(s, backward); })
            ->Unit(benchmark::kMillisecond);
}

const bool registered = [] {
    // HaH-VGG16's six HaH blocks on CIFAR-10's 32×32 images
    register_block<64, nd::Shape<3, 32, 32>>();
    register_block<64, nd::Shape<64, 32, 32>>();
    register_block<128, nd::Shape<64, 16, 16>>();
    register_block<128, nd::Shape<128, 16, 16>>();
    register_block<256, nd::Shape<128, 8, 8>>();
    register_block<256, nd::Shape<256, 8, 8>>();
    for (const bool train : {true, false}) {
        const std::string kind = train ? "train_step/" : "inference/";
        benchmark::RegisterBenchmark((kind + "hah/1").c_str(),
                                     [train](benchmark::State& s) { hah_step<hah::HaHSmall>(s, train); })
            ->Arg(128)
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark((kind + "hah-baseline/1").c_str(),
                                     [train](benchmark::State& s) { hah_step<hah::HaHSmallBaseline>(s, train); })
            ->Arg(128)
            ->Unit(benchmark::kMillisecond);
    }
    return true;
}();

} // namespace
