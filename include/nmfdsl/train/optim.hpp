#pragma once
/// @file optim.hpp
/// Optimisers with per-group learning rates, the ReduceLROnPlateau schedule and the paper's stopping rule
/// (docs/method.md §4).
///  - Adam (β1 0.9, β2 0.999, eps 1e-8, no weight decay), PyTorch's update: m ← β1 m + (1−β1) g,
///    v ← β2 v + (1−β2) g², p ← p − lr · m̂ / (√v̂ + eps) with the bias-corrected m̂, v̂.
///  - SGD with momentum: b ← μ b + g, p ← p − lr · b.
/// The paper's learning rates: nmf 0.01, mix 0.001, norm 0.001; the CNN baselines' conv weights 0.01 (the "neuron a"
/// group, §6 A3).
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/model.hpp"
#include "../core/parallel.hpp"
#include "../core/params.hpp"

namespace nmfdsl::optim {

using nmfdsl::group_count;

/// A learning rate per parameter group.
struct learning_rates {
    std::array<double, group_count> lr{};

    double& operator[](group g) { return lr[static_cast<std::size_t>(g)]; }
    double operator[](group g) const { return lr[static_cast<std::size_t>(g)]; }

    /// The paper's (parameter_groups' paper_lr): NMF weights and "neuron a" convolutions 0.01; 1×1 mixing,
    /// BatchNorm and the rest 0.001.
    static learning_rates paper()
    {
        learning_rates r;
        for (const auto& g : parameter_groups)
            r[g.id] = g.paper_lr;
        return r;
    }
};

namespace detail {
template <class T>
void validate_rates(const learning_rates& r, const char* who)
{
    for (double v : r.lr)
        if (!(std::isfinite(v) && v >= 0.0))
            throw argument_error(std::string("nmfdsl: ") + who + ": learning rates must be finite and >= 0, got " +
                                        std::to_string(v));
}
} // namespace detail

/// What the Trainer needs of an optimiser: a step over the tensors it was built with, per-group learning rates the
/// schedule may change, and its state as numbers for checkpoints.
template <class T>
class optimizer {
public:
    virtual ~optimizer() = default;
    virtual void step() = 0;
    virtual learning_rates& rates() = 0;
    virtual const learning_rates& rates() const = 0;
    virtual std::vector<double> state() const = 0;
    /// Restores a state() of an optimiser of the same kind over the same tensors; throws argument_error otherwise.
    virtual void load_state(const std::vector<double>& s) = 0;
    virtual std::string name() const = 0;
};

/// Adam over every tensor of a model, one learning rate per group.
template <class T>
class Adam final : public optimizer<T> {
public:
    Adam(std::vector<parameter_ref<T>> params, learning_rates lr, double beta1 = 0.9, double beta2 = 0.999,
         double eps = 1e-8)
        : params_(std::move(params)), lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps)
    {
        detail::validate_rates<T>(lr, "Adam");
        for (const auto& p : params_) {
            m_.emplace_back(p.value.size(), T(0));
            v_.emplace_back(p.value.size(), T(0));
        }
    }

    void step() override
    {
        ++t_;
        const double c1 = 1.0 - std::pow(beta1_, double(t_)), c2 = 1.0 - std::pow(beta2_, double(t_));
        for (std::size_t k = 0; k < params_.size(); ++k) {
            auto& p = params_[k];
            const double lr = lr_[p.grp];
            const T b1 = T(beta1_), b2 = T(beta2_), step = T(lr / c1), inv_c2 = T(1.0 / c2), eps = T(eps_);
            T* m = m_[k].data();
            T* v = v_[k].data();
            parallel_chunks(p.value.size(), 1 << 14, [&](std::size_t b, std::size_t e) {
                for (std::size_t i = b; i < e; ++i) {
                    const T g = p.grad[i];
                    m[i] = b1 * m[i] + (T(1) - b1) * g;
                    v[i] = b2 * v[i] + (T(1) - b2) * g * g;
                    p.value[i] -= step * m[i] / (std::sqrt(v[i] * inv_c2) + eps);
                }
            });
        }
    }

    learning_rates& rates() override { return lr_; }
    const learning_rates& rates() const override { return lr_; }
    std::uint64_t steps() const { return t_; }
    std::string name() const override { return "Adam"; }

