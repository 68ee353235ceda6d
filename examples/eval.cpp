// nmfdsl-eval: robustness of trained networks. Reads checkpoints written by nmfdsl-train (the network is recognised
// by the signature each checkpoint carries) and evaluates each on the test set: clean accuracy, Gaussian or uniform
// noise, PGD and APGD-CE + APGD-T (AutoAttack's custom sequence), attacking through the exact (unrolled) gradient of
// every NMF layer by default. One CSV row per (model, evaluation, strength).
//   nmfdsl-eval --checkpoint runs/cnmf1x1/checkpoint.nmfd --eval clean,noise,pgd --attack-images 1000
// Exit codes: 0 done, 1 a data or numeric error, 2 a bad command line or an unreadable checkpoint.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nmfdsl/attack.hpp>
#include <nmfdsl/io.hpp>

#include "cli.hpp"
#include "hah_models.hpp"
#include "paper_models.hpp"

namespace nd = nmfdsl;
namespace na = nmfdsl::attack;

namespace {

const char* program = "nmfdsl-eval";

const char* usage = R"(usage: nmfdsl-eval --checkpoint FILE [--checkpoint FILE ...] [options]
       nmfdsl-eval --from-csv FILE [--from-csv FILE ...] [--plot FILE]

  --checkpoint F     a checkpoint of nmfdsl-train (any of its models); repeat to compare models
  --name N           the name of the preceding checkpoint's model in the outputs (default: its directory)
  --data D           fashion-mnist, or a directory with the IDX files, CIFAR-10's batches or the four .npy files
                     of nmfdsl-train --help                                      (default fashion-mnist)
  --eval LIST        evaluations, comma-separated: clean, noise, pgd, apgd, gradients, snr, sparsity
                                                                              (default clean,noise,pgd)
                     gradients: cosine between the approximate and the unrolled input gradients (NMF models);
                          with pgd, PGD once more through the approximate gradient (rows pgd-approximate)
                     snr: per layer with weights, 10 log10 of the mean over images of |z|^2 / |z~ - z|^2,
                          z the layer's input on the clean image, z~ on the noisy one (each sigma), on the
                          first --snr-images test images
                     sparsity: the layers' activation statistics on clean images (non-zero share, disparity)
  --images N         test images for clean accuracy, noise and sparsity (default: all)
  --snr-images N     test images for snr                                (default: 1000, or all if fewer)
  --attack-images N  test images for pgd and apgd (default: 1000, or all if fewer)
  --apgd-images N    test images for apgd alone                          (default: as --attack-images)
  --noise K          gaussian | uniform (uniform on [-sqrt(3) s, sqrt(3) s])           (default gaussian)
  --sigmas LIST      noise standard deviations, pixel units of [0, 1]           (default 0.05,0.1,0.2,0.3)
  --repeats R        fresh noise draws per sigma, averaged                                   (default 3)
  --norms LIST       the attacks' norms: linf, l2                                   (default linf,l2)
  --linf LIST        PGD radii in the l-infinity norm                             (default 0.01,0.03,0.1)
  --l2 LIST          PGD radii in the l2 norm                                        (default 0.25,0.5,1)
  --apgd-linf LIST   APGD-CE + APGD-T radii, l-infinity                                    (default 0.03)
  --apgd-l2 LIST     APGD-CE + APGD-T radii, l2                                             (default 0.5)
  --steps S          PGD steps                                                              (default 40)
  --step-size A      PGD step size                                        (default 2.5 * radius / steps)
  --restarts R       PGD restarts                                                            (default 1)
  --no-random-start  PGD starts at the image
  --iterations N     APGD iterations per run                                               (default 100)
  --gradient G       unrolled | approximate | implicit: the NMF layers' gradient for attacks (default unrolled)
  --no-checks        skip the gradient-masking checks that pgd and apgd run (on --check-images images):
                     PGD at l-inf 0.5 leaves <= 1 %; 10, 40, 100 PGD steps never raise the accuracy
                     (0.5 point slack); the Square attack (--queries) beats PGD by at most 2 points;
                     PGD made on --transfer-from's model beats white-box PGD by nothing
  --check-images N   images for the checks                                   (default: 200, or all if fewer)
  --check-eps E      the l-inf radius of the checks                                       (default 0.03)
  --queries Q        Square attack queries per image                                      (default 1000)
  --transfer-from F  a checkpoint (e.g. the standard CNN's) whose PGD images feed the transfer check
  --batch B          images per batch                                                      (default 100)
  --batch-norm M     population | batch: how the paper's networks, whose BatchNorms normalise with the batch's
                     own statistics, are evaluated. population (default): each such BatchNorm is frozen at the
                     mean over --calibration-images training images (in batches of --batch) of the batch
                     statistics, so every image is classified on its own (the clean accuracy with batch
                     statistics is reported too, as clean-batch-statistics); batch: as trained, each image's
                     class then depends on its batch
  --calibration-images N  training images for the population statistics                  (default 10000)
  --seed S           seed of the noise and the random starts                              (default 2022)
  --threads T        worker threads (default: NMFDSL_THREADS, else all cores)
  --csv FILE         where the rows go (default: robustness.csv)
  --plot FILE        accuracy against noise and against the PGD radius, one curve per model (.png or .svg;
                     default: the CSV's name with .png)
  --from-csv F       no evaluation: the summary and the plot of the rows of earlier runs' CSV files (repeat
                     to put several runs in one plot)
  --quiet            no progress bar
  --help             this text
)";

struct model_arg {
    std::string checkpoint, name;
};

struct options {
    std::vector<model_arg> models;
    std::vector<std::string> from_csv;
    std::string data = "fashion-mnist", csv = "robustness.csv", plot;
    std::set<std::string> evals{"clean", "noise", "pgd"};
    std::vector<na::norm> norms{na::norm::linf, na::norm::l2};
    std::size_t images = 0, attack_images = 0, apgd_images = 0, repeats = 3, steps = 40, restarts = 1, iterations = 100,
                batch = 100, threads = 0;
    std::optional<double> step_size;
    bool random_start = true, quiet = false, checks = true;
    std::size_t check_images = 0, queries = 1000, calibration_images = 10000, snr_images = 1000;
    bool population_statistics = true;
    double check_eps = 0.03;
    std::string transfer_from;
    na::noise_kind noise = na::noise_kind::gaussian;
    std::vector<double> sigmas{0.05, 0.1, 0.2, 0.3}, linf{0.01, 0.03, 0.1}, l2{0.25, 0.5, 1.0}, apgd_linf{0.03},
        apgd_l2{0.5};
    nd::nmf_gradient gradient = nd::nmf_gradient::unrolled;
    std::uint64_t seed = 2022;
};

options parse(int argc, char** argv)
{
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                cli::fail(program, a + " needs a value");
            return argv[++i];
        };
        auto count = [&](std::uint64_t min) { return cli::parse_count(program, a, value(), min); };
        auto reals = [&]() { return cli::parse_reals(program, a, value(), 0.0); };
        if (a == "--help" || a == "-h") {
            std::fputs(usage, stdout);
            std::exit(0);
        } else if (a == "--checkpoint")
            o.models.push_back({value(), ""});
        else if (a == "--name") {
            if (o.models.empty())
                cli::fail(program, "--name names the preceding --checkpoint; there is none");
            o.models.back().name = value();
        } else if (a == "--data")
            o.data = value();
        else if (a == "--eval") {
            o.evals.clear();
            for (const auto& e : cli::split(value())) {
                if (e != "clean" && e != "noise" && e != "pgd" && e != "apgd" && e != "gradients" && e != "snr" &&
                    e != "sparsity")
                    cli::fail(program, "unknown evaluation '" + e +
                                           "' (choose clean, noise, pgd, apgd, gradients, snr, sparsity)");
                o.evals.insert(e);
            }
        } else if (a == "--images")
            o.images = count(1);
        else if (a == "--attack-images")
            o.attack_images = count(1);
        else if (a == "--apgd-images")
            o.apgd_images = count(1);
        else if (a == "--snr-images")
            o.snr_images = count(1);
        else if (a == "--noise") {
            const std::string k = value();
            if (k != "gaussian" && k != "uniform")
                cli::fail(program, "unknown noise '" + k + "' (choose gaussian or uniform)");
            o.noise = na::parse_noise(k);
        } else if (a == "--norms") {
            o.norms.clear();
            for (const auto& n : cli::split(value())) {
                if (n != "linf" && n != "l2")
                    cli::fail(program, "unknown norm '" + n + "' (choose linf or l2)");
                o.norms.push_back(na::parse_norm(n));
            }
        } else if (a == "--sigmas")
            o.sigmas = reals();
        else if (a == "--repeats")
            o.repeats = count(1);
        else if (a == "--linf")
            o.linf = reals();
        else if (a == "--l2")
            o.l2 = reals();
        else if (a == "--apgd-linf")
            o.apgd_linf = reals();
        else if (a == "--apgd-l2")
            o.apgd_l2 = reals();
        else if (a == "--steps")
            o.steps = count(1);
        else if (a == "--step-size")
            o.step_size = cli::parse_real(program, a, value(), 0.0);
        else if (a == "--restarts")
            o.restarts = count(1);
        else if (a == "--no-random-start")
            o.random_start = false;
        else if (a == "--iterations")
            o.iterations = count(1);
        else if (a == "--gradient") {
            const std::string g = value();
            if (g == "unrolled")
                o.gradient = nd::nmf_gradient::unrolled;
            else if (g == "approximate")
                o.gradient = nd::nmf_gradient::approximate;
            else if (g == "implicit")
                o.gradient = nd::nmf_gradient::implicit;
            else
                cli::fail(program, "unknown gradient '" + g + "' (choose unrolled, approximate or implicit)");
        } else if (a == "--no-checks")
            o.checks = false;
        else if (a == "--check-images")
            o.check_images = count(1);
        else if (a == "--check-eps")
            o.check_eps = cli::parse_real(program, a, value(), 0.0);
        else if (a == "--queries")
            o.queries = count(1);
        else if (a == "--transfer-from")
            o.transfer_from = value();
        else if (a == "--batch")
            o.batch = count(1);
        else if (a == "--batch-norm") {
            const std::string m = value();
            if (m != "population" && m != "batch")
                cli::fail(program, "unknown --batch-norm '" + m + "' (choose population or batch)");
            o.population_statistics = m == "population";
        } else if (a == "--calibration-images")
            o.calibration_images = count(2);
        else if (a == "--seed")
            o.seed = count(0);
        else if (a == "--threads")
            o.threads = count(1);
        else if (a == "--csv")
            o.csv = value();
        else if (a == "--plot")
            o.plot = value();
        else if (a == "--quiet")
            o.quiet = true;
        else if (a == "--from-csv")
            o.from_csv.push_back(value());
        else
            cli::fail(program, "unknown option '" + a + "'");
    }
    if (!o.from_csv.empty() && !o.models.empty())
        cli::fail(program, "--from-csv plots earlier results and takes no --checkpoint");
    for (const auto& f : o.from_csv)
        if (!std::filesystem::is_regular_file(f))
            cli::fail(program, "CSV file '" + f + "' does not exist");
    if (o.models.empty() && o.from_csv.empty())
        cli::fail(program, "no --checkpoint given");
    for (auto& m : o.models) {
        if (!std::filesystem::exists(m.checkpoint))
            cli::fail(program, "checkpoint '" + m.checkpoint + "' does not exist");
        if (m.name.empty())
            m.name = std::filesystem::path(m.checkpoint).parent_path().filename().string();
        if (m.name.empty())
            m.name = m.checkpoint;
    }
    if (o.plot.empty())
        o.plot = std::filesystem::path(o.csv).replace_extension(".png").string();
    const auto ext = std::filesystem::path(o.plot).extension();
    if (ext != ".png" && ext != ".svg")
        cli::fail(program, "--plot needs a file name ending in .png or .svg, got '" + o.plot + "'");
    if (!o.transfer_from.empty() && !std::filesystem::exists(o.transfer_from))
        cli::fail(program, "checkpoint '" + o.transfer_from + "' does not exist");
    if (o.data != "fashion-mnist" && !std::filesystem::is_directory(o.data))
        cli::fail(program, "data directory '" + o.data + "' does not exist");
    return o;
}

