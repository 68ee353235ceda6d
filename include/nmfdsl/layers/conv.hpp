#pragma once
/// @file conv.hpp
/// Conv<Out, K, Stride, Norm>: a valid (unpadded) K×K convolution with bias, computed as im2col + GEMM.
/// K may be nmfdsl::whole_map (the kernel covers the incoming map and the output is 1×1).
/// With Norm = patch_norm::l1 each unfolded patch is L1-normalised before the GEMM (x̂ = x / (Σx + 1e-19)): this is
/// the "neuron a" of the paper's CNN baselines (docs/method.md §3); it requires x ≥ 0 (put a ReLU before).
///   forward:  P = im2col(x) [positions, K·K·C];  P̂ = rownorm(P);  y = P̂ Wᵀ + b        (W: [Out, K·K·C])
///   backward: dW += dyᵀ P̂;  db += Σ dy;  dP̂ = dy W;  dP = (dP̂ − Σ dP̂⊙P̂) / (ΣP + 1e-19);  dx = col2im(dP)
/// Patch feature order is (ky, kx, c). Group `conv`; init U(±1/√(K·K·C)) as PyTorch's Conv2d.
/// Bias = no_bias (the fifth argument) drops b: one tensor, "weight" (the VGG baselines' Conv2d(bias=False)).
#include <string>

#include "../kernels/gemm.hpp"
#include "../kernels/im2col.hpp"
#include "../kernels/reduce.hpp"
#include "common.hpp"
#include "dense.hpp"

namespace nmfdsl {

enum class patch_norm { none, l1 };
enum class conv_bias { with_bias, no_bias };

namespace detail {

template <class In, std::size_t K, std::size_t Stride>
constexpr kernels::window window_of()
{
    return {In::h, In::w, In::c, kernel_h<In, K>, kernel_w<In, K>, Stride};
}

/// What every layer over K×K patches (Conv, CNMFCore) shares: the window check, the valid-convolution shape rule and
/// the patch size K·K·C.
template <std::size_t Out, std::size_t K, std::size_t Stride>
struct patch_layer : layer_base {
    template <class In>
    static constexpr shape_issue check = window_check<In, K, Stride>(shape_issue::kernel_too_large);
    template <class In>
    using output_shape =
        Shape<Out, valid_extent(In::h, kernel_h<In, K>, Stride), valid_extent(In::w, kernel_w<In, K>, Stride)>;
    template <class In>
    static constexpr std::size_t patch = kernel_h<In, K> * kernel_w<In, K> * In::c;
    /// The shape of the weight [Out, KH, KW, C]: row o holds output o's patch in the order (ky, kx, c).
    template <class In>
    static constexpr std::array<std::size_t, 4> weight_dims{Out, kernel_h<In, K>, kernel_w<In, K>, In::c};
};

/// x̂ = x / (s + 1e-19) for one row of I values, s = Σx of the raw row. The one formula of the patch normalisation,
/// so that x̂ recomputed from the input and a saved s is bit-identical to the forward's.
template <class T>
inline void l1_scale_row(T* row, std::size_t I, T s)
{
    const T inv = T(1) / (s + l1_eps<T>());
    for (std::size_t i = 0; i < I; ++i)
        row[i] *= inv;
}

/// Normalises one row in place and returns its raw sum s = Σx over its I values; the scaling covers the first
/// `width` ≥ I values (zero padding may go along: it stays zero).
template <class T>
inline T l1_normalise_row(T* row, std::size_t I, std::size_t width)
{
    const T s = kernels::sum(row, I);
    l1_scale_row(row, width, s);
    return s;
}

/// x̂ = x / (Σx + 1e-19) for each of `rows` rows of I values (row stride `stride`); sums[r] receives Σx.
template <class T>
void l1_normalise_rows(T* x, std::size_t rows, std::size_t I, std::size_t stride, T* sums)
{
    parallel_chunks(rows, std::max<std::size_t>(1, elementwise_chunk / stride), [&](std::size_t rb, std::size_t re) {
        for (std::size_t r = rb; r < re; ++r) {
            sums[r] = l1_normalise_row(x + r * stride, I, I);
        }
    });
}

/// The backward of l1_normalise_rows, in place: g ← (g − Σ g ⊙ x̂) / (Σx + 1e-19).
template <class T>
void l1_backward_rows(T* g, const T* xhat, const T* sums, std::size_t rows, std::size_t I, std::size_t stride)
{
    parallel_chunks(rows, std::max<std::size_t>(1, elementwise_chunk / stride), [&](std::size_t rb, std::size_t re) {
        for (std::size_t r = rb; r < re; ++r) {
            T* gr = g + r * stride;
            const T* xr = xhat + r * stride;
            const T dot = kernels::dot(gr, xr, I);
            const T inv = T(1) / (sums[r] + l1_eps<T>());
            for (std::size_t i = 0; i < I; ++i)
                gr[i] = (gr[i] - dot) * inv;
        }
    });
}

/// For composites that end in BatchNorm only on maps larger than 1×1: does Core's output on In qualify?
template <class Core, class In>
constexpr bool core_output_larger_than_1x1()
{
    if constexpr (Core::template check<In> != shape_issue::none)
        return false;
    else {
        using Out = typename Core::template output_shape<In>;
        return Out::h * Out::w > 1;
    }
}

} // namespace detail

template <std::size_t Out, std::size_t K, std::size_t Stride = 1, patch_norm Norm = patch_norm::none,
          conv_bias Bias = conv_bias::with_bias>
struct Conv : detail::patch_layer<Out, K, Stride> {
    static constexpr bool has_bias = Bias == conv_bias::with_bias;
    using options = no_options;
    template <class In>
    static constexpr std::size_t patch = detail::patch_layer<Out, K, Stride>::template patch<In>;
    template <class In>
    static constexpr auto weight_dims = detail::patch_layer<Out, K, Stride>::template weight_dims<In>;
    static_assert(Out > 0, "nmfdsl: Conv<Out, K> needs Out > 0");
    static std::string name()
    {
        std::string s = "Conv<" + std::to_string(Out) + "," + detail::kernel_text(K);
        if (Stride != 1)
            s += "," + std::to_string(Stride);
        if (Norm == patch_norm::l1)
            s += (Stride != 1 ? ",l1" : ",1,l1");
        if (!has_bias)
            s += ",no_bias";
        return s + ">";
    }
    template <class In>
    static constexpr auto param_tensors = [] {
        if constexpr (has_bias)
            return std::array<param_spec, 2>{
                {{"weight", group::conv, Out * patch<In>, weight_dims<In>}, {"bias", group::conv, Out}}};
        else
            return std::array<param_spec, 1>{{{"weight", group::conv, Out * patch<In>, weight_dims<In>}}};
    }();

