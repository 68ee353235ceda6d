#pragma once
/// @file contract.hpp
/// The layer contract, made executable: nmfdsl::testing::check_layer<L, In>() runs a layer (or a composite, or any
/// network expression) through every rule of the layer protocol (core/layer.hpp) in double precision and reports
/// each rule it breaks, by name:
///
///   "forward overwrites y"            y is the same whether its buffer held NaN or zeros before the call
///   "forward leaves x and params"     forward changes neither its input nor the parameters
///   "backward overwrites dx"          dx is the same whether its buffer held NaN or zeros before the call
///   "backward accumulates grads"      grads pre-filled with G₀ end at G₀ + g, where g is what zeros end at
///   "backward can be repeated"        a second backward from the same cache adds the same g again
///   "caches are independent"          a forward into a second cache does not change the first cache's backward
///   "results independent of threads"  y, dx and grads are bit-identical with 1 and with 3 threads
///   "buffers change only on update"   a forward with update_buffers = false leaves the buffers alone
///   "buffers stay in their range"     after an updating forward every buffer is finite and within its
///                                     param_spec::range (a running variance stays >= 0)
///   "gradient matches finite differences"  (whole expression, testing::check_gradients)
///
/// A composite is checked leaf by leaf (each leaf on the activations the composite really feeds it), and as a whole
/// by finite differences. Use it for every layer you write: `REQUIRE(check_layer<MyLayer, Shape<2, 5, 5>>().ok());`.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../core/model.hpp"
#include "../core/parallel.hpp"
#include "gradcheck.hpp"