/// One CSV row and one line of the summary.
struct row {
    std::string model, evaluation, norm;
    double strength = 0;
    std::size_t images = 0;
    double accuracy = 0, spread = 0;  ///< mean and standard deviation over repetitions (noise), else 0
    std::size_t non_finite = 0;
    double seconds = 0;
    std::string verdict;  ///< a masking check's "pass" or "FAIL", else empty
};

row make_row(std::string evaluation, std::string norm, double strength, std::size_t images)
{
    row r;
    r.evaluation = std::move(evaluation);
    r.norm = std::move(norm);
    r.strength = strength;
    r.images = images;
    return r;
}

class csv_writer {
public:
    explicit csv_writer(const std::string& path) : path_(path)
    {
        const auto dir = std::filesystem::path(path).parent_path();
        if (!dir.empty())
            std::filesystem::create_directories(dir);
        out_.open(path);
        if (!out_)
            throw nd::io_error("nmfdsl-eval: cannot write '" + path + "'");
        // value: the accuracy (a fraction) for clean, noise, attacks and checks; the mean cosine for
        // gradient-cosine; dB for snr:<layer path>; the statistic for stat:<name>:<layer path>
        out_ << "model,evaluation,norm,strength,images,value,std,non_finite,seconds,verdict\n";
    }
    void add(const row& r)
    {
        char line[512];
        std::snprintf(line, sizeof line, "%s,%s,%s,%.6g,%zu,%.6f,%.6f,%zu,%.2f,%s\n", r.model.c_str(),
                      r.evaluation.c_str(), r.norm.c_str(), r.strength, r.images, r.accuracy, r.spread, r.non_finite,
                      r.seconds, r.verdict.c_str());
        out_ << line;
        out_.flush();
    }

private:
    std::string path_;
    std::ofstream out_;
};

