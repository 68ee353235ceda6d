#pragma once
/// @file dense.hpp
/// Affine layers on channel vectors: Dense<Out> on a flat Shape<N>, and Pointwise<Out>, the 1×1 convolution of a
/// feature map (the mixing convolution, docs/method.md §3). Both compute, per row r (a sample, or a position):
///   y_r = W x_r + b,   W: [Out, In channels], b: [Out]
/// Backward: dW += dyᵀ x, db += Σ_r dy_r, dx = dy W.
#include <cmath>
#include <string>

#include "../kernels/gemm.hpp"
#include "common.hpp"

namespace nmfdsl {

namespace detail {

template <class T>
void affine_forward(std::size_t rows, std::size_t in, std::size_t out, const T* x, const T* w, const T* b, T* y)
{
    kernels::gemm<T>(false, true, rows, out, in, T(1), x, in, w, in, T(0), y, out);
    if (b)  // nullptr: no bias
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t o = 0; o < out; ++o)
                y[r * out + o] += b[o];
}

template <class T>
void affine_backward(std::size_t rows, std::size_t in, std::size_t out, const T* x, const T* w, const T* dy, T* dx,
                     T* dw, T* db)
{
    if (dw)  // nullptr: the parameter gradients are not needed
        kernels::gemm<T>(true, false, out, in, rows, T(1), dy, out, x, in, T(1), dw, in);
    if (db)  // nullptr: no bias, or not needed
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t o = 0; o < out; ++o)
                db[o] += dy[r * out + o];
    if (dx)  // nullptr: the input gradient is not needed
        kernels::gemm<T>(false, false, rows, in, out, T(1), dy, out, w, in, T(0), dx, in);
}

/// PyTorch's default for Linear / Conv2d: weights and biases ~ U(±1/√fan_in).
template <class T>
void fan_in_uniform(T* w, std::size_t nw, T* b, std::size_t nb, std::size_t fan_in, rng& g)
{
    const T bound = T(1) / std::sqrt(static_cast<T>(fan_in));
    for (std::size_t i = 0; i < nw; ++i)
        w[i] = g.uniform<T>(-bound, bound);
    for (std::size_t i = 0; i < nb; ++i)
        b[i] = g.uniform<T>(-bound, bound);
}

} // namespace detail

/// Fully connected layer on a flat Shape<N> (insert Flatten after a map). Group `dense`; init U(±1/√N).
template <std::size_t Out>
struct Dense : layer_base {
    static_assert(Out > 0, "nmfdsl: Dense<Out> needs Out > 0");
    static std::string name() { return "Dense<" + std::to_string(Out) + ">"; }
    template <class In>
    static constexpr shape_issue check = In::rank == 1 ? shape_issue::none : shape_issue::needs_vector;
    template <class In>
    using output_shape = Shape<Out>;
    template <class In>
    static constexpr std::array<param_spec, 2> param_tensors{
        {{"weight", group::dense, Out * In::size, {Out, In::size}}, {"bias", group::dense, Out}}};

    template <class In, class T>
    static void init(T* p, T*, rng& g)
    {
        detail::fan_in_uniform(detail::tensor<Dense, In>(p, 0), Out * In::size, detail::tensor<Dense, In>(p, 1), Out,
                               In::size, g);
    }
    template <class In, class T>
    static void forward(const options&, const forward_args<T>& a, cache<In, T>&)
    {
        detail::affine_forward(a.batch, In::size, Out, a.x, detail::tensor<Dense, In>(a.params, 0),
                               detail::tensor<Dense, In>(a.params, 1), a.y);
    }
    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>&)
    {
        detail::affine_backward(a.batch, In::size, Out, a.x, detail::tensor<Dense, In>(a.params, 0), a.dy,
                                a.need_dx ? a.dx : nullptr,
                                a.need_grads ? detail::tensor<Dense, In>(a.grads, 0) : nullptr,
                                a.need_grads ? detail::tensor<Dense, In>(a.grads, 1) : nullptr);
    }
};

/// The 1×1 mixing convolution with bias (group `mix`). Initialised as in the reference (docs/method.md §3,
/// §5): identity on the leading min(Out, C) diagonal, plus U(−0.5, 0.5)·1e-4 noise on weights and biases.
template <std::size_t Out>
struct Pointwise : layer_base {
    static_assert(Out > 0, "nmfdsl: Pointwise<Out> needs Out > 0");
    static std::string name() { return "Pointwise<" + std::to_string(Out) + ">"; }
    template <class In>
    static constexpr shape_issue check = In::rank == 3 ? shape_issue::none : shape_issue::needs_map;
    template <class In>
    using output_shape = Shape<Out, In::h, In::w>;
    template <class In>
    static constexpr std::array<param_spec, 2> param_tensors{
        {{"weight", group::mix, Out * In::c, {Out, In::c}}, {"bias", group::mix, Out}}};

    template <class In, class T>
    static void init(T* p, T*, rng& g)
    {
        T* w = detail::tensor<Pointwise, In>(p, 0);
        T* b = detail::tensor<Pointwise, In>(p, 1);
        for (std::size_t o = 0; o < Out; ++o)
            for (std::size_t c = 0; c < In::c; ++c)
                w[o * In::c + c] = (o == c ? T(1) : T(0)) + g.uniform<T>(T(-0.5), T(0.5)) * T(1e-4);
        for (std::size_t o = 0; o < Out; ++o)
            b[o] = g.uniform<T>(T(-0.5), T(0.5)) * T(1e-4);
    }
    template <class In, class T>
    static void forward(const options&, const forward_args<T>& a, cache<In, T>&)
    {
        detail::affine_forward(a.batch * In::positions, In::c, Out, a.x, detail::tensor<Pointwise, In>(a.params, 0),
                               detail::tensor<Pointwise, In>(a.params, 1), a.y);
    }
    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>&)
    {
        detail::affine_backward(a.batch * In::positions, In::c, Out, a.x, detail::tensor<Pointwise, In>(a.params, 0),
                                a.dy, a.need_dx ? a.dx : nullptr,
                                a.need_grads ? detail::tensor<Pointwise, In>(a.grads, 0) : nullptr,
                                a.need_grads ? detail::tensor<Pointwise, In>(a.grads, 1) : nullptr);
    }
};

} // namespace nmfdsl
