#pragma once
/// @file trainer.hpp
/// Trainer<Model>: mini-batch training — shuffled batches, a loss and an optimiser chosen by the caller (by default
/// the deep-NMF paper's protocol: its loss, Adam with per-group learning rates), ReduceLROnPlateau on the epoch's
/// summed training loss, the lr-limit stopping rule — with evaluation on the test set every epoch, a progress line,
/// metrics in CSV, and a checkpoint after every epoch from which a run resumes exactly (same numbers as if it had
/// not stopped). Models take images (Shape<C,H,W>, cropped and augmented as configured) or flat vectors
/// (Shape<N> with N = the images' C·H·W, no augmentation), and end in a vector of class scores.
///
/// Data-parallel training (train_config::replicas, e.g. nmfdsl::mpi::world): R replicas run the same Trainer, each on
/// a contiguous slice of every global batch — the same images, in the same order, drawn from the same generators as
/// one process would use — and their gradients are summed (core/replicas.hpp) before every optimiser step, so every
/// replica takes the same step. BatchNorm with batch statistics and the HaH cost use the global batch. Replica 0
/// alone prints progress and writes files; every replica keeps the whole state, so a checkpoint written by R
/// replicas resumes on any number.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "../core/error.hpp"
#include "../core/model.hpp"
#include "../core/replicas.hpp"
#include "../core/rng.hpp"
#include "../data/augment.hpp"
#include "../data/dataset.hpp"
#include "../io/checkpoint.hpp"
#include "loss.hpp"
#include "optim.hpp"

namespace nmfdsl {

struct train_config {
    std::size_t epochs = 3;           ///< maximum number of epochs (the lr-limit rule may stop earlier)
    std::size_t batch = 50;
    std::uint64_t seed = 21;
    optim::learning_rates lr = optim::learning_rates::paper();
    data::augmentation augment = data::augmentation::none();
    std::string out_dir;              ///< metrics.csv and checkpoint.nmfd go here (empty: nothing written)
    enum class progress_mode { automatic, bar, lines, quiet } progress = progress_mode::automatic;
    std::size_t max_train_batches = 0;  ///< > 0: only that many batches per epoch (tests, smoke runs)
    std::size_t max_test_samples = 0;   ///< > 0: evaluate on that many test images only
    /// The learning-rate schedule. Empty (default): ReduceLROnPlateau on the summed training loss (the deep-NMF
    /// paper's). Otherwise a multi-step schedule (PyTorch's MultiStepLR): after each epoch listed here, every rate
    /// is multiplied by lr_gamma — e.g. {60, 80} with 0.1 trains epochs 1–60 at lr, 61–80 at lr/10, then lr/100.
    /// Milestones must be ≥ 1 and increasing; lr_gamma in (0, 1].
    std::vector<std::size_t> lr_milestones;
    double lr_gamma = 0.1;
    /// Data-parallel training: the group of replicas this Trainer is one of (nullptr, default: one process). Each
    /// batch (training or test) is split into R contiguous slices whose sizes differ by at most one
    /// (Trainer::replica_slice), so every batch must hold at least R images: batch ≥ R, and a short last batch of
    /// the training or the test set holds at least R images. The group must outlive the Trainer.
    replica_group* replicas = nullptr;
};

/// Every batch is split over the R replicas (Trainer::replica_slice), so the short last batch of `images` images
/// in batches of `batch` must hold 0 or at least R images. Returns its size when it holds 1 … R − 1 (too few to
/// split), else 0. Used by the Trainer and by nmfdsl-train before it starts its ranks' work.
inline std::size_t unsplittable_last_batch(std::size_t images, std::size_t batch, std::size_t replicas)
{
    const std::size_t rest = batch == 0 ? 0 : images % batch;
    return replicas > 1 && rest != 0 && rest < replicas ? rest : 0;
}

struct epoch_metrics {
    std::size_t epoch = 0;            ///< 1-based
    optim::learning_rates lr;         ///< the rates used during the epoch
    double train_loss = 0;            ///< summed over the epoch's batches (the scheduler's metric)
    double train_accuracy = 0, test_accuracy = 0, seconds = 0;
    double train_seconds = 0;         ///< of `seconds`, the training batches alone (not kept in checkpoints)
    /// The layers' local costs (as Model::backward_parameters_and_local_costs reports them), each the mean over the
    /// epoch's batches; written to the metrics CSV as columns cost_<path>. Not kept in checkpoints (a resumed run's
    /// earlier epochs have none).
    std::vector<local_cost> local_costs;
    /// The layers' activation statistics (Model::activation_statistics) on the test set of this epoch's evaluation,
    /// each the mean over the evaluated images; written to the metrics CSV as columns <name>_<path> (e.g.
    /// nonzero_2/3). Not kept in checkpoints.
    std::vector<layer_statistic> statistics;
};

/// A loss for the Trainer: value and dL/dp for scores p [batch, classes] and one label per sample (loss::PaperLoss,
/// loss::CrossEntropy, or any callable of that form).
template <class T>
using loss_function = std::function<loss::loss_result<T>(const xt::xtensor<T, 2>&, std::span<const std::size_t>)>;

template <class M>
class Trainer {
public:
    using T = typename M::value_type;
    using In = typename M::input_shape;
    static_assert(In::rank == 3 || In::rank == 1, "nmfdsl: Trainer needs an image (Shape<C,H,W>) or vector input");
    static_assert(M::output_shape::rank == 1, "nmfdsl: Trainer needs a model that ends in a vector of class scores");

