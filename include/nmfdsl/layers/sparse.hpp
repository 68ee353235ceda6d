#pragma once
/// @file sparse.hpp
/// The competition layers of networks with sparse, strong activations (Cekic, Bakiskan & Madhow, "Neuro-inspired
/// deep neural networks with sparse, strong activations", arXiv 2202.13074; docs/method.md §6): DivisiveNorm and
/// FractionalThreshold. Both take a map (Shape<C, H, W>), keep its shape and have no parameters. And the block they
/// form with the weight-normalised convolution: HaHBlock<Out>.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "common.hpp"
#include "elementwise.hpp"
#include "wnconv.hpp"

namespace nmfdsl {

namespace detail {
template <class In>
constexpr shape_issue needs_map_check()
{
    return In::rank == 3 ? shape_issue::none : shape_issue::needs_map;
}

} // namespace detail

/// Divisive normalisation: every activation is divided by a suppression field shared by the channels of its position.
///   S[p, c] = max over the 3×3 window around p (inside the map) of |x[·, c]|
///   S̄[p]    = (1/C) Σ_c S[p, c]            M = max_p S̄[p]   (per image)
///   D[p]    = σ·M + (1 − σ)·S̄[p] + 1e-7,   y[p, c] = x[p, c] / D[p]
/// σ ∈ [0, 1] mixes the local field with its maximum over the image (default 0.1). Statistics are per image, so
/// training and evaluation compute the same function. The gradient flows through D, S̄, M and S: the maxima route
/// it to their arg-max (the first in scan order when values tie).
struct DivisiveNorm : layer_base {
    class options {
    public:
        double sigma() const { return sigma_; }
        /// The weight of the image's maximum in the divisor, in [0, 1] (default 0.1).
        options& sigma(double s)
        {
            sigma_ = detail::checked_option("DivisiveNorm", "sigma", s, {0.0, 1.0, false, false});
            return *this;
        }

    private:
        double sigma_ = 0.1;
    };
    static constexpr double divisor_eps = 1e-7;

    static std::string name() { return "DivisiveNorm"; }
    template <class In>
    static constexpr shape_issue check = detail::needs_map_check<In>();
    template <class In>
    using output_shape = In;

    template <class In, class T>
    struct cache {
        aligned_vector<T> divisor;            ///< D per position [batch × H·W]
        std::vector<std::uint32_t> peak;      ///< per image, the position of M (the first maximum of S̄)
        double sigma = 0.1;                   ///< the forward's σ
    };

    /// S for one image: the 3×3 maximum of |x| per channel, separably (rows, then columns), into s [H·W × C].
    template <class In, class T>
    static void local_max(const T* x, T* row_max, T* s)
    {
        constexpr std::size_t C = In::c, H = In::h, W = In::w;
        for (std::size_t y = 0; y < H; ++y)
            for (std::size_t xx = 0; xx < W; ++xx)
                for (std::size_t c = 0; c < C; ++c) {
                    T m = std::abs(x[(y * W + xx) * C + c]);
                    if (xx > 0)
                        m = std::max(m, std::abs(x[(y * W + xx - 1) * C + c]));
                    if (xx + 1 < W)
                        m = std::max(m, std::abs(x[(y * W + xx + 1) * C + c]));
                    row_max[(y * W + xx) * C + c] = m;
                }
        for (std::size_t y = 0; y < H; ++y)
            for (std::size_t xx = 0; xx < W; ++xx)
                for (std::size_t c = 0; c < C; ++c) {
                    T m = row_max[(y * W + xx) * C + c];
                    if (y > 0)
                        m = std::max(m, row_max[((y - 1) * W + xx) * C + c]);
                    if (y + 1 < H)
                        m = std::max(m, row_max[((y + 1) * W + xx) * C + c]);
                    s[(y * W + xx) * C + c] = m;
                }
    }

