#pragma once
/// @file sparse.hpp
/// The competition layers of networks with sparse, strong activations (Cekic, Bakiskan & Madhow, "Neuro-inspired
/// deep neural networks with sparse, strong activations", arXiv 2202.13074; docs/method.md §6): DivisiveNorm and
/// FractionalThreshold. Both take a map (Shape<C, H, W>), keep its shape and have no parameters. And the block they
/// form with the weight-normalised convolution: HaHBlock<Out>.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../kernels/reduce.hpp"
#include "../kernels/select.hpp"
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
        /// per (image, position, channel): where S came from, (dy + 1)·3 + (dx + 1) for the window offsets dy, dx;
        /// kept in T (a small whole number, exact) so that the search vectorises
        aligned_vector<T> arg_max;
        std::vector<std::uint32_t> peak;      ///< per image, the position of M (the first maximum of S̄)
        double sigma = 0.1;                   ///< the forward's σ
    };


    /// S for one image: the 3×3 maximum of |x| per channel, separably (rows, then columns), into s [H·W × C], and
    /// the offset of the element that attains it into code [H·W × C] — the first in scan order when values tie
    /// (the topmost row holding the maximum, the leftmost element in it).
    template <class In, class T>
    static void local_max(const T* x, T* row_max, T* row_dx, T* s, T* code)
    {
        constexpr std::size_t C = In::c, H = In::h, W = In::w;
        // pass 1, along each row: the maximum of |x| over (x − 1, x, x + 1) and where it lies (0, 1, 2); the
        // interior of a row is one call (its three windows are contiguous runs), the two ends one each
        for (std::size_t y = 0; y < H; ++y) {
            const T* row = x + y * W * C;
            const std::size_t at = y * W * C;
            if (W == 1) {
                first_of_three(row, row, row, no_codes<T>, no_codes<T>, no_codes<T>, T(1), T(1), true, row_max + at,
                               row_dx + at, C);
                continue;
            }
            first_of_three(row, row, row + C, no_codes<T>, no_codes<T>, no_codes<T>, T(1), T(2), true, row_max + at,
                           row_dx + at, C);
            if (W > 2)
                first_of_three(row, row + C, row + 2 * C, no_codes<T>, no_codes<T>, no_codes<T>, T(0), T(2), true,
                               row_max + at + C, row_dx + at + C, (W - 2) * C);
            const std::size_t last = (W - 1) * C;
            first_of_three(row + last - C, row + last, row + last, no_codes<T>, no_codes<T>, no_codes<T>, T(0), T(1),
                           true, row_max + at + last, row_dx + at + last, C);
        }
        // pass 2, along each column of the row maxima: code = 3·(row offset + 1) + the row pass's column offset;
        // one call per row (the rows above, at and below are contiguous)
        for (std::size_t y = 0; y < H; ++y) {
            const std::size_t up = (y > 0 ? y - 1 : y) * W * C, here = y * W * C,
                              down = (y + 1 < H ? y + 1 : y) * W * C;
            first_of_three(row_max + up, row_max + here, row_max + down, row_dx + up, row_dx + here, row_dx + down,
                           T(y > 0 ? 0 : 1), T(y + 1 < H ? 2 : 1), false, s + here, code + here, W * C);
        }
    }

    template <class T>
    static constexpr const T* no_codes = nullptr;

    /// For each of n lanes: the largest of (a, b, c) — of their absolute values when `absolute` — and its place,
    /// the first in order a, b, c on ties: place_a, 1, place_c (then 3·place + the inner code when inner codes
    /// ia, ib, ic are given).
    template <class T>
    static void first_of_three(const T* a, const T* b, const T* c, const T* ia, const T* ib, const T* ic, T place_a,
                               T place_c, bool absolute, T* best_out, T* code_out, std::size_t n)
    {
        using B = xsimd::batch<T>;
        constexpr std::size_t L = B::size;
        const std::size_t full = n / L * L;
        auto value = [&](B v) { return absolute ? xsimd::abs(v) : v; };
        for (std::size_t i = 0; i < full; i += L) {
            B best = value(B::load_unaligned(a + i)), where = B(place_a);
            const B vb = value(B::load_unaligned(b + i)), vc = value(B::load_unaligned(c + i));
            const auto gb = vb > best;
            best = xsimd::select(gb, vb, best);
            where = xsimd::select(gb, B(T(1)), where);
            const auto gc = vc > best;
            best = xsimd::select(gc, vc, best);
            where = xsimd::select(gc, B(place_c), where);
            best.store_unaligned(best_out + i);
            if (ia) {
                B inner = xsimd::select(gb, B::load_unaligned(ib + i), B::load_unaligned(ia + i));
                inner = xsimd::select(gc, B::load_unaligned(ic + i), inner);
                where = where * B(T(3)) + inner;
            }
            where.store_unaligned(code_out + i);
        }
        for (std::size_t i = full; i < n; ++i) {
            const auto f = [&](T v) { return absolute ? std::abs(v) : v; };
            T best = f(a[i]), where = place_a, inner = ia ? ia[i] : T(0);
            if (f(b[i]) > best)
                best = f(b[i]), where = T(1), inner = ia ? ib[i] : T(0);
            if (f(c[i]) > best)
                best = f(c[i]), where = place_c, inner = ia ? ic[i] : T(0);
            best_out[i] = best;
            code_out[i] = ia ? where * T(3) + inner : where;
        }
    }

    template <class In, class T>
    static void forward(const options& o, const forward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c, P = In::h * In::w;
        c.sigma = o.sigma();
        c.divisor.resize(a.batch * P);
        c.arg_max.resize(a.batch * In::size);
        c.peak.resize(a.batch);
        const T sigma = T(o.sigma());
        parallel_for(a.batch, [&](std::size_t n) {  // one image per task
            thread_local aligned_vector<T> row_max, row_dx, s;
            row_max.resize(In::size);
            s.resize(In::size);
            row_dx.resize(In::size);
            const T* x = a.x + n * In::size;
            local_max<In, T>(x, row_max.data(), row_dx.data(), s.data(), c.arg_max.data() + n * In::size);
            T* d = c.divisor.data() + n * P;
            for (std::size_t p = 0; p < P; ++p)
                d[p] = kernels::sum(s.data() + p * C, C) / T(C);  // S̄ for now
            const std::size_t peak = std::size_t(std::max_element(d, d + P) - d);  // the first maximum
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
    /// of |x[·, c]| (kept by the forward) times its sign.
    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c, W = In::w, P = In::h * W;
        const T sigma = T(c.sigma);
        parallel_for(a.batch, [&](std::size_t n) {
            thread_local aligned_vector<T> g_bar;
            g_bar.resize(P);
            const T* x = a.x + n * In::size;
            const T* y = a.y + n * In::size;
            const T* dy = a.dy + n * In::size;
            const T* d = c.divisor.data() + n * P;
            const T* code = c.arg_max.data() + n * In::size;
            T* dx = a.dx + n * In::size;
            T total = 0;
            for (std::size_t p = 0; p < P; ++p) {
                const T g_d = -kernels::dot(dy + p * C, y + p * C, C) / d[p];
                g_bar[p] = (T(1) - sigma) * g_d;
                total += g_d;
                const T inv = T(1) / d[p];
                for (std::size_t ch = 0; ch < C; ++ch)
                    dx[p * C + ch] = dy[p * C + ch] * inv;
            }
            g_bar[c.peak[n]] += sigma * total;
            for (std::size_t p = 0; p < P; ++p)
                g_bar[p] /= T(C);  // now g_S[p, ·]
            route_to_arg_max<In>(g_bar.data(), code, x, dx);
        });
    }

    /// dx[q, c] += sign(x[q, c]) · Σ of g_s[p] over the windows p that contain q and took their maximum of |x[·, c]|
    /// from q (code[p, c] names q's offset from p). Gathered per element q over its (up to) nine windows, a vector
    /// of channels at a time: window p = q − offset(o) sends to q exactly where its code is o.
    template <class In, class T>
    static void route_to_arg_max(const T* g_s, const T* code, const T* x, T* dx)
    {
        using B = xsimd::batch<T>;
        constexpr std::size_t C = In::c, H = In::h, W = In::w, L = B::size, full = C / L * L;
        std::array<T, C> acc;
        for (std::size_t qy = 0; qy < H; ++qy)
            for (std::size_t qx = 0; qx < W; ++qx) {
                acc.fill(T(0));
                for (std::size_t o = 0; o < 9; ++o) {
                    // q = p + (o/3 − 1, o%3 − 1), so p = q − that offset; skip windows outside the map
                    const std::size_t py = qy + 1 - o / 3, px = qx + 1 - o % 3;  // wraps to huge when negative
                    if (py >= H || px >= W)
                        continue;
                    const std::size_t p = py * W + px;
                    if (g_s[p] == T(0))
                        continue;
                    const T* from = code + p * C;
                    const B g(g_s[p]), zero(T(0)), mine = B(T(o));  // (not mine{…}: the initializer-list constructor)
                    for (std::size_t c0 = 0; c0 < full; c0 += L)
                        (B::load_unaligned(acc.data() + c0) +
                         xsimd::select(B::load_unaligned(from + c0) == mine, g, zero))
                            .store_unaligned(acc.data() + c0);
                    for (std::size_t ch = full; ch < C; ++ch)
                        acc[ch] += from[ch] == T(o) ? g_s[p] : T(0);
                }
                const std::size_t q = (qy * W + qx) * C;
                const B one(T(1)), zero(T(0));
                for (std::size_t c0 = 0; c0 < full; c0 += L) {
                    const B v = B::load_unaligned(x + q + c0);
                    const B sign = xsimd::select(v > zero, one, xsimd::select(v < zero, -one, zero));
                    xsimd::fma(sign, B::load_unaligned(acc.data() + c0), B::load_unaligned(dx + q + c0))
                        .store_unaligned(dx + q + c0);
                }
                for (std::size_t ch = full; ch < C; ++ch)
                    dx[q + ch] += x[q + ch] > T(0) ? acc[ch] : (x[q + ch] < T(0) ? -acc[ch] : T(0));
            }
    }
};

/// Fractional threshold: per image and channel, only the values strictly above the map's k-th smallest survive,
///   k = ⌊(1 − ρ)·H·W⌋ (1-based),   y = x · 1[x > thr],
/// so at most H·W − k values per map are kept (about the top fraction ρ; ties with thr are dropped). ρ ∈ (0, 1)
/// (default 0.2); when (1 − ρ)·H·W < 1 (k = 0: a small map, ρ near 1) nothing is removed. The threshold is found
/// by linear-time selection for a whole vector of channels at once (kernels::column_rank_thresholds).
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
        aligned_vector<T> threshold;  ///< per image and channel [batch × C]: any value that splits the map as the
                                      ///< k-th smallest does; −∞ when k = 0
    };

    /// k of a map of `positions` values for ratio ρ.
    static std::size_t rank_of(double ratio, std::size_t positions)
    {
        // the product is rounded down; a tiny guard keeps e.g. (1 − 0.2)·10 = 7.999… from becoming 7
        return static_cast<std::size_t>(std::floor((1.0 - ratio) * double(positions) + 1e-9));
    }

    /// out[p, c] = x[p, c] > thr[c] ? src[p, c] : 0 over one map [positions × C], vectorised across channels.
    template <class T>
    static void keep_above(const T* x, const T* thr, const T* src, T* out, std::size_t positions, std::size_t C)
    {
        using B = xsimd::batch<T>;
        constexpr std::size_t L = B::size;
        const std::size_t full = C / L * L;
        for (std::size_t c0 = 0; c0 < full; c0 += L) {
            const B t = B::load_unaligned(thr + c0);
            for (std::size_t p = 0; p < positions; ++p) {
                const std::size_t at = p * C + c0;
                xsimd::select(B::load_unaligned(x + at) > t, B::load_unaligned(src + at), B(T(0)))
                    .store_unaligned(out + at);
            }
        }
        for (std::size_t p = 0; p < positions; ++p)
            for (std::size_t ch = full; ch < C; ++ch)
                out[p * C + ch] = x[p * C + ch] > thr[ch] ? src[p * C + ch] : T(0);
    }

    template <class In, class T>
    static void forward(const options& o, const forward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c, P = In::h * In::w;
        const std::size_t k = rank_of(o.remaining_ratio(), P);
        c.threshold.resize(a.batch * C);
        parallel_for(a.batch, [&](std::size_t n) {
            const T* x = a.x + n * In::size;
            T* thr = c.threshold.data() + n * C;
            if (k > 0)
                kernels::column_rank_thresholds(x, P, C, C, k, thr);
            else
                std::fill(thr, thr + C, -std::numeric_limits<T>::infinity());
            keep_above(x, thr, x, a.y + n * In::size, P, C);
        });
    }

    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c, P = In::h * In::w;
        parallel_for(a.batch, [&](std::size_t n) {
            const std::size_t at = n * In::size;
            keep_above(a.x + at, c.threshold.data() + n * C, a.dy + at, a.dx + at, P, C);
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
