#pragma once
/// @file gradcheck.hpp
/// Finite-difference gradient checking of any network expression (a single layer or a whole Seq), in double.
/// With a fixed random upstream gradient g, the scalar f(x, θ) = Σ g ⊙ Net(x; θ) has ∂f/∂x = backward(g) and
/// ∂f/∂θ = the accumulated parameter gradients; both are compared with central differences
/// (f(· + h) − f(· − h)) / 2h on every entry, or on a random sample of entries when there are many.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "../core/model.hpp"

namespace nmfdsl::testing {

struct gradcheck_options {
    std::size_t batch = 3;
    double input_min = -1.0;   ///< inputs ~ U[input_min, input_max)
    double input_max = 1.0;
    double step = 1e-6;        ///< finite-difference step h
    std::size_t max_checks = 300;  ///< entries checked per tensor (input, parameters)
    bool training = true;
    std::uint64_t seed = 7;
};

struct gradcheck_result {
    double input_error = 0;  ///< max over checked input entries of |analytic − numeric| / max(1e-2, |a| + |n|):
                             ///< relative, with an absolute floor well above finite-difference noise
    double param_error = 0;  ///< the same over checked parameter entries
    std::size_t checked = 0;
    std::string worst;       ///< where the largest error occurred
};

namespace detail {
inline double relative_error(double a, double n)
{
    return std::abs(a - n) / std::max(1e-2, std::abs(a) + std::abs(n));
}
} // namespace detail

/// Checks the analytic gradients of Net on In against central differences. `configure` may set layer options on
/// the model before the check (e.g. a BatchNorm mode).
template <class Net, class In, class Configure>
gradcheck_result check_gradients(const gradcheck_options& o, Configure&& configure)
{
    using M = Model<Net, In, double>;
    M model{seed{o.seed}};
    configure(model);
    model.set_training(o.training);
    rng g(seed{o.seed + 1});
    typename M::input_tensor x = M::input_tensor::from_shape(nmfdsl::detail::batch_shape<In, double>(o.batch));
    for (auto& v : x)
        v = g.uniform(o.input_min, o.input_max);
    auto y0 = model.forward(x);
    typename M::output_tensor up = M::output_tensor::from_shape(y0.shape());
    for (auto& v : up)
        v = g.uniform(-1.0, 1.0);

    model.zero_grad();
    model.forward(x);
    const auto dx = model.backward(up);

    auto f = [&] {
        const auto y = model.forward(x);
        double s = 0;
        for (std::size_t i = 0; i < y.size(); ++i)
            s += y.data()[i] * up.data()[i];
        return s;
    };
    auto pick = [&](std::size_t n) {
        std::vector<std::size_t> idx(n);
        for (std::size_t i = 0; i < n; ++i)
            idx[i] = i;
        if (n > o.max_checks) {
            for (std::size_t i = 0; i < o.max_checks; ++i)
                std::swap(idx[i], idx[i + g.below(n - i)]);
            idx.resize(o.max_checks);
        }
        return idx;
    };

    gradcheck_result r;
    double worst = -1;
    for (std::size_t i : pick(x.size())) {
        const double keep = x.data()[i];
        x.data()[i] = keep + o.step;
        const double fp = f();
        x.data()[i] = keep - o.step;
        const double fm = f();
        x.data()[i] = keep;
        const double e = detail::relative_error(dx.data()[i], (fp - fm) / (2 * o.step));
        r.input_error = std::max(r.input_error, e);
        ++r.checked;
        if (e > worst) {
            worst = e;
            r.worst = "input[" + std::to_string(i) + "]";
        }
    }
    auto params = model.parameters();
    for (auto& p : params) {
        for (std::size_t i : pick(p.value.size())) {
            const double keep = p.value[i];
            p.value[i] = keep + o.step;
            const double fp = f();
            p.value[i] = keep - o.step;
            const double fm = f();
            p.value[i] = keep;
            const double e = detail::relative_error(p.grad[i], (fp - fm) / (2 * o.step));
            r.param_error = std::max(r.param_error, e);
            ++r.checked;
            if (e > worst) {
                worst = e;
                r.worst = "layer " + p.path + " (" + p.layer_name + ") " + std::string(p.name) + "[" +
                          std::to_string(i) + "]";
            }
        }
    }
    return r;
}

template <class Net, class In>
gradcheck_result check_gradients(const gradcheck_options& o = {})
{
    return check_gradients<Net, In>(o, [](auto&) {});
}

} // namespace nmfdsl::testing
