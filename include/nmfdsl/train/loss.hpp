#pragma once
/// @file loss.hpp
/// Losses on class probabilities p [batch, classes] (the output of Softmax) and integer labels.
///  - PaperLoss (docs/method.md §4): with t the one-hot target and C the number of classes,
///      L = [ w_mse · (1/C) Σ_b Σ_c (p − t)²  +  w_kl · (1/C) Σ_b Σ_c t · log((t + 1e-20) / (p + 1e-20)) ]
///          / (w_mse + w_kl)
///    summed over the batch, w_mse = 0.5 and w_kl = 1.0 by default;
///      dL/dp = [ w_mse · (2/C)(p − t) − w_kl · (1/C) · t / (p + 1e-20) ] / (w_mse + w_kl).
///  - CrossEntropy: L = −(1/B) Σ_b log(p_{b, y_b} + 1e-20), averaged over the batch.
/// Both validate their input and throw shape_error (wrong shape, empty batch) or argument_error (label out of
/// range), naming the loss.
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "../core/error.hpp"

namespace nmfdsl::loss {

namespace detail {
inline void validate(const char* loss, std::size_t batch, std::size_t classes, std::size_t labels,
                     std::span<const std::size_t> y)
{
    if (batch == 0 || classes == 0)
        throw shape_error(std::string("nmfdsl: ") + loss + " expects probabilities [batch > 0, classes > 0], got [" +
                          std::to_string(batch) + ", " + std::to_string(classes) + "]");
    if (labels != batch)
        throw shape_error(std::string("nmfdsl: ") + loss + " expects one label per sample (" + std::to_string(batch) +
                          "), got " + std::to_string(labels));
    for (std::size_t b = 0; b < batch; ++b)
        if (y[b] >= classes)
            throw argument_error(std::string("nmfdsl: ") + loss + ": label " + std::to_string(y[b]) +
                                        " of sample " + std::to_string(b) + " is not below the class count " +
                                        std::to_string(classes));
}
} // namespace detail

template <class T>
struct loss_result {
    T value;
    xt::xtensor<T, 2> grad;  ///< dL/dp, same shape as p
    /// true: value and grad are means over the batch's samples; false: sums. Data-parallel training (Trainer with
    /// replicas) weights a mean by the replica's share of the global batch before it sums over the replicas.
    bool batch_mean = false;
};

struct PaperLoss {
    double mse_weight = 0.5;
    double kl_weight = 1.0;
    static constexpr const char* name = "PaperLoss";

    /// Value and gradient for p [batch, classes] and labels (one per sample).
    template <class T>
    loss_result<T> operator()(const xt::xtensor<T, 2>& p, std::span<const std::size_t> labels) const
    {
        const std::size_t B = p.shape()[0], C = p.shape()[1];
        detail::validate(name, B, C, labels.size(), labels);
        loss_result<T> r{T(0), xt::xtensor<T, 2>::from_shape({B, C}), false};
        const double norm = mse_weight + kl_weight;
        double mse = 0, kl = 0;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t c = 0; c < C; ++c) {
                const double pv = p(b, c), t = labels[b] == c ? 1.0 : 0.0;
                mse += (pv - t) * (pv - t);
                if (t > 0)
                    kl += t * std::log((t + 1e-20) / (pv + 1e-20));
                r.grad(b, c) = static_cast<T>((mse_weight * 2.0 / double(C) * (pv - t) -
                                               kl_weight / double(C) * t / (pv + 1e-20)) /
                                              norm);
            }
        r.value = static_cast<T>((mse_weight * mse / double(C) + kl_weight * kl / double(C)) / norm);
        return r;
    }
};

struct CrossEntropy {
    static constexpr const char* name = "CrossEntropy";

    template <class T>
    loss_result<T> operator()(const xt::xtensor<T, 2>& p, std::span<const std::size_t> labels) const
    {
        const std::size_t B = p.shape()[0], C = p.shape()[1];
        detail::validate(name, B, C, labels.size(), labels);
        loss_result<T> r{T(0), xt::zeros<T>({B, C}), true};
        double sum = 0;
        for (std::size_t b = 0; b < B; ++b) {
            const double pv = p(b, labels[b]);
            sum -= std::log(pv + 1e-20);
            r.grad(b, labels[b]) = static_cast<T>(-1.0 / (double(B) * (pv + 1e-20)));
        }
        r.value = static_cast<T>(sum / double(B));
        return r;
    }
};

} // namespace nmfdsl::loss