/// The rows of a CSV file csv_writer wrote; a file in another format is a bad argument (exit code 2).
std::vector<row> read_rows(const std::string& path)
{
    std::ifstream in(path);
    std::string line;
    const std::string header = "model,evaluation,norm,strength,images,value,std,non_finite,seconds,verdict";
    if (!std::getline(in, line) || line != header)
        cli::fail(program, "'" + path + "' is not a CSV of nmfdsl-eval: its first line should be '" + header + "'");
    std::vector<row> rows;
    for (std::size_t number = 2; std::getline(in, line); ++number) {
        if (line.empty())
            continue;
        const auto f = cli::split(line);
        auto bad = [&](const std::string& what) {
            cli::fail(program, "'" + path + "' line " + std::to_string(number) + ": " + what);
        };
        if (f.size() != 10)
            bad("expected 10 columns, found " + std::to_string(f.size()));
        auto number_in = [&](const std::string& t, const char* column) {
            char* end = nullptr;
            const double v = std::strtod(t.c_str(), &end);
            if (t.empty() || *end != '\0' || !std::isfinite(v) || v < 0)
                bad(std::string("column ") + column + " should be a number >= 0, found '" + t + "'");
            return v;
        };
        row r = make_row(f[1], f[2], number_in(f[3], "strength"),
                         static_cast<std::size_t>(number_in(f[4], "images")));
        r.model = f[0];
        r.accuracy = std::strtod(f[5].c_str(), nullptr);
        r.spread = number_in(f[6], "std");
        r.non_finite = static_cast<std::size_t>(number_in(f[7], "non_finite"));
        r.seconds = number_in(f[8], "seconds");
        r.verdict = f[9];
        rows.push_back(r);
    }
    return rows;
}

/// "\r[####......] 420/1000 images, 35.2 images/s, robust 61.4 %" on stderr.
class progress_bar {
public:
    progress_bar(bool quiet, std::string what, std::size_t total)
        : quiet_(quiet), what_(std::move(what)), total_(total), start_(std::chrono::steady_clock::now())
    {
    }
    void update(std::size_t done, std::size_t good)
    {
        if (quiet_)
            return;
        const double s = seconds();
        const std::size_t width = 24, filled = total_ ? width * done / total_ : width;
        std::fprintf(stderr, "\r  %-28s [%s%s] %zu/%zu images, %.1f images/s, accuracy %.1f %%   ", what_.c_str(),
                     std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(), done, total_,
                     s > 0 ? double(done) / s : 0.0, done ? 100.0 * double(good) / double(done) : 0.0);
        std::fflush(stderr);
    }
    void finish()
    {
        if (!quiet_)
            std::fprintf(stderr, "\n");
    }
    double seconds() const
    {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }

private:
    bool quiet_;
    std::string what_;
    std::size_t total_;
    std::chrono::steady_clock::time_point start_;
};

/// The test images as flat rows [n, D] for a model input In (centre-cropped when the data's images are larger).
template <class In>
na::image_batch<float> test_rows(const nd::data::dataset& d, std::size_t first, std::size_t n)
{
    na::image_batch<float> x = na::image_batch<float>::from_shape({n, In::size});
    for (std::size_t b = 0; b < n; ++b) {
        const float* img = d.images.data() + (first + b) * d.image_size();
        if constexpr (In::rank == 1) {
            std::copy_n(img, In::size, x.data() + b * In::size);
        } else {
            const std::size_t top = (d.height - In::h) / 2, left = (d.width - In::w) / 2;
            for (std::size_t c = 0; c < In::c; ++c)
                for (std::size_t r = 0; r < In::h; ++r)
                    std::copy_n(img + (c * d.height + top + r) * d.width + left, In::w,
                                x.data() + b * In::size + (c * In::h + r) * In::w);
        }
    }
    return x;
}

