#pragma once
/// @file classifier.hpp
/// What the robustness evaluations (attack/noise.hpp, attack/pgd.hpp) see of a network: a batch of flattened images
/// x [N, D] with values in [0, 1] goes in, class probabilities p [N, K] come out, and after a forward the gradient of
/// Σ_b ℓ_b with respect to x is available for any per-sample loss ℓ_b(p_b), given as dℓ/dp.
///
/// `model_classifier` adapts an nmfdsl::Model (whose networks end in Softmax). Any other type with the same three
/// members (features(), probabilities(x), input_gradient(dl_dp)) works with the attacks as well.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "../core/error.hpp"
#include "../core/model.hpp"

namespace nmfdsl::attack {

/// A batch of flattened images [N, D].
template <class T>
using image_batch = xt::xtensor<T, 2>;

/// The attacks' view of an nmfdsl::Model: evaluation mode while it lives (the previous mode is restored), one
/// workspace of its own. input_gradient back-propagates through the model's own backward, so an NMF layer contributes
/// the gradient its cnmf_options select (set nmf_gradient::unrolled for the exact gradient of the T-step forward).
/// The input gradient comes from Model::input_gradient: no parameter gradient is computed or changed.
template <class M>
class model_classifier {
public:
    using value_type = typename M::value_type;
    using T = value_type;

    explicit model_classifier(M& model) : model_(model), was_training_(model.training()) { model_.set_training(false); }
    ~model_classifier() { model_.set_training(was_training_); }
    model_classifier(const model_classifier&) = delete;
    model_classifier& operator=(const model_classifier&) = delete;

    /// D, the number of values per image.
    static constexpr std::size_t features() { return M::input_shape::size; }

    /// p [N, K] for x [N, D]; keeps what input_gradient needs.
    image_batch<T> probabilities(const image_batch<T>& x)
    {
        if (x.dimension() != 2 || x.shape()[1] != features())
            throw shape_error("nmfdsl::attack: the model expects images of " + std::to_string(features()) +
                              " values, got a batch of " + std::to_string(x.shape()[1]));
        typename M::input_tensor in(nmfdsl::detail::batch_shape<typename M::input_shape, T>(x.shape()[0]));
        std::copy(x.begin(), x.end(), in.begin());
        auto p = model_.forward(in, ws_);
        image_batch<T> out = xt::xtensor<T, 2>::from_shape({p.shape()[0], p.size() / p.shape()[0]});
        std::copy(p.begin(), p.end(), out.begin());
        return out;
    }

    /// dL/dx [N, D] of the last probabilities() call, for dL/dp = dl_dp [N, K].
    image_batch<T> input_gradient(const image_batch<T>& dl_dp)
    {
        typename M::output_tensor g(nmfdsl::detail::batch_shape<typename M::output_shape, T>(dl_dp.shape()[0]));
        std::copy(dl_dp.begin(), dl_dp.end(), g.begin());
        auto dx = model_.input_gradient(g, ws_);
        image_batch<T> out = xt::xtensor<T, 2>::from_shape({dl_dp.shape()[0], features()});
        std::copy(dx.begin(), dx.end(), out.begin());
        return out;
    }

private:
    M& model_;
    bool was_training_;
    typename M::workspace ws_;
};

/// The class with the highest probability in row b (the first of equal ones).
template <class T>
std::size_t predicted_class(const image_batch<T>& p, std::size_t b)
{
    const std::size_t K = p.shape()[1];
    const T* row = p.data() + b * K;
    return static_cast<std::size_t>(std::max_element(row, row + K) - row);
}

/// Checks a batch and its labels: values in [0, 1] (the attacks' box), one label per image, labels below K.
template <class T>
void check_batch(const char* who, const image_batch<T>& x, std::span<const std::size_t> labels, std::size_t features,
                 std::size_t classes)
{
    const std::string name = std::string("nmfdsl::attack::") + who;
    if (x.dimension() != 2 || x.shape()[0] == 0 || x.shape()[1] != features)
        throw shape_error(name + ": expected a batch [N > 0, " + std::to_string(features) + "], got [" +
                          std::to_string(x.shape()[0]) + ", " + std::to_string(x.shape()[1]) + "]");
    if (labels.size() != x.shape()[0])
        throw shape_error(name + ": expected one label per image (" + std::to_string(x.shape()[0]) + "), got " +
                          std::to_string(labels.size()));
    for (std::size_t b = 0; b < labels.size(); ++b)
        if (labels[b] >= classes)
            throw argument_error(name + ": label " + std::to_string(labels[b]) + " of image " + std::to_string(b) +
                                 " is not below the class count " + std::to_string(classes));
    for (std::size_t i = 0; i < x.size(); ++i)
        if (!(x.data()[i] >= T(0) && x.data()[i] <= T(1)))
            throw argument_error(name + ": image " + std::to_string(i / features) + " has the value " +
                                 std::to_string(double(x.data()[i])) + " at " + std::to_string(i % features) +
                                 ", outside [0, 1]");
}

} // namespace nmfdsl::attack