    /// The optimiser state as a flat list of numbers (for checkpoints): step count, then m and v of every tensor.
    std::vector<double> state() const override
    {
        std::vector<double> s{double(t_)};
        for (std::size_t k = 0; k < m_.size(); ++k) {
            s.insert(s.end(), m_[k].begin(), m_[k].end());
            s.insert(s.end(), v_[k].begin(), v_[k].end());
        }
        s.insert(s.end(), lr_.lr.begin(), lr_.lr.end());
        return s;
    }
    void load_state(const std::vector<double>& s) override
    {
        std::size_t expected = 1 + group_count;
        for (const auto& m : m_)
            expected += 2 * m.size();
        if (s.size() != expected)
            throw argument_error("nmfdsl: Adam state has " + std::to_string(s.size()) + " values, expected " +
                                        std::to_string(expected));
        std::size_t at = 0;
        t_ = static_cast<std::uint64_t>(s[at++]);
        for (std::size_t k = 0; k < m_.size(); ++k) {
            for (auto& x : m_[k])
                x = T(s[at++]);
            for (auto& x : v_[k])
                x = T(s[at++]);
        }
        for (auto& x : lr_.lr)
            x = s[at++];
    }

private:
    std::vector<parameter_ref<T>> params_;
    learning_rates lr_;
    double beta1_, beta2_, eps_;
    std::uint64_t t_ = 0;
    std::vector<aligned_vector<T>> m_, v_;  ///< counted by nmfdsl::memory, like every library buffer
};

/// SGD with (heavy-ball) momentum, one learning rate per group.
template <class T>
class SGD final : public optimizer<T> {
public:
    SGD(std::vector<parameter_ref<T>> params, learning_rates lr, double momentum = 0.9)
        : params_(std::move(params)), lr_(lr), momentum_(momentum)
    {
        detail::validate_rates<T>(lr, "SGD");
        if (!(momentum >= 0.0 && momentum < 1.0))
            throw argument_error("nmfdsl: SGD: momentum must be in [0, 1), got " + std::to_string(momentum));
        for (const auto& p : params_)
            buf_.emplace_back(p.value.size(), T(0));
    }

    void step() override
    {
        for (std::size_t k = 0; k < params_.size(); ++k) {
            auto& p = params_[k];
            const T lr = T(lr_[p.grp]), mu = T(momentum_);
            T* b = buf_[k].data();
            parallel_chunks(p.value.size(), 1 << 14, [&](std::size_t first, std::size_t last) {
                for (std::size_t i = first; i < last; ++i) {
                    b[i] = mu * b[i] + p.grad[i];
                    p.value[i] -= lr * b[i];
                }
            });
        }
    }

    learning_rates& rates() override { return lr_; }
    const learning_rates& rates() const override { return lr_; }

    std::string name() const override { return "SGD"; }

    std::vector<double> state() const override
    {
        std::vector<double> s;
        for (const auto& b : buf_)
            s.insert(s.end(), b.begin(), b.end());
        s.insert(s.end(), lr_.lr.begin(), lr_.lr.end());
        return s;
    }
    void load_state(const std::vector<double>& s) override
    {
        std::size_t expected = group_count;
        for (const auto& b : buf_)
            expected += b.size();
        if (s.size() != expected)
            throw argument_error("nmfdsl: SGD state has " + std::to_string(s.size()) + " values, expected " +
                                        std::to_string(expected));
        std::size_t at = 0;
        for (auto& b : buf_)
            for (auto& x : b)
                x = T(s[at++]);
        for (auto& x : lr_.lr)
            x = s[at++];
    }

private:
    std::vector<parameter_ref<T>> params_;
    learning_rates lr_;
    double momentum_;
    std::vector<aligned_vector<T>> buf_;  ///< counted by nmfdsl::memory
};

/// ReduceLROnPlateau as in PyTorch (mode min, relative threshold), stepped once per epoch with the epoch's summed
/// training loss; a reduction multiplies every group's rate by `factor`, skipping changes smaller than `eps`.
struct ReduceLROnPlateau {
    double factor = 0.1;
    std::size_t patience = 10;
    double threshold = 1e-4;
    double eps = 1e-10;
    double min_lr = 0.0;

    double best = INFINITY;
    std::size_t bad_epochs = 0;
    std::size_t reductions = 0;

    /// Returns true when the rates were reduced.
    bool step(double metric, learning_rates& lr)
    {
        if (metric < best * (1.0 - threshold)) {
            best = metric;
            bad_epochs = 0;
        } else {
            ++bad_epochs;
        }
        if (bad_epochs <= patience)
            return false;
        bad_epochs = 0;
        bool changed = false;
        for (double& r : lr.lr) {
            const double next = std::max(r * factor, min_lr);
            if (r - next > eps) {
                r = next;
                changed = true;
            }
        }
        reductions += changed ? 1 : 0;
        return changed;
    }
};

/// The paper's stopping rule: stop once every group's rate, rounded to float32 as the reference does, is below
/// `limit` (1e-9). After seven reductions 0.01 becomes 1.0000000000000005e-9, whose float32 value 9.9999997e-10 is
/// below the limit: training stops then (docs/method.md §4).
inline bool learning_rates_exhausted(const learning_rates& lr, double limit = 1e-9)
{
    for (double r : lr.lr)
        if (r != 0.0 && double(static_cast<float>(r)) >= limit)
            return false;
    return true;
}

} // namespace nmfdsl::optim
