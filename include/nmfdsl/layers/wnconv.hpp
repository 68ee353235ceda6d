#pragma once
/// @file wnconv.hpp
/// ZeroPad<P> and the weight-normalised convolution of networks with sparse, strong activations (docs/method.md §6).
///
/// ZeroPad<P>: Shape<C, H, W> → Shape<C, H + 2P, W + 2P>, the map surrounded by P rows and columns of zeros.
/// Backward: dx = the interior of dy. `Seq<ZeroPad<1>, Conv<Out, 3>>` is a 3×3 convolution that keeps the map size.
///
/// WNConvCore<Out, K, Stride>: a valid K×K convolution without bias whose filters are implicitly ℓ2-normalised:
///   y[p, k] = Σ_i W[k, i]·P[p, i] / (‖W_k‖₂ + 1e-6)      (P = im2col(x), patch order (ky, kx, c))
/// The division is part of the function, so the gradient goes through the norm: with r = ‖W_k‖₂, d = r + 1e-6 and
/// G = dyᵀ·P (the gradient with respect to Ŵ = W/d),
///   dW_k += G_k / d − (G_k · W_k)·W_k / (r·d²)      (the second term is 0 for an all-zero filter)
///   dx = col2im(dy · Ŵ).
/// Group `conv`; init U(±1/√(K·K·C)) as PyTorch's Conv2d (the scale does not change the output).
///
/// The Hebbian/anti-Hebbian local cost (options hah_alpha α ≥ 0, default 0 = off; hah_k_ratio in (0, 1], default
/// 0.1; hah_lambda λ ≥ 0, default 1). At every position p of every image, with v = ReLU(y[p, ·]) over the N output
/// channels and K = ⌈k_ratio·N⌉ (at most N − 1):
///   HaH = mean over (image, p) of [ mean of the K largest v − λ · mean of the other N − K ]
/// and the layer adds −α·HaH to the objective (the cost rewards a few strong responses per position). Its gradient
/// reaches only W, with the layer's input held fixed: dHaH/dy[p, c] = 1/(K·M) for the K largest (y > 0),
/// −λ/((N − K)·M) for the others with y > 0, 0 where y ≤ 0 (M = images × positions; ties for the K-th place go to
/// the lower channel index). Under data-parallel training (core/replicas.hpp) M counts the global batch, so each
/// replica returns its share of the cost and of its gradient.
/// WNConv<Out, K, Stride, Pad> = ZeroPad<Pad> → WNConvCore<Out, K, Stride> (the pad only when Pad > 0).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../core/error.hpp"
#include "../core/replicas.hpp"
#include "../kernels/gemm.hpp"
#include "../kernels/im2col.hpp"
#include "../kernels/reduce.hpp"
#include "common.hpp"
#include "conv.hpp"

namespace nmfdsl {

template <std::size_t P>
struct ZeroPad : layer_base {
    static std::string name() { return "ZeroPad<" + std::to_string(P) + ">"; }
    template <class In>
    static constexpr shape_issue check = In::rank == 3 ? shape_issue::none : shape_issue::needs_map;
    template <class In>
    using output_shape = Shape<In::c, In::h + 2 * P, In::w + 2 * P>;

    template <class In, class T>
    static void forward(const options&, const forward_args<T>& a, cache<In, T>&)
    {
        constexpr std::size_t C = In::c, H = In::h, W = In::w, OW = W + 2 * P, Osize = C * (H + 2 * P) * OW;
        parallel_for(a.batch, [&](std::size_t n) {
            std::fill(a.y + n * Osize, a.y + (n + 1) * Osize, T(0));
            for (std::size_t y = 0; y < H; ++y)
                std::copy(a.x + n * In::size + y * W * C, a.x + n * In::size + (y + 1) * W * C,
                          a.y + n * Osize + ((y + P) * OW + P) * C);
        });
    }
    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>&)
    {
        constexpr std::size_t C = In::c, H = In::h, W = In::w, OW = W + 2 * P, Osize = C * (H + 2 * P) * OW;
        parallel_for(a.batch, [&](std::size_t n) {
            for (std::size_t y = 0; y < H; ++y) {
                const T* src = a.dy + n * Osize + ((y + P) * OW + P) * C;
                std::copy(src, src + W * C, a.dx + n * In::size + y * W * C);
            }
        });
    }
};

