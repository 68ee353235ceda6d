// What one step of an attack costs: a forward in evaluation mode, the cross-entropy's gradient on the probabilities
// and Model::input_gradient (dx only) — the work of one PGD or APGD iteration, without the cheap update.
//   attack_step/<model>/1/<batch>             cnn, cnn1x1, hah, hah-baseline (1x28x28 images)
//   attack_step/<model>:<mode>/1/<batch>      cnmf, cnmf1x1 with the approximate, unrolled or implicit NMF gradient
// Counter: images per second (one attack step each). Threads from NMFDSL_THREADS (default 1 in this binary).
#include <optional>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <nmfdsl/attack.hpp>
#include <nmfdsl/nmfdsl.hpp>

#include "../examples/hah_models.hpp"
#include "../examples/paper_models.hpp"

namespace {
namespace nd = nmfdsl;
namespace na = nmfdsl::attack;

template <class Net>
void attack_step(benchmark::State& state, std::optional<nd::nmf_gradient> mode)
{
    using In = nd::Shape<1, 28, 28>;
    const std::size_t batch = static_cast<std::size_t>(state.range(0));
    nd::Model<Net, In> model{nd::seed{21}};
    if constexpr (hah::uses_hah_recipe<Net>)
        hah::apply_hah_recipe<Net>(model, {0.2860}, {0.3530});
    if (mode)
        nd::configure_nmf(model, [&](nd::cnmf_options& o) { o.gradient(*mode); });
    na::model_classifier target(model);
    nd::rng g(nd::seed{3});
    na::image_batch<float> x = na::image_batch<float>::from_shape({batch, In::size});
    for (auto& v : x)
        v = g.uniform01<float>();
    std::vector<std::size_t> labels(batch);
    for (auto& l : labels)
        l = static_cast<std::size_t>(g.below(10));
    auto one_step = [&] {
        const auto p = target.probabilities(x);
        const std::size_t K = p.shape()[1];
        na::image_batch<float> dl_dp = xt::zeros<float>({batch, K});
        for (std::size_t b = 0; b < batch; ++b)
            na::detail::cross_entropy_row(p.data() + b * K, K, labels[b], dl_dp.data() + b * K);
        return target.input_gradient(dl_dp);
    };
    benchmark::DoNotOptimize(one_step());  // first-call allocations outside the timing
    for (auto _ : state)
        benchmark::DoNotOptimize(one_step());
    state.counters["images_per_second"] =
        benchmark::Counter(double(batch) * double(state.iterations()), benchmark::Counter::kIsRate);
}

template <class Net>
void register_attack(const std::string& name, std::optional<nd::nmf_gradient> mode)
{
    const std::string tag = mode ? name + ":" + nd::gradient_name(*mode) : name;
    benchmark::RegisterBenchmark(("attack_step/" + tag + "/1").c_str(),
                                 [mode](benchmark::State& s) { attack_step<Net>(s, mode); })
        ->Arg(50)
        ->Arg(128)
        ->Unit(benchmark::kMillisecond);
}

const bool registered = [] {
    register_attack<paper::CNN>("cnn", std::nullopt);
    register_attack<paper::CNN1x1>("cnn1x1", std::nullopt);
    register_attack<hah::HaHSmall>("hah", std::nullopt);
    register_attack<hah::HaHSmallBaseline>("hah-baseline", std::nullopt);
    for (const auto mode : {nd::nmf_gradient::approximate, nd::nmf_gradient::unrolled, nd::nmf_gradient::implicit}) {
        register_attack<paper::CNMF>("cnmf", mode);
        register_attack<paper::CNMF1x1>("cnmf1x1", mode);
    }
    return true;
}();

} // namespace
