// nmfdsl-train: trains one of the paper's four networks on Fashion-MNIST (the Debian package), on any directory with
// the four standard IDX files, or on CIFAR-10's binary batches, and reports the test accuracy.
//   nmfdsl-train --model cnmf1x1 --data fashion-mnist --epochs 3 --out runs/demo
// Built with MPI (CMake option NMFDSL_MPI), `mpirun -np N nmfdsl-train ...` trains data-parallel (docs/scaling.md):
// every rank takes its slice of each global batch, the gradients are summed in a fixed order, rank 0 alone prints
// and writes files. Started without mpirun it is one process, as without MPI.
// Exit codes: 0 done, 1 a data / checkpoint / numeric error, 2 a bad command line (or ranks that disagree).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include <nmfdsl/io.hpp>
#ifdef NMFDSL_WITH_MPI
#include <nmfdsl/mpi.hpp>
#endif

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
                  (train-images-idx3-ubyte[.gz], ...), CIFAR-10's binary batches, or
                  train_images.npy, train_labels.npy, test_images.npy, test_labels.npy
                  (images [N,H,W] or [N,C,H,W], uint8 or float in [0,1]; labels [N])
                                                       (default fashion-mnist)
  --epochs N      maximum number of epochs (the lr-limit rule may stop earlier)   (default 3)
  --batch B       mini-batch size                                                (default 50)
  --seed S        seed of initialisation, shuffling and augmentation            (default 21)
  --threads T     worker threads (default: NMFDSL_THREADS, else all cores)
  --out DIR       where metrics.csv, checkpoint.nmfd, basis.png, basis.npy and curves.png go
                                                           (default runs/<model>)
  --resume FILE   continue from a checkpoint of the same network
  --export-npy    after every epoch also write the trainable tensors and BatchNorm running statistics
                  as NumPy files, DIR/parameters/<layer path>.<tensor>.npy, each in its shape
  --init-npy DIR  start from the tensors in DIR's .npy files (as --export-npy writes them, e.g.
                  converted from PyTorch) instead of the seed's initialisation
  --loss L        paper | cross-entropy   (default: paper; cross-entropy for hah, hah-baseline)
  --optimizer O   adam | sgd (momentum 0.9), with the rates of --lr-<group>   (default adam)
  --augment A     none | paper (random crop, flip, colour jitter per batch)
                  | crop-flip (pad 4, random crop, flip per image)
                                        (default: none for 28x28 data, paper for CIFAR-10,
                                         crop-flip for hah-vgg16 and vgg16)
  --lr-<group> X   the learning rate of a parameter group (groups and defaults below)
  --max-batches K only K batches per epoch (smoke tests)
  --max-test K    evaluate on the first K test images only (smoke tests)
  --mpi-timeout S under mpirun: stop the job when a rank has waited S seconds for the
                  others (a dead or hung rank)                              (default 300)
  --quiet         no progress output
  --help          this text
)";

struct options {
    std::string model = "cnmf1x1", data = "fashion-mnist", out, resume, init_npy, augment, loss, optimizer = "adam";
    std::size_t epochs = 3, batch = 50, max_batches = 0, max_test = 0;
    std::uint64_t seed = 21;
    std::size_t threads = 0;
    double mpi_timeout = 300;
    bool quiet = false, export_npy = false;
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
        else if (a == "--optimizer")
            o.optimizer = value();
        else if (a == "--max-batches")
            o.max_batches = parse_number(a, value(), 1);
        else if (a == "--mpi-timeout") {
            o.mpi_timeout = cli::parse_real("nmfdsl-train", a, value(), 0.0);
            if (o.mpi_timeout <= 0)
                bad_usage("--mpi-timeout must be > 0 seconds");
        }
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
        else if (a == "--export-npy")
            o.export_npy = true;
        else if (a == "--init-npy")
            o.init_npy = value();
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
    if (o.optimizer != "adam" && o.optimizer != "sgd")
        bad_usage("unknown optimizer '" + o.optimizer + "' (choose adam or sgd)");
    if (!o.augment.empty() && o.augment != "none" && o.augment != "paper" && o.augment != "crop-flip")
        bad_usage("unknown augmentation '" + o.augment + "' (choose none, paper or crop-flip)");
    if (!o.resume.empty() && !std::filesystem::exists(o.resume))
        bad_usage("checkpoint '" + o.resume + "' does not exist");
    if (!o.init_npy.empty() && !std::filesystem::is_directory(o.init_npy))
        bad_usage("--init-npy directory '" + o.init_npy + "' does not exist");
    if (!o.init_npy.empty() && !o.resume.empty())
        bad_usage("--init-npy and --resume both set the network's tensors; give one of them");
    if (o.out.empty())
        o.out = "runs/" + o.model;
    return o;
}

