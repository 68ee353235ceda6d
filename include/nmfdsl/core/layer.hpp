#pragma once
/// @file layer.hpp
/// The layer protocol. A layer is a stateless descriptor type; the Model owns its parameters, buffers, options and
/// the per-call cache. A leaf layer L provides:
///
///   static std::string name();                                      // "Conv<32,5>", used in tables and errors
///   template <class In> static constexpr shape_issue check;          // optional: why In is rejected (or none)
///   template <class In> static constexpr bool accepts;               // optional, simpler alternative to check
///   template <class In> using output_shape = Shape<...>;             // required: the shape rule
///   template <class In> static constexpr std::array<param_spec, K> param_tensors;   // trainable tensors
///   template <class In> static constexpr std::array<param_spec, K> buffer_tensors;  // non-trainable state
///   using options = ...;                                             // runtime options (default: none)
///   template <class In, class T> struct cache { ... };                // what backward needs, per call
///   template <class In, class T> static void init(T* params, T* buffers, rng&);
///   template <class In, class T> static void forward(const options&, const forward_args<T>&, cache<In, T>&);
///   template <class In, class T> static void backward(const options&, const backward_args<T>&, cache<In, T>&);
///   template <class In, class T> static void local_costs(const options&, const local_cost_args<T>&,
///                                                        cache<In, T>&, local_cost_sink);   // optional
///   template <class In, class T> static void statistics(const options&, const statistics_args<T>&,
///                                                       cache<In, T>&, statistic_sink);     // optional
///
/// Deriving from layer_base supplies the defaults. All tensors are channels-last inside the library: a batch of
/// Shape<C,H,W> samples is stored as [N, H, W, C], so each position's channel vector is contiguous.
/// The contract, checked by nmfdsl::testing::check_layer: forward *overwrites* `y`; backward *accumulates* into
/// `grads` (call Model::zero_grad between steps) and *overwrites* `dx`; everything a layer keeps between its forward
/// and backward lives in its cache (two caches never interfere); results do not depend on the thread count; buffers
/// change only in a forward with `update_buffers`.
///
/// Local costs. A layer may add a cost of its own to the training objective whose gradient reaches only its own
/// parameters, with its input held fixed (a layer-local learning rule, such as the Hebbian/anti-Hebbian cost of
/// docs/method.md §6). `local_costs` is called after a training forward (Model::add_local_costs); it reports each
/// cost it adds to the sink (graph layers report their branches' costs) and *accumulates* the cost's gradient into
/// `grads`. A layer with no active cost reports nothing. Training adds them in its backward sweep instead
/// (Model::backward_parameters_and_local_costs): a layer with `static constexpr bool folds_local_costs = true` then
/// adds and reports its cost inside its backward when `backward_args::fold_local_costs` is set (e.g. in the same
/// weight-gradient product as the loss's gradient); any other layer has local_costs called just before its backward.
///
/// Statistics. A layer may describe its last forward's activations (the fraction of non-zero outputs, how strongly
/// a few channels win, ...): `statistics` reports means over the batch to the sink, changes nothing, and is called
/// on demand (Model::activation_statistics; the Trainer after every evaluation batch).
#include <array>
#include <cstddef>
#include <string>

#include "function_ref.hpp"
#include "params.hpp"
#include "rng.hpp"
#include "shape.hpp"

