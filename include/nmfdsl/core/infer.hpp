#pragma once
/// @file infer.hpp
/// Networks as types: Seq, the static shape inference that resolves a network into a tree of layers with their
/// input and output shapes, and the compile-time queries output_shape_t, parameter_count_v and is_valid_v.
///
/// The tree: a network resolves into a list of leaf entries (Seqs and composites are flattened, in order). A leaf
/// that holds sub-networks (a graph layer such as Concat or Residual) names them as `branches<In>`; each branch is
/// again a list of entries. Every layer has a path: its index in its list, preceded by the path of the graph layer
/// and the branch number it sits in — `3/1/0` is layer 0 of branch 1 of layer 3.
///
/// Diagnostics: every rejected shape is reported by one static_assert whose condition is a named variable template
/// over (path, layer, incoming shape), so g++ prints e.g.
///   note: 'nmfdsl::kernel_fits_input_map<nmfdsl::path<2>, nmfdsl::Conv<32, 30>, nmfdsl::Shape<3, 28, 28> >'
///   evaluates to false
/// The core knows the generic issues (a map or a vector needed, a kernel or window too large, a custom `accepts`
/// rule); a layer with a rule of its own reports it from its own `template <class Path, class In> struct diagnose`,
/// with its own text. After a rejected layer the inference passes the *input* shape on (a cascade stopper), so one
/// mistake gives one error.
#include <cstddef>
#include <string>
#include <type_traits>

#include "layer.hpp"
#include "shape.hpp"