template <std::size_t Out, std::size_t K, std::size_t Stride = 1>
struct WNConvCore : detail::patch_layer<Out, K, Stride> {
    /// The options of the layer's Hebbian/anti-Hebbian local cost; the setters validate.
    class options {
    public:
        double hah_alpha() const { return alpha_; }
        double hah_k_ratio() const { return k_ratio_; }
        double hah_lambda() const { return lambda_; }
        /// α, the cost's weight (≥ 0; 0 turns it off).
        options& hah_alpha(double a)
        {
            alpha_ = detail::checked_option("WNConv", "hah_alpha", a, detail::at_least_zero);
            return *this;
        }
        /// The fraction of the channels counted as strongly active, in (0, 1].
        options& hah_k_ratio(double r)
        {
            k_ratio_ = detail::checked_option("WNConv", "hah_k_ratio", r, {0.0, 1.0, true, false});
            return *this;
        }
        /// λ, the weight of the weak channels' mean (≥ 0).
        options& hah_lambda(double l)
        {
            lambda_ = detail::checked_option("WNConv", "hah_lambda", l, detail::at_least_zero);
            return *this;
        }

    private:
        double alpha_ = 0.0, k_ratio_ = 0.1, lambda_ = 1.0;
    };
    /// K of the local cost for `channels` channels: ⌈k_ratio·N⌉, at least 1 and at most N − 1.
    static std::size_t strong_count(double k_ratio, std::size_t channels)
    {
        const auto k = static_cast<std::size_t>(std::ceil(k_ratio * double(channels) - 1e-9));
        return std::clamp<std::size_t>(k, 1, channels > 1 ? channels - 1 : 1);
    }
    template <class In>
    static constexpr std::size_t patch = detail::patch_layer<Out, K, Stride>::template patch<In>;
    static_assert(Out > 0, "nmfdsl: WNConv<Out, K> needs Out > 0");
    static constexpr double norm_eps = 1e-6;
    static std::string name()
    {
        return "WNConv<" + std::to_string(Out) + "," + detail::kernel_text(K) +
               (Stride != 1 ? "," + std::to_string(Stride) : std::string()) + ">";
    }
    template <class In>
    static constexpr std::array<param_spec, 1> param_tensors{
        {{"weight", group::conv, Out * patch<In>, detail::patch_layer<Out, K, Stride>::template weight_dims<In>}}};

    /// The `strong` largest values of v = max(y, 0) over one output row y[0..Out): the smallest of them
    /// (threshold), how many of them equal it (tied: of the values equal to the threshold, that many are strong,
    /// the lower channel indices first), and the sums of the strong values and of the others.
    template <class T>
    struct strongest {
        T threshold;
        std::size_t tied;
        std::size_t equal;  ///< how many values equal the threshold (rank_rows: tied, or tied + 1 when there are more)
        double top, rest;
    };
    template <class In, class T>
    struct cache {
        aligned_vector<T> cols;   ///< the patches [positions × I]
        aligned_vector<T> w_hat;  ///< Ŵ = W/(‖W_k‖ + 1e-6) [Out × I]
        aligned_vector<T> norm;   ///< ‖W_k‖₂
        aligned_vector<T> g_hat, dcols;
        aligned_vector<T> g_local;  ///< dcost/dy of the local cost
        std::vector<double> per_row;  ///< the local cost's or a statistic's value per output row
        std::vector<strongest<T>> splits;  ///< the local cost's ranking of each output row
    };

    template <class In, class T>
    static void init(T* p, T*, rng& g)
    {
        const T bound = T(1) / std::sqrt(T(patch<In>));
        for (std::size_t i = 0; i < Out * patch<In>; ++i)
            p[i] = g.uniform<T>(-bound, bound);
    }

    template <class In, class T>
    static void forward(const options&, const forward_args<T>& a, cache<In, T>& c)
    {
        constexpr auto win = detail::window_of<In, K, Stride>();
        constexpr std::size_t I = patch<In>, P = win.oh() * win.ow();
        const std::size_t rows = a.batch * P;
        c.norm.resize(Out);
        c.w_hat.resize(Out * I);
        for (std::size_t k = 0; k < Out; ++k) {
            const T* w = a.params + k * I;
            c.norm[k] = std::sqrt(kernels::dot(w, w, I));
            const T inv = T(1) / (c.norm[k] + T(norm_eps));
            for (std::size_t i = 0; i < I; ++i)
                c.w_hat[k * I + i] = w[i] * inv;
        }
        c.cols.resize(rows * I);
        kernels::im2col(a.x, a.batch, kernels::fixed_window<win>{}, c.cols.data());
        kernels::gemm<T>(false, true, rows, Out, I, T(1), c.cols.data(), I, c.w_hat.data(), I, T(0), a.y, Out);
    }

