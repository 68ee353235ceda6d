#pragma once
/// @file pgd.hpp
/// Projected gradient descent (Madry et al., 2018) on the cross-entropy ℓ_b = −log p_{b, y_b} (computed as
/// detail::cross_entropy_row says, accurate when p_y is close to 1), in an ℓ∞ or ℓ2 ball
/// of radius ε around each image, inside the box [0, 1]:
///   x⁰ = clip(x + δ⁰) (δ⁰ uniform in the ball with random_start, else 0);
///   ℓ∞: x^{s+1} = Π(x^s + α · sign ∇ℓ(x^s)),   ℓ2: x^{s+1} = Π(x^s + α · ∇ℓ(x^s) / ‖∇ℓ(x^s)‖₂),
/// Π clipping δ = x^{s+1} − x to the ball (ℓ∞: per value; ℓ2: scaling δ down to norm ε) and then x^{s+1} to [0, 1].
/// Step size α defaults to 2.5·ε/steps. An image counts as broken as soon as one point it visits (the clean image
/// included) is misclassified; it then stops moving. Restarts begin again from fresh random starts for the images
/// not yet broken.
/// A loss or gradient that is not finite for an image stops that image's attack: it is counted in non_finite, and
/// the image is neither broken nor robust (robust accuracy is reported without it and with it as robust).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <xtensor/xview.hpp>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "classifier.hpp"

namespace nmfdsl::attack {

enum class norm { linf, l2 };

inline const char* norm_name(norm n) { return n == norm::linf ? "linf" : "l2"; }

/// "linf" / "l2" (also "Linf", "L2"); throws argument_error naming the text otherwise.
inline norm parse_norm(const std::string& text)
{
    if (text == "linf" || text == "Linf")
        return norm::linf;
    if (text == "l2" || text == "L2")
        return norm::l2;
    throw argument_error("nmfdsl::attack: unknown norm '" + text + "' (choose linf or l2)");
}

struct pgd_options {
    attack::norm norm = norm::linf;
    double epsilon = 8.0 / 255;
    std::size_t steps = 40;
    std::optional<double> step_size;  ///< α; default 2.5·ε/steps
    bool random_start = true;
    std::size_t restarts = 1;
    std::uint64_t seed = 0;
    std::size_t first_sample = 0;  ///< index of the batch's first image in the data set: seeds its random start

    double alpha() const { return step_size ? *step_size : 2.5 * epsilon / double(steps); }

    /// Throws argument_error naming the option for ε < 0 or not finite, steps = 0, restarts = 0, α < 0.
    void validate() const
    {
        if (!(std::isfinite(epsilon) && epsilon >= 0))
            throw argument_error("nmfdsl::attack::pgd: epsilon must be a finite value >= 0, got " +
                                 std::to_string(epsilon));
        if (steps == 0)
            throw argument_error("nmfdsl::attack::pgd: steps must be at least 1, got 0");
        if (restarts == 0)
            throw argument_error("nmfdsl::attack::pgd: restarts must be at least 1, got 0");
        if (step_size && !(std::isfinite(*step_size) && *step_size >= 0))
            throw argument_error("nmfdsl::attack::pgd: step_size must be a finite value >= 0, got " +
                                 std::to_string(*step_size));
    }
};

/// Per image: the point the attack ends with (the misclassified one, else the highest-loss point visited), and
/// what happened.
template <class T>
struct attack_result {
    image_batch<T> adversarial;
    std::vector<std::uint8_t> broken;      ///< a misclassified point was found
    std::vector<std::uint8_t> non_finite;  ///< the attack stopped on a non-finite loss or gradient
    std::vector<T> loss;                   ///< ℓ at the returned point