/// Loads a checkpoint into the model and applies the settings nmfdsl-train used for it (the HaH recipe's input
/// statistics and BatchNorm mode); checks that the test images fit the model's input. With `calibrate` (and
/// --batch-norm population), BatchNorms that normalise with batch statistics are frozen at population statistics
/// of the first --calibration-images training images.
template <class Net, class In, class M>
void prepare(M& model, const options& o, const model_arg& arg, const nd::data::split& data, bool cifar,
             bool calibrate)
{
    nd::io::load_model(model, arg.checkpoint);
    if constexpr (hah::uses_hah_recipe<Net>) {
        if (cifar)
            hah::apply_hah_recipe<Net>(model, hah::cifar10_mean, hah::cifar10_std);
        else
            hah::apply_hah_recipe<Net>(model, {0.2860}, {0.3530});
    }
    if constexpr (In::rank == 3)
        if (data.test.channels != In::c || data.test.height < In::h || data.test.width < In::w)
            throw nd::data_error("nmfdsl-eval: model '" + arg.name + "' takes " + std::to_string(In::c) + "x" +
                                 std::to_string(In::h) + "x" + std::to_string(In::w) + " images, data set '" +
                                 data.test.source + "' has " + std::to_string(data.test.channels) + "x" +
                                 std::to_string(data.test.height) + "x" + std::to_string(data.test.width));
    if (calibrate && o.population_statistics) {
        const std::size_t n = std::min(o.calibration_images, data.train.size()) / o.batch * o.batch;
        if (n == 0)
            cli::fail(program, "--batch-norm population needs at least --batch (" + std::to_string(o.batch) +
                                   ") training images, the data set has " + std::to_string(data.train.size()));
        const std::size_t layers = na::use_population_statistics(model, test_rows<In>(data.train, 0, n), o.batch);
        if (layers)
            std::printf("%s: %zu BatchNorm layers frozen at population statistics of %zu training images\n",
                        arg.name.c_str(), layers, n);
    }
}

/// How many images the masking checks use.
std::size_t check_count(const options& o, const nd::data::dataset& test)
{
    if (o.check_images > test.size())
        cli::fail(program, "--check-images " + std::to_string(o.check_images) + " is more than the test set's " +
                               std::to_string(test.size()) + " images");
    return o.check_images ? o.check_images : std::min<std::size_t>(200, test.size());
}

/// White-box PGD images (l-inf, --check-eps) made on this model for the first check images: the transfer check's
/// input for the other models.
template <class Net, class In>
na::image_batch<float> craft_transfer(const options& o, const model_arg& arg, const nd::data::split& data,
                                      bool cifar)
{
    const nd::data::dataset& test = data.test;
    nd::Model<Net, In> model;
    prepare<Net, In>(model, o, arg, data, cifar, true);
    model.template configure<nd::cnmf_options>([&](nd::cnmf_options& c) { c.gradient(o.gradient); });
    na::model_classifier target(model);
    const std::size_t n = check_count(o, test);
    na::image_batch<float> out = na::image_batch<float>::from_shape({n, In::size});
    for (std::size_t first = 0; first < n; first += o.batch) {
        const std::size_t b = std::min(o.batch, n - first);
        const auto x = test_rows<In>(test, first, b);
        std::vector<std::size_t> y(test.labels.begin() + std::ptrdiff_t(first),
                                   test.labels.begin() + std::ptrdiff_t(first + b));
        na::pgd_options po;
        po.epsilon = o.check_eps;
        po.steps = o.steps;
        po.seed = o.seed;
        po.first_sample = first;
        const auto r = na::pgd(target, x, y, po);
        std::copy(r.adversarial.begin(), r.adversarial.end(), out.begin() + std::ptrdiff_t(first * In::size));
    }
    std::printf("transfer images: PGD l-inf %.3g on %zu images of %s\n", o.check_eps, n, arg.name.c_str());
    return out;
}

/// How many images an attack left correctly classified, judged by one forward of the whole batch of returned points.
/// The paper's networks normalise with the batch's own statistics even at test time, so an image's class can depend
/// on the other images of its batch; the attacks shrink their batches to the images still in play, and a point
/// found misclassified there may be classified correctly beside the others. Judging the returned batch as a whole
/// uses the same batches as the clean accuracy. Images stopped by a non-finite value are not counted as robust.
template <class Classifier>
std::size_t robust_in_batch(Classifier& target, const na::attack_result<float>& res, const std::vector<std::size_t>& y)
{
    const auto p = target.probabilities(res.adversarial);
    std::size_t robust = 0;
    for (std::size_t b = 0; b < y.size(); ++b)
        robust += !res.non_finite[b] && na::predicted_class(p, b) == y[b];
    return robust;
}

