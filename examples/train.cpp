// nmfdsl-train: trains one of the paper's four networks on Fashion-MNIST (the Debian package), on any directory with
// the four standard IDX files, or on CIFAR-10's binary batches, and reports the test accuracy.
//   nmfdsl-train --model cnmf1x1 --data fashion-mnist --epochs 3 --out runs/demo
// Exit codes: 0 done, 1 a data / checkpoint / numeric error, 2 a bad command line.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include <nmfdsl/io.hpp>

#include "cli.hpp"
#include "hah_models.hpp"
#include "paper_models.hpp"
#include "pictures.hpp"

namespace nd = nmfdsl;

namespace {

const char* usage = R"(usage: nmfdsl-train [options]

  --model M       cnn | cnmf | cnn1x1 | cnmf1x1        (default cnmf1x1)
                  cnn-plain | cnn1x1-plain: the CNN baselines with standard convolutions
                  instead of convolutions of L1-normalised patches
                  hah | hah-baseline: a network with sparse, strong activations (HaH blocks
                  and their Hebbian/anti-Hebbian cost) and its standard twin, trained with
                  that method's recipe (cross-entropy, Adam 1e-3, lr /10 after 60 % and
                  80 % of the epochs, BatchNorm with running statistics); 1x28x28 images
                  hah-vgg16 | vgg16: HaH-VGG16 and the standard VGG16, for CIFAR-10's
                  3x32x32 images (same recipe; augmentation: pad 4, random crop, flip)
  --data D        fashion-mnist, or a directory with the four IDX files
                  (train-images-idx3-ubyte[.gz], ...) or CIFAR-10's binary batches
                                                       (default fashion-mnist)
  --epochs N      maximum number of epochs (the lr-limit rule may stop earlier)   (default 3)
  --batch B       mini-batch size                                                (default 50)
  --seed S        seed of initialisation, shuffling and augmentation            (default 21)
  --threads T     worker threads (default: NMFDSL_THREADS, else all cores)
  --out DIR       where metrics.csv, checkpoint.nmfd, basis.png and curves.png go (default runs/<model>)
  --resume FILE   continue from a checkpoint of the same network
  --loss L        paper | cross-entropy   (default: paper; cross-entropy for hah, hah-baseline)
  --augment A     none | paper (random crop, flip, colour jitter per batch)
                  | crop-flip (pad 4, random crop, flip per image)
                                        (default: none for 28x28 data, paper for CIFAR-10,
                                         crop-flip for hah-vgg16 and vgg16)
  --lr-<group> X   the learning rate of a parameter group (groups and defaults below)
  --max-batches K only K batches per epoch (smoke tests)
  --max-test K    evaluate on the first K test images only (smoke tests)
  --quiet         no progress output
  --help          this text
)";

struct options {
    std::string model = "cnmf1x1", data = "fashion-mnist", out, resume, augment, loss;
    std::size_t epochs = 3, batch = 50, max_batches = 0, max_test = 0;
    std::uint64_t seed = 21;
    std::size_t threads = 0;
    bool quiet = false;
    nd::optim::learning_rates lr = nd::optim::learning_rates::paper();
    std::array<bool, nd::optim::group_count> lr_given{};  ///< which --lr-<group> options were given
};

/// The usage text with one line per parameter group (from nmfdsl::parameter_groups).
std::string usage_text()
{
    std::string s = usage;
    s += "\nparameter groups (--lr-<group>, default learning rate, what they hold):\n";
    for (const auto& g : nd::parameter_groups) {
        char line[160];
        std::snprintf(line, sizeof line, "  --lr-%-6s %-6g %s\n", std::string(g.name).c_str(), g.paper_lr,
                      std::string(g.holds).c_str());
        s += line;
    }
    return s;
}

/// The group an option "--lr-<group>" names, or nullptr.
const nd::group_info* lr_option_group(const std::string& option)
{
    for (const auto& g : nd::parameter_groups)
        if (option == "--lr-" + std::string(g.name))
            return &g;
    return nullptr;
}

[[noreturn]] void bad_usage(const std::string& message) { cli::fail("nmfdsl-train", message); }

std::uint64_t parse_number(const std::string& flag, const std::string& text, std::uint64_t min)
{
    return cli::parse_count("nmfdsl-train", flag, text, min);
}