namespace nmfdsl::testing {

struct contract_options {
    std::size_t batch = 3;
    double input_min = -1.0;  ///< network inputs ~ U[input_min, input_max)
    double input_max = 1.0;
    bool training = true;
    /// Compare the gradient with finite differences. Turn it off only for a layer whose backward is, by design, not
    /// the exact gradient (CNMF's approximate mode); every other rule still applies.
    bool finite_differences = true;
    double fd_tolerance = 1e-6;  ///< on gradcheck_result's relative errors
    std::uint64_t seed = 11;
};

/// What check_layer found: one line per broken rule, naming the layer, the rule and the first offending value.
struct contract_result {
    std::vector<std::string> violations;
    std::size_t leaves_checked = 0;
    bool ok() const { return violations.empty(); }
    bool broke(const std::string& rule) const
    {
        return std::any_of(violations.begin(), violations.end(),
                           [&](const std::string& v) { return v.find("'" + rule + "'") != std::string::npos; });
    }
    std::string message() const
    {
        std::string s;
        for (const auto& v : violations)
            s += v + "\n";
        return s.empty() ? "every rule of the layer contract holds" : s;
    }
};

namespace detail {

using buffer = std::vector<double>;

/// Index of the first entry where a and b differ bitwise (NaN counts as differing from a number), or npos.
inline std::size_t first_difference(const double* a, const double* b, std::size_t n)
{
    for (std::size_t i = 0; i < n; ++i)
        if (std::memcmp(a + i, b + i, sizeof(double)) != 0)
            return i;
    return std::string::npos;
}

/// "Conv<8,3>" for a layer with a name, "the expression" for a Seq or a composite.
template <class L>
std::string expression_name()
{
    if constexpr (requires { L::name(); })
        return L::name();
    else
        return "the expression";
}

inline std::string value_text(double v)
{
    std::ostringstream os;
    os.precision(17);
    os << v;
    return os.str();
}

/// The rules applied to one leaf entry E, fed with input x (batch × E::in::size) and the model's parameter,
/// buffer and option blocks.
template <class E, class Options>
void check_leaf(const Options& opt, const double* params, const double* buffers, std::size_t buffer_count,
                const buffer& x, std::size_t batch, bool training, rng& g, contract_result& r)
{
    using L = typename E::layer;
    using In = typename E::in;
    using Out = typename E::out;
    using cache_t = typename L::template cache<In, double>;
    constexpr std::size_t param_count = total_padded_size(L::template param_tensors<In>);
    const std::string who = "layer " + std::to_string(E::index) + " (" + L::name() + ")";
    auto fail = [&](const std::string& rule, const std::string& what) {
        r.violations.push_back(who + " breaks the rule '" + rule + "': " + what);
    };
    const std::size_t nx = batch * In::size, ny = batch * Out::size;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const buffer p(params, params + param_count);
    buffer dy(ny), g0(param_count);
    for (auto& v : dy)
        v = g.uniform(-1.0, 1.0);
    for (auto& v : g0)
        v = g.uniform(-1.0, 1.0);

    struct run {
        buffer y, dx, grads, buf;
    };
    // One forward into `c` with y pre-filled by y_fill; a copy of the buffers is used (and returned).
    auto forward = [&](cache_t& c, const buffer& input, double y_fill, bool update, run& out) {
        out.y.assign(ny, y_fill);
        out.buf.assign(buffers, buffers + buffer_count);
        const forward_args<double> a{batch, input.data(), out.y.data(), p.data(), out.buf.data(), training,
                                     layer_path{nullptr, E::index}, update};
        L::template forward<In, double>(opt, a, c);
    };
    auto backward = [&](cache_t& c, const buffer& input, run& io, double dx_fill, const buffer& grads_start) {
        io.dx.assign(nx, dx_fill);
        io.grads = grads_start;
        const backward_args<double> a{batch, input.data(), io.y.data(), dy.data(), io.dx.data(), p.data(),
                                      io.grads.data(), io.buf.data(), layer_path{nullptr, E::index}, true};
        L::template backward<In, double>(opt, a, c);
    };
    const buffer zeros(param_count, 0.0);

    // reference: zero-filled outputs and gradients
    cache_t c0{};
    run ref;
    forward(c0, x, 0.0, true, ref);
    const buffer updated_buffers = ref.buf;  // for the range rule: the buffers right after an updating forward
    backward(c0, x, ref, 0.0, zeros);

    {  // forward overwrites y; leaves x and params alone
        cache_t c{};
        run poisoned;
        const buffer x_before = x;
        forward(c, x, nan, true, poisoned);
        if (const auto i = first_difference(poisoned.y.data(), ref.y.data(), ny); i != std::string::npos)
            fail("forward overwrites y", "y[" + std::to_string(i) + "] is " + value_text(poisoned.y[i]) +
                                             " after a forward into NaN, " + value_text(ref.y[i]) + " into zeros");
        if (first_difference(x.data(), x_before.data(), nx) != std::string::npos ||
            first_difference(p.data(), params, param_count) != std::string::npos)
            fail("forward leaves x and params", "the input or the parameters changed");
        // backward overwrites dx
        backward(c, x, poisoned, nan, zeros);
        if (const auto i = first_difference(poisoned.dx.data(), ref.dx.data(), nx); i != std::string::npos)
            fail("backward overwrites dx", "dx[" + std::to_string(i) + "] is " + value_text(poisoned.dx[i]) +
                                               " after a backward into NaN, " + value_text(ref.dx[i]) +
                                               " into zeros");
    }
    {  // backward accumulates grads, and can be repeated
        cache_t c{};
        run acc;
        forward(c, x, 0.0, true, acc);
        backward(c, x, acc, 0.0, g0);
        for (std::size_t i = 0; i < param_count; ++i) {
            const double want = g0[i] + ref.grads[i];
            if (std::abs(acc.grads[i] - want) > 1e-12 * (1.0 + std::abs(want))) {
                fail("backward accumulates grads", "grads[" + std::to_string(i) + "] started at " +
                                                       value_text(g0[i]) + " and ended at " +
                                                       value_text(acc.grads[i]) + ", expected " + value_text(want));
                break;
            }
        }
        const buffer once = acc.grads;
        backward(c, x, acc, 0.0, once);
        for (std::size_t i = 0; i < param_count; ++i) {
            const double want = once[i] + ref.grads[i];
            if (std::abs(acc.grads[i] - want) > 1e-12 * (1.0 + std::abs(want))) {
                fail("backward can be repeated", "a second backward from the same cache added " +
                                                     value_text(acc.grads[i] - once[i]) + " to grads[" +
                                                     std::to_string(i) + "], the first " +
                                                     value_text(ref.grads[i]));
                break;
            }
        }
        if (const auto i = first_difference(acc.dx.data(), ref.dx.data(), nx); i != std::string::npos)
            fail("backward can be repeated", "a second backward from the same cache gave dx[" + std::to_string(i) +
                                                 "] = " + value_text(acc.dx[i]) + ", the first " +
                                                 value_text(ref.dx[i]));
    }
    {  // caches are independent: forward x into A, other input into B, then backward A
        buffer other(nx);  // another input in the same domain (non-negative stays non-negative)
        for (std::size_t i = 0; i < nx; ++i)
            other[i] = x[i] * 0.5 + 0.25 * g.uniform(0.0, 1.0);
        cache_t ca{}, cb{};
        run ra, rb;
        forward(ca, x, 0.0, true, ra);
        forward(cb, other, 0.0, true, rb);
        backward(ca, x, ra, 0.0, zeros);
        const auto i = first_difference(ra.dx.data(), ref.dx.data(), nx);
        const auto k = first_difference(ra.grads.data(), ref.grads.data(), param_count);
        if (i != std::string::npos || k != std::string::npos)
            fail("caches are independent", "a forward into a second cache changed the first cache's backward (" +
                                               (i != std::string::npos ? "dx[" + std::to_string(i) + "]"
                                                                       : "grads[" + std::to_string(k) + "]") +
                                               ")");
    }
    {  // results independent of threads
        const std::size_t keep = threads();
        run per[2];
        const std::size_t counts[2] = {1, 3};
        for (int t = 0; t < 2; ++t) {
            set_threads(counts[t]);
            cache_t c{};
            forward(c, x, 0.0, true, per[t]);
            backward(c, x, per[t], 0.0, zeros);
        }
        set_threads(keep);
        if (first_difference(per[0].y.data(), per[1].y.data(), ny) != std::string::npos ||
            first_difference(per[0].dx.data(), per[1].dx.data(), nx) != std::string::npos ||
            first_difference(per[0].grads.data(), per[1].grads.data(), param_count) != std::string::npos)
            fail("results independent of threads", "y, dx or grads differ between 1 and 3 threads");
    }
    {  // buffers change only on update
        cache_t c{};
        run frozen;
        forward(c, x, 0.0, false, frozen);
        if (first_difference(frozen.buf.data(), buffers, buffer_count) != std::string::npos)
            fail("buffers change only on update", "a forward with update_buffers = false changed a buffer");
    }
    {  // buffers stay in their range (after the reference's updating forward)
        constexpr auto& specs = L::template buffer_tensors<In>;
        for (std::size_t k = 0; k < specs.size(); ++k) {
            const double* b = updated_buffers.data() + tensor_offset(specs, k);
            const auto bad = std::find_if(b, b + specs[k].size, [&](double v) { return !within(specs[k].range, v); });
            if (bad != b + specs[k].size) {
                std::ostringstream what;
                what << "after an updating forward, element " << (bad - b) << " of buffer '" << specs[k].name
                     << "' is " << *bad << "; it must hold " << range_text(specs[k].range);
                fail("buffers stay in their range", what.str());
            }
        }
    }
    ++r.leaves_checked;
}

} // namespace detail

/// Checks L applied to In against the layer contract (see the file comment). `configure(model)` may set options
/// (it receives a Model<L, In, double>) before the check, as for check_gradients.
template <class L, class In, class Configure>
contract_result check_layer(const contract_options& o, Configure&& configure)
{
    using M = Model<L, In, double>;
    using engine = typename M::engine;
    contract_result r;
    M model{seed{o.seed}};
    configure(model);
    rng g(seed{o.seed + 1});
    // run the whole expression once to get each leaf's real input (channels-last)
    detail::buffer x(o.batch * In::size);
    for (auto& v : x)
        v = g.uniform(o.input_min, o.input_max);
    typename engine::template workspace<double> ws;
    const auto params = model.flat_parameters();
    const auto buffers = model.flat_buffers();
    std::vector<double> scratch(buffers.begin(), buffers.end());
    engine::template forward<double>(model.options(), params.data(), scratch.data(), x.data(), o.batch, ws,
                                     o.training);
    boost::hana::for_each(engine::entries, [&](auto e) {
        using E = typename decltype(e)::type;
        constexpr std::size_t i = E::index;
        const double* in = i == 0 ? x.data() : ws.outputs[i == 0 ? 0 : i - 1].data();
        const detail::buffer leaf_x(in, in + o.batch * E::in::size);
        detail::check_leaf<E>(std::get<i>(model.options()), params.data() + engine::param_offsets[i],
                                      buffers.data() + engine::buffer_offsets[i],
                                      engine::buffer_offsets[i + 1] - engine::buffer_offsets[i], leaf_x, o.batch,
                                      o.training, g, r);
    });
    if (o.finite_differences) {
        gradcheck_options go;
        go.batch = o.batch;
        go.input_min = o.input_min;
        go.input_max = o.input_max;
        go.training = o.training;
        go.seed = o.seed;
        const auto fd = check_gradients<L, In>(go, configure);
        if (!(fd.input_error < o.fd_tolerance && fd.param_error < o.fd_tolerance))
            r.violations.push_back(detail::expression_name<L>() +
                                   " breaks the rule 'gradient matches finite differences': worst at " + fd.worst +
                                   ", input error " + detail::value_text(fd.input_error) + ", parameter error " +
                                   detail::value_text(fd.param_error));
    }
    return r;
}

template <class L, class In>
contract_result check_layer(const contract_options& o = {})
{
    return check_layer<L, In>(o, [](auto&) {});
}

} // namespace nmfdsl::testing
