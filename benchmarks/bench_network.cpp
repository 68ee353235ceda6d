// Whole-network benchmarks of the paper's four models (names as in nmfdsl-train):
//   train_step/<model>/<channels>/<batch>  forward, the paper's loss, backward and an Adam step
//   inference/<model>/<channels>/<batch>   forward only
//   train_step_T/<mode>/cnmf1x1/3/50/<T>   CNMF+1×1 training step with T NMF iterations and the given gradient mode
//   train_step/cnmf1x1/fashion/50, inference/cnmf1x1/fashion/50   the same on Fashion-MNIST's first 50 training
//                                          images (Debian's dataset-fashion-mnist): real images have all-zero patches,
//                                          which the NMF layers do not solve (uniform random input has none)
//   cnmf_layer/L1/<fashion|random>/50      the network's first NMF layer alone, forward, on those images or random
//   cnmf_layer/L2/<fashion|random>/50      its second NMF layer alone, fed by the first block, pooling and ReLU
// channels 3 or 1 means 3×28×28 or 1×28×28 input; batch 1, 50 and 128. The thread count comes from
// NMFDSL_THREADS (default 1 in this binary). Counters: images per second of wall-clock time; peak_MB, the most
// memory held in library buffers at once from building the model to the end (parameters, gradients, Adam state,
// activations, saved state, scratch: nmfdsl::memory); rss_peak_MB, the process's resident high-water mark over
// the same span (Linux; reset through /proc/self/clear_refs, so it includes the binary and the input batch).
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <nmfdsl/data/dataset.hpp>
#include <nmfdsl/nmfdsl.hpp>

#include "bench_args.hpp"

#include "../examples/paper_models.hpp"

namespace {
namespace nd = nmfdsl;

/// Resets the kernel's resident-set high-water mark for this process; false where that is not possible.
bool reset_rss_peak()
{
    std::ofstream f("/proc/self/clear_refs");
    return static_cast<bool>(f << "5" << std::flush);
}

/// VmHWM of this process in MB, if readable.
std::optional<double> rss_peak_mb()
{
    std::ifstream f("/proc/self/status");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("VmHWM:", 0) == 0)
            return std::stod(line.substr(6)) / 1024.0;  // the value is in kB
    return std::nullopt;
}

template <class Net, class In>
void step(benchmark::State& state, bool train, std::optional<nd::nmf_gradient> mode = std::nullopt)
{
    const std::size_t batch = static_cast<std::size_t>(mode ? 50 : state.range(0));
    const bool rss_reset = reset_rss_peak();
    const std::size_t baseline = nd::memory::current_bytes();
    nd::memory::reset_peak();
    nd::Model<Net, In> model{nd::seed{21}};
    if (mode)
        nd::configure_nmf(model, [&](nd::cnmf_options& o) {
            o.iterations(static_cast<std::size_t>(state.range(0))).gradient(*mode);
        });
    nd::optim::Adam<float> adam(model.parameters(), nd::optim::learning_rates::paper());
    nd::rng g(nd::seed{1});
    xt::xtensor<float, 4> x = xt::xtensor<float, 4>::from_shape({batch, In::c, In::h, In::w});
    for (auto& v : x)
        v = g.uniform01<float>();
    std::vector<std::size_t> labels(batch);
    for (auto& l : labels)
        l = static_cast<std::size_t>(g.below(10));
    nmfdsl_bench::run_steps(state, model, x, labels, nd::loss::PaperLoss{}, adam, train);
    state.counters["peak_MB"] = double(nd::memory::peak_bytes() - baseline) / (1024.0 * 1024.0);
    if (const auto rss = rss_peak_mb(); rss && rss_reset)
        state.counters["rss_peak_MB"] = *rss;
}

/// The first `batch` training images of Fashion-MNIST and their labels; false (the benchmark skipped with the
/// reader's message) when the data set is not installed.
bool fashion_batch(benchmark::State& state, std::size_t batch, xt::xtensor<float, 4>& x,
                   std::vector<std::size_t>& labels)
{
    nd::data::split data;
    try {
        data = nd::data::load_idx_directory(nd::data::fashion_mnist_directory);
    } catch (const nd::error& e) {
        state.SkipWithError(e.what());
        return false;
    }
    x = xt::xtensor<float, 4>::from_shape({batch, 1, 28, 28});
    std::copy_n(data.train.images.begin(), x.size(), x.begin());
    labels.assign(data.train.labels.begin(), data.train.labels.begin() + std::ptrdiff_t(batch));
    return true;
}