    template <class In, class T>
    static void forward(const options& o, const forward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c, P = In::h * In::w;
        c.sigma = o.sigma();
        c.divisor.resize(a.batch * P);
        c.peak.resize(a.batch);
        const T sigma = T(o.sigma());
        parallel_for(a.batch, [&](std::size_t n) {  // one image per task
            thread_local aligned_vector<T> row_max, s;
            row_max.resize(In::size);
            s.resize(In::size);
            const T* x = a.x + n * In::size;
            local_max<In, T>(x, row_max.data(), s.data());
            T* d = c.divisor.data() + n * P;
            std::size_t peak = 0;
            for (std::size_t p = 0; p < P; ++p) {
                T sum = 0;
                for (std::size_t ch = 0; ch < C; ++ch)
                    sum += s[p * C + ch];
                d[p] = sum / T(C);  // S̄ for now
                if (d[p] > d[peak])
                    peak = p;
            }
            const T m = d[peak];
            c.peak[n] = static_cast<std::uint32_t>(peak);
            for (std::size_t p = 0; p < P; ++p) {
                d[p] = sigma * m + (T(1) - sigma) * d[p] + T(divisor_eps);
                const T inv = T(1) / d[p];
                for (std::size_t ch = 0; ch < C; ++ch)
                    a.y[n * In::size + p * C + ch] = x[p * C + ch] * inv;
            }
        });
    }

    /// dx[p, c] = dy[p, c]/D[p] + (routes of g_D):  g_D[p] = −Σ_c dy[p, c]·y[p, c]/D[p];
    /// g_S̄[p] = (1 − σ) g_D[p] + [p = peak]·σ Σ_q g_D[q];  g_S[p, c] = g_S̄[p]/C, added to x at the window's arg-max
    /// of |x[·, c]| times its sign.
    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c, H = In::h, W = In::w, P = H * W;
        const T sigma = T(c.sigma);
        parallel_for(a.batch, [&](std::size_t n) {
            thread_local aligned_vector<T> g_bar;
            g_bar.resize(P);
            const T* x = a.x + n * In::size;
            const T* y = a.y + n * In::size;
            const T* dy = a.dy + n * In::size;
            const T* d = c.divisor.data() + n * P;
            T* dx = a.dx + n * In::size;
            T total = 0;
            for (std::size_t p = 0; p < P; ++p) {
                T dot = 0;
                for (std::size_t ch = 0; ch < C; ++ch)
                    dot += dy[p * C + ch] * y[p * C + ch];
                const T g_d = -dot / d[p];
                g_bar[p] = (T(1) - sigma) * g_d;
                total += g_d;
                const T inv = T(1) / d[p];
                for (std::size_t ch = 0; ch < C; ++ch)
                    dx[p * C + ch] = dy[p * C + ch] * inv;
            }
            g_bar[c.peak[n]] += sigma * total;
            // each S[p, ch] hands g_S̄[p]/C to the element of its window that attained the maximum
            for (std::size_t py = 0; py < H; ++py)
                for (std::size_t px = 0; px < W; ++px) {
                    const T g_s = g_bar[py * W + px] / T(C);
                    if (g_s == T(0))
                        continue;
                    const std::size_t y0 = py > 0 ? py - 1 : 0, y1 = std::min(H - 1, py + 1);
                    const std::size_t x0 = px > 0 ? px - 1 : 0, x1 = std::min(W - 1, px + 1);
                    for (std::size_t ch = 0; ch < C; ++ch) {
                        std::size_t at = (y0 * W + x0) * C + ch;
                        T best = std::abs(x[at]);
                        for (std::size_t yy = y0; yy <= y1; ++yy)
                            for (std::size_t xx = x0; xx <= x1; ++xx) {
                                const std::size_t i = (yy * W + xx) * C + ch;
                                if (std::abs(x[i]) > best) {
                                    best = std::abs(x[i]);
                                    at = i;
                                }
                            }
                        dx[at] += x[at] < T(0) ? -g_s : (x[at] > T(0) ? g_s : T(0));
                    }
                }
        });
    }
};

