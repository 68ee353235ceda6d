#pragma once
// A custom layer that keeps its input's shape and does nothing, with the tensors Tensors declares
// (Tensors::params<In>, Tensors::buffers<In>): the must-not-compile cases about tensor declarations use it.
#include <nmfdsl/nmfdsl.hpp>

template <class Tensors>
struct TensorLayer : nmfdsl::layer_base {
    static std::string name() { return "TensorLayer"; }
    template <class In>
    using output_shape = In;
    template <class In>
    static constexpr auto param_tensors = Tensors::template params<In>;
    template <class In>
    static constexpr auto buffer_tensors = Tensors::template buffers<In>;
    template <class In, class T>
    static void forward(const options&, const nmfdsl::forward_args<T>&, cache<In, T>&)
    {
    }
    template <class In, class T>
    static void backward(const options&, const nmfdsl::backward_args<T>&, cache<In, T>&)
    {
    }
};
