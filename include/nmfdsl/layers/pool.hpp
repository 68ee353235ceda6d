#pragma once
/// @file pool.hpp
/// AvgPool<K> and MaxPool<K>: K×K windows with stride K over each channel, no padding (floor of H/K, W/K).
/// The window must fit the incoming map (a 1×1 map cannot be pooled).
///   AvgPool: y = mean of the window; dx = dy / K² spread over the window.
///   MaxPool: y = max of the window (first maximum wins); dx = dy routed to that element.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

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
            for (std::size_t oy = 0; oy < OH; ++oy)
                for (std::size_t ox = 0; ox < OW; ++ox)
                    for (std::size_t ch = 0; ch < C; ++ch) {
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

    template <class In, class T>
    static void backward(const no_options&, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = In::c, W = In::w, OH = In::h / K, OW = In::w / K;
        std::fill(a.dx, a.dx + a.batch * In::size, T(0));
        parallel_for(a.batch, [&](std::size_t n) {  // one sample per task: disjoint parts of dx
            T* dx = a.dx + n * In::size;
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