namespace nmfdsl {

/// Why a layer rejects its input shape.
enum class shape_issue {
    none,
    needs_map,         ///< a Shape<C,H,W> was required, a vector arrived
    needs_vector,      ///< a flat Shape<N> was required, a map arrived
    kernel_too_large,  ///< convolution kernel larger than the incoming map
    window_too_large,  ///< pooling window larger than the incoming map
    rejected,          ///< a custom layer's `accepts` rule said no
    own_rule,          ///< a rule of the layer's own, reported by its `diagnose<Path, In>` with its own text
    branch_invalid,    ///< a sub-network is itself invalid (reported inside it, with its paths)
};

template <class... Ts>
struct type_list {
    static constexpr std::size_t size = sizeof...(Ts);
};

/// A layer's position in the network tree, e.g. path<3, 1, 0> ("3/1/0").
template <std::size_t... I>
struct path {
    static std::string text()
    {
        std::string s;
        ((s += (s.empty() ? "" : "/") + std::to_string(I)), ...);
        return s;
    }
};

/// A flat pipeline of layers. A Seq may hold Seqs (they are flattened); name blocks by inheriting:
///   struct Block : nmfdsl::Seq<nmfdsl::Conv<32, 5>, nmfdsl::ReLU> {};
template <class... Layers>
struct Seq {
    using seq_layers = type_list<Layers...>;
};

/// One resolved leaf layer: its index in its list, the layer, and the shapes it sees and produces.
template <std::size_t Index, class Layer, class In, class Out>
struct entry {
    static constexpr std::size_t index = Index;
    using layer = Layer;
    using in = In;
    using out = Out;
};

namespace detail {

template <class P, std::size_t... More>
struct path_append;
template <std::size_t... I, std::size_t... More>
struct path_append<path<I...>, More...> {
    using type = path<I..., More...>;
};
template <class P, std::size_t... More>
using path_append_t = typename path_append<P, More...>::type;

template <class L>
concept is_seq = requires { typename L::seq_layers; };

template <class L, class In>
concept is_composite = requires { typename L::template expand<In>; };

template <class L, class In>
concept has_shape_rule = requires { typename L::template output_shape<In>; };

/// A graph layer names its sub-networks for In as `template <class In> using branches = type_list<...>;`.
template <class L, class In>
concept has_branches = requires { typename L::template branches<In>; };

template <class L, class In>
struct branches_of {
    using type = type_list<>;
};
template <class L, class In>
    requires has_branches<L, In>
struct branches_of<L, In> {
    using type = typename L::template branches<In>;
};

template <class L, class In>
constexpr shape_issue raw_issue()
{
    if constexpr (!is_shape<In>)
        return shape_issue::rejected;
    else if constexpr (requires { L::template check<In>; })
        return L::template check<In>;
    else if constexpr (requires { L::template accepts<In>; })
        return L::template accepts<In> ? shape_issue::none : shape_issue::rejected;
    else
        return shape_issue::none;
}

/// The issue a leaf's check (or accepts) rule has with In. The shape rule itself is asked only when this is `none`,
/// so a rule like Shape<Out, In::h, In::w> never sees a shape its check rejected.
template <class L, class In>
constexpr shape_issue issue_of()
{
    return raw_issue<L, In>();
}

/// True only when the layer's check passes and it has no shape rule (the rule is not looked at otherwise).
template <class L, class In>
constexpr bool rule_is_missing()
{
    if constexpr (raw_issue<L, In>() != shape_issue::none)
        return false;
    else
        return !has_shape_rule<L, In>;
}

} // namespace detail

// ---- The named conditions. Each is true unless the layer at Path has that particular problem. ----

template <class Path, class Layer, class InShape>
inline constexpr bool layer_has_shape_rule = detail::rule_is_missing<Layer, InShape>() == false;
template <class Path, class Layer, class InShape>
inline constexpr bool layer_input_is_map = detail::issue_of<Layer, InShape>() != shape_issue::needs_map;
template <class Path, class Layer, class InShape>
inline constexpr bool layer_input_is_flat = detail::issue_of<Layer, InShape>() != shape_issue::needs_vector;
template <class Path, class Layer, class InShape>
inline constexpr bool kernel_fits_input_map = detail::issue_of<Layer, InShape>() != shape_issue::kernel_too_large;
template <class Path, class Layer, class InShape>
inline constexpr bool pool_window_fits_map = detail::issue_of<Layer, InShape>() != shape_issue::window_too_large;
template <class Path, class Layer, class InShape>
inline constexpr bool layer_accepts_input = detail::issue_of<Layer, InShape>() != shape_issue::rejected;
template <class InShape>
inline constexpr bool network_input_rank_is_1_or_3 = detail::is_shape<InShape> &&
                                                     (InShape::rank == 1 || InShape::rank == 3);

namespace detail {

template <bool Loud, class Net, class In, class Prefix = path<>>
struct resolve;

struct quiet {};

/// A layer's own diagnosis (its `diagnose<Path, In>`), instantiated only in diagnosing mode.
template <class Path, class L, class In>
struct own_diagnosis {};
template <class Path, class L, class In>
    requires requires { typename L::template diagnose<Path, In>; }
struct own_diagnosis<Path, L, In> : L::template diagnose<Path, In> {};

/// The sub-networks of a graph layer at Path, diagnosed with their full paths (Path / branch / index).
template <class Path, class In, class Branches, class Seq>
struct branch_diagnosis;
template <class Path, class In, class... Bs, std::size_t... K>
struct branch_diagnosis<Path, In, type_list<Bs...>, std::index_sequence<K...>> {
    using outs = type_list<typename resolve<true, Bs, In, path_append_t<Path, K>>::out...>;
};
template <class Path, class L, class In>
struct children_diagnosis {
    using branches = typename branches_of<L, In>::type;
    using outs = typename branch_diagnosis<Path, In, branches, std::make_index_sequence<branches::size>>::outs;
};

/// Instantiated only in diagnosing mode (as a base class, so that it is always instantiated); each static_assert
/// names the problem and what to change.
template <class Path, class L, class In>
struct diagnose_leaf : own_diagnosis<Path, L, In> {
    static_assert(layer_has_shape_rule<Path, L, In>,
                  "nmfdsl: this layer has no shape rule; give it `template <class In> using output_shape = "
                  "nmfdsl::Shape<...>;` (see docs/custom-layers.md)");
    static_assert(layer_input_is_map<Path, L, In>,
                  "nmfdsl: this layer needs a Shape<C,H,W> feature map but receives a flat vector; move it before "
                  "Flatten or give the model a map input");
    static_assert(layer_input_is_flat<Path, L, In>,
                  "nmfdsl: this layer needs a flat Shape<N> input but receives a feature map; insert nmfdsl::Flatten "
                  "before it");
    static_assert(kernel_fits_input_map<Path, L, In>,
                  "nmfdsl: the kernel is larger than the incoming feature map; use a smaller kernel, "
                  "nmfdsl::whole_map, or pool less before this layer");
    static_assert(pool_window_fits_map<Path, L, In>,
                  "nmfdsl: the pooling window is larger than the incoming feature map (a 1x1 map cannot be pooled); "
                  "remove this pooling layer or use a smaller window");
    static_assert(layer_accepts_input<Path, L, In>,
                  "nmfdsl: this layer's `accepts` rule rejects the incoming shape; change the shape before it");
    using children = typename children_diagnosis<Path, L, In>::outs;
};

template <bool Loud, class Prefix, std::size_t I, class In, class Layers, class Acc>
struct resolve_list;

template <bool Loud, class Prefix, std::size_t I, class In, class L, class Acc>
struct resolve_one;

/// Resolution of a leaf layer.
template <bool Loud, class Prefix, std::size_t I, class In, class L, class... Done>
    requires(!is_seq<L> && !is_composite<L, In>)
struct resolve_one<Loud, Prefix, I, In, L, type_list<Done...>>
    : std::conditional_t<Loud, diagnose_leaf<path_append_t<Prefix, I>, L, In>, quiet> {
    static constexpr shape_issue issue = raw_issue<L, In>();
    static constexpr bool ok = [] {
        if constexpr (issue != shape_issue::none)
            return false;
        else
            return has_shape_rule<L, In>;
    }();

    template <bool Ok, class Dummy = void>
    struct pick {
        using type = In;
    };
    template <class Dummy>
    struct pick<true, Dummy> {
        using type = typename L::template output_shape<In>;
    };
    using out = typename pick<ok>::type;
    /// A rejected layer is left out of the entries (its input passes on), so nothing else is asked of it.
    using entries = std::conditional_t<ok, type_list<Done..., entry<I, L, In, out>>, type_list<Done...>>;
    static constexpr std::size_t next_index = I + 1;
    static constexpr bool valid = ok;
};

/// A Seq (or a block deriving from one) is flattened.
template <bool Loud, class Prefix, std::size_t I, class In, class L, class Acc>
    requires is_seq<L>
struct resolve_one<Loud, Prefix, I, In, L, Acc> : resolve_list<Loud, Prefix, I, In, typename L::seq_layers, Acc> {};

/// A composite layer expands, depending on its input shape, into a Seq that is flattened.
template <bool Loud, class Prefix, std::size_t I, class In, class L, class Acc>
    requires(!is_seq<L> && is_composite<L, In>)
struct resolve_one<Loud, Prefix, I, In, L, Acc>
    : resolve_list<Loud, Prefix, I, In, typename L::template expand<In>::seq_layers, Acc> {};

template <bool Loud, class Prefix, std::size_t I, class In, class Acc>
struct resolve_list<Loud, Prefix, I, In, type_list<>, Acc> {
    using out = In;
    using entries = Acc;
    static constexpr std::size_t next_index = I;
    static constexpr bool valid = true;
};

template <bool Loud, class Prefix, std::size_t I, class In, class L, class... Rest, class Acc>
struct resolve_list<Loud, Prefix, I, In, type_list<L, Rest...>, Acc> {
    using head = resolve_one<Loud, Prefix, I, In, L, Acc>;
    using tail =
        resolve_list<Loud, Prefix, head::next_index, typename head::out, type_list<Rest...>, typename head::entries>;
    using out = typename tail::out;
    using entries = typename tail::entries;
    static constexpr std::size_t next_index = tail::next_index;
    static constexpr bool valid = head::valid && tail::valid;
};

template <class In>
struct diagnose_input {
    static_assert(network_input_rank_is_1_or_3<In>,
                  "nmfdsl: the network input must be nmfdsl::Shape<C,H,W> (an image) or nmfdsl::Shape<N> (a vector); "
                  "the batch size is a runtime value and is not part of the shape");
};

/// Resolves Net applied to In. Prefix is the path of the list being resolved (empty for a whole network; a graph
/// layer's branch when diagnosing it); the entries' indices are always local to the list.
template <bool Loud, class Net, class In, class Prefix>
struct resolve : std::conditional_t<Loud, diagnose_input<In>, quiet> {
    static constexpr bool input_ok = network_input_rank_is_1_or_3<In>;
    /// With an unusable input shape no layer is checked (one mistake, one error).
    using list = resolve_list<Loud, Prefix, 0, std::conditional_t<input_ok, In, Shape<1>>,
                              std::conditional_t<input_ok, type_list<Net>, type_list<>>, type_list<>>;
    using out = typename list::out;
    using entries = typename list::entries;
    static constexpr bool valid = input_ok && list::valid;
};

template <class Entries>
struct entries_param_count;
template <class... Es>
struct entries_param_count<type_list<Es...>> {
    static constexpr std::size_t value =
        (std::size_t{0} + ... + total_size(Es::layer::template param_tensors<typename Es::in>));
};

} // namespace detail

/// The per-sample output shape of Net applied to In (diagnoses an invalid network).
template <class Net, class In>
using output_shape_t = typename detail::resolve<true, Net, In>::out;

/// True iff Net accepts In; never fails to compile (use it in tests and metaprograms).
template <class Net, class In>
inline constexpr bool is_valid_v = detail::resolve<false, Net, In>::valid;

/// Number of trainable scalars of Net applied to In (diagnoses an invalid network).
template <class Net, class In>
inline constexpr std::size_t parameter_count_v =
    detail::entries_param_count<typename detail::resolve<true, Net, In>::entries>::value;

} // namespace nmfdsl