template <class Net, class In>
void evaluate(const options& o, const model_arg& arg, const nd::data::split& data, bool cifar, csv_writer& csv,
              std::vector<row>& summary, const na::image_batch<float>* transfer)
{
    using M = nd::Model<Net, In>;
    const nd::data::dataset& test = data.test;
    for (const auto& [flag, n] : {std::pair{"--images", o.images}, std::pair{"--attack-images", o.attack_images},
                                  std::pair{"--apgd-images", o.apgd_images}})
        if (n > test.size())
            cli::fail(program, std::string(flag) + " " + std::to_string(n) + " is more than the test set's " +
                                   std::to_string(test.size()) + " images");
    M model;
    prepare<Net, In>(model, o, arg, data, cifar, true);
    const std::size_t n_clean = o.images ? o.images : test.size(),
                      n_attack = o.attack_images ? o.attack_images : std::min<std::size_t>(1000, test.size()),
                      n_apgd = o.apgd_images ? o.apgd_images : n_attack;
    const std::size_t nmf_layers =
        model.template configure<nd::cnmf_options>([&](nd::cnmf_options& c) { c.gradient(o.gradient); });
    std::printf("%s: %s, %zu NMF layers (attacked through the %s gradient)\n", arg.name.c_str(),
                arg.checkpoint.c_str(), nmf_layers, nd::gradient_name(o.gradient));
    na::model_classifier target(model);
    auto labels_of = [&](std::size_t first, std::size_t n) {
        std::vector<std::size_t> y(n);
        for (std::size_t b = 0; b < n; ++b)
            y[b] = test.labels[first + b];
        return y;
    };
    auto emit = [&](row r) {
        r.model = arg.name;
        csv.add(r);
        summary.push_back(r);
    };
    // runs `count(x, labels, first)` over the first n test images in batches; returns the accuracy
    auto sweep = [&](const std::string& what, std::size_t n,
                     const std::function<std::size_t(const na::image_batch<float>&, const std::vector<std::size_t>&,
                                                     std::size_t, std::size_t&)>& count,
                     std::size_t& non_finite, double& seconds) {
        progress_bar bar(o.quiet, arg.name + " " + what, n);
        std::size_t good = 0;
        non_finite = 0;
        for (std::size_t first = 0; first < n; first += o.batch) {
            const std::size_t b = std::min(o.batch, n - first);
            good += count(test_rows<In>(test, first, b), labels_of(first, b), first, non_finite);
            bar.update(first + b, good);
        }
        bar.finish();
        seconds = bar.seconds();
        return double(good) / double(n);
    };
    if (o.evals.count("clean")) {
        row r = make_row("clean", "", 0, n_clean);
        r.accuracy = sweep("clean", n_clean, [&](const auto& x, const auto& y, std::size_t, std::size_t&) {
            return na::count_correct(target, x, y);
        }, r.non_finite, r.seconds);
        emit(r);
        // the network as trained, normalising each test batch with its own statistics, for comparison
        if (o.population_statistics) {
            M as_trained;
            prepare<Net, In>(as_trained, o, arg, data, cifar, false);
            std::size_t batch_mode = 0;
            as_trained.template configure<nd::BatchNorm::options>([&](const auto& bn) {
                batch_mode += bn.mode == nd::bn_mode::batch_statistics;
            });
            if (batch_mode > 0) {
                na::model_classifier as_trained_target(as_trained);
                row b = make_row("clean-batch-statistics", "", 0, n_clean);
                b.accuracy = sweep("clean (batch statistics)", n_clean,
                                   [&](const auto& x, const auto& y, std::size_t, std::size_t&) {
                                       return na::count_correct(as_trained_target, x, y);
                                   }, b.non_finite, b.seconds);
                emit(b);
            }
        }
    }
    if (o.evals.count("noise"))
        for (const double sigma : o.sigmas) {
            row r = make_row(std::string("noise-") + na::noise_name(o.noise), "", sigma, n_clean);
            std::vector<double> acc;
            for (std::size_t rep = 0; rep < o.repeats; ++rep) {
                double s = 0;
                acc.push_back(sweep("sigma " + std::to_string(sigma).substr(0, 5) + " #" + std::to_string(rep + 1),
                                    n_clean, [&](const auto& x, const auto& y, std::size_t first, std::size_t&) {
                                        na::noise_options no{o.noise, sigma, o.seed, rep, first};
                                        return na::count_correct(target, na::add_noise(x, no), y);
                                    }, r.non_finite, s));
                r.seconds += s;
            }
            double mean = 0, var = 0;
            for (const double a : acc)
                mean += a / double(acc.size());
            for (const double a : acc)
                var += (a - mean) * (a - mean) / double(std::max<std::size_t>(acc.size() - 1, 1));
            r.accuracy = mean;
            r.spread = std::sqrt(var);
            emit(r);
        }
    // runs `attack(x, labels, first)` batch by batch over the first n images and fills r's accuracy (judged on the
    // returned batches), non-finite count and seconds
    auto attack_sweep = [&](row& r, const std::string& what, std::size_t n,
                            const std::function<na::attack_result<float>(const na::image_batch<float>&,
                                                                         const std::vector<std::size_t>&, std::size_t)>&
                                attack) {
        r.accuracy = sweep(what, n, [&](const auto& x, const auto& y, std::size_t first, std::size_t& bad) {
            const auto res = attack(x, y, first);
            bad += res.non_finite_count();
            return robust_in_batch(target, res, y);
        }, r.non_finite, r.seconds);
        return r.accuracy;
    };
    // PGD with the command line's step size, restarts and start (`as_configured`), or the defaults (the checks)
    auto pgd_with = [&](na::norm n, double eps, std::size_t steps, bool as_configured) {
        return [&, n, eps, steps, as_configured](const na::image_batch<float>& x, const std::vector<std::size_t>& y,
                                                 std::size_t first) {
            na::pgd_options po;
            po.norm = n;
            po.epsilon = eps;
            po.steps = steps;
            if (as_configured) {
                po.step_size = o.step_size;
                po.restarts = o.restarts;
                po.random_start = o.random_start;
            }
            po.seed = o.seed;
            po.first_sample = first;
            return na::pgd(target, x, y, po);
        };
    };
    auto text = [](double v) { return std::to_string(v).substr(0, 5); };
    // PGD at every radius; for an NMF model attacked through an exact gradient, with `gradients` also once more
    // through the approximate (training) gradient, to show what an attack on it would miss
    const bool both_gradients =
        o.evals.count("gradients") && nmf_layers > 0 && o.gradient != nd::nmf_gradient::approximate;
    if (o.evals.count("pgd"))
        for (const auto mode : {o.gradient, nd::nmf_gradient::approximate}) {
            if (mode != o.gradient && !both_gradients)
                continue;
            const bool exact = mode == o.gradient;
            model.template configure<nd::cnmf_options>([&](nd::cnmf_options& c) { c.gradient(mode); });
            for (const auto n : o.norms)
                for (const double eps : n == na::norm::linf ? o.linf : o.l2) {
                    row r = make_row(exact ? "pgd" : "pgd-approximate", na::norm_name(n), eps, n_attack);
                    attack_sweep(r, std::string(exact ? "pgd " : "pgd (approx.) ") + na::norm_name(n) + " " + text(eps),
                                 n_attack, pgd_with(n, eps, o.steps, true));
                    emit(r);
                }
            model.template configure<nd::cnmf_options>([&](nd::cnmf_options& c) { c.gradient(o.gradient); });
        }
    if (o.evals.count("apgd"))
        for (const auto n : o.norms)
            for (const double eps : n == na::norm::linf ? o.apgd_linf : o.apgd_l2) {
                row r = make_row("apgd-ce+t", na::norm_name(n), eps, n_apgd);
                attack_sweep(r, std::string("apgd ") + na::norm_name(n) + " " + text(eps), n_apgd,
                             [&](const auto& x, const auto& y, std::size_t first) {
                                 na::apgd_options ao;
                                 ao.norm = n;
                                 ao.epsilon = eps;
                                 ao.iterations = o.iterations;
                                 ao.seed = o.seed;
                                 ao.first_sample = first;
                                 return na::apgd_ce_then_t(target, x, y, ao);
                             });
                emit(r);
            }
    if (o.checks && (o.evals.count("pgd") || o.evals.count("apgd"))) {
        const std::size_t n = check_count(o, test);
        const double eps = o.check_eps;
        bool all_pass = true;
        auto pgd_accuracy = [&](row& r, double radius, std::size_t steps) {
            return attack_sweep(r, "check: pgd " + text(radius) + ", " + std::to_string(steps) + " steps", n,
                                pgd_with(na::norm::linf, radius, steps, false));
        };
        auto verdict = [&](row r, bool pass, const char* rule) {
            r.verdict = pass ? "pass" : "FAIL";
            all_pass = all_pass && pass;
            std::printf("  masking check %-22s %-4s (%s)\n", r.evaluation.c_str(), r.verdict.c_str(), rule);
            emit(r);
        };
        row large = make_row("check-large-eps", "linf", 0.5, n);
        verdict(large, pgd_accuracy(large, 0.5, o.steps) <= 0.01, "PGD at l-inf 0.5 leaves at most 1 %");
        double acc[3] = {0, 0, 0};
        const std::size_t steps[3] = {10, 40, 100};
        for (int i = 0; i < 3; ++i) {
            row r = make_row("pgd-" + std::to_string(steps[i]) + "-steps", "linf", eps, n);
            acc[i] = pgd_accuracy(r, eps, steps[i]);
            emit(r);
        }
        row more = make_row("check-more-steps", "linf", eps, n);
        more.accuracy = acc[2];
        verdict(more, acc[1] <= acc[0] + 0.005 && acc[2] <= acc[1] + 0.005,
                "10, 40, 100 steps never raise the accuracy by more than 0.5 point");
        if constexpr (In::rank == 3) {
            row sq = make_row("check-square", "linf", eps, n);
            attack_sweep(sq, "check: square " + std::to_string(o.queries) + " queries", n,
                         [&](const auto& x, const auto& y, std::size_t first) {
                             na::square_options so;
                             so.epsilon = eps;
                             so.queries = o.queries;
                             so.channels = In::c;
                             so.height = In::h;
                             so.width = In::w;
                             so.seed = o.seed;
                             so.first_sample = first;
                             return na::square_linf(target, x, y, so);
                         });
            verdict(sq, sq.accuracy >= acc[1] - 0.02, "the Square attack beats 40-step PGD by at most 2 points");
        }
        if (transfer) {
            row tr = make_row("check-transfer", "linf", eps, n);
            tr.accuracy = sweep("check: transfer", n, [&](const auto&, const auto& y, std::size_t first, std::size_t&) {
                na::image_batch<float> xt_rows = xt::view(*transfer, xt::range(first, first + y.size()), xt::all());
                return na::count_correct(target, xt_rows, y);
            }, tr.non_finite, tr.seconds);
            verdict(tr, tr.accuracy >= acc[1], "PGD images of the transfer model beat white-box PGD by nothing");
        }
        if (!all_pass)
            std::printf("  %s: possibly masking its gradients (a check failed)\n", arg.name.c_str());
    }
    if (o.evals.count("snr")) {
        std::set<std::size_t> weighted;  // top-level layers that hold weights: SNR at their inputs
        for (const auto& p : model.parameters())
            weighted.insert(p.layer);
        std::vector<std::string> names(M::layer_count);
        model.for_each_layer([&](auto node) {
            if (node.depth == 0)
                names[std::stoul(node.path)] = node.name();
        });
        typename M::workspace clean_ws, noisy_ws;
        for (const double sigma : o.sigmas) {
            std::vector<double> ratio_sum(M::layer_count + 1, 0.0);
            std::vector<std::size_t> counted(M::layer_count + 1, 0);
            const std::size_t n_snr = std::min(o.snr_images, test.size());
            progress_bar bar(o.quiet, arg.name + " snr sigma " + std::to_string(sigma).substr(0, 5), n_snr);
            for (std::size_t first = 0; first < n_snr; first += o.batch) {
                const std::size_t b = std::min(o.batch, n_snr - first);
                const auto x = test_rows<In>(test, first, b);
                const auto noisy = na::add_noise(x, {o.noise, sigma, o.seed, 0, first});
                auto as_input = [&](const na::image_batch<float>& rows) {
                    typename M::input_tensor t = M::input_tensor::from_shape(nd::detail::batch_shape<In, float>(b));
                    std::copy(rows.begin(), rows.end(), t.begin());
                    return t;
                };
                model.forward(as_input(x), clean_ws);
                model.forward(as_input(noisy), noisy_ws);
                const auto zc = model.layer_boundaries(clean_ws), zn = model.layer_boundaries(noisy_ws);
                for (const std::size_t layer : weighted) {
                    const std::size_t size = zc[layer].size() / b;
                    for (std::size_t i = 0; i < b; ++i) {
                        double signal = 0, error = 0;
                        for (std::size_t k = i * size; k < (i + 1) * size; ++k) {
                            signal += double(zc[layer][k]) * zc[layer][k];
                            error += (double(zn[layer][k]) - zc[layer][k]) * (double(zn[layer][k]) - zc[layer][k]);
                        }
                        if (error > 0) {  // an image the noise did not change has no finite ratio: left out
                            ratio_sum[layer] += signal / error;
                            ++counted[layer];
                        }
                    }
                }
                bar.update(first + b, first + b);
            }
            bar.finish();
            for (const std::size_t layer : weighted) {
                row r = make_row("snr:" + std::to_string(layer), "", sigma, counted[layer]);
                r.accuracy = counted[layer] ? 10 * std::log10(ratio_sum[layer] / double(counted[layer])) : 0.0;
                r.seconds = bar.seconds();
                emit(r);
                std::printf("  SNR at the input of layer %zu (%s), sigma %g: %.2f dB\n", layer, names[layer].c_str(),
                            sigma, r.accuracy);
            }
        }
    }
    if (o.evals.count("sparsity")) {
        std::vector<nd::layer_statistic> mean;
        typename M::workspace ws;  // reused: the layers' buffers are sized once
        for (std::size_t first = 0; first < n_clean; first += o.batch) {
            const std::size_t b = std::min(o.batch, n_clean - first);
            const auto x = test_rows<In>(test, first, b);
            typename M::input_tensor t = M::input_tensor::from_shape(nd::detail::batch_shape<In, float>(b));
            std::copy(x.begin(), x.end(), t.begin());
            model.forward(t, ws);
            const auto stats = model.activation_statistics(ws);
            if (mean.empty())
                for (auto st : stats)
                    mean.push_back({st.path, st.layer, st.name, 0.0});
            for (std::size_t i = 0; i < stats.size() && i < mean.size(); ++i)
                mean[i].value += stats[i].value * double(b) / double(n_clean);
        }
        for (const auto& st : mean) {
            row r = make_row("stat:" + st.name + ":" + st.path, "", 0, n_clean);
            r.accuracy = st.value;
            emit(r);
        }
    }
    if (o.evals.count("gradients") && nmf_layers > 0) {
        // mean over images of cos(∇_x ℓ approximate, ∇_x ℓ unrolled), ℓ the cross-entropy at the clean image
        const std::size_t n = std::min(n_attack, o.batch);
        const auto x = test_rows<In>(test, 0, n);
        const auto y = labels_of(0, n);
        auto input_gradient = [&](nd::nmf_gradient g) {
            model.template configure<nd::cnmf_options>([&](nd::cnmf_options& c) { c.gradient(g); });
            const auto p = target.probabilities(x);
            na::image_batch<float> dl_dp = xt::zeros<float>({n, p.shape()[1]});
            for (std::size_t b = 0; b < n; ++b)
                na::detail::cross_entropy_row(p.data() + b * p.shape()[1], p.shape()[1], y[b],
                                              dl_dp.data() + b * p.shape()[1]);
            return target.input_gradient(dl_dp);
        };
        const auto approx = input_gradient(nd::nmf_gradient::approximate);
        const auto exact = input_gradient(nd::nmf_gradient::unrolled);
        model.template configure<nd::cnmf_options>([&](nd::cnmf_options& c) { c.gradient(o.gradient); });
        double cos_sum = 0;
        const std::size_t D = In::size;
        for (std::size_t b = 0; b < n; ++b) {
            double ab = 0, aa = 0, ee = 0;
            for (std::size_t i = 0; i < D; ++i) {
                ab += double(approx(b, i)) * exact(b, i);
                aa += double(approx(b, i)) * approx(b, i);
                ee += double(exact(b, i)) * exact(b, i);
            }
            cos_sum += aa > 0 && ee > 0 ? ab / std::sqrt(aa * ee) : 0.0;
        }
        row r = make_row("gradient-cosine", "", 0, n);
        r.accuracy = cos_sum / double(n);
        emit(r);
    }
}