    /// The paper's protocol: its loss and Adam with the learning rates cfg.lr.
    Trainer(M& model, const data::split& data, train_config cfg)
        : Trainer(model, data, std::move(cfg), loss::PaperLoss{}, nullptr)
    {
    }

    /// A loss and an optimiser of the caller's choice. The optimiser must have been built over model.parameters();
    /// nullptr means Adam with cfg.lr.
    Trainer(M& model, const data::split& data, train_config cfg, loss_function<T> loss,
            std::unique_ptr<optim::optimizer<T>> opt)
        : model_(model), data_(data), cfg_(std::move(cfg)), loss_(std::move(loss)), opt_(std::move(opt)),
          shuffle_rng_(seed{cfg_.seed}), augment_rng_(seed{cfg_.seed ^ 0x5eedULL})
    {
        if (cfg_.batch == 0)
            throw argument_error("nmfdsl: Trainer: the batch size must be at least 1");
        if (!loss_)
            throw argument_error("nmfdsl: Trainer: the loss function is empty");
        for (std::size_t i = 0; i < cfg_.lr_milestones.size(); ++i)
            if (cfg_.lr_milestones[i] == 0 || (i > 0 && cfg_.lr_milestones[i] <= cfg_.lr_milestones[i - 1]))
                throw argument_error("nmfdsl: Trainer: lr_milestones must be increasing epochs >= 1; entry " +
                                     std::to_string(i) + " is " + std::to_string(cfg_.lr_milestones[i]));
        if (!(cfg_.lr_gamma > 0.0 && cfg_.lr_gamma <= 1.0))
            throw argument_error("nmfdsl: Trainer: lr_gamma must lie in (0, 1], got " + std::to_string(cfg_.lr_gamma));
        if (!opt_)
            opt_ = std::make_unique<optim::Adam<T>>(model.parameters(), cfg_.lr);
        check_images(data_.train);
        check_images(data_.test);
        check_replica_split();
        if (!cfg_.out_dir.empty() && writes_files())
            std::filesystem::create_directories(cfg_.out_dir);
    }

    /// The slice [begin, end) of a batch of n images that replica `rank` of `replicas` takes: contiguous, in
    /// replica order, sizes differing by at most one (the first n mod R replicas take one more).
    static std::pair<std::size_t, std::size_t> replica_slice(std::size_t n, std::size_t rank, std::size_t replicas)
    {
        const std::size_t base = n / replicas, extra = n % replicas;
        const std::size_t begin = rank * base + std::min(rank, extra);
        return {begin, begin + base + (rank < extra ? 1 : 0)};
    }

    /// Called after every epoch (after the checkpoint is written), e.g. to draw pictures; on replica 0 only.
    std::function<void(const std::vector<epoch_metrics>&)> on_epoch_end;

