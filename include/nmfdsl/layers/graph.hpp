#pragma once
/// @file graph.hpp
/// Graph layers that hold sub-networks, checked statically like everything else:
///  - Concat<Branches...>: every branch sees the same input; the outputs are concatenated along channels. All
///    branches must end at the same spatial size (or all be vectors).
///  - Residual<Body>: y = Body(x) + x; the body must return its input's shape.
/// Each branch (or the body) is any network expression: a layer, a Seq, a named block. Both follow the graph-layer
/// protocol the core walks (summary, options, parameters, diagnostics): `branches<In>` names the sub-networks,
/// `options_for<In>` is a tuple of their option tuples, and `branch_param_offset<In>(k)` /
/// `branch_buffer_offset<In>(k)` place branch k's blocks inside the layer's own. Layer 0 of branch k of a graph
/// layer at path P has the path P/k/0 (the body of a Residual is branch 0).
#include <string>
#include <tuple>

#include <boost/hana/for_each.hpp>
#include <boost/hana/range.hpp>

#include "../core/engine.hpp"
#include "common.hpp"

namespace nmfdsl {

namespace detail {

template <class Net, class In>
using sub_engine = engine<typename resolve<false, Net, In>::entries>;

template <class... Es>
std::string leaf_names(type_list<Es...>)
{
    std::string s;
    ((s += (s.empty() ? "" : "→") + Es::layer::name()), ...);
    return s;
}

template <class Net, class In>
std::string branch_text()
{
    return leaf_names(typename resolve<false, Net, In>::entries{});
}

template <class Entries>
struct entries_specs;
template <>
struct entries_specs<type_list<>> {
    static constexpr std::array<param_spec, 0> params{};
    static constexpr std::array<param_spec, 0> buffers{};
};
template <class E, class... Es>
struct entries_specs<type_list<E, Es...>> {
    static constexpr auto params =
        join_specs(E::layer::template param_tensors<typename E::in>, entries_specs<type_list<Es...>>::params);
    static constexpr auto buffers =
        join_specs(E::layer::template buffer_tensors<typename E::in>, entries_specs<type_list<Es...>>::buffers);
};

template <class Net, class In>
using net_specs = entries_specs<typename resolve<false, Net, In>::entries>;

template <class... Ss>
struct concat_out;
template <std::size_t... C, std::size_t H, std::size_t W>
struct concat_out<Shape<C, H, W>...> {
    using type = Shape<(C + ...), H, W>;
};
template <std::size_t... N>
struct concat_out<Shape<N>...> {
    using type = Shape<(N + ...)>;
};

template <class... Ss>
constexpr bool same_spatial()
{
    if constexpr (((Ss::rank == 1) && ...))
        return true;
    else if constexpr (((Ss::rank == 3) && ...)) {
        constexpr std::size_t hs[] = {Ss::h...}, ws[] = {Ss::w...};
        for (std::size_t i = 0; i < sizeof...(Ss); ++i)
            if (hs[i] != hs[0] || ws[i] != ws[0])
                return false;
        return true;
    } else
        return false;
}

template <class In, class... Bs>
constexpr shape_issue concat_check()
{
    if constexpr (!(resolve<false, Bs, In>::valid && ...))
        return shape_issue::branch_invalid;
    else if constexpr (!same_spatial<typename resolve<false, Bs, In>::out...>())
        return shape_issue::own_rule;
    else
        return shape_issue::none;
}

template <class In, class Body>
constexpr shape_issue residual_check()
{
    if constexpr (!resolve<false, Body, In>::valid)
        return shape_issue::branch_invalid;
    else if constexpr (!std::is_same_v<typename resolve<false, Body, In>::out, In>)
        return shape_issue::own_rule;
    else
        return shape_issue::none;
}

/// Offset of block k in a sequence of blocks of the given sizes.
template <std::size_t N>
constexpr std::size_t block_offset(const std::array<std::size_t, N>& sizes, std::size_t k)
{
    std::size_t s = 0;
    for (std::size_t i = 0; i < k && i < N; ++i)
        s += sizes[i];
    return s;
}

template <std::size_t... N>
constexpr auto join_all(const std::array<param_spec, N>&... a)
{
    std::array<param_spec, (std::size_t{0} + ... + N)> out{};
    std::size_t i = 0;
    ((std::copy(a.begin(), a.end(), out.begin() + static_cast<std::ptrdiff_t>(i)), i += N), ...);
    return out;
}


} // namespace detail

template <class... Branches>
struct Concat;
template <class Body>
struct Residual;

/// Named conditions of the graph layers' own rules (see infer.hpp).
template <class Path, class Layer, class InShape>
inline constexpr bool concat_branches_agree_spatially = detail::issue_of<Layer, InShape>() != shape_issue::own_rule;
template <class Path, class Layer, class InShape>
inline constexpr bool residual_body_keeps_shape = detail::issue_of<Layer, InShape>() != shape_issue::own_rule;

template <class... Branches>
struct Concat {
    static_assert(sizeof...(Branches) >= 1, "nmfdsl: Concat needs at least one branch");
    static constexpr std::size_t branch_count = sizeof...(Branches);