/// The step on the first 50 training images of Fashion-MNIST, with their labels.
void fashion_step(benchmark::State& state, bool train)
{
    constexpr std::size_t batch = 50;
    xt::xtensor<float, 4> x;
    std::vector<std::size_t> labels;
    if (!fashion_batch(state, batch, x, labels))
        return;
    nd::Model<paper::CNMF1x1, paper::MnistInput> model{nd::seed{21}};
    nd::optim::Adam<float> adam(model.parameters(), nd::optim::learning_rates::paper());
    nmfdsl_bench::run_steps(state, model, x, labels, nd::loss::PaperLoss{}, adam, train);
}

/// `batch` images of 1×28×28 into x: Fashion-MNIST's first training images, or uniform random values. False (and
/// the benchmark skipped with the reader's message) when the data set is missing.
bool images_1x28x28(benchmark::State& state, std::size_t batch, bool fashion, xt::xtensor<float, 4>& x)
{
    x = xt::xtensor<float, 4>::from_shape({batch, 1, 28, 28});
    if (fashion) {
        std::vector<std::size_t> labels;
        return fashion_batch(state, batch, x, labels);
    }
    nd::rng g(nd::seed{1});
    for (auto& v : x)
        v = g.uniform01<float>();
    return true;
}

/// Times model.forward(x) (one untimed call first touches every buffer); counter GFLOPS: `flops` per call.
template <class M, class X>
void time_forward(benchmark::State& state, M& model, const X& x, double flops)
{
    typename M::workspace ws;
    benchmark::DoNotOptimize(model.forward(x, ws).data());
    for (auto _ : state)
        benchmark::DoNotOptimize(model.forward(x, ws).data());
    state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// cnmf_layer/L1/<fashion|random>/50: the first NMF layer of CNMF+1×1 alone (CNMFCore<32, 5> on 1×28×28, T = 20,
/// approximate mode), forward only, on Fashion-MNIST's first 50 training images or on uniform random input. Counter
/// GFLOPS: the arithmetic of solving every row, 4·P·I·H·T per image (P = 576, I = 25, H = 32), per second — on
/// real images the layer skips the all-zero patches, so it can pass what the solved rows alone would reach.
void cnmf_layer_l1(benchmark::State& state, bool fashion)
{
    constexpr std::size_t batch = 50;
    using In = nd::Shape<1, 28, 28>;
    using L = nd::CNMFCore<32, 5>;
    xt::xtensor<float, 4> x;
    if (!images_1x28x28(state, batch, fashion, x))
        return;
    nd::Model<L, In> model{nd::seed{21}};
    time_forward(state, model, x, 4.0 * 576 * 25 * 32 * 20 * batch);
}

/// The mean share of a k×k layer's I = C·k·k patch columns (valid positions, raster order per image) in the union of
/// non-zero columns of m consecutive patches, for m = 1, 2 and 6 (one row, a pair, a block of the NMF kernel; the
/// all-zero patches, which the layer does not solve, left out first), and of blocks of 6 grouped as the kernel groups
/// them (kernels::detail::group_by_support over runs of 48 rows).
std::array<double, 4> support_shares(const xt::xtensor<float, 4>& y, std::size_t k)
{
    const std::size_t n_img = y.shape(0), c_in = y.shape(1), side = y.shape(2), out = side - k + 1, I = c_in * k * k;
    std::vector<std::vector<bool>> patches;
    for (std::size_t n = 0; n < n_img; ++n)
        for (std::size_t oy = 0; oy < out; ++oy)
            for (std::size_t ox = 0; ox < out; ++ox) {
                std::vector<bool> nonzero(I);
                for (std::size_t c = 0; c < c_in; ++c)
                    for (std::size_t dy = 0; dy < k; ++dy)
                        for (std::size_t dx = 0; dx < k; ++dx)
                            nonzero[(c * k + dy) * k + dx] = y(n, c, oy + dy, ox + dx) != 0.0f;
                if (std::find(nonzero.begin(), nonzero.end(), true) != nonzero.end())
                    patches.push_back(std::move(nonzero));
            }
    std::array<double, 4> shares{};
    const std::size_t heights[3] = {1, 2, 6};
    for (std::size_t j = 0; j < 3; ++j) {
        const std::size_t m = heights[j], blocks = patches.size() / m;
        std::size_t columns = 0;
        for (std::size_t b = 0; b < blocks; ++b)
            for (std::size_t i = 0; i < I; ++i)
                for (std::size_t r = 0; r < m; ++r)
                    if (patches[b * m + r][i]) {
                        ++columns;
                        break;
                    }
        shares[j] = blocks ? double(columns) / double(blocks * I) : 0.0;
    }
    const std::size_t words = (I + 63) / 64, run = 48;
    std::vector<std::uint64_t> bits(patches.size() * words, 0), scratch;
    for (std::size_t r = 0; r < patches.size(); ++r)
        for (std::size_t i = 0; i < I; ++i)
            bits[r * words + i / 64] |= std::uint64_t(patches[r][i]) << (i % 64);
    std::size_t columns = 0, blocks = 0;
    std::vector<std::size_t> order(run);
    for (std::size_t r0 = 0; r0 + run <= patches.size(); r0 += run) {
        nd::kernels::detail::group_by_support(bits.data() + r0 * words, words, run, 6, order.data(), scratch);
        for (std::size_t b = 0; b < run / 6; ++b, ++blocks)
            for (std::size_t w = 0; w < words; ++w) {
                std::uint64_t any = 0;
                for (std::size_t r = 0; r < 6; ++r)
                    any |= bits[(r0 + order[6 * b + r]) * words + w];
                columns += static_cast<std::size_t>(std::popcount(any));
            }
    }
    shares[3] = blocks ? double(columns) / double(blocks * I) : 0.0;
    return shares;
}

/// cnmf_layer/L2/<fashion|random>/50: the second NMF layer of CNMF+1×1 alone (CNMFCore<64, 5> on 32×12×12, T = 20,
/// approximate mode), forward only, on what the network feeds it: the first block, pooling and ReLU (initial
/// weights) applied to Fashion-MNIST's first 50 training images or to uniform random input. Counter GFLOPS: the
/// arithmetic of solving every row on all of I, 4·P·I·H·T per image (P = 64, I = 800, H = 64), per second — rows
/// whose x̂ are mostly zero are solved on their support, so it can pass what the FMA peak alone would reach.
/// Counters zero_inputs (the share of the layer's input values that are zero), support_1|2|6 and support_6_grouped
/// (support_shares).
void cnmf_layer_l2(benchmark::State& state, bool fashion)
{
    constexpr std::size_t batch = 50;
    using In = nd::Shape<1, 28, 28>;
    using Front = nd::Seq<paper::NmfMixBlock<32, 5>, nd::AvgPool<2>, nd::ReLU>;
    using L2In = nd::output_shape_t<Front, In>;
    using L = nd::CNMFCore<64, 5>;
    xt::xtensor<float, 4> x;
    if (!images_1x28x28(state, batch, fashion, x))
        return;
    nd::Model<Front, In> front{nd::seed{21}};
    const auto y = front.forward(x);
    nd::Model<L, L2In> model{nd::seed{22}};
    time_forward(state, model, y, 4.0 * 64 * 800 * 64 * 20 * batch);
    state.counters["zero_inputs"] = double(std::count(y.begin(), y.end(), 0.0f)) / double(y.size());
    const auto shares = support_shares(y, 5);
    state.counters["support_1"] = shares[0];
    state.counters["support_2"] = shares[1];
    state.counters["support_6"] = shares[2];
    state.counters["support_6_grouped"] = shares[3];
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
    for (bool fashion : {true, false})
        benchmark::RegisterBenchmark(fashion ? "cnmf_layer/L1/fashion/50" : "cnmf_layer/L1/random/50",
                                     [fashion](benchmark::State& s) { cnmf_layer_l1(s, fashion); })
            ->Unit(benchmark::kMillisecond);
    for (bool fashion : {true, false})
        benchmark::RegisterBenchmark(fashion ? "cnmf_layer/L2/fashion/50" : "cnmf_layer/L2/random/50",
                                     [fashion](benchmark::State& s) { cnmf_layer_l2(s, fashion); })
            ->Unit(benchmark::kMillisecond);
    for (bool train : {true, false})
        benchmark::RegisterBenchmark(train ? "train_step/cnmf1x1/fashion/50" : "inference/cnmf1x1/fashion/50",
                                     [train](benchmark::State& s) { fashion_step(s, train); })
            ->Unit(benchmark::kMillisecond);
    for (const auto& [tag, mode] : {std::pair{"approximate", nd::nmf_gradient::approximate},
                                    std::pair{"unrolled", nd::nmf_gradient::unrolled}})
        benchmark::RegisterBenchmark(("train_step_T/" + std::string(tag) + "/cnmf1x1/3/50").c_str(),
                                     [mode = mode](benchmark::State& s) {
                                         step<paper::CNMF1x1, paper::CifarInput>(s, true, mode);
                                     })
            ->Apply(nmfdsl_bench::iteration_counts)
            ->Unit(benchmark::kMillisecond);
    return true;
}();

} // namespace