    const std::vector<epoch_metrics>& history() const { return history_; }
    optim::optimizer<T>& optimizer() { return *opt_; }
    std::string checkpoint_path() const { return cfg_.out_dir.empty() ? "" : cfg_.out_dir + "/checkpoint.nmfd"; }
    std::string metrics_path() const { return cfg_.out_dir.empty() ? "" : cfg_.out_dir + "/metrics.csv"; }

    /// Trains until cfg.epochs epochs are done or every learning rate is below 1e-9.
    const std::vector<epoch_metrics>& fit()
    {
        const replica_scope scope(cfg_.replicas);
        while (history_.size() < cfg_.epochs && !optim::learning_rates_exhausted(opt_->rates()))
            run_epoch();
        return history_;
    }

    /// Test accuracy on a data set, in batches of cfg.batch in order (batch statistics, as the paper evaluates).
    /// Also gathers the layers' activation statistics over the same images (evaluation_statistics()).
    /// With replicas, each evaluates its slice of every batch and the counts are summed.
    double evaluate(const data::dataset& d)
    {
        const replica_scope scope(cfg_.replicas);
        const std::size_t n = cfg_.max_test_samples ? std::min(cfg_.max_test_samples, d.size()) : d.size();
        check_split("test", n);
        double correct = 0;
        evaluation_statistics_.clear();
        model_.set_training(false);
        for (std::size_t b0 = 0; b0 < n; b0 += cfg_.batch) {
            const std::size_t b = std::min(cfg_.batch, n - b0);
            const auto [first, last] = my_slice(b);
            std::vector<std::size_t> idx(last - first);
            for (std::size_t i = 0; i < idx.size(); ++i)
                idx[i] = b0 + first + i;
            const auto x = make_batch(d, idx, false);
            const auto p = model_.forward(x);
            correct += double(count_correct(p, d, idx));
            const auto stats = model_.activation_statistics();
            if (evaluation_statistics_.empty())
                for (auto s : stats)
                    evaluation_statistics_.push_back({s.path, s.layer, s.name, 0.0});
            for (std::size_t i = 0; i < stats.size() && i < evaluation_statistics_.size(); ++i)  // weighted by images
                evaluation_statistics_[i].value += stats[i].value * double(idx.size()) / double(n);
        }
        // the replicas' counts and statistics, summed in one collective
        std::vector<double> totals{correct};
        for (const auto& st : evaluation_statistics_)
            totals.push_back(st.value);
        add_other_replicas(totals);
        correct = totals[0];
        for (std::size_t i = 0; i < evaluation_statistics_.size(); ++i)
            evaluation_statistics_[i].value = totals[i + 1];
        model_.set_training(true);
        return n ? correct / double(n) : 0.0;
    }

    /// The activation statistics of the last evaluate(), each the mean over its images.
    const std::vector<layer_statistic>& evaluation_statistics() const { return evaluation_statistics_; }

    /// Restores model, optimiser, schedule, RNGs and history from a checkpoint of this network.
    /// Every replica reads the file itself.
    void resume(const std::string& path)
    {
        const auto c = io::load_model(model_, path);
        opt_->load_state(c.optimizer);
        decode_state(c.trainer, path);
    }

private:
    std::size_t replica_count() const { return cfg_.replicas ? cfg_.replicas->size() : 1; }
    std::size_t replica_rank() const { return cfg_.replicas ? cfg_.replicas->rank() : 0; }
    /// Replica 0 prints and writes the files.
    bool writes_files() const { return replica_rank() == 0; }
    std::pair<std::size_t, std::size_t> my_slice(std::size_t n) const
    {
        return replica_slice(n, replica_rank(), replica_count());
    }

    /// Σ over the replicas, in place (nothing with one).
    void add_other_replicas(std::vector<double>& v) const
    {
        if (replica_count() > 1)
            cfg_.replicas->sum(std::span<double>(v));
    }

    /// A batch of n images must give every replica at least one image.
    void check_split(const char* what, std::size_t n) const
    {
        const std::size_t R = replica_count();
        if (const std::size_t short_batch = unsplittable_last_batch(n, cfg_.batch, R))
            throw argument_error("nmfdsl: Trainer: the last " + std::string(what) + " batch holds " +
                                 std::to_string(short_batch) + " images, fewer than the " + std::to_string(R) +
                                 " replicas; choose a batch size or image count that leaves 0 or at least " +
                                 std::to_string(R) + " images in the last batch");
    }

