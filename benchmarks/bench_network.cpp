// Whole-network benchmarks of the paper's four models (names as in nmfdsl-train):
//   train_step/<model>/<channels>/<batch>  forward, the paper's loss, backward and an Adam step
//   inference/<model>/<channels>/<batch>   forward only
// channels 3 or 1 means 3×28×28 or 1×28×28 input; batch 1, 50 and 128. The thread count comes from
// NMFDSL_THREADS (default 1 in this binary). Counter: images per second of wall-clock time.
#include <chrono>

#include <benchmark/benchmark.h>

#include <nmfdsl/nmfdsl.hpp>

#include "../examples/paper_models.hpp"

namespace {
namespace nd = nmfdsl;

template <class Net, class In>
void step(benchmark::State& state, bool train)
{
    const std::size_t batch = static_cast<std::size_t>(state.range(0));
    nd::Model<Net, In> model{nd::seed{21}};
    nd::optim::Adam<float> adam(model.parameters(), nd::optim::learning_rates::paper());
    nd::rng g(nd::seed{1});
    xt::xtensor<float, 4> x = xt::xtensor<float, 4>::from_shape({batch, In::c, In::h, In::w});
    for (auto& v : x)
        v = g.uniform01<float>();
    std::vector<std::size_t> labels(batch);
    for (auto& l : labels)
        l = static_cast<std::size_t>(g.below(10));
    const nd::loss::PaperLoss loss;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        const auto p = model.forward(x);
        if (train) {
            const auto l = loss(p, labels);
            model.zero_grad();
            model.backward(l.grad);
            adam.step();
        }
        benchmark::DoNotOptimize(p.data());
    }
    // wall-clock rate (the library's worker threads do not show in the main thread's CPU time)
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.counters["images_per_second"] = double(batch) * double(state.iterations()) / seconds;
}

template <class Net>
void register_model(const std::string& name)
{
    auto add = [&](const std::string& kind, bool train, auto in) {
        using In = decltype(in);
        benchmark::RegisterBenchmark((kind + "/" + name + "/" + std::to_string(In::c)).c_str(),
                                     [train](benchmark::State& s) { step<Net, In>(s, train); })
            ->Arg(1)
            ->Arg(50)
            ->Arg(128)
            ->Unit(benchmark::kMillisecond);
    };
    for (bool train : {true, false}) {
        add(train ? "train_step" : "inference", train, paper::CifarInput{});
        add(train ? "train_step" : "inference", train, paper::MnistInput{});
    }
}

const bool registered = [] {
    register_model<paper::CNN>("cnn");
    register_model<paper::CNMF>("cnmf");
    register_model<paper::CNN1x1>("cnn1x1");
    register_model<paper::CNMF1x1>("cnmf1x1");
    return true;
}();

} // namespace