/// Fractional threshold: per image and channel, only the values strictly above the map's k-th smallest survive,
///   k = ⌊(1 − ρ)·H·W⌋ (1-based),   y = x · 1[x > thr],
/// so at most H·W − k values per map are kept (about the top fraction ρ; ties with thr are dropped). ρ ∈ (0, 1)
/// (default 0.2); when (1 − ρ)·H·W < 1 (k = 0: a small map, ρ near 1) nothing is removed. The threshold is found by linear-time selection (nth_element).
/// Backward: dx = dy where the value was kept, else 0 (no gradient reaches the threshold).
/// Statistic "nonzero": the fraction of outputs that are not zero (at most ρ).
struct FractionalThreshold : layer_base {
    class options {
    public:
        double remaining_ratio() const { return ratio_; }
        /// ρ, the fraction of each map's positions that may survive, in (0, 1) (default 0.2).
        options& remaining_ratio(double r)
        {
            ratio_ = detail::checked_option("FractionalThreshold", "remaining_ratio", r, {0.0, 1.0, true, true});
            return *this;
        }

    private:
        double ratio_ = 0.2;
    };

    static std::string name() { return "FractionalThreshold"; }
    template <class In>
    static constexpr shape_issue check = detail::needs_map_check<In>();
    template <class In>
    using output_shape = In;

    template <class In, class T>
    struct cache {
        aligned_vector<T> threshold;  ///< per image and channel [batch × C]; −∞ when k = 0
    };

    /// k of a map of `positions` values for ratio ρ.
    static std::size_t rank_of(double ratio, std::size_t positions)
    {
        // the product is rounded down; a tiny guard keeps e.g. (1 − 0.2)·10 = 7.999… from becoming 7
        return static_cast<std::size_t>(std::floor((1.0 - ratio) * double(positions) + 1e-9));
    }

    template <class In, class T>
    static void forward(const options& o, const forward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c, P = In::h * In::w;
        const std::size_t k = rank_of(o.remaining_ratio(), P);
        c.threshold.resize(a.batch * C);
        parallel_for(a.batch, [&](std::size_t n) {
            thread_local std::vector<T> values;
            values.resize(P);
            const T* x = a.x + n * In::size;
            T* y = a.y + n * In::size;
            for (std::size_t ch = 0; ch < C; ++ch) {
                T thr = -std::numeric_limits<T>::infinity();
                if (k > 0) {
                    for (std::size_t p = 0; p < P; ++p)
                        values[p] = x[p * C + ch];
                    std::nth_element(values.begin(), values.begin() + std::ptrdiff_t(k - 1), values.end());
                    thr = values[k - 1];
                }
                c.threshold[n * C + ch] = thr;
                for (std::size_t p = 0; p < P; ++p)
                    y[p * C + ch] = x[p * C + ch] > thr ? x[p * C + ch] : T(0);
            }
        });
    }

    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c;
        parallel_chunks(a.batch * In::size, detail::elementwise_chunk, [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) {
                const std::size_t n = i / In::size, ch = i % C;
                a.dx[i] = a.x[i] > c.threshold[n * C + ch] ? a.dy[i] : T(0);
            }
        });
    }

    template <class In, class T>
    static void statistics(const options&, const statistics_args<T>& a, cache<In, T>&, statistic_sink sink)
    {
        sink(a.where, name(), "nonzero", detail::nonzero_fraction(a.y, a.batch * In::size));
    }
};

/// The HaH block: WNConv 3×3, zero padding 1 (the map keeps its size) → ReLU → DivisiveNorm → FractionalThreshold.
/// A composite like Mix1x1; σ and ρ are the options of its DivisiveNorm and FractionalThreshold leaves.
template <std::size_t Out>
struct HaHBlock {
    template <class In>
    using expand = Seq<WNConv<Out, 3, 1, 1>, ReLU, DivisiveNorm, FractionalThreshold>;
};

} // namespace nmfdsl