    void check_replica_split() const
    {
        const std::size_t R = replica_count();
        if (R == 1)
            return;
        if (cfg_.batch < R)
            throw argument_error("nmfdsl: Trainer: the batch (" + std::to_string(cfg_.batch) +
                                 " images) is smaller than the number of replicas (" + std::to_string(R) + ")");
        std::size_t used = data_.train.size();
        if (cfg_.max_train_batches)
            used = std::min(used, cfg_.max_train_batches * cfg_.batch);
        check_split("training", used);
        check_split("test", cfg_.max_test_samples ? std::min(cfg_.max_test_samples, data_.test.size())
                                                  : data_.test.size());
    }

    void check_images(const data::dataset& d) const
    {
        if (d.size() == 0)
            throw data_error("nmfdsl: data set '" + d.source + "' is empty");
        if constexpr (In::rank == 1) {
            if (d.image_size() != In::size)
                throw data_error("nmfdsl: the model expects vectors of " + std::to_string(In::size) +
                                 " values, data set '" + d.source + "' has " + std::to_string(d.channels) + "x" +
                                 std::to_string(d.height) + "x" + std::to_string(d.width) + " images (" +
                                 std::to_string(d.image_size()) + " values)");
            if (cfg_.augment.flip || cfg_.augment.jitter() || cfg_.augment.pad > 0)
                throw argument_error("nmfdsl: Trainer: a model with vector input takes its images whole; "
                                     "augmentation must be none");
        } else if (d.channels != In::c || d.height < In::h || d.width < In::w)
            throw data_error("nmfdsl: the model expects " + std::to_string(In::c) + "x" + std::to_string(In::h) +
                             "x" + std::to_string(In::w) + " images, data set '" + d.source + "' has " +
                             std::to_string(d.channels) + "x" + std::to_string(d.height) + "x" +
                             std::to_string(d.width));
    }

    /// A batch [n, C, H, W] (cropped, augmented in training) or [n, N] (whole images, flattened) of the images idx.
    /// In training, `draws` images' augmentations are drawn (the global batch's: every replica draws them all, so
    /// the generator stays the same on all) and idx are the draws [first, first + idx.size()).
    typename M::input_tensor make_batch(const data::dataset& d, const std::vector<std::size_t>& idx, bool train,
                                        std::size_t first = 0, std::size_t draws = 0)
    {
        auto x = M::input_tensor::from_shape(nmfdsl::detail::batch_shape<In, T>(idx.size()));
        if constexpr (In::rank == 1) {
            for (std::size_t i = 0; i < idx.size(); ++i)
                std::copy_n(d.images.data() + idx[i] * d.image_size(), In::size, x.data() + i * In::size);
        } else {
            const data::augmentation a = train ? cfg_.augment : data::augmentation::none();
            const std::size_t slack_h = d.height + 2 * a.pad - In::h, slack_w = d.width + 2 * a.pad - In::w;
            data::augment_draw shared;
            if (a.per_batch)
                shared = data::draw_augmentation(a, slack_h, slack_w, augment_rng_);
            std::vector<float> img(In::size);
            draws = std::max(draws, first + idx.size());
            for (std::size_t k = 0; k < draws; ++k) {
                const auto draw = a.per_batch ? shared : data::draw_augmentation(a, slack_h, slack_w, augment_rng_);
                if (k < first || k >= first + idx.size())
                    continue;  // another replica's image
                const std::size_t i = k - first;
                data::apply_augmentation(d.images.data() + idx[i] * d.image_size(), d.channels, d.height, d.width, draw,
                                         In::h, In::w, img.data());
                std::copy(img.begin(), img.end(), x.data() + i * In::size);
            }
        }
        return x;
    }

    static std::size_t count_correct(const xt::xtensor<T, 2>& p, const data::dataset& d,
                                     const std::vector<std::size_t>& idx)
    {
        std::size_t correct = 0;
        for (std::size_t i = 0; i < idx.size(); ++i) {
            std::size_t best = 0;
            for (std::size_t c = 1; c < p.shape()[1]; ++c)
                if (p(i, c) > p(i, best))
                    best = c;
            correct += best == d.labels[idx[i]];
        }
        return correct;
    }

