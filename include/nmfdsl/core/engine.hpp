#pragma once
/// @file engine.hpp
/// The runtime walk over a resolved list of leaf layers. The engine is stateless: parameters, buffers, options and
/// the per-call workspace are passed in, so the same code serves the Model and the sub-networks inside Concat and
/// Residual. Layers are visited with boost::hana::for_each (forward in order, backward in reverse).
#include <algorithm>
#include <array>
#include <cstddef>
#include <tuple>

#include <boost/hana/for_each.hpp>
#include <boost/hana/reverse.hpp>
#include <boost/hana/tuple.hpp>
#include <boost/hana/type.hpp>

#include "infer.hpp"
#include "layer.hpp"
#include "params.hpp"

namespace nmfdsl::detail {

/// A layer's runtime options: `L::options`, or `L::options_for<In>` for layers whose options depend on the input
/// shape (Concat and Residual hold their sub-networks' options).
template <class L, class In>
struct options_of {
    using type = typename L::options;
};
template <class L, class In>
    requires requires { typename L::template options_for<In>; }
struct options_of<L, In> {
    using type = typename L::template options_for<In>;
};
template <class L, class In>
using options_of_t = typename options_of<L, In>::type;

template <class E, class T>
using cache_of_t = typename E::layer::template cache<typename E::in, T>;

template <class E>
inline constexpr std::size_t padded_params_v = total_padded_size(E::layer::template param_tensors<typename E::in>);
template <class E>
inline constexpr std::size_t padded_buffers_v = total_padded_size(E::layer::template buffer_tensors<typename E::in>);

/// Whether layer L on input In adds a local cost (the optional `local_costs` of the layer protocol).
template <class L, class In, class T>
concept has_local_costs = requires(const options_of_t<L, In>& o, const local_cost_args<T>& a,
                                   typename L::template cache<In, T>& c, local_cost_sink sink) {
    L::template local_costs<In, T>(o, a, c, sink);
};

/// Whether layer L on input In describes its activations (the optional `statistics` of the layer protocol).
template <class L, class In, class T>
concept has_statistics = requires(const options_of_t<L, In>& o, const statistics_args<T>& a,
                                  typename L::template cache<In, T>& c, statistic_sink sink) {
    L::template statistics<In, T>(o, a, c, sink);
};

template <class Entries>
struct engine;

template <class... Es>
struct engine<type_list<Es...>> {
    static constexpr std::size_t count = sizeof...(Es);
    using options = std::tuple<options_of_t<typename Es::layer, typename Es::in>...>;

    /// Offsets of each layer's block inside the flat parameter / buffer arrays (each block 64-byte aligned).
    static constexpr std::array<std::size_t, count + 1> param_offsets = [] {
        std::array<std::size_t, count + 1> o{};
        constexpr std::array<std::size_t, count> sizes{padded_params_v<Es>...};
        for (std::size_t i = 0; i < count; ++i)
            o[i + 1] = o[i] + sizes[i];
        return o;
    }();
    static constexpr std::array<std::size_t, count + 1> buffer_offsets = [] {
        std::array<std::size_t, count + 1> o{};
        constexpr std::array<std::size_t, count> sizes{padded_buffers_v<Es>...};
        for (std::size_t i = 0; i < count; ++i)
            o[i + 1] = o[i] + sizes[i];
        return o;
    }();
    static constexpr std::size_t param_size = param_offsets[count];
    static constexpr std::size_t buffer_size = buffer_offsets[count];
    static constexpr std::size_t max_activation = std::max({std::size_t{1}, Es::in::size..., Es::out::size...});

    /// Index of the first layer with trainable parameters (count if none). When the caller does not need dL/dx,
    /// the layers before it are not back-propagated at all, and it is told that its dx is not needed.
    static constexpr std::size_t first_trainable = [] {
        constexpr std::array<std::size_t, count + 1> sizes{padded_params_v<Es>..., 1};
        std::size_t i = 0;
        while (i < count && sizes[i] == 0)
            ++i;
        return i;
    }();

    /// Per-call state. It holds no pointer to anything outside itself, so copying it (with the Model) is safe.
    template <class T>
    struct workspace {
        std::size_t batch = 0;
        std::array<aligned_vector<T>, count> outputs;
        aligned_vector<T> grad_a, grad_b;
        std::tuple<cache_of_t<Es, T>...> caches;
    };

    static constexpr auto entries = boost::hana::tuple_t<Es...>;

    template <class T>
    static void init(T* params, T* buffers, rng& g)
    {
        boost::hana::for_each(entries, [&](auto e) {
            using E = typename decltype(e)::type;
            E::layer::template init<typename E::in, T>(params + param_offsets[E::index],
                                                        buffers + buffer_offsets[E::index], g);
        });
    }