    template <class In, class T>
    struct cache {
        aligned_vector<T> cols;  ///< the (normalised) patches
        aligned_vector<T> sums;  ///< Σ of each raw patch (patch_norm::l1 only)
        aligned_vector<T> dcols;
    };

    /// The bias tensor of a parameter (or gradient) block, nullptr without one.
    template <class In, class T>
    static T* bias_of(T* block)
    {
        if constexpr (has_bias)
            return detail::tensor<Conv, In>(block, 1);
        else
            return nullptr;
    }

    template <class In, class T>
    static void init(T* p, T*, rng& g)
    {
        detail::fan_in_uniform(detail::tensor<Conv, In>(p, 0), Out * patch<In>, bias_of<In>(p), has_bias ? Out : 0,
                               patch<In>, g);
    }

    template <class In, class T>
    static void forward(const options&, const forward_args<T>& a, cache<In, T>& c)
    {
        constexpr auto win = detail::window_of<In, K, Stride>();
        constexpr std::size_t I = patch<In>, P = win.oh() * win.ow();
        const std::size_t rows = a.batch * P;
        c.cols.resize(rows * I);
        kernels::im2col(a.x, a.batch, kernels::fixed_window<win>{}, c.cols.data());
        if constexpr (Norm == patch_norm::l1) {
            c.sums.resize(rows);
            detail::l1_normalise_rows(c.cols.data(), rows, I, I, c.sums.data());
        }
        detail::affine_forward(rows, I, Out, c.cols.data(), detail::tensor<Conv, In>(a.params, 0),
                               bias_of<In>(a.params), a.y);
    }

    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr auto win = detail::window_of<In, K, Stride>();
        constexpr std::size_t I = patch<In>, P = win.oh() * win.ow();
        const std::size_t rows = a.batch * P;
        c.dcols.resize(a.need_dx ? rows * I : 0);
        detail::affine_backward(rows, I, Out, c.cols.data(), detail::tensor<Conv, In>(a.params, 0), a.dy,
                                a.need_dx ? c.dcols.data() : nullptr,
                                a.need_grads ? detail::tensor<Conv, In>(a.grads, 0) : nullptr,
                                a.need_grads ? bias_of<In>(a.grads) : nullptr);
        if (!a.need_dx)
            return;
        if constexpr (Norm == patch_norm::l1)
            detail::l1_backward_rows(c.dcols.data(), c.cols.data(), c.sums.data(), rows, I, I);
        kernels::col2im(c.dcols.data(), a.batch, kernels::fixed_window<win>{}, a.dx);
    }
};

} // namespace nmfdsl
