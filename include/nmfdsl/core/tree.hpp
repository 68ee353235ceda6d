#pragma once
/// @file tree.hpp
/// The network tree at run time. One walker visits every layer of a resolved network in order — a graph layer
/// (Concat, Residual, any layer with `branches<In>`) first, then the layers of each of its branches — and hands the
/// visitor a layer_node: the layer's path ("3/1/0"), depth, name, shapes, options, parameter tensors and buffers.
/// The Model's for_each_layer, configure, options_at, parameters and buffers, the summary and the tests all use it.
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

#include <boost/hana/for_each.hpp>

#include "engine.hpp"
#include "error.hpp"
#include "infer.hpp"
#include "params.hpp"

namespace nmfdsl {

/// One layer of a model's tree, as the visitor of Model::for_each_layer sees it. `Options` is the layer's options
/// type (const when walking a const model), `T` the scalar type (const likewise). The parameter and buffer pointers
/// are null when the walk has no model (the static summary).
template <class E, class Options, class T>
struct layer_node {
    using entry_type = E;
    using layer_type = typename E::layer;
    using in_shape = typename E::in;
    using out_shape = typename E::out;
    using options_type = std::remove_const_t<Options>;
    static constexpr auto& specs = layer_type::template param_tensors<in_shape>;
    static constexpr auto& buffer_specs = layer_type::template buffer_tensors<in_shape>;
    /// A graph layer's tensors are its branches' tensors; they are listed (and named) at the branches' layers.
    static constexpr bool is_graph = detail::has_branches<layer_type, in_shape>;
    static_assert(dims_match_sizes(specs), "nmfdsl: a param_spec's dims must be nonzero and multiply to its size");
    static_assert(dims_match_sizes(buffer_specs),
                  "nmfdsl: a buffer's param_spec dims must be nonzero and multiply to its size");
    static_assert(is_graph || names_distinct(specs, buffer_specs),
                  "nmfdsl: a layer's parameters and buffers need distinct names");

    std::string path;   ///< "3/1/0"
    std::size_t depth;  ///< 0 for the network's own layers, 1 inside a branch, ...
    Options* opts;
    T* param_block;
    T* grad_block;
    T* buffer_block;

    static std::string name() { return layer_type::name(); }
    Options& options() const { return *opts; }
    static constexpr std::size_t tensor_count() { return specs.size(); }
    std::span<T> params(std::size_t k) const { return view(specs, param_block, k, "tensors"); }
    std::span<T> grads(std::size_t k) const { return view(specs, grad_block, k, "tensors"); }
    std::span<T> params(std::string_view tensor) const { return params(find(tensor)); }
    std::span<T> grads(std::string_view tensor) const { return grads(find(tensor)); }
    /// Non-trainable state (BatchNorm's running statistics), by position or name.
    std::span<T> buffers(std::size_t k) const { return view(buffer_specs, buffer_block, k, "buffers"); }
    std::span<T> buffers(std::string_view buffer) const { return buffers(find_in(buffer_specs, buffer, "buffer")); }

    std::size_t find(std::string_view tensor) const { return find_in(specs, tensor, "tensor"); }

private:
    template <std::size_t N>
    std::size_t find_in(const std::array<param_spec, N>& list, std::string_view wanted, const char* what) const
    {
        for (std::size_t k = 0; k < N; ++k)
            if (list[k].name == wanted)
                return k;
        throw lookup_error("nmfdsl: layer " + path + " (" + name() + ") has no " + what + " named '" +
                           std::string(wanted) + "'");
    }

    template <std::size_t N>
    std::span<T> view(const std::array<param_spec, N>& list, T* block, std::size_t k, const char* what) const
    {
        if (k >= N)
            throw lookup_error("nmfdsl: layer " + path + " (" + name() + ") has " + std::to_string(N) + " " + what +
                               ", asked for number " + std::to_string(k));
        if (block == nullptr)
            throw lookup_error("nmfdsl: layer " + path + " (" + name() + ") is not attached to a model");
        return {block + tensor_offset(list, k), list[k].size};
    }
};

namespace detail {

template <class T>
T* offset_or_null(T* p, std::size_t off)
{
    return p ? p + off : nullptr;
}

/// Visits the layers of Entries (with their option tuple `opts` and parameter / gradient / buffer blocks) and, depth
/// first, the layers inside each graph layer. `prefix` is the path of the list ("" for the network, "3/1/" for
/// branch 1 of layer 3).
template <class Entries, class Options, class T, class F>
void walk_tree(const std::string& prefix, std::size_t depth, Options& opts, T* params, T* grads, T* buffers, F& f)
{
    using eng = engine<Entries>;
    boost::hana::for_each(eng::entries, [&](auto e) {
        using E = typename decltype(e)::type;
        using L = typename E::layer;
        using In = typename E::in;
        constexpr std::size_t i = E::index;
        auto& o = std::get<i>(opts);
        using node_t = layer_node<E, std::remove_reference_t<decltype(o)>, T>;
        const node_t node{prefix + std::to_string(i), depth, &o, offset_or_null(params, eng::param_offsets[i]),
                          offset_or_null(grads, eng::param_offsets[i]),
                          offset_or_null(buffers, eng::buffer_offsets[i])};
        f(node);
        if constexpr (node_t::is_graph) {
            using branches = typename L::template branches<In>;
            [&]<class... Bs, std::size_t... K>(type_list<Bs...>, std::index_sequence<K...>) {
                (walk_tree<typename resolve<false, Bs, In>::entries>(
                     node.path + "/" + std::to_string(K) + "/", depth + 1, std::get<K>(o),
                     offset_or_null(node.param_block, L::template branch_param_offset<In>(K)),
                     offset_or_null(node.grad_block, L::template branch_param_offset<In>(K)),
                     offset_or_null(node.buffer_block, L::template branch_buffer_offset<In>(K)), f),
                 ...);
            }(branches{}, std::make_index_sequence<branches::size>{});
        }
    });
}

} // namespace detail
} // namespace nmfdsl