/// The ranks of an MPI run (one process without MPI or mpirun).
struct process_group {
    std::size_t rank = 0, size = 1;
    nd::replica_group* replicas = nullptr;  ///< set when size > 1
#ifdef NMFDSL_WITH_MPI
    nd::mpi::world* world = nullptr;
#endif

    /// Collective: whether any rank failed (error non-empty). Prints the error once when every rank failed alike
    /// (rank 0), else on each failing rank with its number.
    bool any_failed(const std::string& error) const
    {
        double failed = error.empty() ? 0.0 : 1.0;
        if (replicas)
            replicas->sum({&failed, 1});
        if (!error.empty() && (rank == 0 || failed < double(size)))
            std::fprintf(stderr, "%s%s\n", size > 1 && failed < double(size) ?
                         ("(rank " + std::to_string(rank) + ") ").c_str() : "", error.c_str());
        return failed > 0;
    }

    /// Stops the whole job after an error on this rank alone.
    [[noreturn]] void abort(int code) const
    {
#ifdef NMFDSL_WITH_MPI
        if (world)
            world->abort(code);
#endif
        std::exit(code);
    }
};

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

/// Under MPI: the communication of this run (restored epochs aside), per training step (rank 0 prints it).
void print_traffic([[maybe_unused]] const process_group& ranks,
                   [[maybe_unused]] const std::vector<nd::epoch_metrics>& h)
{
#ifdef NMFDSL_WITH_MPI
    const std::size_t steps = ranks.world ? ranks.world->gradient_traffic().calls : 0;  // one gradient sum a step
    if (ranks.size == 1 || steps == 0)
        return;
    double train_seconds = 0;
    for (const auto& m : h)
        train_seconds += m.train_seconds;
    const auto& g = ranks.world->gradient_traffic();
    const auto& st = ranks.world->statistics_traffic();
    const double step_ms = 1e3 * train_seconds / double(steps);
    const double grad_ms = g.calls ? 1e3 * g.seconds / double(g.calls) : 0.0;
    std::printf("MPI: %zu ranks; per training step %.1f ms, of which the gradient sum (%zu floats, %.1f KB) %.2f ms "
                "(%.1f %%)",
                ranks.size, step_ms, g.calls ? g.bytes / g.calls / sizeof(float) : 0,
                g.calls ? double(g.bytes) / double(g.calls) / 1024.0 : 0.0, grad_ms,
                step_ms > 0 ? 100.0 * grad_ms / step_ms : 0.0);
    std::printf("; other sums (batch statistics, losses, counts, evaluation included) %.2f ms per step\n",
                1e3 * st.seconds / double(steps));
#endif
}

template <class Net, class In>
int train(const options& o, const nd::data::split& data, bool cifar, const process_group& ranks)
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
    cfg.replicas = ranks.replicas;
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
    if (!o.init_npy.empty()) {
        nd::io::read_parameters_npy(model, o.init_npy);
        std::printf("parameters and buffers from '%s'\n", o.init_npy.c_str());
    }
    std::unique_ptr<nd::optim::optimizer<float>> optimizer;  // nullptr: Adam with cfg.lr
    if (o.optimizer == "sgd")
        optimizer = std::make_unique<nd::optim::SGD<float>>(model.parameters(), cfg.lr);
    nd::Trainer<nd::Model<Net, In>> trainer(model, data, cfg, std::move(loss), std::move(optimizer));
    if (!o.resume.empty()) {
        trainer.resume(o.resume);
        std::printf("resumed from '%s' after epoch %zu\n", o.resume.c_str(), trainer.history().size());
    }
    trainer.on_epoch_end = [&](const std::vector<nd::epoch_metrics>& h) {
        pictures::write_basis(model, o.out + "/basis.png");
        pictures::write_basis_npy(model, o.out + "/basis.npy");
        if (o.export_npy)
            nd::io::write_parameters_npy(model, o.out + "/parameters");
        pictures::write_curves(h, o.out + "/curves.png", o.model + " on " + o.data);
    };
    std::printf("%s on %s (%zu training, %zu test images), %zu parameters, %zu rank%s x %zu threads, batch %zu, up "
                "to %zu epochs\n",
                o.model.c_str(), data.train.source.c_str(), data.train.size(), data.test.size(),
                nd::Model<Net, In>::parameter_count, ranks.size, ranks.size == 1 ? "" : "s", nd::threads(), o.batch,
                o.epochs);
    const auto& h = trainer.fit();
    if (h.empty()) {
        std::printf("nothing to do: the checkpoint already holds %zu epochs\n", trainer.history().size());
        return 0;
    }
    double seconds = 0;
    for (const auto& m : h)
        seconds += m.seconds;
    std::printf("final test accuracy: %.2f %% after %zu epochs (%.0f s); outputs in %s/\n",
                100 * h.back().test_accuracy, h.size(), seconds, o.out.c_str());
    print_statistics(h.back());
    print_traffic(ranks, h);
    return 0;
}

