#pragma once
/// @file elementwise.hpp
/// Parameter-free layers that keep the shape: ReLU, L1Norm, Softmax, Normalize; and Flatten.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>

#include <vector>

#include <xsimd/xsimd.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "common.hpp"

namespace nmfdsl {

namespace detail {
/// The fraction of the n values y[0..n) that are not zero (counted, so the thread count cannot change it).
template <class T>
double nonzero_fraction(const T* y, std::size_t n)
{
    std::atomic<std::size_t> count{0};
    parallel_chunks(n, elementwise_chunk, [&](std::size_t b, std::size_t e) {
        std::size_t k = 0;
        for (std::size_t i = b; i < e; ++i)
            k += y[i] != T(0);
        count += k;
    });
    return n ? double(count.load()) / double(n) : 0.0;
}

/// out[i] = x[i] > 0 ? src[i] : 0 (when negative_to_zero_only: x[i] < 0 ? 0 : src[i], so NaN passes) for i in
/// [0, n), explicitly vectorised: the compiler will not turn the conditional load of src into a blend by itself.
template <bool negative_to_zero_only, class T>
void pass_where_positive(const T* x, const T* src, T* out, std::size_t n)
{
    using B = xsimd::batch<T>;
    constexpr std::size_t L = B::size;
    const B zero(T(0));
    std::size_t i = 0;
    for (; i + L <= n; i += L) {
        const B v = B::load_unaligned(x + i), s = B::load_unaligned(src + i);
        if constexpr (negative_to_zero_only)
            xsimd::select(v < zero, zero, s).store_unaligned(out + i);
        else
            xsimd::select(v > zero, s, zero).store_unaligned(out + i);
    }
    for (; i < n; ++i)
        out[i] = negative_to_zero_only ? (x[i] < T(0) ? T(0) : src[i]) : (x[i] > T(0) ? src[i] : T(0));
}
} // namespace detail

/// y = max(x, 0), NaN passes through (so checked builds see it downstream). Any shape.
/// Backward: dx = dy where x > 0, else 0.
/// Statistic "nonzero": the fraction of outputs above zero.
struct ReLU : layer_base {
    static std::string name() { return "ReLU"; }
    template <class In>
    using output_shape = In;

    template <class In, class T>
    static void forward(const options&, const forward_args<T>& a, cache<In, T>&)
    {
        parallel_chunks(a.batch * In::size, detail::elementwise_chunk, [&](std::size_t b, std::size_t e) {
            detail::pass_where_positive<true>(a.x + b, a.x + b, a.y + b, e - b);
        });
    }
    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>&)
    {
        parallel_chunks(a.batch * In::size, detail::elementwise_chunk, [&](std::size_t b, std::size_t e) {
            detail::pass_where_positive<false>(a.x + b, a.dy + b, a.dx + b, e - b);
        });
    }
    template <class In, class T>
    static void statistics(const options&, const statistics_args<T>& a, cache<In, T>&, statistic_sink sink)
    {
        sink(a.where, name(), "nonzero", detail::nonzero_fraction(a.y, a.batch * In::size));
    }
};

/// L1 normalisation over the channels of each position (over the features of a vector), docs/method.md §1:
///   y_i = x_i / (Σ_j x_j + 1e-19).   Requires x ≥ 0 (put a ReLU before it).
/// Backward: dx_i = (dy_i − Σ_j dy_j y_j) / (Σ_j x_j + 1e-19).
struct L1Norm : layer_base {
    static std::string name() { return "L1Norm"; }
    template <class In>
    using output_shape = In;

    template <class In, class T>
    static void forward(const options&, const forward_args<T>& a, cache<In, T>&)
    {
        constexpr std::size_t C = detail::channels<In>();
        const std::size_t rows = a.batch * detail::rows_per_sample<In>();
        parallel_chunks(rows, detail::row_chunk<C>(), [&](std::size_t rb, std::size_t re) {
            for (std::size_t r = rb; r < re; ++r) {
                const T* x = a.x + r * C;
                T* y = a.y + r * C;
                T s = 0;
                for (std::size_t c = 0; c < C; ++c)
                    s += x[c];
                const T inv = T(1) / (s + detail::l1_eps<T>());
                for (std::size_t c = 0; c < C; ++c)
                    y[c] = x[c] * inv;
            }
        });
    }
    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>&)
    {
        constexpr std::size_t C = detail::channels<In>();
        const std::size_t rows = a.batch * detail::rows_per_sample<In>();
        parallel_chunks(rows, detail::row_chunk<C>(), [&](std::size_t rb, std::size_t re) {
            for (std::size_t r = rb; r < re; ++r) {
                const T* x = a.x + r * C;
                const T* y = a.y + r * C;
                const T* dy = a.dy + r * C;
                T* dx = a.dx + r * C;
                T s = 0, dot = 0;
                for (std::size_t c = 0; c < C; ++c) {
                    s += x[c];
                    dot += dy[c] * y[c];
                }
                const T inv = T(1) / (s + detail::l1_eps<T>());
                for (std::size_t c = 0; c < C; ++c)
                    dx[c] = (dy[c] - dot) * inv;
            }
        });
    }
};

