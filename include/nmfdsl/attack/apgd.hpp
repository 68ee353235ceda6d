#pragma once
/// @file apgd.hpp
/// Auto-PGD (Croce & Hein, ICML 2020): PGD with momentum and a step size that halves when progress stalls, and the
/// two runs that AutoAttack's "custom" version uses in sequence: APGD-CE (cross-entropy) and APGD-T (the targeted
/// difference-of-logits-ratio loss against each of the 9 classes the clean image finds most likely after its own).
///
/// One run of N iterations, per image, with η⁰ = 2ε and x⁰ a random point (ℓ∞: x + ε·t/‖t‖∞, t ~ U[−1, 1]^D;
/// ℓ2: x + ε·t/‖t‖₂, t ~ N(0, I)), clipped to [0, 1]:
///   z = Π(x^k + η^k·s(∇f(x^k))),   x^{k+1} = Π(x^k + a·(z − x^k) + (1 − a)·(x^k − x^{k−1})),
/// s = sign (ℓ∞) or ∇/‖∇‖₂ (ℓ2), a = 1 on the first iteration and 0.75 after, Π the projection onto the ball and the
/// box. Checkpoints after w₁ = ⌊0.22 N⌋ iterations, then at gaps shrinking by ⌊0.03 N⌋ down to ⌊0.06 N⌋ (all at
/// least 1): for N = 100 after 22, 41, 57, 70, 80, 87, 93, 99 iterations. At a checkpoint closing a window of k
/// iterations the step size halves, and the iterate and its gradient go back to the best point so far, when
///   (1) f rose in at most ρ·k of the window's k iterations (ρ = 0.75), or
///   (2) the step size was not halved at the previous checkpoint and the best f has not risen since.
/// Condition (2) is not checked at the first checkpoint (as AutoAttack does). The first window's first comparison is
/// with f(x⁰).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "pgd.hpp"

namespace nmfdsl::attack {

struct apgd_options {
    attack::norm norm = norm::linf;
    double epsilon = 8.0 / 255;
    std::size_t iterations = 100;
    double rho = 0.75;           ///< the share of rising steps below which a window counts as stalled
    double momentum = 0.75;      ///< a
    std::size_t targets = 9;     ///< APGD-T: how many target classes (the most likely after the true one)
    std::uint64_t seed = 0;
    std::size_t first_sample = 0;  ///< index of the batch's first image in the data set: seeds its random start