template <class In>
int dispatch(const options& o, const nd::data::split& data, bool cifar, const process_group& ranks)
{
    if (o.model == "cnn")
        return train<paper::CNN, In>(o, data, cifar, ranks);
    if (o.model == "cnmf")
        return train<paper::CNMF, In>(o, data, cifar, ranks);
    if (o.model == "cnn1x1")
        return train<paper::CNN1x1, In>(o, data, cifar, ranks);
    if (o.model == "cnn-plain")
        return train<paper::CNNPlain, In>(o, data, cifar, ranks);
    if (o.model == "cnn1x1-plain")
        return train<paper::CNN1x1Plain, In>(o, data, cifar, ranks);
    if constexpr (In::c == 1) {  // the HaH networks for one-channel 28×28 images
        if (o.model == "hah")
            return train<hah::HaHSmall, In>(o, data, cifar, ranks);
        if (o.model == "hah-baseline")
            return train<hah::HaHSmallBaseline, In>(o, data, cifar, ranks);
    }
    return train<paper::CNMF1x1, In>(o, data, cifar, ranks);
}


/// The settings every rank must share (under MPI): the options that change the run, and fingerprints of the data
/// and of the checkpoint to resume from. Not compared: --threads (results do not depend on it), --out and --quiet.
std::vector<std::pair<std::string, std::string>> shared_settings([[maybe_unused]] const options& o,
                                                                 [[maybe_unused]] const nd::data::split& data)
{
    std::vector<std::pair<std::string, std::string>> v;
#ifdef NMFDSL_WITH_MPI
    auto hex = [](std::uint64_t h) {
        char b[20];
        std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(h));
        return std::string(b);
    };
    auto print_real = [](double x) {
        char b[32];
        std::snprintf(b, sizeof b, "%.17g", x);
        return std::string(b);
    };
    v = {{"--model", o.model}, {"--epochs", std::to_string(o.epochs)}, {"--batch", std::to_string(o.batch)},
         {"--seed", std::to_string(o.seed)}, {"--augment", o.augment}, {"--loss", o.loss}, {"--optimizer", o.optimizer},
         {"--max-batches", std::to_string(o.max_batches)}, {"--max-test", std::to_string(o.max_test)},
         {"--mpi-timeout", print_real(o.mpi_timeout)}};
    for (const auto& g : nd::parameter_groups)
        v.push_back({"--lr-" + std::string(g.name), print_real(o.lr[g.id])});
    for (const auto* d : {&data.train, &data.test}) {
        const char* which = d == &data.train ? "training" : "test";
        const std::uint64_t images = nd::mpi::fingerprint(d->images.data(), d->images.size() * sizeof(float));
        const std::uint64_t labels = nd::mpi::fingerprint(d->labels.data(), d->labels.size());
        v.push_back({std::string(which) + " images", "with fingerprint " + hex(images) + " (" + d->source + ")"});
        v.push_back({std::string(which) + " labels", "with fingerprint " + hex(labels) + " (" + d->source + ")"});
    }
    std::string resume = "none";
    if (!o.resume.empty()) {
        const auto bytes = nd::data::detail::read_file(o.resume);
        resume = "with fingerprint " + hex(nd::mpi::fingerprint(bytes.data(), bytes.size())) + " (" + o.resume + ")";
    }
    v.push_back({"--resume", resume});
    v.push_back({"--init-npy", o.init_npy.empty() ? "none" : o.init_npy});
#endif
    return v;
}

} // namespace