    /// Runs every layer; returns the output (owned by ws, batch × Out::size, channels-last).
    template <class T>
    static const T* forward(const options& opt, const T* params, T* buffers, const T* x, std::size_t batch,
                            workspace<T>& ws, bool training, bool update_buffers = true,
                            const layer_path* parent = nullptr)
    {
        ws.batch = batch;
        const T* cur = x;
        boost::hana::for_each(entries, [&](auto e) {
            using E = typename decltype(e)::type;
            constexpr std::size_t i = E::index;
            auto& out = ws.outputs[i];
            out.resize(batch * E::out::size);
            const forward_args<T> a{batch, cur, out.data(), params + param_offsets[i], buffers + buffer_offsets[i],
                                    training, layer_path{parent, i}, update_buffers};
            E::layer::template forward<typename E::in, T>(std::get<i>(opt), a, std::get<i>(ws.caches));
            cur = out.data();
        });
        return cur;
    }

    /// Calls every layer's local cost on the last forward (input x, as passed to forward): each reports its cost to
    /// `sink` and accumulates the cost's gradient into its own block of `grads`.
    template <class T>
    static void local_costs(const options& opt, const T* params, T* grads, const T* x, workspace<T>& ws,
                            local_cost_sink sink, const layer_path* parent = nullptr)
    {
        boost::hana::for_each(entries, [&](auto e) {
            using E = typename decltype(e)::type;
            constexpr std::size_t i = E::index;
            if constexpr (has_local_costs<typename E::layer, typename E::in, T>) {
                const T* xi = i == 0 ? x : ws.outputs[i == 0 ? 0 : i - 1].data();
                const local_cost_args<T> a{ws.batch, xi, ws.outputs[i].data(), params + param_offsets[i],
                                           grads + param_offsets[i], layer_path{parent, i}};
                E::layer::template local_costs<typename E::in, T>(std::get<i>(opt), a, std::get<i>(ws.caches), sink);
            }
        });
    }

    /// Calls every layer's statistics on the last forward (input x, as passed to forward).
    template <class T>
    static void statistics(const options& opt, const T* x, workspace<T>& ws, statistic_sink sink,
                           const layer_path* parent = nullptr)
    {
        boost::hana::for_each(entries, [&](auto e) {
            using E = typename decltype(e)::type;
            constexpr std::size_t i = E::index;
            if constexpr (has_statistics<typename E::layer, typename E::in, T>) {
                const T* xi = i == 0 ? x : ws.outputs[i == 0 ? 0 : i - 1].data();
                const statistics_args<T> a{ws.batch, xi, ws.outputs[i].data(), layer_path{parent, i}};
                E::layer::template statistics<typename E::in, T>(std::get<i>(opt), a, std::get<i>(ws.caches), sink);
            }
        });
    }

    /// Back-propagates dy (batch × Out::size) through the last forward, whose input x (batch × In::size) is passed
    /// again; accumulates parameter gradients. dx (batch × In::size) is overwritten with dL/dx, or is nullptr when
    /// the caller does not need it: then the layers before the first trainable one are skipped and that layer gets
    /// `need_dx = false` (and a scratch dx it may leave untouched). With `fold` the layers' local costs are added
    /// too (as local_costs would add them) and reported to *fold: a layer that folds them does so in its backward,
    /// any other has its local_costs called just before its backward. need_grads = false tells the layers that
    /// nobody reads the parameter gradients (backward_args::need_grads).
    template <class T>
    static void backward(const options& opt, const T* params, T* grads, const T* buffers, const T* x, const T* dy,
                         T* dx, workspace<T>& ws, const layer_path* parent = nullptr,
                         const local_cost_sink* fold = nullptr, bool need_grads = true)
    {
        const std::size_t batch = ws.batch;
        if constexpr (count == 0) {
            return;
        } else {
            const bool want_dx = dx != nullptr;
            ws.grad_a.resize(batch * max_activation);
            ws.grad_b.resize(batch * max_activation);
            const T* g = dy;
            T* spare = ws.grad_a.data();
            T* other = ws.grad_b.data();
            boost::hana::for_each(boost::hana::reverse(entries), [&](auto e) {
                using E = typename decltype(e)::type;
                constexpr std::size_t i = E::index;
                if (!want_dx && i < first_trainable)
                    return;
                const T* xi = i == 0 ? x : ws.outputs[i == 0 ? 0 : i - 1].data();
                T* target = (i == 0 && want_dx) ? dx : spare;
                const bool need = want_dx || i > first_trainable;
                using L = typename E::layer;
                constexpr bool folds = requires { requires L::folds_local_costs; };
                if constexpr (has_local_costs<L, typename E::in, T> && !folds) {
                    if (fold) {
                        const local_cost_args<T> c{batch, xi, ws.outputs[i].data(), params + param_offsets[i],
                                                   grads + param_offsets[i], layer_path{parent, i}};
                        L::template local_costs<typename E::in, T>(std::get<i>(opt), c, std::get<i>(ws.caches), *fold);
                    }
                }
                const backward_args<T> a{batch,
                                         xi,
                                         ws.outputs[i].data(),
                                         g,
                                         target,
                                         params + param_offsets[i],
                                         grads + param_offsets[i],
                                         buffers + buffer_offsets[i],
                                         layer_path{parent, i},
                                         need,
                                         folds ? fold : nullptr,
                                         need_grads};
                E::layer::template backward<typename E::in, T>(std::get<i>(opt), a, std::get<i>(ws.caches));
                g = target;
                std::swap(spare, other);
            });
        }
    }
};

} // namespace nmfdsl::detail