    static std::string name() { return "Concat<" + std::to_string(branch_count) + " branches>"; }
    template <class In>
    static constexpr shape_issue check = detail::concat_check<In, Branches...>();
    template <class In>
    using output_shape = typename detail::concat_out<typename detail::resolve<false, Branches, In>::out...>::type;
    template <class In>
    using branches = type_list<Branches...>;
    template <class Path, class In>
    struct diagnose {
        static_assert(concat_branches_agree_spatially<Path, Concat, In>,
                      "nmfdsl: Concat branches end at different spatial sizes; make every branch produce the same "
                      "height and width");
    };

    template <class In>
    using engines = std::tuple<detail::sub_engine<Branches, In>...>;
    template <class In>
    using options_for = std::tuple<typename detail::sub_engine<Branches, In>::options...>;

    template <class In>
    static constexpr auto param_tensors = detail::join_all(detail::net_specs<Branches, In>::params...);
    template <class In>
    static constexpr auto buffer_tensors = detail::join_all(detail::net_specs<Branches, In>::buffers...);

    template <class In, class T>
    struct cache {
        std::tuple<typename detail::sub_engine<Branches, In>::template workspace<T>...> ws;
        aligned_vector<T> dy_part, dx_part;
    };

    template <class In, class T>
    static void init(T* p, T* b, rng& g)
    {
        boost::hana::for_each(boost::hana::make_range(boost::hana::size_c<0>, boost::hana::size_c<branch_count>),
            [&](auto k) {
                using E = std::tuple_element_t<k, engines<In>>;
                E::template init<T>(p + param_offset<In>(k), b + buffer_offset<In>(k), g);
            });
    }

    template <class In, class T>
    static void forward(const options_for<In>& o, const forward_args<T>& a, cache<In, T>& c)
    {
        using Out = output_shape<In>;
        constexpr std::size_t rows = detail::rows_per_sample<Out>(), C = detail::channels<Out>();
        std::size_t first = 0;
        boost::hana::for_each(boost::hana::make_range(boost::hana::size_c<0>, boost::hana::size_c<branch_count>),
            [&](auto k) {
                using E = std::tuple_element_t<k, engines<In>>;
                using BOut = typename detail::resolve<false, std::tuple_element_t<k, std::tuple<Branches...>>, In>::out;
                constexpr std::size_t Cb = detail::channels<BOut>();
                const layer_path branch{&a.where, k};
                const T* yb = E::template forward<T>(std::get<k>(o), a.params + param_offset<In>(k),
                                                     a.buffers + buffer_offset<In>(k), a.x, a.batch,
                                                     std::get<k>(c.ws), a.training, a.update_buffers, &branch);
                for (std::size_t r = 0; r < a.batch * rows; ++r)
                    std::copy(yb + r * Cb, yb + (r + 1) * Cb, a.y + r * C + first);
                first += Cb;
            });
    }