    void run_epoch()
    {
        const std::size_t epoch = history_.size() + 1;
        const auto start = std::chrono::steady_clock::now();
        const data::dataset& d = data_.train;
        std::vector<std::size_t> order(d.size());
        for (std::size_t i = 0; i < order.size(); ++i)
            order[i] = i;
        for (std::size_t i = order.size(); i > 1; --i)  // Fisher–Yates with our own generator
            std::swap(order[i - 1], order[static_cast<std::size_t>(shuffle_rng_.below(i))]);
        std::size_t batches = (order.size() + cfg_.batch - 1) / cfg_.batch;
        if (cfg_.max_train_batches)
            batches = std::min(batches, cfg_.max_train_batches);
        epoch_metrics m;
        m.epoch = epoch;
        m.lr = opt_->rates();
        std::size_t seen = 0, correct = 0;
        progress_ = progress_state{};
        for (std::size_t b = 0; b < batches; ++b) {
            const std::size_t b0 = b * cfg_.batch, n = std::min(cfg_.batch, order.size() - b0);
            const auto [first, last] = my_slice(n);  // this replica's images of the batch (all of it alone)
            std::vector<std::size_t> idx(order.begin() + b0 + first, order.begin() + b0 + last);
            std::vector<std::size_t> labels(idx.size());
            for (std::size_t i = 0; i < idx.size(); ++i)
                labels[i] = d.labels[idx[i]];
            const auto x = make_batch(d, idx, true, first, n);
            const auto p = model_.forward(x);
            auto l = loss_(p, labels);
            // the loss of the global batch: a mean over it weights each replica's mean by its share
            double batch_loss = double(l.value), batch_correct = double(count_correct(p, d, idx));
            if (replica_count() > 1) {
                if (l.batch_mean) {
                    const double share = double(idx.size()) / double(n);
                    l.grad *= T(share);
                    batch_loss *= share;
                }
                std::vector<double> totals{batch_loss, batch_correct};
                add_other_replicas(totals);
                batch_loss = totals[0];
                batch_correct = totals[1];
            }
            if (!std::isfinite(batch_loss))
                throw numeric_error("nmfdsl: the training loss became non-finite at epoch " + std::to_string(epoch) +
                                    ", batch " + std::to_string(b + 1) + "; training stopped" +
                                    (checkpoint_path().empty() ? std::string()
                                                               : ", the last good checkpoint is '" +
                                                                     checkpoint_path() + "'"));
            model_.zero_grad();
            // no input gradient; the layer-local objectives (none in most networks) added in the same sweep
            auto costs = model_.backward_parameters_and_local_costs(l.grad);
            if (replica_count() > 1) {
                cfg_.replicas->sum(model_.flat_gradients());  // every replica now holds the global batch's gradient
                std::vector<double> cost_values;
                for (const auto& c : costs)
                    cost_values.push_back(c.value);
                add_other_replicas(cost_values);
                for (std::size_t i = 0; i < costs.size(); ++i)
                    costs[i].value = cost_values[i];
            }
            record_local_costs(m, b + 1, costs);
            opt_->step();
            m.train_loss += batch_loss;
            correct += std::size_t(batch_correct);
            seen += n;
            report_progress(epoch, b + 1, batches, seen, m.train_loss / double(b + 1), start);
        }
        m.train_accuracy = double(correct) / double(seen);
        m.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        m.test_accuracy = evaluate(data_.test);
        m.statistics = evaluation_statistics_;
        if (cfg_.lr_milestones.empty())
            scheduler_.step(m.train_loss, opt_->rates());
        else if (std::find(cfg_.lr_milestones.begin(), cfg_.lr_milestones.end(), epoch) != cfg_.lr_milestones.end())
            for (double& r : opt_->rates().lr)
                r *= cfg_.lr_gamma;
        m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        history_.push_back(m);
        finish_progress(m);
        if (!writes_files())
            return;
        if (!cfg_.out_dir.empty()) {
            save_checkpoint(checkpoint_path());
            write_metrics();
        }
        if (on_epoch_end)
            on_epoch_end(history_);
    }