    /// grads += dL/dW for dL/dy = dy [rows × Out]: G = dyᵀ P (the gradient with respect to Ŵ), then through
    /// Ŵ = W / (‖W‖ + ε).
    template <class In, class T>
    static void add_weight_gradient(const T* dy, std::size_t rows, const T* params, T* grads, cache<In, T>& c)
    {
        constexpr std::size_t I = patch<In>;
        c.g_hat.resize(Out * I);
        kernels::gemm<T>(true, false, Out, I, rows, T(1), dy, Out, c.cols.data(), I, T(0), c.g_hat.data(), I);
        for (std::size_t k = 0; k < Out; ++k) {
            const T* w = params + k * I;
            const T* g = c.g_hat.data() + k * I;
            T* dw = grads + k * I;
            const T r = c.norm[k], d = r + T(norm_eps);
            const T radial = r > T(0) ? kernels::dot(g, w, I) / (r * d * d) : T(0);
            for (std::size_t i = 0; i < I; ++i)
                dw[i] += g[i] / d - radial * w[i];
        }
    }

    /// The split of one row, found by taking the largest value below the last one found, with its multiplicity,
    /// until `strong` values are taken (strong is about N/10); each step is one vectorised pass over the row.
    template <class T>
    static strongest<T> split_strongest(const T* y, std::size_t strong)
    {
        using B = xsimd::batch<T>;
        constexpr std::size_t L = B::size, full = Out / L * L;
        alignas(64) std::array<T, Out> v;  // max(y, 0)
        B sum_b(T(0));
        for (std::size_t i = 0; i < full; i += L) {
            const B b = xsimd::max(B::load_unaligned(y + i), B(T(0)));
            b.store_aligned(v.data() + i);
            sum_b += b;
        }
        double total = double(kernels::horizontal_sum(sum_b));
        for (std::size_t i = full; i < Out; ++i) {
            v[i] = y[i] > T(0) ? y[i] : T(0);
            total += double(v[i]);
        }
        T bound = std::numeric_limits<T>::infinity(), value = T(0);
        std::size_t remaining = strong, taken = 0, count = 0;
        double top = 0;
        while (remaining > 0) {
            B m(T(-1));  // below every v ≥ 0
            for (std::size_t i = 0; i < full; i += L) {
                const B b = B::load_aligned(v.data() + i);
                m = xsimd::max(m, xsimd::select(b < B(bound), b, B(T(-1))));
            }
            alignas(64) std::array<T, L> lanes;
            m.store_aligned(lanes.data());
            value = *std::max_element(lanes.begin(), lanes.end());
            for (std::size_t i = full; i < Out; ++i)
                value = v[i] < bound && v[i] > value ? v[i] : value;
            B count_b(T(0));
            for (std::size_t i = 0; i < full; i += L)
                count_b += xsimd::select(B::load_aligned(v.data() + i) == B(value), B(T(1)), B(T(0)));
            count = std::size_t(kernels::horizontal_sum(count_b));
            for (std::size_t i = full; i < Out; ++i)
                count += v[i] == value;
            taken = std::min(count, remaining);
            top += double(taken) * double(value);
            remaining -= taken;
            bound = value;
        }
        return {value, taken, count, top, total - top};
    }