int main(int argc, char** argv)
{
    process_group ranks;
#ifdef NMFDSL_WITH_MPI
    nd::mpi::world world(argc, argv);
    ranks.rank = world.rank();
    ranks.size = world.size();
    if (ranks.size > 1) {
        ranks.replicas = &world;
        ranks.world = &world;
        if (ranks.rank != 0 && !std::freopen("/dev/null", "w", stdout))  // rank 0 alone prints progress
            return 1;
    }
#endif
    // a bad command line: every rank finds out, then all exit with code 2 (no rank is left waiting for another)
    cli::throw_usage_errors() = true;
    options o;
    std::string error;
    try {
        o = parse(argc, argv);
        if (ranks.size > o.batch)
            error = "nmfdsl-train: " + std::to_string(ranks.size) + " ranks but the global batch (--batch " +
                    std::to_string(o.batch) + ") has fewer images; every rank needs at least one";
    } catch (const cli::usage_error& e) {
        error = e.what();
    }
    if (ranks.any_failed(error))
        return 2;
#ifdef NMFDSL_WITH_MPI
    world.set_timeout(o.mpi_timeout);
#endif
    nd::data::split data;
    bool cifar = false;
    try {
        if (o.threads)
            nd::set_threads(o.threads);
        const std::string dir = o.data == "fashion-mnist" ? nd::data::fashion_mnist_directory : o.data;
        data = nd::data::load_directory(dir);
        cifar = data.train.channels == 3;  // colour images (CIFAR-10, or .npy files of them) take its recipe
        error.clear();
    } catch (const std::exception& e) {
        error = e.what();
    }
    if (ranks.any_failed(error))
        return 1;
    // every batch is split over the ranks (Trainer::replica_slice): a short last batch needs one image per rank
    auto check_last_batch = [&](const char* what, std::size_t images) {
        const std::size_t rest = nd::unsplittable_last_batch(images, o.batch, ranks.size);
        if (rest != 0 && error.empty())
            error = "nmfdsl-train: the last " + std::string(what) + " batch holds " + std::to_string(rest) +
                    " images, fewer than the " + std::to_string(ranks.size) + " ranks; choose a --batch that leaves 0 "
                    "or at least " + std::to_string(ranks.size) + " images in it";
    };
    check_last_batch("training", o.max_batches ? std::min(data.train.size(), o.max_batches * o.batch)
                                               : data.train.size());
    check_last_batch("test", o.max_test ? std::min(o.max_test, data.test.size()) : data.test.size());
    if (ranks.any_failed(error))
        return 2;
    // each model is built for one image shape: a mismatch is a one-line message and exit code 2
    const bool vgg = o.model == "hah-vgg16" || o.model == "vgg16",
               small_hah = o.model == "hah" || o.model == "hah-baseline";
    const auto& d = data.train;
    if ((vgg && !cifar) || (small_hah && cifar)) {
        if (ranks.rank == 0)
            std::fprintf(stderr, "nmfdsl-train: --model %s needs %s images, data set '%s' has %zux%zux%zu images\n",
                         o.model.c_str(), vgg ? "3x32x32 (CIFAR-10)" : "1x28x28 (Fashion-MNIST)", d.source.c_str(),
                         d.channels, d.height, d.width);
        return 2;
    }
#ifdef NMFDSL_WITH_MPI
    try {  // ranks started differently stop here, all of them, naming the first difference
        world.check_same(shared_settings(o, data));
    } catch (const nd::mpi::settings_mismatch& e) {
        if (ranks.rank == 0)
            std::fprintf(stderr, "%s\n", e.what());
        return 2;
    } catch (const std::exception& e) {  // e.g. this rank cannot read the checkpoint to resume from
        std::fprintf(stderr, "(rank %zu) %s\n", ranks.rank, e.what());
        ranks.abort(1);
    }
#endif
    try {
        if (o.model == "hah-vgg16")
            return train<hah::HaHVGG16, hah::CifarInput>(o, data, cifar, ranks);
        if (o.model == "vgg16")
            return train<hah::VGG16, hah::CifarInput>(o, data, cifar, ranks);
        if (cifar)
            return dispatch<paper::CifarInput>(o, data, cifar, ranks);
        return dispatch<paper::MnistInput>(o, data, cifar, ranks);
    } catch (const std::exception& e) {
        if (ranks.size == 1) {
            std::fprintf(stderr, "%s\n", e.what());
            return 1;
        }
        // under MPI an error may be this rank's alone (a file it cannot write): stop the whole job
        std::fprintf(stderr, "(rank %zu) %s\n", ranks.rank, e.what());
        ranks.abort(1);
    }
}