    // ---- progress ----
    struct progress_state {
        std::chrono::steady_clock::time_point last{};
        std::size_t last_quarter = 0;
    };

    bool use_bar() const
    {
        if (cfg_.progress == train_config::progress_mode::bar)
            return true;
        return cfg_.progress == train_config::progress_mode::automatic && ::isatty(::fileno(stdout));
    }

    void report_progress(std::size_t epoch, std::size_t done, std::size_t total, std::size_t images, double loss,
                         std::chrono::steady_clock::time_point start)
    {
        if (cfg_.progress == train_config::progress_mode::quiet || !writes_files())
            return;
        const auto now = std::chrono::steady_clock::now();
        const double secs = std::chrono::duration<double>(now - start).count();
        const double rate = secs > 0 ? double(images) / secs : 0.0;
        if (use_bar()) {
            if (done != total && now - progress_.last < std::chrono::milliseconds(200))
                return;
            progress_.last = now;
            const std::size_t width = 30, filled = width * done / total;
            std::printf("\repoch %zu [%s%s] %zu/%zu  %.0f img/s  loss %.4f ", epoch, std::string(filled, '#').c_str(),
                        std::string(width - filled, '.').c_str(), done, total, rate, loss);
            std::fflush(stdout);
        } else {
            const std::size_t quarter = 4 * done / total;
            if (quarter > progress_.last_quarter && done != total) {
                progress_.last_quarter = quarter;
                std::printf("epoch %zu: %zu/%zu batches, %.0f img/s, loss %.4f\n", epoch, done, total, rate, loss);
                std::fflush(stdout);
            }
        }
    }

    void finish_progress(const epoch_metrics& m)
    {
        if (cfg_.progress == train_config::progress_mode::quiet || !writes_files())
            return;
        if (use_bar())
            std::printf("\n");
        std::printf("epoch %zu: train loss %.4f, train accuracy %.2f %%, test accuracy %.2f %%, %.1f s\n", m.epoch,
                    m.train_loss, 100 * m.train_accuracy, 100 * m.test_accuracy, m.seconds);
        std::fflush(stdout);
    }

    /// Adds the running means of the layers' local costs of this batch to m.
    static void record_local_costs(epoch_metrics& m, std::size_t batches_so_far, const std::vector<local_cost>& costs)
    {
        if (m.local_costs.empty())
            m.local_costs = costs;
        else
            for (std::size_t i = 0; i < costs.size() && i < m.local_costs.size(); ++i)
                m.local_costs[i].value += (costs[i].value - m.local_costs[i].value) / double(batches_so_far);
    }

    // ---- files ----
    void write_metrics() const
    {
        std::ostringstream os;
        os << "epoch";
        for (const auto& g : parameter_groups)
            os << ",lr_" << g.name;
        os << ",train_loss,train_accuracy,test_accuracy,seconds";
        // one column per layer with a local cost ("cost_<path>"), as the latest epoch reports them; epochs restored
        // from a checkpoint (which keeps no local costs) leave those cells empty
        std::vector<std::string> cost_paths;
        if (!history_.empty())
            for (const auto& c : history_.back().local_costs)
                cost_paths.push_back(c.path);
        for (const auto& p : cost_paths)
            os << ",cost_" << p;
        // and one per activation statistic ("<name>_<path>"), likewise
        std::vector<std::string> stat_columns;
        if (!history_.empty())
            for (const auto& st : history_.back().statistics)
                stat_columns.push_back(st.name + "_" + st.path);
        for (const auto& col : stat_columns)
            os << ',' << col;
        os << '\n' << std::setprecision(10);
        for (const auto& m : history_) {
            os << m.epoch;
            for (double r : m.lr.lr)
                os << ',' << r;
            os << ',' << m.train_loss << ',' << m.train_accuracy << ',' << m.test_accuracy << ',' << m.seconds;
            for (const auto& p : cost_paths) {
                os << ',';
                for (const auto& c : m.local_costs)
                    if (c.path == p)
                        os << c.value;
            }
            for (const auto& col : stat_columns) {
                os << ',';
                for (const auto& st : m.statistics)
                    if (st.name + "_" + st.path == col)
                        os << st.value;
            }
            os << '\n';
        }
        const std::string text = os.str();
        io::detail::write_atomically(metrics_path(), std::vector<std::uint8_t>(text.begin(), text.end()));
    }