    /// split_strongest for every row of y [rows × Out] into split[0..rows). Blocks of one vector's worth of rows
    /// are ranked together, a row per lane: each channel's values across the rows are inserted into the
    /// lanes' sorted lists of the strong + 1 largest (the extra place tells whether the K-th value ties with a weak
    /// one). The rows after the last whole block go through split_strongest. Which path a row takes depends on its
    /// index alone, so the results do not depend on the thread count.
    template <class T>
    static void rank_rows(const T* y, std::size_t rows, std::size_t strong, std::vector<strongest<T>>& split)
    {
        using B = xsimd::batch<T>;
        constexpr std::size_t L = B::size;
        split.resize(rows);
        const std::size_t blocks = rows / L, places = strong + 1;  // strong ≤ Out − 1, so places ≤ Out
        parallel_chunks(blocks, 16, [&](std::size_t b0, std::size_t b1) {
            thread_local std::vector<B, xsimd::aligned_allocator<B>> best;  // descending: best[0] is the largest
            thread_local std::vector<T, xsimd::aligned_allocator<T>> across;  // the block transposed [Out × L]
            best.resize(places);
            across.resize(Out * L);
            alignas(B::arch_type::alignment()) std::array<T, L> lane, totals;
            for (std::size_t blk = b0; blk < b1; ++blk) {
                // (a copy, not xsimd's gather: in xsimd 8.1 that falls back to one lane at a time)
                const T* base = y + blk * L * Out;
                for (std::size_t j = 0; j < L; ++j)
                    for (std::size_t ch = 0; ch < Out; ++ch)
                        across[ch * L + j] = base[j * Out + ch];
                std::fill(best.begin(), best.end(), B(T(-1)));  // below every max(y, 0)
                B total(T(0));
                for (std::size_t ch = 0; ch < Out; ++ch) {
                    B v = xsimd::max(B::load_aligned(across.data() + ch * L), B(T(0)));
                    total += v;
                    for (std::size_t j = 0; j < places; ++j) {  // insert v: the larger stays, the smaller moves on
                        const B here = best[j];
                        best[j] = xsimd::max(here, v);
                        v = xsimd::min(here, v);
                    }
                }
                total.store_aligned(totals.data());
                for (std::size_t k = 0; k < strong; ++k)  // the lists transposed back, through `across`
                    best[k].store_aligned(across.data() + k * L);
                best[strong].store_aligned(lane.data());
                for (std::size_t j = 0; j < L; ++j) {
                    auto& out = split[blk * L + j];
                    out.threshold = across[(strong - 1) * L + j];
                    out.top = 0;
                    out.tied = 0;
                    for (std::size_t k = 0; k < strong; ++k) {
                        out.top += double(across[k * L + j]);
                        out.tied += across[k * L + j] == out.threshold;
                    }
                    out.equal = out.tied + (lane[j] == out.threshold ? 1 : 0);  // more equal values than strong ones
                    out.rest = double(totals[j]) - out.top;
                }
            }
        });
        for (std::size_t r = blocks * L; r < rows; ++r)
            split[r] = split_strongest(y + r * Out, strong);
    }

    /// The local cost's gradient over one output row: g = g_strong for the strong values, g_weak for the other
    /// positive ones, 0 where y ≤ 0. Vectorised; a row whose threshold ties across the K-th place (a positive value
    /// shared by strong and weak channels) takes the scalar path that admits the lower channel indices first.
    template <class T>
    static void strong_weak_gradient(const T* y, const strongest<T>& split, T g_strong, T g_weak, T* g)
    {
        using B = xsimd::batch<T>;
        constexpr std::size_t L = B::size, full = Out / L * L;
        const bool tie_splits = split.threshold > T(0) && split.equal > split.tied;
        if (!tie_splits) {
            // every value equal to a positive threshold is strong; at threshold 0 the zeros get 0 anyway
            const B t(split.threshold), zero(T(0)), gs(g_strong), gw(g_weak);
            for (std::size_t ch = 0; ch < full; ch += L) {
                const B v = B::load_unaligned(y + ch);
                xsimd::select(v > zero, xsimd::select(v >= t, gs, gw), zero).store_unaligned(g + ch);
            }
            for (std::size_t ch = full; ch < Out; ++ch)
                g[ch] = y[ch] > T(0) ? (y[ch] >= split.threshold ? g_strong : g_weak) : T(0);
            return;
        }
        std::size_t tied_left = split.tied;
        for (std::size_t ch = 0; ch < Out; ++ch) {
            const T v = y[ch] > T(0) ? y[ch] : T(0);
            const bool tie_admitted = v == split.threshold && tied_left > 0;
            tied_left -= tie_admitted;
            g[ch] = v > T(0) ? (v > split.threshold || tie_admitted ? g_strong : g_weak) : T(0);
        }
    }

    /// Σ over rows of row_value(r), computed in parallel and summed in row order (independent of the thread count);
    /// per_row is scratch.
    template <class F>
    static double sum_over_rows(std::size_t rows, std::vector<double>& per_row, F&& row_value)
    {
        per_row.resize(rows);
        parallel_chunks(rows, 64, [&](std::size_t rb, std::size_t re) {
            for (std::size_t r = rb; r < re; ++r)
                per_row[r] = row_value(r);
        });
        double sum = 0;
        for (double v : per_row)
            sum += v;
        return sum;
    }

    /// The Hebbian/anti-Hebbian cost −α·HaH of the forward that produced y (see the file's comment): returns it and
    /// leaves its gradient with respect to y in c.g_local [rows × Out].
    template <class In, class T>
    static double hah_cost(const options& o, const T* y, std::size_t batch, cache<In, T>& c)
    {
        constexpr auto win = detail::window_of<In, K, Stride>();
        constexpr std::size_t P = win.oh() * win.ow();
        const std::size_t rows = batch * P, strong = strong_count(o.hah_k_ratio(), Out);
        const double lambda = o.hah_lambda(), alpha = o.hah_alpha();
        // the mean is over the global batch under data-parallel training (this replica's share of it otherwise)
        const double all_rows = global_count(rows);
        const T g_strong = T(-alpha / (double(strong) * all_rows));
        const T g_weak = Out > strong ? T(alpha * lambda / (double(Out - strong) * all_rows)) : T(0);
        c.g_local.resize(rows * Out);  // every entry is written below
        rank_rows(y, rows, strong, c.splits);
        const double hah = sum_over_rows(rows, c.per_row, [&](std::size_t r) {
            const auto& split = c.splits[r];
            strong_weak_gradient(y + r * Out, split, g_strong, g_weak, c.g_local.data() + r * Out);
            return split.top / double(strong) - (Out > strong ? lambda * split.rest / double(Out - strong) : 0.0);
        }) / all_rows;
        return -alpha * hah;
    }