    /// Throws argument_error naming the option for ε < 0 or not finite, iterations = 0, ρ or a outside [0, 1],
    /// targets = 0.
    void validate() const
    {
        if (!(std::isfinite(epsilon) && epsilon >= 0))
            throw argument_error("nmfdsl::attack::apgd: epsilon must be a finite value >= 0, got " +
                                 std::to_string(epsilon));
        if (iterations == 0)
            throw argument_error("nmfdsl::attack::apgd: iterations must be at least 1, got 0");
        if (!(rho >= 0 && rho <= 1) || !(momentum >= 0 && momentum <= 1))
            throw argument_error("nmfdsl::attack::apgd: rho and momentum must lie in [0, 1], got " +
                                 std::to_string(rho) + " and " + std::to_string(momentum));
        if (targets == 0)
            throw argument_error("nmfdsl::attack::apgd: targets must be at least 1, got 0");
    }
};

/// The iteration counts after which APGD checks its step size (see the file comment).
inline std::vector<std::size_t> apgd_checkpoints(std::size_t iterations)
{
    const auto at_least_one = [](double v) { return std::max<std::size_t>(std::size_t(v), 1); };
    std::size_t window = at_least_one(0.22 * double(iterations));
    const std::size_t shortest = at_least_one(0.06 * double(iterations)),
                      shrink = at_least_one(0.03 * double(iterations));
    std::vector<std::size_t> w;
    for (std::size_t at = window; at <= iterations; at += window) {
        w.push_back(at);
        window = window > shrink + shortest ? window - shrink : shortest;
    }
    return w;
}

/// What one APGD run records about image 0 of its batch, for tests and diagnostics.
struct apgd_trace {
    std::vector<double> loss;       ///< f(x^k) for k = 0 … N
    std::vector<double> step_size;  ///< η used by iteration k = 0 … N − 1
    std::vector<std::size_t> halved_after;  ///< the checkpoints at which η was halved
};

/// One batch of APGD on an objective: f(points [M, D], which [M] image indices, loss [M], grad [M, D],
/// wrong [M]) fills f and ∇f at each point and marks points that count as misclassified. Images stop once a point
/// is misclassified (broken) or f or ∇f is not finite (non_finite). Returns, per image, the misclassified point if one
/// was found, else the point of highest f.
/// Image b's random start is drawn from the stream of (seed, round, first_sample + index[b]) (index empty: b).
template <class T, class Objective>
attack_result<T> apgd_run(Objective&& f, const image_batch<T>& x, const apgd_options& o, std::uint64_t round,
                          std::span<const std::size_t> index = {}, apgd_trace* trace = nullptr)
{
    const std::size_t N = x.shape()[0], D = x.shape()[1];
    attack_result<T> r;
    r.adversarial = x;
    r.broken.assign(N, 0);
    r.non_finite.assign(N, 0);
    r.loss.assign(N, T(0));
    if (N == 0)
        return r;
    const double eps = o.epsilon;
    // per-image state
    image_batch<T> cur = xt::xtensor<T, 2>::from_shape({N, D}), old, best, grad, grad_best;
    std::vector<T> t(D);
    for (std::size_t b = 0; b < N; ++b) {
        rng g = detail::image_stream(o.seed, round, o.first_sample + (index.empty() ? b : index[b]));
        double scale = 0;
        for (std::size_t i = 0; i < D; ++i) {
            t[i] = o.norm == norm::linf ? static_cast<T>(2 * g.uniform01<double>() - 1) : detail::standard_normal<T>(g);
            scale = o.norm == norm::linf ? std::max(scale, std::abs(double(t[i]))) : scale + double(t[i]) * t[i];
        }
        scale = o.norm == norm::linf ? scale : std::sqrt(scale);
        for (std::size_t i = 0; i < D; ++i)
            cur(b, i) = std::clamp<T>(static_cast<T>(x(b, i) + eps * double(t[i]) / (scale + 1e-12)), T(0), T(1));
    }
    std::vector<std::size_t> live(N);
    std::iota(live.begin(), live.end(), std::size_t(0));
    std::vector<double> loss(N), loss_best(N), loss_prev(N), loss_best_at_check(N), step(N, 2 * eps);
    std::vector<std::uint8_t> wrong(N), reduced_at_check(N, 1);
    std::vector<std::vector<std::uint8_t>> rose(N);  ///< per image and iteration: f(x^{k+1}) > f(x^k)
    grad = xt::zeros<T>({N, D});
    // evaluates f at cur for the live images; drops broken and non-finite ones from `live`
    auto evaluate = [&]() {
        image_batch<T> pts = xt::xtensor<T, 2>::from_shape({live.size(), D}), g;
        for (std::size_t j = 0; j < live.size(); ++j)
            std::copy(cur.data() + live[j] * D, cur.data() + (live[j] + 1) * D, pts.data() + j * D);
        std::vector<double> lj(live.size());
        std::vector<std::uint8_t> wj(live.size(), 0);
        g = xt::zeros<T>({live.size(), D});
        f(pts, std::span<const std::size_t>(live), lj, g, wj);
        std::vector<std::size_t> still;
        for (std::size_t j = 0; j < live.size(); ++j) {
            const std::size_t b = live[j];
            loss[b] = lj[j];
            std::copy(g.data() + j * D, g.data() + (j + 1) * D, grad.data() + b * D);
            if (!std::isfinite(lj[j]) || !detail::all_finite(g.data() + j * D, D)) {
                r.non_finite[b] = 1;
                continue;
            }
            if (wj[j]) {
                r.broken[b] = 1;
                std::copy(pts.data() + j * D, pts.data() + (j + 1) * D, r.adversarial.data() + b * D);
                r.loss[b] = static_cast<T>(lj[j]);
                continue;
            }
            still.push_back(b);
        }
        live = std::move(still);
    };
    evaluate();
    old = cur;
    best = cur;
    grad_best = grad;
    for (std::size_t b = 0; b < N; ++b)
        loss_best[b] = loss_prev[b] = loss_best_at_check[b] = loss[b];
    if (trace)
        *trace = apgd_trace{{loss[0]}, {}, {}};
    const std::vector<std::size_t> checks = apgd_checkpoints(o.iterations);
    std::size_t next_check = 0, window_start = 0;
    std::vector<T> z(D), moved(D);
    for (std::size_t k = 0; k < o.iterations && !live.empty(); ++k) {
        const double a = k == 0 ? 1.0 : o.momentum;
        if (trace)
            trace->step_size.push_back(step[0]);
        for (const std::size_t b : live) {
            T* xc = cur.data() + b * D;
            T* xo = old.data() + b * D;
            const T* gb = grad.data() + b * D;
            const T* centre = x.data() + b * D;
            double gnorm = 0;
            if (o.norm == norm::l2) {
                for (std::size_t i = 0; i < D; ++i)
                    gnorm += double(gb[i]) * gb[i];
                gnorm = std::sqrt(gnorm) + 1e-12;
            }
            for (std::size_t i = 0; i < D; ++i)
                z[i] = static_cast<T>(xc[i] + step[b] * (o.norm == norm::linf ? double((gb[i] > 0) - (gb[i] < 0))
                                                                                : double(gb[i]) / gnorm));
            detail::project(o.norm, eps, centre, z.data(), D, z.data());
            for (std::size_t i = 0; i < D; ++i)
                moved[i] = static_cast<T>(xc[i] + a * double(z[i] - xc[i]) + (1 - a) * double(xc[i] - xo[i]));
            std::copy(xc, xc + D, xo);
            detail::project(o.norm, eps, centre, moved.data(), D, xc);
        }
        evaluate();
        for (const std::size_t b : live) {
            rose[b].push_back(loss[b] > loss_prev[b]);
            loss_prev[b] = loss[b];
            if (loss[b] > loss_best[b]) {
                loss_best[b] = loss[b];
                std::copy(cur.data() + b * D, cur.data() + (b + 1) * D, best.data() + b * D);
                std::copy(grad.data() + b * D, grad.data() + (b + 1) * D, grad_best.data() + b * D);
            }
        }
        if (trace && !r.broken[0] && !r.non_finite[0])
            trace->loss.push_back(loss[0]);
        if (next_check < checks.size() && k + 1 == checks[next_check]) {
            const std::size_t window = checks[next_check] - window_start;
            for (const std::size_t b : live) {
                const std::size_t rises =
                    std::size_t(std::count(rose[b].end() - std::ptrdiff_t(window), rose[b].end(), 1));
                const bool stalled = double(rises) <= o.rho * double(window);
                const bool no_gain = !reduced_at_check[b] && loss_best_at_check[b] >= loss_best[b];
                reduced_at_check[b] = stalled || no_gain;
                loss_best_at_check[b] = loss_best[b];
                if (reduced_at_check[b]) {
                    step[b] /= 2;
                    std::copy(best.data() + b * D, best.data() + (b + 1) * D, cur.data() + b * D);
                    std::copy(grad_best.data() + b * D, grad_best.data() + (b + 1) * D, grad.data() + b * D);
                    if (trace && b == 0)
                        trace->halved_after.push_back(k + 1);
                }
            }
            window_start = checks[next_check];
            ++next_check;
        }
    }
    for (std::size_t b = 0; b < N; ++b)
        if (!r.broken[b] && !r.non_finite[b]) {
            std::copy(best.data() + b * D, best.data() + (b + 1) * D, r.adversarial.data() + b * D);
            r.loss[b] = static_cast<T>(loss_best[b]);
        }
    return r;
}

namespace detail {

/// The targeted DLR loss on z = log p (a shift of the logits, which the loss does not see):
///   ℓ = −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12),  π the classes by falling z,
/// and dℓ/dp = dℓ/dz ⊘ p. Probabilities are floored at the smallest normal value so that z stays finite.
template <class T>
double dlr_targeted_row(const T* p, std::size_t K, std::size_t y, std::size_t target, T* dl_dp)
{
    const double floor = double(std::numeric_limits<T>::min());
    std::vector<double> z(K);
    for (std::size_t c = 0; c < K; ++c)
        z[c] = std::log(std::max(double(p[c]), floor));
    std::vector<std::size_t> order(K);
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::partial_sort(order.begin(), order.begin() + 4, order.end(),
                      [&](std::size_t a, std::size_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
    const double num = z[y] - z[target], den = z[order[0]] - 0.5 * (z[order[2]] + z[order[3]]) + 1e-12;
    std::vector<double> dz(K, 0.0);
    dz[y] -= 1 / den;
    dz[target] += 1 / den;
    dz[order[0]] += num / (den * den);
    dz[order[2]] -= 0.5 * num / (den * den);
    dz[order[3]] -= 0.5 * num / (den * den);
    for (std::size_t c = 0; c < K; ++c)
        dl_dp[c] = static_cast<T>(dz[c] / std::max(double(p[c]), floor));
    return -num / den;
}

/// The objective of APGD on a classifier: loss rows from `row_loss(p_row, K, image, dl_dp_row)`, misclassified when
/// the predicted class is not the label.
template <class Classifier, class T, class RowLoss>
auto classifier_objective(Classifier& model, std::span<const std::size_t> labels, RowLoss row_loss)
{
    return [&model, labels, row_loss](const image_batch<T>& pts, std::span<const std::size_t> which,
                                      std::vector<double>& loss, image_batch<T>& grad,
                                      std::vector<std::uint8_t>& wrong) {
        const image_batch<T> p = model.probabilities(pts);
        const std::size_t K = p.shape()[1];
        image_batch<T> dl_dp = xt::zeros<T>({which.size(), K});
        for (std::size_t j = 0; j < which.size(); ++j) {
            loss[j] = row_loss(p.data() + j * K, K, which[j], dl_dp.data() + j * K);
            wrong[j] = predicted_class(p, j) != labels[which[j]];
            if (!detail::all_finite(p.data() + j * K, K))
                loss[j] = std::numeric_limits<double>::quiet_NaN();
        }
        grad = model.input_gradient(dl_dp);
    };
}

/// Runs `run(batch of survivors, their labels, first index, round)` on the images not yet broken or stopped, and
/// merges its result into r.
template <class T, class Run>
void attack_survivors(attack_result<T>& r, const image_batch<T>& x, std::span<const std::size_t> labels, Run&& run)
{
    const std::size_t D = x.shape()[1];
    std::vector<std::size_t> live;
    for (std::size_t b = 0; b < r.size(); ++b)
        if (!r.broken[b] && !r.non_finite[b])
            live.push_back(b);
    if (live.empty())
        return;
    image_batch<T> sub = xt::xtensor<T, 2>::from_shape({live.size(), D});
    std::vector<std::size_t> sub_labels(live.size());
    for (std::size_t j = 0; j < live.size(); ++j) {
        std::copy(x.data() + live[j] * D, x.data() + (live[j] + 1) * D, sub.data() + j * D);
        sub_labels[j] = labels[live[j]];
    }
    const attack_result<T> s = run(sub, std::span<const std::size_t>(sub_labels), std::span<const std::size_t>(live));
    for (std::size_t j = 0; j < live.size(); ++j) {
        const std::size_t b = live[j];
        r.broken[b] = s.broken[j];
        r.non_finite[b] = s.non_finite[j];
        if (s.broken[j] || s.loss[j] > r.loss[b] || s.non_finite[j]) {
            std::copy(s.adversarial.data() + j * D, s.adversarial.data() + (j + 1) * D, r.adversarial.data() + b * D);
            r.loss[b] = s.loss[j];
        }
    }
}

/// The result before any attack: the images themselves, misclassified ones already broken.
template <class Classifier, class T>
attack_result<T> clean_result(Classifier& model, const image_batch<T>& x, std::span<const std::size_t> labels,
                              const char* who)
{
    check_batch(who, x, labels, model.features(), std::size_t(-1));
    const image_batch<T> p = model.probabilities(x);
    check_batch(who, x, labels, model.features(), p.shape()[1]);
    attack_result<T> r;
    r.adversarial = x;
    r.broken.assign(labels.size(), 0);
    r.non_finite.assign(labels.size(), 0);
    r.loss.assign(labels.size(), T(-1e30));
    for (std::size_t b = 0; b < labels.size(); ++b)
        r.broken[b] = predicted_class(p, b) != labels[b];
    return r;
}

} // namespace detail

/// APGD with the cross-entropy loss on images x [N, D] in [0, 1]; one run from a random start.
template <class Classifier, class T = typename Classifier::value_type>
attack_result<T> apgd_ce(Classifier& model, const image_batch<T>& x, std::span<const std::size_t> labels,
                         const apgd_options& o)
{
    o.validate();
    attack_result<T> r = detail::clean_result(model, x, labels, "apgd_ce");
    detail::attack_survivors(r, x, labels, [&](const image_batch<T>& sub, std::span<const std::size_t> sub_labels,
                                               std::span<const std::size_t> index) {
        auto f = detail::classifier_objective<Classifier, T>(
            model, sub_labels, [sub_labels](const T* p, std::size_t K, std::size_t j, T* dl_dp) {
                return detail::cross_entropy_row(p, K, sub_labels[j], dl_dp);
            });
        return apgd_run(f, sub, o, 0, index);
    });
    return r;
}

namespace detail {
/// APGD-T on the images of r not yet broken: for each of the o.targets classes the clean image finds most likely
/// after the top one, in that order, one run with the targeted DLR loss on the survivors of the previous target.
template <class Classifier, class T>
void apgd_targeted_on(attack_result<T>& r, Classifier& model, const image_batch<T>& x,
                      std::span<const std::size_t> labels, const apgd_options& o)
{
    const image_batch<T> p = model.probabilities(x);
    const std::size_t K = p.shape()[1], N = labels.size();
    if (K < 4)
        throw argument_error("nmfdsl::attack::apgd_t: the targeted DLR loss needs at least 4 classes, the model has " +
                             std::to_string(K));
    std::vector<std::vector<std::size_t>> ranked(N, std::vector<std::size_t>(K));
    for (std::size_t b = 0; b < N; ++b) {
        std::iota(ranked[b].begin(), ranked[b].end(), std::size_t(0));
        std::stable_sort(ranked[b].begin(), ranked[b].end(),
                         [&](std::size_t c1, std::size_t c2) { return p(b, c1) > p(b, c2); });
    }
    const std::size_t targets = std::min(o.targets, K - 1);
    for (std::size_t t = 0; t < targets; ++t)
        attack_survivors(r, x, labels, [&](const image_batch<T>& sub, std::span<const std::size_t> sub_labels,
                                           std::span<const std::size_t> index) {
            auto f = classifier_objective<Classifier, T>(
                model, sub_labels, [&, sub_labels, index, t](const T* pr, std::size_t k, std::size_t j, T* dl_dp) {
                    return dlr_targeted_row(pr, k, sub_labels[j], ranked[index[j]][t + 1], dl_dp);
                });
            return apgd_run(f, sub, o, 1 + t, index);
        });
}
} // namespace detail

/// APGD-T: the targeted DLR loss against each of the o.targets most likely other classes in turn, on the images not
/// yet broken. Needs at least 4 classes (argument_error otherwise).
template <class Classifier, class T = typename Classifier::value_type>
attack_result<T> apgd_t(Classifier& model, const image_batch<T>& x, std::span<const std::size_t> labels,
                        const apgd_options& o)
{
    o.validate();
    attack_result<T> r = detail::clean_result(model, x, labels, "apgd_t");
    detail::apgd_targeted_on(r, model, x, labels, o);
    return r;
}

/// AutoAttack's "custom" sequence with apgd-ce and apgd-t: APGD-CE, then APGD-T on the images it did not break.
template <class Classifier, class T = typename Classifier::value_type>
attack_result<T> apgd_ce_then_t(Classifier& model, const image_batch<T>& x, std::span<const std::size_t> labels,
                                const apgd_options& o)
{
    attack_result<T> r = apgd_ce(model, x, labels, o);
    detail::apgd_targeted_on(r, model, x, labels, o);
    return r;
}

} // namespace nmfdsl::attack