namespace nmfdsl {

struct no_options {};

/// A layer's path in the network tree at run time (for messages): "3/1/0" is layer 0 of branch 1 of layer 3. Each
/// component points to the one before it; the chain lives on the stack of the calls that run the layer.
struct layer_path {
    const layer_path* parent = nullptr;
    std::size_t index = 0;
    std::string text() const { return parent ? parent->text() + "/" + std::to_string(index) : std::to_string(index); }
};

template <class T>
struct forward_args {
    std::size_t batch;  ///< number of samples, > 0
    const T* x;         ///< input, batch × In::size, channels-last
    T* y;               ///< output, batch × Out::size, channels-last
    const T* params;    ///< the layer's parameter block (tensor k at tensor_offset(param_tensors, k))
    T* buffers;         ///< the layer's buffer block (non-trainable state such as running statistics)
    bool training;      ///< training or evaluation mode
    layer_path where;   ///< the layer's path, for messages
    /// False for a forward through a const Model: the layer must then leave its buffers as they are (a training
    /// forward normally updates running statistics there).
    bool update_buffers = true;
};

template <class T>
struct backward_args {
    std::size_t batch;
    const T* x;         ///< the input seen by forward
    const T* y;         ///< the output forward produced
    const T* dy;        ///< dL/dy, batch × Out::size
    T* dx;              ///< dL/dx, overwritten, batch × In::size
    const T* params;
    T* grads;           ///< dL/dparams, accumulated (same layout as params)
    const T* buffers;
    layer_path where;
    /// False when nobody reads dL/dx (the first trainable layer of a network trained without an input gradient):
    /// the layer may then skip computing dx. dx is still a valid buffer of the full size.
    bool need_dx = true;
    /// Set by Model::backward_parameters_and_local_costs: a layer that declares `folds_local_costs` then adds its
    /// local cost's gradient within this backward (e.g. in the same weight-gradient product) and reports the cost
    /// here, exactly what its local_costs would add and report; dx stays the gradient of the loss alone.
    const function_ref<void(const layer_path&, const std::string&, double)>* fold_local_costs = nullptr;
    /// False when nobody reads the parameter gradients (Model::input_gradient, what an attacker needs): the layer
    /// may skip computing them. grads is still a valid buffer (a scratch one), so a layer that ignores the flag is
    /// still correct, only slower.
    bool need_grads = true;
};

/// What a layer's local cost sees: the last training forward's input and output, and its parameter block.
template <class T>
struct local_cost_args {
    std::size_t batch;
    const T* x;       ///< the input seen by forward (held fixed: no gradient flows to it)
    const T* y;       ///< the output forward produced
    const T* params;
    T* grads;         ///< the cost's gradient is accumulated here (same layout as params)
    layer_path where;
};

/// Receives one local cost: the path and name of the layer that added it and its value (the amount added to the
/// objective, weight included).
using local_cost_sink = function_ref<void(const layer_path&, const std::string&, double)>;

/// One layer's local cost as Model::add_local_costs reports it.
struct local_cost {
    std::string path;   ///< "3/1/0"
    std::string layer;  ///< the layer's name
    double value;       ///< the amount added to the objective (weight included)
};

/// What a layer's statistics see: the last forward's input and output.
template <class T>
struct statistics_args {
    std::size_t batch;
    const T* x;  ///< the input seen by forward
    const T* y;  ///< the output forward produced
    layer_path where;
};

/// Receives one statistic of a layer's last forward: the layer's path and name, the statistic's name (a short
/// identifier such as "nonzero") and its value, a mean over the batch's samples.
using statistic_sink = function_ref<void(const layer_path&, const std::string&, const char*, double)>;

/// One statistic as Model::activation_statistics reports it.
struct layer_statistic {
    std::string path;   ///< "3/1/0"
    std::string layer;  ///< the layer's name
    std::string name;   ///< the statistic ("nonzero", "disparity", ...)
    double value;       ///< its mean over the batch
};

/// Defaults for the optional parts of the layer protocol.
struct layer_base {
    using options = no_options;
    template <class In>
    static constexpr std::array<param_spec, 0> param_tensors{};
    template <class In>
    static constexpr std::array<param_spec, 0> buffer_tensors{};
    template <class In, class T>
    struct cache {};
    template <class In, class T>
    static void init(T*, T*, rng&)
    {
    }
};

namespace detail {
inline std::string kernel_text(std::size_t k)
{
    return k == whole_map ? std::string("whole_map") : std::to_string(k);
}
} // namespace detail

} // namespace nmfdsl
