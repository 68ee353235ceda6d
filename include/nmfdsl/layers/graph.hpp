#pragma once
/// @file graph.hpp
/// Graph layers that hold sub-networks, checked statically like everything else:
///  - Concat<Branches...>: every branch sees the same input; the outputs are concatenated along channels. All
///    branches must end at the same spatial size (or all be vectors).
///  - Residual<Body>: y = Body(x) + x; the body must return its input's shape.
/// Each branch (or the body) is any network expression: a layer, a Seq, a named block. Its errors are reported
/// inside it, with indices counted from the start of the branch.
#include <string>
#include <tuple>

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
        return shape_issue::branches_disagree;
    else
        return shape_issue::none;
}

template <class In, class Body>
constexpr shape_issue residual_check()
{
    if constexpr (!resolve<false, Body, In>::valid)
        return shape_issue::branch_invalid;
    else if constexpr (!std::is_same_v<typename resolve<false, Body, In>::out, In>)
        return shape_issue::body_changes_shape;
    else
        return shape_issue::none;
}

template <std::size_t... N>
constexpr auto join_all(const std::array<param_spec, N>&... a)
{
    std::array<param_spec, (std::size_t{0} + ... + N)> out{};
    std::size_t i = 0;
    ((std::copy(a.begin(), a.end(), out.begin() + static_cast<std::ptrdiff_t>(i)), i += N), ...);
    return out;
}

template <class F, std::size_t... I>
constexpr void static_for(F&& f, std::index_sequence<I...>)
{
    (f(std::integral_constant<std::size_t, I>{}), ...);
}

} // namespace detail

template <class... Branches>
struct Concat {
    static_assert(sizeof...(Branches) >= 1, "nmfdsl: Concat needs at least one branch");
    static constexpr std::size_t branch_count = sizeof...(Branches);

    static std::string name() { return "Concat<" + std::to_string(branch_count) + " branches>"; }
    template <class In>
    static constexpr shape_issue check = detail::concat_check<In, Branches...>();
    template <class In>
    using output_shape = typename detail::concat_out<typename detail::resolve<false, Branches, In>::out...>::type;
    /// Instantiated in diagnosing mode: reports the errors inside each branch.
    template <class In>
    struct diagnose_children {
        using outs = type_list<typename detail::resolve<true, Branches, In>::out...>;
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
        detail::static_for(
            [&](auto k) {
                using E = std::tuple_element_t<k, engines<In>>;
                E::template init<T>(p + param_offset<In>(k), b + buffer_offset<In>(k), g);
            },
            std::make_index_sequence<branch_count>{});
    }

    template <class In, class T>
    static void forward(const options_for<In>& o, const forward_args<T>& a, cache<In, T>& c)
    {
        using Out = output_shape<In>;
        constexpr std::size_t rows = detail::rows_per_sample<Out>(), C = detail::channels<Out>();
        std::size_t first = 0;
        detail::static_for(
            [&](auto k) {
                using E = std::tuple_element_t<k, engines<In>>;
                using BOut = typename detail::resolve<false, std::tuple_element_t<k, std::tuple<Branches...>>, In>::out;
                constexpr std::size_t Cb = detail::channels<BOut>();
                const T* yb = E::template forward<T>(std::get<k>(o), a.params + param_offset<In>(k),
                                                     a.buffers + buffer_offset<In>(k), a.x, a.batch,
                                                     std::get<k>(c.ws), a.training, a.update_buffers);
                for (std::size_t r = 0; r < a.batch * rows; ++r)
                    std::copy(yb + r * Cb, yb + (r + 1) * Cb, a.y + r * C + first);
                first += Cb;
            },
            std::make_index_sequence<branch_count>{});
    }

    template <class In, class T>
    static void backward(const options_for<In>& o, const backward_args<T>& a, cache<In, T>& c)
    {
        using Out = output_shape<In>;
        constexpr std::size_t rows = detail::rows_per_sample<Out>(), C = detail::channels<Out>();
        std::size_t first = 0;
        std::fill(a.dx, a.dx + a.batch * In::size, T(0));
        c.dx_part.resize(a.need_dx ? a.batch * In::size : 0);
        detail::static_for(
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
                    E::template backward<T>(std::get<k>(o), a.params + param_offset<In>(k),
                                            a.grads + param_offset<In>(k), a.buffers + buffer_offset<In>(k), a.x,
                                            c.dy_part.data(), dxb, std::get<k>(c.ws));
                }
                if (dxb)
                    for (std::size_t i = 0; i < a.batch * In::size; ++i)
                        a.dx[i] += dxb[i];
                first += Cb;
            },
            std::make_index_sequence<branch_count>{});
    }

private:
    template <class In>
    static constexpr std::size_t param_offset(std::size_t k)
    {
        constexpr std::size_t sizes[] = {detail::sub_engine<Branches, In>::param_size...};
        std::size_t s = 0;
        for (std::size_t i = 0; i < k; ++i)
            s += sizes[i];
        return s;
    }
    template <class In>
    static constexpr std::size_t buffer_offset(std::size_t k)
    {
        constexpr std::size_t sizes[] = {detail::sub_engine<Branches, In>::buffer_size...};
        std::size_t s = 0;
        for (std::size_t i = 0; i < k; ++i)
            s += sizes[i];
        return s;
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
    struct diagnose_children {
        using out = typename detail::resolve<true, Body, In>::out;
    };

    template <class In>
    using body_engine = detail::sub_engine<Body, In>;
    template <class In>
    using options_for = typename body_engine<In>::options;
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
        const T* yb = body_engine<In>::template forward<T>(o, a.params, a.buffers, a.x, a.batch, c.ws, a.training,
                                                           a.update_buffers);
        for (std::size_t i = 0; i < a.batch * In::size; ++i)
            a.y[i] = yb[i] + a.x[i];
    }

    template <class In, class T>
    static void backward(const options_for<In>& o, const backward_args<T>& a, cache<In, T>& c)
    {
        if constexpr (body_engine<In>::count == 0) {
            for (std::size_t i = 0; i < a.batch * In::size; ++i)
                a.dx[i] = T(2) * a.dy[i];
        } else {
            body_engine<In>::template backward<T>(o, a.params, a.grads, a.buffers, a.x, a.dy,
                                                  a.need_dx ? a.dx : nullptr, c.ws);
            if (a.need_dx)
                for (std::size_t i = 0; i < a.batch * In::size; ++i)
                    a.dx[i] += a.dy[i];
        }
    }
};

} // namespace nmfdsl