/// Accuracy (%) against the noise's σ and against each norm's PGD radius, one curve per model (and one more per NMF
/// model attacked through its approximate gradient); the clean accuracy is the point at 0. Panels for what the rows
/// hold.
void write_robustness_plot(const std::string& path, const std::vector<row>& rows)
{
    std::vector<std::string> models, noises, norms;
    auto note = [](std::vector<std::string>& v, const std::string& e) {
        if (std::find(v.begin(), v.end(), e) == v.end())
            v.push_back(e);
    };
    for (const auto& r : rows) {
        note(models, r.model);
        if (r.evaluation.rfind("noise-", 0) == 0)
            note(noises, r.evaluation);
        if (r.evaluation == "pgd")
            note(norms, r.norm);
    }
    auto panel = [&](const std::string& title, const std::string& x_label,
                     const std::vector<std::pair<std::string, std::string>>& curves, const std::string& norm) {
        nd::io::plot_panel p{title, x_label, "accuracy (%)", {}, 0.0, 100.0, false};
        for (const auto& m : models)
            for (const auto& [evaluation, suffix] : curves) {
                nd::io::plot_series s{m + suffix, {}, {}, {}};
                for (const auto& r : rows)
                    if (r.model == m && (r.evaluation == "clean" || (r.evaluation == evaluation && r.norm == norm))) {
                        s.x.push_back(r.evaluation == "clean" ? 0.0 : r.strength);
                        s.y.push_back(100 * r.accuracy);
                        s.spread.push_back(100 * r.spread);
                    }
                if (s.x.size() > 1)
                    p.series.push_back(s);
            }
        return p;
    };
    std::vector<nd::io::plot_panel> panels;
    for (const auto& noise : noises)
        panels.push_back(panel(std::string(noise == "noise-uniform" ? "Uniform" : "Gaussian") +
                                   " noise (mean of the draws)",
                               "noise standard deviation (pixel units of [0, 1])", {{noise, ""}}, ""));
    for (const auto& n : norms)
        panels.push_back(panel(std::string("PGD, ") + (n == "linf" ? "l-infinity" : "l2"),
                               std::string("radius ") +
                                   (n == "linf" ? "(max. change per pixel)" : "(l2 norm of the change)"),
                               {{"pgd", ""}, {"pgd-approximate", " (approx. gradient)"}}, n));
    if (panels.empty())
        return;
    nd::io::write_plot(path, "Robustness on the test set", panels);
    std::printf("plot written to %s\n", path.c_str());
}

