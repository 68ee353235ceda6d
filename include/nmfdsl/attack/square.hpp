#pragma once
/// @file square.hpp
/// The Square attack in the ℓ∞ norm (Andriushchenko et al., ECCV 2020): a gradient-free random search, used here as
/// a check that a model's robustness against gradient attacks is not an artefact of unhelpful gradients.
/// It lowers the margin m = z_y − max_{k≠y} z_k (z = log p, a shift of the logits), an image counting as broken once
/// m < 0. Start: δ = ±ε in vertical stripes (one random sign per channel and column). Each query draws a square of
/// side s = max(1, round(√(p·H·W))) at a random place, gives it a random sign ±ε per channel (drawn again while the
/// square would not change), and keeps the change if the margin falls. The share p starts at p_init and halves
/// after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 queries (scaled to the budget).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "pgd.hpp"

namespace nmfdsl::attack {

struct square_options {
    double epsilon = 8.0 / 255;
    std::size_t queries = 1000;  ///< model evaluations per image after the start
    double p_init = 0.8;         ///< the first squares' share of the image (AutoAttack's default for ℓ∞)
    std::size_t channels = 1, height = 0, width = 0;  ///< the image layout of the D = C·H·W values
    std::uint64_t seed = 0;
    std::size_t first_sample = 0;

    void validate(std::size_t features) const
    {
        if (!(std::isfinite(epsilon) && epsilon >= 0))
            throw argument_error("nmfdsl::attack::square: epsilon must be a finite value >= 0, got " +
                                 std::to_string(epsilon));
        if (queries == 0)
            throw argument_error("nmfdsl::attack::square: queries must be at least 1, got 0");
        if (!(p_init > 0 && p_init <= 1))
            throw argument_error("nmfdsl::attack::square: p_init must lie in (0, 1], got " + std::to_string(p_init));
        if (channels * height * width != features || height < 2 || width < 2)
            throw argument_error("nmfdsl::attack::square: the image layout " + std::to_string(channels) + "x" +
                                 std::to_string(height) + "x" + std::to_string(width) +
                                 " does not match the model's " + std::to_string(features) +
                                 " values (or is smaller than 2x2)");
    }

    /// The share of the image a square covers at query i of n.
    double share(std::size_t i, std::size_t n) const
    {
        const double at = double(i) * 10000.0 / double(n);
        double p = p_init;
        for (const double edge : {10.0, 50.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0, 6000.0, 8000.0})
            if (at > edge)
                p /= 2;
        return p;
    }
};

namespace detail {
/// m = log p_y − max_{k≠y} log p_k for one row (probabilities floored at the smallest normal value).
template <class T>
double log_margin(const T* p, std::size_t K, std::size_t y)
{
    const double floor = double(std::numeric_limits<T>::min());
    double other = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < K; ++k)
        if (k != y)
            other = std::max(other, std::log(std::max(double(p[k]), floor)));
    return std::log(std::max(double(p[y]), floor)) - other;
}
} // namespace detail