    void save_checkpoint(const std::string& path) const
    {
        io::checkpoint c;
        c.signature = M::signature();
        const auto params = model_.flat_parameters();
        const auto buffers = model_.flat_buffers();
        const auto* pb = reinterpret_cast<const std::uint8_t*>(params.data());
        const auto* bb = reinterpret_cast<const std::uint8_t*>(buffers.data());
        c.params.assign(pb, pb + params.size_bytes());
        c.buffers.assign(bb, bb + buffers.size_bytes());
        c.optimizer = opt_->state();
        c.trainer = encode_state();
        io::write_checkpoint(path, c);
    }

    std::vector<std::uint8_t> encode_state() const
    {
        std::vector<double> v;
        for (auto w : shuffle_rng_.state())
            v.push_back(std::bit_cast<double>(w));
        for (auto w : augment_rng_.state())
            v.push_back(std::bit_cast<double>(w));
        v.push_back(scheduler_.best);
        v.push_back(double(scheduler_.bad_epochs));
        v.push_back(double(scheduler_.reductions));
        v.push_back(double(history_.size()));
        for (const auto& m : history_) {
            v.push_back(double(m.epoch));
            v.insert(v.end(), m.lr.lr.begin(), m.lr.lr.end());
            v.push_back(m.train_loss);
            v.push_back(m.train_accuracy);
            v.push_back(m.test_accuracy);
            v.push_back(m.seconds);
        }
        const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
        return {p, p + v.size() * sizeof(double)};
    }

    void decode_state(const std::vector<std::uint8_t>& bytes, const std::string& path)
    {
        std::vector<double> v(bytes.size() / sizeof(double));
        if (!v.empty())
            std::memcpy(v.data(), bytes.data(), v.size() * sizeof(double));
        constexpr std::size_t per_epoch = 5 + optim::group_count;
        // The trainer state (and the optimisers' states) store one learning rate per group: a change of the groups
        // changes the checkpoint layout, so it must come with a new io::checkpoint_version (and this assert moved).
        static_assert(optim::group_count == 6 && io::checkpoint_version == 1,
                      "nmfdsl: the parameter groups changed: bump io::checkpoint_version and update this check");
        auto bad = [&] { return io_error("nmfdsl: checkpoint '" + path + "' has a malformed trainer state"); };
        if (v.size() < 12)
            throw bad();
        std::array<std::uint64_t, 4> s{};
        for (int i = 0; i < 4; ++i)
            s[i] = std::bit_cast<std::uint64_t>(v[i]);
        shuffle_rng_.set_state(s);
        for (int i = 0; i < 4; ++i)
            s[i] = std::bit_cast<std::uint64_t>(v[4 + i]);
        augment_rng_.set_state(s);
        scheduler_.best = v[8];
        scheduler_.bad_epochs = static_cast<std::size_t>(v[9]);
        scheduler_.reductions = static_cast<std::size_t>(v[10]);
        const std::size_t epochs = static_cast<std::size_t>(v[11]);
        if (v.size() != 12 + epochs * per_epoch)
            throw bad();
        history_.clear();
        for (std::size_t e = 0; e < epochs; ++e) {
            const double* q = v.data() + 12 + e * per_epoch;
            epoch_metrics m;
            m.epoch = static_cast<std::size_t>(q[0]);
            std::copy(q + 1, q + 1 + optim::group_count, m.lr.lr.begin());
            m.train_loss = q[1 + optim::group_count];
            m.train_accuracy = q[2 + optim::group_count];
            m.test_accuracy = q[3 + optim::group_count];
            m.seconds = q[4 + optim::group_count];
            history_.push_back(m);
        }
    }

    M& model_;
    const data::split& data_;
    train_config cfg_;
    loss_function<T> loss_;
    std::unique_ptr<optim::optimizer<T>> opt_;
    optim::ReduceLROnPlateau scheduler_;
    rng shuffle_rng_, augment_rng_;
    std::vector<epoch_metrics> history_;
    std::vector<layer_statistic> evaluation_statistics_;
    progress_state progress_;
};

} // namespace nmfdsl
