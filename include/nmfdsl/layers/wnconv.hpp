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
/// WNConv<Out, K, Stride, Pad> = ZeroPad<Pad> → WNConvCore<Out, K, Stride> (the pad only when Pad > 0).
#include <cmath>
#include <string>
#include <type_traits>

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
        std::fill(a.y, a.y + a.batch * Osize, T(0));
        parallel_for(a.batch, [&](std::size_t n) {
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
    using options = no_options;
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
    static constexpr std::array<param_spec, 1> param_tensors{{{"weight", group::conv, Out * patch<In>}}};

    template <class In, class T>
    struct cache {
        aligned_vector<T> cols;   ///< the patches [positions × I]
        aligned_vector<T> w_hat;  ///< Ŵ = W/(‖W_k‖ + 1e-6) [Out × I]
        aligned_vector<T> norm;   ///< ‖W_k‖₂
        aligned_vector<T> g_hat, dcols;
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

    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr auto win = detail::window_of<In, K, Stride>();
        constexpr std::size_t I = patch<In>, P = win.oh() * win.ow();
        const std::size_t rows = a.batch * P;
        // G = dyᵀ P: the gradient with respect to Ŵ, then through Ŵ = W / (‖W‖ + ε)
        c.g_hat.resize(Out * I);
        kernels::gemm<T>(true, false, Out, I, rows, T(1), a.dy, Out, c.cols.data(), I, T(0), c.g_hat.data(), I);
        for (std::size_t k = 0; k < Out; ++k) {
            const T* w = a.params + k * I;
            const T* g = c.g_hat.data() + k * I;
            T* dw = a.grads + k * I;
            const T r = c.norm[k], d = r + T(norm_eps);
            const T radial = r > T(0) ? kernels::dot(g, w, I) / (r * d * d) : T(0);
            for (std::size_t i = 0; i < I; ++i)
                dw[i] += g[i] / d - radial * w[i];
        }
        if (!a.need_dx)
            return;
        c.dcols.resize(rows * I);
        kernels::gemm<T>(false, false, rows, I, Out, T(1), a.dy, Out, c.w_hat.data(), I, T(0), c.dcols.data(), I);
        std::fill(a.dx, a.dx + a.batch * In::size, T(0));
        kernels::col2im_add(c.dcols.data(), a.batch, kernels::fixed_window<win>{}, a.dx);
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