/// Runs the Square attack on images x [N, D] in [0, 1]; result as pgd's (the loss is −m at the returned point).
template <class Classifier, class T = typename Classifier::value_type>
attack_result<T> square_linf(Classifier& model, const image_batch<T>& x, std::span<const std::size_t> labels,
                             const square_options& o)
{
    const std::size_t D = model.features();
    o.validate(D);
    check_batch("square", x, labels, D, std::size_t(-1));
    const std::size_t N = labels.size(), C = o.channels, H = o.height, W = o.width;
    const T eps = static_cast<T>(o.epsilon);
    attack_result<T> r;
    r.adversarial = x;
    r.broken.assign(N, 0);
    r.non_finite.assign(N, 0);
    r.loss.assign(N, T(0));
    std::vector<double> margin(N);
    std::vector<rng> streams;
    for (std::size_t b = 0; b < N; ++b)
        streams.push_back(detail::image_stream(o.seed, std::uint64_t(1) << 33, o.first_sample + b));
    // margins of a batch of candidate points, one per live image
    auto margins = [&](const image_batch<T>& pts, const std::vector<std::size_t>& which) {
        const image_batch<T> p = model.probabilities(pts);
        const std::size_t K = p.shape()[1];
        std::vector<double> m(which.size());
        for (std::size_t j = 0; j < which.size(); ++j)
            m[j] = detail::all_finite(p.data() + j * K, K) ? detail::log_margin(p.data() + j * K, K, labels[which[j]])
                                                           : std::numeric_limits<double>::quiet_NaN();
        return m;
    };
    std::vector<std::size_t> live(N);
    for (std::size_t b = 0; b < N; ++b)
        live[b] = b;
    {  // the clean images
        const auto m = margins(x, live);
        for (std::size_t b = 0; b < N; ++b)
            if (m[b] < 0)
                r.broken[b] = 1;
    }
    std::vector<std::size_t> next;
    for (const std::size_t b : live)
        if (!r.broken[b])
            next.push_back(b);
    live = std::move(next);
    if (o.epsilon == 0 || live.empty())
        return r;
    // the start: vertical stripes
    for (const std::size_t b : live) {
        T* v = r.adversarial.data() + b * D;
        const T* x0 = x.data() + b * D;
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t col = 0; col < W; ++col) {
                const T sign = streams[b].uniform01<double>() < 0.5 ? T(-1) : T(1);
                for (std::size_t row = 0; row < H; ++row) {
                    const std::size_t i = (c * H + row) * W + col;
                    v[i] = std::clamp<T>(x0[i] + sign * eps, T(0), T(1));
                }
            }
    }
    auto gather = [&](const image_batch<T>& from, const std::vector<std::size_t>& which) {
        image_batch<T> pts = xt::xtensor<T, 2>::from_shape({which.size(), D});
        for (std::size_t j = 0; j < which.size(); ++j)
            std::copy(from.data() + which[j] * D, from.data() + (which[j] + 1) * D, pts.data() + j * D);
        return pts;
    };
    auto settle = [&](const std::vector<double>& m) {  // records margins; drops broken and non-finite images
        std::vector<std::size_t> still;
        for (std::size_t j = 0; j < live.size(); ++j) {
            const std::size_t b = live[j];
            if (!std::isfinite(m[j])) {
                r.non_finite[b] = 1;
                continue;
            }
            if (m[j] < 0)
                r.broken[b] = 1;
            else
                still.push_back(b);
        }
        live = std::move(still);
    };
    {
        const auto m = margins(gather(r.adversarial, live), live);
        for (std::size_t j = 0; j < live.size(); ++j)
            margin[live[j]] = m[j];
        settle(m);
    }
    image_batch<T> candidate = r.adversarial;
    for (std::size_t q = 0; q < o.queries && !live.empty(); ++q) {
        const double share = o.share(q, o.queries);
        const std::size_t side =
            std::clamp<std::size_t>(std::size_t(std::lround(std::sqrt(share * double(H * W)))), 1, H - 1);
        for (const std::size_t b : live) {
            rng& g = streams[b];
            const std::size_t top = g.below(H - side + 1), left = g.below(W - side + 1);
            const T* x0 = x.data() + b * D;
            const T* cur = r.adversarial.data() + b * D;
            T* v = candidate.data() + b * D;
            std::copy(cur, cur + D, v);
            // draw signs until the square changes something (at most a few tries: a square where every value is
            // already at its bound in the drawn direction cannot change)
            for (int tries = 0; tries < 10; ++tries) {
                bool changed = false;
                for (std::size_t c = 0; c < C; ++c) {
                    const T sign = g.uniform01<double>() < 0.5 ? T(-1) : T(1);
                    for (std::size_t row = top; row < top + side; ++row)
                        for (std::size_t col = left; col < left + side; ++col) {
                            const std::size_t i = (c * H + row) * W + col;
                            v[i] = std::clamp<T>(x0[i] + sign * eps, T(0), T(1));
                            changed = changed || v[i] != cur[i];
                        }
                }
                if (changed)
                    break;
            }
        }
        const auto m = margins(gather(candidate, live), live);
        for (std::size_t j = 0; j < live.size(); ++j) {
            const std::size_t b = live[j];
            if (std::isfinite(m[j]) && m[j] < margin[b]) {
                margin[b] = m[j];
                std::copy(candidate.data() + b * D, candidate.data() + (b + 1) * D, r.adversarial.data() + b * D);
            }
        }
        settle(m);
    }
    for (std::size_t b = 0; b < N; ++b)
        r.loss[b] = static_cast<T>(-margin[b]);
    return r;
}

} // namespace nmfdsl::attack