    /// The local costs of the layers inside the branches (layer protocol, core/layer.hpp).
    template <class In, class T>
    static void local_costs(const options_for<In>& o, const local_cost_args<T>& a, cache<In, T>& c,
                            local_cost_sink sink)
    {
        boost::hana::for_each(boost::hana::make_range(boost::hana::size_c<0>, boost::hana::size_c<branch_count>),
            [&](auto k) {
                using E = std::tuple_element_t<k, engines<In>>;
                const layer_path branch{&a.where, k};
                E::template local_costs<T>(std::get<k>(o), a.params + param_offset<In>(k),
                                           a.grads + param_offset<In>(k), a.x, std::get<k>(c.ws), sink, &branch);
            });
    }

    /// The statistics of the layers inside the branches.
    template <class In, class T>
    static void statistics(const options_for<In>& o, const statistics_args<T>& a, cache<In, T>& c,
                           statistic_sink sink)
    {
        boost::hana::for_each(boost::hana::make_range(boost::hana::size_c<0>, boost::hana::size_c<branch_count>),
            [&](auto k) {
                using E = std::tuple_element_t<k, engines<In>>;
                const layer_path branch{&a.where, k};
                E::template statistics<T>(std::get<k>(o), a.x, std::get<k>(c.ws), sink, &branch);
            });
    }

    template <class In, class T>
    static void backward(const options_for<In>& o, const backward_args<T>& a, cache<In, T>& c)
    {
        using Out = output_shape<In>;
        constexpr std::size_t rows = detail::rows_per_sample<Out>(), C = detail::channels<Out>();
        std::size_t first = 0;
        std::fill(a.dx, a.dx + a.batch * In::size, T(0));
        c.dx_part.resize(a.need_dx ? a.batch * In::size : 0);
        boost::hana::for_each(boost::hana::make_range(boost::hana::size_c<0>, boost::hana::size_c<branch_count>),
            [&](auto k) {
                using E = std::tuple_element_t<k, engines<In>>;
                using BOut = typename detail::resolve<false, std::tuple_element_t<k, std::tuple<Branches...>>, In>::out;
                constexpr std::size_t Cb = detail::channels<BOut>();
                c.dy_part.resize(a.batch * BOut::size);
                for (std::size_t r = 0; r < a.batch * rows; ++r)
                    std::copy(a.dy + r * C + first, a.dy + r * C + first + Cb, c.dy_part.data() + r * Cb);
                T* dxb = a.need_dx ? c.dx_part.data() : nullptr;
                if constexpr (E::count == 0) {
                    if (dxb)
                        std::copy(c.dy_part.begin(), c.dy_part.end(), dxb);
                } else {
                    const layer_path branch{&a.where, k};
                    E::template backward<T>(std::get<k>(o), a.params + param_offset<In>(k),
                                            a.grads + param_offset<In>(k), a.buffers + buffer_offset<In>(k), a.x,
                                            c.dy_part.data(), dxb, std::get<k>(c.ws), &branch, nullptr,
                                            a.need_grads);
                }
                if (dxb)
                    for (std::size_t i = 0; i < a.batch * In::size; ++i)
                        a.dx[i] += dxb[i];
                first += Cb;
            });
    }

