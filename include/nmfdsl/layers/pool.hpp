#pragma once
/// @file pool.hpp
/// AvgPool<K> and MaxPool<K>: K×K windows with stride K over each channel, no padding (floor of H/K, W/K).
/// The window must fit the incoming map (a 1×1 map cannot be pooled).
///   AvgPool: y = mean of the window; dx = dy / K² spread over the window.
///   MaxPool: y = max of the window (first maximum wins); dx = dy routed to that element.
#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../core/parallel.hpp"
#include "common.hpp"

namespace nmfdsl {

namespace detail {
template <std::size_t K, bool Max>
struct pool_layer : layer_base {
    static_assert(K > 0, "nmfdsl: a pooling window needs K > 0");
    template <class In>
    static constexpr shape_issue check = window_check<In, K, K>(shape_issue::window_too_large);
    template <class In>
    using output_shape = Shape<In::c, In::h / K, In::w / K>;

    template <class In, class T>
    struct cache {
        std::vector<std::uint32_t> argmax;  ///< MaxPool: input offset (within the sample) of each output
    };

    template <class In, class T>
    static void forward(const no_options&, const forward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c, W = In::w, OH = In::h / K, OW = In::w / K;
        if constexpr (Max)
            c.argmax.resize(a.batch * OH * OW * C);
        parallel_for(a.batch, [&](std::size_t n) {  // one sample per task
            const T* x = a.x + n * In::size;
            T* y = a.y + n * OH * OW * C;
            std::size_t vectorised = 0;  // channels [0, vectorised) done a vector at a time
            if constexpr (Max && std::is_same_v<T, float>) {
                vectorised = max_pool_vectors<In>(x, y, c.argmax.data() + n * OH * OW * C);
            }
            for (std::size_t oy = 0; oy < OH; ++oy)
                for (std::size_t ox = 0; ox < OW; ++ox)
                    for (std::size_t ch = vectorised; ch < C; ++ch) {
                        const std::size_t o = (oy * OW + ox) * C + ch;
                        if constexpr (Max) {
                            T best = -std::numeric_limits<T>::infinity();
                            std::size_t at = ((oy * K) * W + ox * K) * C + ch;
                            for (std::size_t ky = 0; ky < K; ++ky)
                                for (std::size_t kx = 0; kx < K; ++kx) {
                                    const std::size_t i = ((oy * K + ky) * W + ox * K + kx) * C + ch;
                                    if (x[i] > best) {
                                        best = x[i];
                                        at = i;
                                    }
                                }
                            y[o] = x[at];
                            c.argmax[n * OH * OW * C + o] = static_cast<std::uint32_t>(at);
                        } else {
                            T s = 0;
                            for (std::size_t ky = 0; ky < K; ++ky)
                                for (std::size_t kx = 0; kx < K; ++kx)
                                    s += x[((oy * K + ky) * W + ox * K + kx) * C + ch];
                            y[o] = s / T(K * K);
                        }
                    }
        });
    }

    /// MaxPool over whole float vectors of channels of one sample, the same rule as the scalar loop (a value wins
    /// when it is above the best so far, which starts at −∞; when none is, the window's first element); returns how
    /// many channels it did (the rest are left to the scalar loop).
    template <class In>
    static std::size_t max_pool_vectors(const float* x, float* y, std::uint32_t* argmax)
    {
        using B = xsimd::batch<float>;
        using I = xsimd::batch<std::int32_t, B::arch_type>;
        static_assert(I::size == B::size);
        constexpr std::size_t C = In::c, W = In::w, OH = In::h / K, OW = In::w / K, L = B::size, full = C / L * L;
        static_assert(In::size < (std::size_t(1) << 24), "nmfdsl: MaxPool keeps offsets in floats (exact below 2^24)");
        const B lane = [] {  // 0, 1, …, L − 1; the offsets are carried as floats, exact at these sizes
            alignas(B::arch_type::alignment()) std::array<float, L> v{};
            for (std::size_t j = 0; j < L; ++j)
                v[j] = float(j);
            return B::load_aligned(v.data());
        }();
        const B minus_infinity(-std::numeric_limits<float>::infinity());
        for (std::size_t oy = 0; oy < OH; ++oy)
            for (std::size_t ox = 0; ox < OW; ++ox)
                for (std::size_t c0 = 0; c0 < full; c0 += L) {
                    const std::size_t first = ((oy * K) * W + ox * K) * C + c0;
                    B best = minus_infinity, at = B(float(first)) + lane;
                    for (std::size_t ky = 0; ky < K; ++ky)
                        for (std::size_t kx = 0; kx < K; ++kx) {
                            const std::size_t i = ((oy * K + ky) * W + ox * K + kx) * C + c0;
                            const B v = B::load_unaligned(x + i);
                            const auto above = v > best;
                            best = xsimd::select(above, v, best);
                            at = xsimd::select(above, B(float(i)) + lane, at);
                        }
                    const std::size_t o = (oy * OW + ox) * C + c0;
                    // best is −∞ only where nothing was above it: there the window's first element is the output
                    xsimd::select(best == minus_infinity, B::load_unaligned(x + first), best).store_unaligned(y + o);
                    xsimd::to_int(at).store_unaligned(reinterpret_cast<std::int32_t*>(argmax + o));
                }
        return full;
    }

    template <class In, class T>
    static void backward(const no_options&, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c, W = In::w, OH = In::h / K, OW = In::w / K;
        parallel_for(a.batch, [&](std::size_t n) {  // one sample per task: disjoint parts of dx
            T* dx = a.dx + n * In::size;
            std::fill(dx, dx + In::size, T(0));
            const T* dy = a.dy + n * OH * OW * C;
            for (std::size_t oy = 0; oy < OH; ++oy)
                for (std::size_t ox = 0; ox < OW; ++ox)
                    for (std::size_t ch = 0; ch < C; ++ch) {
                        const std::size_t o = (oy * OW + ox) * C + ch;
                        if constexpr (Max) {
                            dx[c.argmax[n * OH * OW * C + o]] += dy[o];
                        } else {
                            const T g = dy[o] / T(K * K);
                            for (std::size_t ky = 0; ky < K; ++ky)
                                for (std::size_t kx = 0; kx < K; ++kx)
                                    dx[((oy * K + ky) * W + ox * K + kx) * C + ch] += g;
                        }
                    }
        });
    }
};
} // namespace detail

template <std::size_t K>
struct AvgPool : detail::pool_layer<K, false> {
    static std::string name() { return "AvgPool<" + std::to_string(K) + ">"; }
};

template <std::size_t K>
struct MaxPool : detail::pool_layer<K, true> {
    static std::string name() { return "MaxPool<" + std::to_string(K) + ">"; }
};

} // namespace nmfdsl