/// The one-screen summary: a line per row.
void print_summary(const std::vector<row>& rows)
{
    std::printf("\n%-16s %-22s %-5s %9s %7s %10s %8s %10s  %s\n", "model", "evaluation", "norm", "strength", "images",
                "value", "std", "non-finite", "check");
    for (const auto& r : rows) {
        const bool other = r.evaluation == "gradient-cosine" || r.evaluation.rfind("snr:", 0) == 0 ||
                           r.evaluation.rfind("stat:", 0) == 0;  // values that are not accuracies
        std::printf("%-16s %-22s %-5s %9.4g %7zu %9.2f%s %8.2f %10zu  %s\n", r.model.c_str(), r.evaluation.c_str(),
                    r.norm.c_str(), r.strength, r.images, other ? r.accuracy : 100 * r.accuracy, other ? " " : "%",
                    100 * r.spread, r.non_finite, r.verdict.c_str());
    }
}

/// Calls evaluate<Net, In> for the network whose signature the checkpoint carries.
struct candidate {
    std::string name, signature;
    std::size_t input_size;
    std::function<void(const options&, const model_arg&, const nd::data::split&, bool, csv_writer&,
                       std::vector<row>&, const na::image_batch<float>*)>
        run;
    std::function<na::image_batch<float>(const options&, const model_arg&, const nd::data::split&, bool)> craft;
};