    std::size_t size() const { return broken.size(); }
    std::size_t broken_count() const { return std::size_t(std::count(broken.begin(), broken.end(), 1)); }
    std::size_t non_finite_count() const
    {
        return std::size_t(std::count(non_finite.begin(), non_finite.end(), 1));
    }
    /// Images neither broken nor stopped by a non-finite value.
    std::size_t robust_count() const { return size() - broken_count() - non_finite_count(); }
};

namespace detail {

/// A stream for one image of one attack round: depends on the seed, the round and the image's index in the data
/// set only, so a result does not depend on how the data set is split into batches or on the thread count.
inline rng image_stream(std::uint64_t seed, std::uint64_t round, std::uint64_t image)
{
    std::uint64_t z = seed ^ (0x9e3779b97f4a7c15ULL * (round + 1)) ^ (0xc2b2ae3d27d4eb4fULL * (image + 1));
    z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdULL;
    z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ULL;
    return rng(nmfdsl::seed{z ^ (z >> 33)});
}

/// A standard normal value (Box–Muller on our own uniform numbers).
template <class T>
T standard_normal(rng& g)
{
    const double u1 = 1.0 - g.uniform01<double>(), u2 = g.uniform01<double>();  // u1 ∈ (0, 1]
    return static_cast<T>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

/// δ ← the projection of δ onto the ε-ball, then x + δ clipped to [0, 1]; writes the point to `out`.
template <class T>
void project(norm n, double eps, const T* x, const T* moved, std::size_t D, T* out)
{
    if (n == norm::linf) {
        for (std::size_t i = 0; i < D; ++i) {
            const T d = std::clamp<T>(moved[i] - x[i], T(-eps), T(eps));
            out[i] = std::clamp<T>(x[i] + d, T(0), T(1));
        }
        return;
    }
    double sq = 0;
    for (std::size_t i = 0; i < D; ++i)
        sq += double(moved[i] - x[i]) * double(moved[i] - x[i]);
    const double norm2 = std::sqrt(sq), scale = norm2 > eps ? eps / norm2 : 1.0;
    for (std::size_t i = 0; i < D; ++i)
        out[i] = std::clamp<T>(static_cast<T>(x[i] + scale * double(moved[i] - x[i])), T(0), T(1));
}

/// A random start: uniform in the ℓ∞ ball, or uniform in the ℓ2 ball (a Gaussian direction, radius ε·u^{1/D}).
template <class T>
void random_start(norm n, double eps, const T* x, std::size_t D, rng& g, T* out, std::vector<T>& tmp)
{
    tmp.resize(D);
    if (n == norm::linf) {
        for (std::size_t i = 0; i < D; ++i)
            tmp[i] = x[i] + static_cast<T>(eps * (2.0 * g.uniform01<double>() - 1.0));
    } else {
        double sq = 0;
        for (std::size_t i = 0; i < D; ++i) {
            tmp[i] = standard_normal<T>(g);
            sq += double(tmp[i]) * double(tmp[i]);
        }
        const double radius = eps * std::pow(g.uniform01<double>(), 1.0 / double(D));
        const double scale = sq > 0 ? radius / std::sqrt(sq) : 0.0;
        for (std::size_t i = 0; i < D; ++i)
            tmp[i] = static_cast<T>(x[i] + scale * double(tmp[i]));
    }
    project(n, eps, x, tmp.data(), D, out);
}

/// ℓ = −log p_y for one row p of K probabilities, and dℓ/dp into dl_dp. When p_y is close to 1 it is computed from
/// the others, s = Σ_{c≠y} p_c, as ℓ = −log1p(−s), with dℓ/dp_c = 1/(1 − s) for c ≠ y and 0 for y: through the
/// Softmax backward this gives dℓ/dz = p − e_y without the cancellation in p_y − 1, so an image the network is
/// sure of (p_y rounds to 1) still has a loss that grows and a gradient that points somewhere.
template <class T>
double cross_entropy_row(const T* p, std::size_t K, std::size_t y, T* dl_dp)
{
    double others = 0;
    for (std::size_t c = 0; c < K; ++c)
        if (c != y)
            others += double(p[c]);
    const bool from_others = others < 0.5;
    const double py = from_others ? 1.0 - others : double(p[y]) + 1e-30;
    for (std::size_t c = 0; c < K; ++c)
        dl_dp[c] =
            from_others ? (c == y ? T(0) : static_cast<T>(1.0 / py)) : (c == y ? static_cast<T>(-1.0 / py) : T(0));
    return from_others ? -std::log1p(-others) : -std::log(py);
}

template <class T>
bool all_finite(const T* v, std::size_t n)
{
    for (std::size_t i = 0; i < n; ++i)
        if (!std::isfinite(v[i]))
            return false;
    return true;
}

} // namespace detail

/// Runs PGD on images x [N, D] (values in [0, 1]) with their labels. Throws argument_error for bad options or
/// labels, shape_error for a wrong batch (both naming what was expected).
template <class Classifier, class T = typename Classifier::value_type>
attack_result<T> pgd(Classifier& model, const image_batch<T>& x, std::span<const std::size_t> labels,
                     const pgd_options& o)
{
    o.validate();
    const std::size_t N = x.shape().size() == 2 ? x.shape()[0] : 0, D = model.features();
    attack_result<T> r;
    r.adversarial = x;
    r.broken.assign(N, 0);
    r.non_finite.assign(N, 0);
    r.loss.assign(N, T(0));
    // clean points: a misclassified image is broken before the attack starts
    check_batch("pgd", x, labels, D, std::size_t(-1));
    {
        const image_batch<T> p = model.probabilities(x);
        check_batch("pgd", x, labels, D, p.shape()[1]);
        for (std::size_t b = 0; b < N; ++b) {
            r.broken[b] = predicted_class(p, b) != labels[b];
            std::vector<T> unused(p.shape()[1]);
            r.loss[b] = static_cast<T>(detail::cross_entropy_row(p.data() + b * p.shape()[1], p.shape()[1], labels[b],
                                                                 unused.data()));
        }
    }
    const double alpha = o.alpha();
    std::vector<T> tmp;
    for (std::size_t round = 0; round < o.restarts; ++round) {
        // the images still in play, as a compact batch
        std::vector<std::size_t> live;
        for (std::size_t b = 0; b < N; ++b)
            if (!r.broken[b] && !r.non_finite[b])
                live.push_back(b);
        if (live.empty() || o.epsilon == 0)
            break;
        image_batch<T> cur = xt::xtensor<T, 2>::from_shape({live.size(), D}), clean = cur;
        for (std::size_t j = 0; j < live.size(); ++j) {
            const T* xb = x.data() + live[j] * D;
            std::copy(xb, xb + D, clean.data() + j * D);
            if (o.random_start) {
                rng g = detail::image_stream(o.seed, round, o.first_sample + live[j]);
                detail::random_start(o.norm, o.epsilon, xb, D, g, cur.data() + j * D, tmp);
            } else {
                std::copy(xb, xb + D, cur.data() + j * D);
            }
        }
        for (std::size_t step = 0; step <= o.steps && !live.empty(); ++step) {
            const image_batch<T> p = model.probabilities(cur);
            const std::size_t K = p.shape()[1];
            image_batch<T> dl_dp = xt::zeros<T>({live.size(), K});
            std::vector<std::uint8_t> keep(live.size(), 1);
            for (std::size_t j = 0; j < live.size(); ++j) {
                const std::size_t b = live[j];
                const T loss = static_cast<T>(
                    detail::cross_entropy_row(p.data() + j * K, K, labels[b], dl_dp.data() + j * K));
                if (!std::isfinite(loss) || !detail::all_finite(p.data() + j * K, K)) {
                    r.non_finite[b] = 1;
                    keep[j] = 0;
                    continue;
                }
                const bool wrong = predicted_class(p, j) != labels[b];
                if (wrong || loss > r.loss[b]) {  // the point returned: the first misclassified, else the worst
                    std::copy(cur.data() + j * D, cur.data() + (j + 1) * D, r.adversarial.data() + b * D);
                    r.loss[b] = loss;
                }
                if (wrong) {
                    r.broken[b] = 1;
                    keep[j] = 0;
                }
            }
            for (std::size_t j = 0; j < live.size(); ++j)  // images out of play add nothing to the gradient
                if (!keep[j])
                    std::fill(dl_dp.data() + j * K, dl_dp.data() + (j + 1) * K, T(0));
            if (step == o.steps)
                break;
            const image_batch<T> g = model.input_gradient(dl_dp);
            // move every image still in play; drop the others from the batch
            std::vector<std::size_t> next;
            image_batch<T> moved = xt::xtensor<T, 2>::from_shape({live.size(), D});
            std::size_t kept = 0;
            for (std::size_t j = 0; j < live.size(); ++j) {
                if (!keep[j])
                    continue;
                const T* gj = g.data() + j * D;
                if (!detail::all_finite(gj, D)) {
                    r.non_finite[live[j]] = 1;
                    continue;
                }
                const T* cj = cur.data() + j * D;
                T* out = moved.data() + kept * D;
                if (o.norm == norm::linf) {
                    for (std::size_t i = 0; i < D; ++i)
                        out[i] = cj[i] + static_cast<T>(alpha) * T((gj[i] > 0) - (gj[i] < 0));
                } else {
                    double sq = 0;
                    for (std::size_t i = 0; i < D; ++i)
                        sq += double(gj[i]) * double(gj[i]);
                    const double scale = sq > 0 ? alpha / std::sqrt(sq) : 0.0;
                    for (std::size_t i = 0; i < D; ++i)
                        out[i] = static_cast<T>(cj[i] + scale * double(gj[i]));
                }
                detail::project(o.norm, o.epsilon, clean.data() + j * D, out, D, out);
                std::copy(clean.data() + j * D, clean.data() + (j + 1) * D, clean.data() + kept * D);
                next.push_back(live[j]);
                ++kept;
            }
            live = std::move(next);
            cur = xt::view(moved, xt::range(0, kept), xt::all());
            clean = xt::eval(xt::view(clean, xt::range(0, kept), xt::all()));
        }
    }
    return r;
}

} // namespace nmfdsl::attack