    template <class In>
    static constexpr std::size_t branch_param_offset(std::size_t k)
    {
        return detail::block_offset(
            std::array<std::size_t, branch_count>{detail::sub_engine<Branches, In>::param_size...}, k);
    }
    template <class In>
    static constexpr std::size_t branch_buffer_offset(std::size_t k)
    {
        return detail::block_offset(
            std::array<std::size_t, branch_count>{detail::sub_engine<Branches, In>::buffer_size...}, k);
    }

private:
    template <class In>
    static constexpr std::size_t param_offset(std::size_t k)
    {
        return branch_param_offset<In>(k);
    }
    template <class In>
    static constexpr std::size_t buffer_offset(std::size_t k)
    {
        return branch_buffer_offset<In>(k);
    }
};

/// y = Body(x) + x. Backward: dx = dBody/dx(dy) + dy.
template <class Body>
struct Residual {
    static std::string name() { return "Residual"; }
    template <class In>
    static constexpr shape_issue check = detail::residual_check<In, Body>();
    template <class In>
    using output_shape = In;
    template <class In>
    using branches = type_list<Body>;
    template <class Path, class In>
    struct diagnose {
        static_assert(residual_body_keeps_shape<Path, Residual, In>,
                      "nmfdsl: the Residual body changes the shape of its input; its output must have the input's "
                      "channels, height and width");
    };

    template <class In>
    using body_engine = detail::sub_engine<Body, In>;
    template <class In>
    using options_for = std::tuple<typename body_engine<In>::options>;
    template <class In>
    static constexpr std::size_t branch_param_offset(std::size_t) { return 0; }
    template <class In>
    static constexpr std::size_t branch_buffer_offset(std::size_t) { return 0; }
    template <class In>
    static constexpr auto param_tensors = detail::net_specs<Body, In>::params;
    template <class In>
    static constexpr auto buffer_tensors = detail::net_specs<Body, In>::buffers;

    template <class In, class T>
    struct cache {
        typename body_engine<In>::template workspace<T> ws;
    };

    template <class In, class T>
    static void init(T* p, T* b, rng& g)
    {
        body_engine<In>::template init<T>(p, b, g);
    }

    template <class In, class T>
    static void forward(const options_for<In>& o, const forward_args<T>& a, cache<In, T>& c)
    {
        const layer_path body{&a.where, 0};
        const T* yb = body_engine<In>::template forward<T>(std::get<0>(o), a.params, a.buffers, a.x, a.batch, c.ws,
                                                           a.training, a.update_buffers, &body);
        for (std::size_t i = 0; i < a.batch * In::size; ++i)
            a.y[i] = yb[i] + a.x[i];
    }

    /// The local costs of the layers inside the body (layer protocol, core/layer.hpp).
    template <class In, class T>
    static void local_costs(const options_for<In>& o, const local_cost_args<T>& a, cache<In, T>& c,
                            local_cost_sink sink)
    {
        const layer_path body{&a.where, 0};
        body_engine<In>::template local_costs<T>(std::get<0>(o), a.params, a.grads, a.x, c.ws, sink, &body);
    }

    /// The statistics of the layers inside the body.
    template <class In, class T>
    static void statistics(const options_for<In>& o, const statistics_args<T>& a, cache<In, T>& c,
                           statistic_sink sink)
    {
        const layer_path body{&a.where, 0};
        body_engine<In>::template statistics<T>(std::get<0>(o), a.x, c.ws, sink, &body);
    }

    template <class In, class T>
    static void backward(const options_for<In>& o, const backward_args<T>& a, cache<In, T>& c)
    {
        if constexpr (body_engine<In>::count == 0) {
            for (std::size_t i = 0; i < a.batch * In::size; ++i)
                a.dx[i] = T(2) * a.dy[i];
        } else {
            const layer_path body{&a.where, 0};
            body_engine<In>::template backward<T>(std::get<0>(o), a.params, a.grads, a.buffers, a.x, a.dy,
                                                  a.need_dx ? a.dx : nullptr, c.ws, &body, nullptr, a.need_grads);
            if (a.need_dx)
                for (std::size_t i = 0; i < a.batch * In::size; ++i)
                    a.dx[i] += a.dy[i];
        }
    }
};

} // namespace nmfdsl