template <class Net, class In>
candidate make_candidate(const char* name)
{
    return {name, nd::Model<Net, In>::signature(), In::size, &evaluate<Net, In>, &craft_transfer<Net, In>};
}

/// The known network a checkpoint holds, or exit code 2.
const candidate& identify(const std::vector<candidate>& known, const std::string& path)
{
    try {
        const auto c = nd::io::read_checkpoint(path);
        for (const auto& k : known)
            if (k.signature == c.signature)
                return k;
        std::fprintf(stderr, "%s: checkpoint '%s' holds a network nmfdsl-eval does not know: %s\n", program,
                     path.c_str(), c.signature.substr(0, c.signature.find('\n')).c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
    }
    std::exit(2);
}

std::vector<candidate> candidates()
{
    using paper::CifarInput, paper::MnistInput;
    return {make_candidate<paper::CNN, MnistInput>("cnn"),
            make_candidate<paper::CNMF, MnistInput>("cnmf"),
            make_candidate<paper::CNN1x1, MnistInput>("cnn1x1"),
            make_candidate<paper::CNMF1x1, MnistInput>("cnmf1x1"),
            make_candidate<paper::CNNPlain, MnistInput>("cnn-plain"),
            make_candidate<paper::CNN1x1Plain, MnistInput>("cnn1x1-plain"),
            make_candidate<hah::HaHSmall, MnistInput>("hah"),
            make_candidate<hah::HaHSmallBaseline, MnistInput>("hah-baseline"),
            make_candidate<paper::CNN, CifarInput>("cnn (CIFAR-10)"),
            make_candidate<paper::CNMF, CifarInput>("cnmf (CIFAR-10)"),
            make_candidate<paper::CNN1x1, CifarInput>("cnn1x1 (CIFAR-10)"),
            make_candidate<paper::CNMF1x1, CifarInput>("cnmf1x1 (CIFAR-10)"),
            make_candidate<paper::CNNPlain, CifarInput>("cnn-plain (CIFAR-10)"),
            make_candidate<paper::CNN1x1Plain, CifarInput>("cnn1x1-plain (CIFAR-10)"),
            make_candidate<hah::HaHVGG16, hah::CifarInput>("hah-vgg16"),
            make_candidate<hah::VGG16, hah::CifarInput>("vgg16")};
}

} // namespace

int main(int argc, char** argv)
{
    const options o = parse(argc, argv);
    if (!o.from_csv.empty()) {
        std::vector<row> rows;
        for (const auto& f : o.from_csv) {
            const auto part = read_rows(f);
            rows.insert(rows.end(), part.begin(), part.end());
        }
        print_summary(rows);
        try {
            write_robustness_plot(o.plot, rows);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s\n", e.what());
            return 1;
        }
        return 0;
    }
    // an unreadable or foreign checkpoint is a bad argument: exit code 2, before any data is read
    const auto known = candidates();
    std::vector<const candidate*> chosen;
    for (const auto& m : o.models)
        chosen.push_back(&identify(known, m.checkpoint));
    const candidate* transfer_source = o.transfer_from.empty() ? nullptr : &identify(known, o.transfer_from);
    try {
        if (o.threads)
            nd::set_threads(o.threads);
        const std::string dir = o.data == "fashion-mnist" ? nd::data::fashion_mnist_directory : o.data;
        const auto data = nd::data::load_directory(dir);
        const bool cifar = data.test.channels == 3;  // colour images (CIFAR-10, or .npy files of them)
        nd::data::check_unit_range(data.test);
        csv_writer csv(o.csv);
        std::vector<row> summary;
        std::optional<na::image_batch<float>> transfer;
        if (transfer_source && o.checks && (o.evals.count("pgd") || o.evals.count("apgd"))) {
            for (std::size_t i = 0; i < o.models.size(); ++i)
                if (chosen[i]->input_size != transfer_source->input_size)
                    cli::fail(program, "--transfer-from's model (" + transfer_source->name +
                                           ") takes other images than " + o.models[i].name + " (" + chosen[i]->name +
                                           ")");
            transfer = transfer_source->craft(o, {o.transfer_from, transfer_source->name}, data, cifar);
        }
        std::printf("nmfdsl-eval: %zu model(s) on %s (%zu test images), %zu threads\n", o.models.size(),
                    data.test.source.c_str(), data.test.size(), nd::threads());
        for (std::size_t i = 0; i < o.models.size(); ++i) {
            std::printf("%s is %s\n", o.models[i].checkpoint.c_str(), chosen[i]->name.c_str());
            chosen[i]->run(o, o.models[i], data, cifar, csv, summary, transfer ? &*transfer : nullptr);
        }
        print_summary(summary);
        std::printf("rows written to %s\n", o.csv.c_str());
        write_robustness_plot(o.plot, summary);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