options parse(int argc, char** argv)
{
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                bad_usage(a + " needs a value");
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            std::fputs(usage_text().c_str(), stdout);
            std::exit(0);
        } else if (a == "--model")
            o.model = value();
        else if (a == "--data")
            o.data = value();
        else if (a == "--epochs")
            o.epochs = parse_number(a, value(), 1);
        else if (a == "--batch")
            o.batch = parse_number(a, value(), 1);
        else if (a == "--seed")
            o.seed = parse_number(a, value(), 0);
        else if (a == "--threads")
            o.threads = parse_number(a, value(), 1);
        else if (a == "--out")
            o.out = value();
        else if (a == "--resume")
            o.resume = value();
        else if (a == "--augment")
            o.augment = value();
        else if (a == "--loss")
            o.loss = value();
        else if (a == "--max-batches")
            o.max_batches = parse_number(a, value(), 1);
        else if (const nd::group_info* gi = lr_option_group(a)) {
            const std::string text = value();
            char* end = nullptr;
            const double v = std::strtod(text.c_str(), &end);
            if (end == text.c_str() || *end != '\0' || !(v >= 0.0) || !std::isfinite(v))
                bad_usage(a + " needs a learning rate >= 0, got '" + text + "'");
            const nd::group g = gi->id;
            o.lr[g] = v;
            o.lr_given[static_cast<std::size_t>(g)] = true;
        } else if (a == "--max-test")
            o.max_test = parse_number(a, value(), 1);
        else if (a == "--quiet")
            o.quiet = true;
        else
            bad_usage("unknown option '" + a + "'");
    }
    if (o.model != "cnn" && o.model != "cnmf" && o.model != "cnn1x1" && o.model != "cnmf1x1" &&
        o.model != "cnn-plain" && o.model != "cnn1x1-plain" && o.model != "hah" && o.model != "hah-baseline" &&
        o.model != "hah-vgg16" && o.model != "vgg16")
        bad_usage("unknown model '" + o.model + "' (choose cnn, cnmf, cnn1x1, cnmf1x1, hah, hah-baseline, hah-vgg16 "
                  "or vgg16)");
    if (o.data != "fashion-mnist" && !std::filesystem::is_directory(o.data))
        bad_usage("data directory '" + o.data + "' does not exist");
    if (!o.loss.empty() && o.loss != "paper" && o.loss != "cross-entropy")
        bad_usage("unknown loss '" + o.loss + "' (choose paper or cross-entropy)");
    if (!o.augment.empty() && o.augment != "none" && o.augment != "paper" && o.augment != "crop-flip")
        bad_usage("unknown augmentation '" + o.augment + "' (choose none, paper or crop-flip)");
    if (!o.resume.empty() && !std::filesystem::exists(o.resume))
        bad_usage("checkpoint '" + o.resume + "' does not exist");
    if (o.out.empty())
        o.out = "runs/" + o.model;
    return o;
}

/// The last epoch's layer-local costs, and the layers' activation statistics on the test set: per HaH block the
/// fraction of non-zero outputs after its threshold and WNConv's activation disparity; per ReLU the fraction of
/// non-zero outputs.
void print_statistics(const nd::epoch_metrics& m)
{
    if (!m.local_costs.empty())
        std::printf("local costs (epoch mean of the amount each adds to the objective):\n");
    for (const auto& c : m.local_costs)
        std::printf("  %-10s %-9s %-22s %.6f\n", "cost", c.path.c_str(), c.layer.c_str(), c.value);
    if (!m.statistics.empty())
        std::printf("activations on the test set (mean per image; also in metrics.csv):\n");
    for (const auto& s : m.statistics)
        std::printf("  %-10s %-9s %-22s %.4f\n", s.name.c_str(), s.path.c_str(), s.layer.c_str(), s.value);
}