/// Softmax over the channels of each position (over the features of a vector): y = exp(x − max) / Σ exp(x − max).
/// Backward: dx = y ⊙ (dy − Σ dy·y).
struct Softmax : layer_base {
    static std::string name() { return "Softmax"; }
    template <class In>
    using output_shape = In;

    template <class In, class T>
    static void forward(const options&, const forward_args<T>& a, cache<In, T>&)
    {
        constexpr std::size_t C = detail::channels<In>();
        const std::size_t rows = a.batch * detail::rows_per_sample<In>();
        for (std::size_t r = 0; r < rows; ++r) {
            const T* x = a.x + r * C;
            T* y = a.y + r * C;
            const T m = *std::max_element(x, x + C);
            T s = 0;
            for (std::size_t c = 0; c < C; ++c) {
                y[c] = std::exp(x[c] - m);
                s += y[c];
            }
            const T inv = T(1) / s;
            for (std::size_t c = 0; c < C; ++c)
                y[c] *= inv;
        }
    }
    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>&)
    {
        constexpr std::size_t C = detail::channels<In>();
        const std::size_t rows = a.batch * detail::rows_per_sample<In>();
        for (std::size_t r = 0; r < rows; ++r) {
            const T* y = a.y + r * C;
            const T* dy = a.dy + r * C;
            T* dx = a.dx + r * C;
            T dot = 0;
            for (std::size_t c = 0; c < C; ++c)
                dot += dy[c] * y[c];
            for (std::size_t c = 0; c < C; ++c)
                dx[c] = y[c] * (dy[c] - dot);
        }
    }
};

/// Fixed per-channel standardisation inside the model: y[·, c] = (x[·, c] − mean[c]) / std[c] (for a vector, per
/// feature). With it as the first layer, data, noise and attacks stay in the [0, 1] pixel space of the images.
/// Options: `channels(mean, std)`, one value per channel each (std > 0, all finite); unset, the layer is the
/// identity. A count that does not match the incoming channels throws argument_error naming the layer's path.
/// Backward: dx = dy / std[c].
struct Normalize : layer_base {
    class options {
    public:
        const std::vector<double>& mean() const { return mean_; }
        const std::vector<double>& stddev() const { return std_; }
        /// The channels' means and standard deviations (equal lengths, std > 0, finite).
        options& channels(std::vector<double> mean, std::vector<double> stddev)
        {
            if (mean.size() != stddev.size())
                throw argument_error(
                    "nmfdsl: Normalize option 'channels' needs as many standard deviations as means, got " +
                    std::to_string(mean.size()) + " means and " + std::to_string(stddev.size()) +
                    " standard deviations");
            for (std::size_t c = 0; c < mean.size(); ++c)
                if (!std::isfinite(mean[c]) || !std::isfinite(stddev[c]) || !(stddev[c] > 0))
                    throw argument_error("nmfdsl: Normalize option 'channels' needs finite means and standard "
                                         "deviations > 0; channel " + std::to_string(c) + " has mean " +
                                         std::to_string(mean[c]) + ", std " + std::to_string(stddev[c]));
            mean_ = std::move(mean);
            std_ = std::move(stddev);
            return *this;
        }

    private:
        std::vector<double> mean_, std_;
    };

    static std::string name() { return "Normalize"; }
    template <class In>
    using output_shape = In;

    template <class In, class T>
    struct cache {
        std::vector<double> inv_std;  ///< the forward's 1/std per channel (empty: identity)
    };

    template <class In, class T>
    static void forward(const options& o, const forward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = detail::channels<In>();
        if (!o.mean().empty() && o.mean().size() != C)
            throw argument_error("nmfdsl: layer " + a.where.text() + " (Normalize) has " +
                                 std::to_string(o.mean().size()) + " channel statistics for an input of " +
                                 std::to_string(C) + " channels");
        c.inv_std.clear();
        for (double s : o.stddev())
            c.inv_std.push_back(1.0 / s);
        if (c.inv_std.empty()) {
            std::copy(a.x, a.x + a.batch * In::size, a.y);
            return;
        }
        parallel_chunks(a.batch * In::size, detail::elementwise_chunk, [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i)
                a.y[i] = T((double(a.x[i]) - o.mean()[i % C]) * c.inv_std[i % C]);
        });
    }
    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = detail::channels<In>();
        if (c.inv_std.empty()) {
            std::copy(a.dy, a.dy + a.batch * In::size, a.dx);
            return;
        }
        parallel_chunks(a.batch * In::size, detail::elementwise_chunk, [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i)
                a.dx[i] = T(double(a.dy[i]) * c.inv_std[i % C]);
        });
    }
};

/// Shape<C,H,W> -> Shape<C·H·W> (a vector passes through). The feature order is the internal channels-last order
/// (h, w, c); the data is not moved.
struct Flatten : layer_base {
    static std::string name() { return "Flatten"; }
    template <class In>
    using output_shape = Shape<In::size>;

    template <class In, class T>
    static void forward(const options&, const forward_args<T>& a, cache<In, T>&)
    {
        std::copy(a.x, a.x + a.batch * In::size, a.y);
    }
    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>&)
    {
        std::copy(a.dy, a.dy + a.batch * In::size, a.dx);
    }
};

} // namespace nmfdsl