    /// The local cost: reports −α·HaH of the last forward and adds its gradient to the weights' gradients. Nothing
    /// when α = 0. (Model::backward_parameters_and_local_costs does the same inside backward, in one product.)
    template <class In, class T>
    static void local_costs(const options& o, const local_cost_args<T>& a, cache<In, T>& c, local_cost_sink sink)
    {
        if (o.hah_alpha() == 0.0)
            return;
        const double cost = hah_cost<In, T>(o, a.y, a.batch, c);
        add_weight_gradient<In, T>(c.g_local.data(), c.g_local.size() / Out, a.params, a.grads, c);
        sink(a.where, name(), cost);
    }
    static constexpr bool folds_local_costs = true;

    /// Statistic "disparity": the mean over positions of (mean of the K largest − mean of the other N − K) of
    /// max(y, 0)/(‖patch‖₂ + 1e-6), K as in the HaH cost — how strongly a few channels win at a position, in units
    /// of the input patch's norm (each term is a cosine between a filter and the patch, so at most 1).
    template <class In, class T>
    static void statistics(const options& o, const statistics_args<T>& a, cache<In, T>& c, statistic_sink sink)
    {
        constexpr auto win = detail::window_of<In, K, Stride>();
        constexpr std::size_t I = patch<In>, P = win.oh() * win.ow();
        const std::size_t rows = a.batch * P, strong = strong_count(o.hah_k_ratio(), Out);
        rank_rows(a.y, rows, strong, c.splits);
        const double disparity = sum_over_rows(rows, c.per_row, [&](std::size_t r) {
            const T* cols = c.cols.data() + r * I;
            const double norm = std::sqrt(double(kernels::dot(cols, cols, I))) + norm_eps;
            const auto& split = c.splits[r];
            return (split.top / double(strong) - (Out > strong ? split.rest / double(Out - strong) : 0.0)) / norm;
        }) / double(rows);
        sink(a.where, name(), "disparity", disparity);
    }

    /// With a.fold_local_costs and α > 0 the local cost's gradient joins dy in the one weight-gradient product:
    /// dW += (dy + dHaHcost/dy)ᵀ P through the norm, dx from dy alone.
    template <class In, class T>
    static void backward(const options& o, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr auto win = detail::window_of<In, K, Stride>();
        constexpr std::size_t I = patch<In>, P = win.oh() * win.ow();
        const std::size_t rows = a.batch * P;
        if (a.fold_local_costs && o.hah_alpha() != 0.0) {
            const double cost = hah_cost<In, T>(o, a.y, a.batch, c);
            T* g = c.g_local.data();
            const T* dy = a.dy;
            parallel_chunks(rows * Out, detail::elementwise_chunk, [&](std::size_t b, std::size_t e) {
                for (std::size_t i = b; i < e; ++i)
                    g[i] += dy[i];
            });
            add_weight_gradient<In, T>(g, rows, a.params, a.grads, c);
            (*a.fold_local_costs)(a.where, name(), cost);
        } else if (a.need_grads) {
            add_weight_gradient<In, T>(a.dy, rows, a.params, a.grads, c);
        }
        if (!a.need_dx)
            return;
        c.dcols.resize(rows * I);
        kernels::gemm<T>(false, false, rows, I, Out, T(1), a.dy, Out, c.w_hat.data(), I, T(0), c.dcols.data(), I);
        kernels::col2im(c.dcols.data(), a.batch, kernels::fixed_window<win>{}, a.dx);
    }
};

/// The weight-normalised convolution with zero padding: ZeroPad<Pad> → WNConvCore<Out, K, Stride>.
template <std::size_t Out, std::size_t K, std::size_t Stride = 1, std::size_t Pad = 0>
struct WNConv {
    template <class In>
    using expand = std::conditional_t<Pad == 0, Seq<WNConvCore<Out, K, Stride>>,
                                      Seq<ZeroPad<Pad>, WNConvCore<Out, K, Stride>>>;
};

} // namespace nmfdsl