template <class Net, class In>
int train(const options& o, const nd::data::split& data, bool cifar)
{
    nd::Model<Net, In> model{nd::seed{o.seed}};
    nd::train_config cfg;
    cfg.epochs = o.epochs;
    cfg.batch = o.batch;
    cfg.seed = o.seed;
    cfg.out_dir = o.out;
    cfg.max_train_batches = o.max_batches;
    cfg.max_test_samples = o.max_test;
    cfg.lr = o.lr;
    constexpr bool hah_recipe = hah::uses_hah_recipe<Net>;
    if constexpr (hah_recipe) {
        for (std::size_t g = 0; g < cfg.lr.lr.size(); ++g)  // Adam 1e-3 for every group the user left alone
            if (!o.lr_given[g])
                cfg.lr.lr[g] = 1e-3;
        // MultiStepLR at ⌊0.6·E⌋ and ⌊0.8·E⌋ (those that are ≥ 1 and distinct)
        for (const std::size_t m : {o.epochs * 6 / 10, o.epochs * 8 / 10})
            if (m >= 1 && (cfg.lr_milestones.empty() || m > cfg.lr_milestones.back()))
                cfg.lr_milestones.push_back(m);
        if (cifar)
            hah::apply_hah_recipe<Net>(model, hah::cifar10_mean, hah::cifar10_std);
        else
            hah::apply_hah_recipe<Net>(model, {0.2860}, {0.3530});  // Fashion-MNIST's pixel mean and std
    }
    constexpr bool vgg = std::is_same_v<Net, hah::HaHVGG16> || std::is_same_v<Net, hah::VGG16>;
    const std::string augment = !o.augment.empty() ? o.augment : vgg ? "crop-flip" : cifar ? "paper" : "none";
    cfg.augment = augment == "paper"       ? nd::data::augmentation::paper_cifar10()
                  : augment == "crop-flip" ? nd::data::augmentation::crop_flip(4)
                                           : nd::data::augmentation::none();
    if (o.quiet)
        cfg.progress = nd::train_config::progress_mode::quiet;
    nd::loss_function<float> loss = nd::loss::PaperLoss{};
    if (o.loss == "cross-entropy" || (o.loss.empty() && hah_recipe))
        loss = nd::loss::CrossEntropy{};
    nd::Trainer<nd::Model<Net, In>> trainer(model, data, cfg, std::move(loss), nullptr);  // nullptr: Adam
    if (!o.resume.empty()) {
        trainer.resume(o.resume);
        std::printf("resumed from '%s' after epoch %zu\n", o.resume.c_str(), trainer.history().size());
    }
    trainer.on_epoch_end = [&](const std::vector<nd::epoch_metrics>& h) {
        pictures::write_basis(model, o.out + "/basis.png");
        pictures::write_curves(h, o.out + "/curves.png", o.model + " on " + o.data);
    };
    std::printf("%s on %s (%zu training, %zu test images), %zu parameters, %zu threads, batch %zu, up to %zu "
                "epochs\n",
                o.model.c_str(), data.train.source.c_str(), data.train.size(), data.test.size(),
                nd::Model<Net, In>::parameter_count, nd::threads(), o.batch, o.epochs);
    const auto& h = trainer.fit();
    if (h.empty()) {
        std::printf("nothing to do: the checkpoint already holds %zu epochs\n", trainer.history().size());
        return 0;
    }
    double seconds = 0;
    for (const auto& m : h)
        seconds += m.seconds;
    std::printf("final test accuracy: %.2f %% after %zu epochs (%.0f s); outputs in %s/\n", 100 * h.back().test_accuracy,
                h.size(), seconds, o.out.c_str());
    print_statistics(h.back());
    return 0;
}

template <class In>
int dispatch(const options& o, const nd::data::split& data, bool cifar)
{
    if (o.model == "cnn")
        return train<paper::CNN, In>(o, data, cifar);
    if (o.model == "cnmf")
        return train<paper::CNMF, In>(o, data, cifar);
    if (o.model == "cnn1x1")
        return train<paper::CNN1x1, In>(o, data, cifar);
    if (o.model == "cnn-plain")
        return train<paper::CNNPlain, In>(o, data, cifar);
    if (o.model == "cnn1x1-plain")
        return train<paper::CNN1x1Plain, In>(o, data, cifar);
    if constexpr (In::c == 1) {  // the HaH networks for one-channel 28×28 images
        if (o.model == "hah")
            return train<hah::HaHSmall, In>(o, data, cifar);
        if (o.model == "hah-baseline")
            return train<hah::HaHSmallBaseline, In>(o, data, cifar);
    }
    return train<paper::CNMF1x1, In>(o, data, cifar);
}

} // namespace

int main(int argc, char** argv)
{
    const options o = parse(argc, argv);
    try {
        if (o.threads)
            nd::set_threads(o.threads);
        const std::string dir = o.data == "fashion-mnist" ? nd::data::fashion_mnist_directory : o.data;
        const bool cifar = nd::data::is_cifar10_directory(dir);
        const auto data = cifar ? nd::data::load_cifar10_directory(dir) : nd::data::load_idx_directory(dir);
        // each model is built for one image shape: a mismatch is a one-line message and exit code 2
        const bool vgg = o.model == "hah-vgg16" || o.model == "vgg16", small_hah = o.model == "hah" ||
                                                                                   o.model == "hah-baseline";
        const auto& d = data.train;
        if ((vgg && !cifar) || (small_hah && cifar)) {
            std::fprintf(stderr, "nmfdsl-train: --model %s needs %s images, data set '%s' has %zux%zux%zu images\n",
                         o.model.c_str(), vgg ? "3x32x32 (CIFAR-10)" : "1x28x28 (Fashion-MNIST)", d.source.c_str(),
                         d.channels, d.height, d.width);
            return 2;
        }
        if (o.model == "hah-vgg16")
            return train<hah::HaHVGG16, hah::CifarInput>(o, data, cifar);
        if (o.model == "vgg16")
            return train<hah::VGG16, hah::CifarInput>(o, data, cifar);
        if (cifar)
            return dispatch<paper::CifarInput>(o, data, cifar);
        return dispatch<paper::MnistInput>(o, data, cifar);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
