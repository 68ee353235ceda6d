// How sensitive is training to rounding-sized differences? Trains CNMF+1x1 on Fashion-MNIST twice in one process
// (one thread, global batch 50, the learning rates of nmfdsl-train) — the second time with every initial parameter
// nudged by a relative amount of random sign — and prints how far the final parameters differ, in the measure of
// testing::compare_values (|a − b| / max(|a|, |b|, 1e-3 · max|a|)). docs/scaling.md compares this with the
// difference between one process and 2 ranks, whose only source is the re-associated sums:
//   nmfdsl_sensitivity adam|sgd [steps = 20] [nudge = 1e-6; 0 means one ulp]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include <nmfdsl/io.hpp>
#include <nmfdsl/testing/compare.hpp>

#include "../examples/paper_models.hpp"

namespace nd = nmfdsl;
using Net = nd::Model<paper::CNMF1x1, paper::MnistInput>;

namespace {

std::vector<float> train(bool sgd, std::size_t steps, double nudge, bool nudged, const nd::data::split& data)
{
    Net model{nd::seed{5}};
    if (nudged) {
        std::mt19937 signs(12345);
        for (float& p : model.flat_parameters())
            p = nudge == 0 ? std::nextafter(p, p >= 0 ? INFINITY : -INFINITY)  // one ulp away from zero
                           : float(p * (1 + (signs() & 1 ? nudge : -nudge)));
    }
    nd::train_config cfg;
    cfg.epochs = 1;
    cfg.batch = 50;
    cfg.seed = 5;
    cfg.max_train_batches = steps;
    cfg.max_test_samples = 100;
    cfg.progress = nd::train_config::progress_mode::quiet;
    cfg.lr = nd::optim::learning_rates::paper();
    std::unique_ptr<nd::optim::optimizer<float>> optimizer;  // nullptr: Adam
    if (sgd)
        optimizer = std::make_unique<nd::optim::SGD<float>>(model.parameters(), cfg.lr);
    else
        std::fill(cfg.lr.lr.begin(), cfg.lr.lr.end(), 1e-3f);  // nmfdsl-train's Adam rate
    nd::Trainer<Net> trainer(model, data, cfg, nd::loss::PaperLoss{}, std::move(optimizer));
    trainer.fit();
    const auto p = model.flat_parameters();
    return {p.begin(), p.end()};
}

} // namespace

int main(int argc, char** argv)
{
    const std::string optimizer = argc > 1 ? argv[1] : "";
    const long steps = argc > 2 ? std::atol(argv[2]) : 20;
    const double nudge = argc > 3 ? std::atof(argv[3]) : 1e-6;
    if ((optimizer != "adam" && optimizer != "sgd") || argc > 4 || steps < 1 || !(nudge >= 0 && nudge < 1)) {
        std::fprintf(stderr,
                     "usage: nmfdsl_sensitivity adam|sgd [steps >= 1] [relative nudge in [0, 1); 0 = one ulp]\n");
        return 2;
    }
    try {
        nd::set_threads(1);
        const auto data = nd::data::load_idx_directory(nd::data::fashion_mnist_directory);
        const bool sgd = optimizer == "sgd";
        const auto a = train(sgd, std::size_t(steps), nudge, false, data);
        const auto b = train(sgd, std::size_t(steps), nudge, true, data);
        const auto d = nd::testing::compare_values<float>(a, b);
        std::printf("%s, %ld steps, initial parameters nudged by %s: largest relative difference %.3g; values above "
                    "1e-6: %zu, 1e-5: %zu, 1e-4: %zu, 1e-2: %zu (of %zu)\n",
                    optimizer.c_str(), steps, nudge == 0 ? "one ulp" : std::to_string(nudge).c_str(), d.largest,
                    d.above[0], d.above[1], d.above[2], d.above[3], a.size());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "nmfdsl_sensitivity: %s\n", e.what());
        return 2;
    }
}
