#pragma once
/// @file population.hpp
/// Per-image decisions for networks that normalise with each batch's own statistics. The deep-NMF paper's networks
/// use BatchNorm in batch_statistics mode at test time too, so the class of an image depends on the other images of
/// its batch: an attack that moves one image moves the others' normalisation, and a batch shrunk to the images still
/// in play is normalised differently from the full one. Robustness is only well defined per image, so before it is
/// measured such a network's BatchNorms are frozen at the population statistics of their input.
#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../layers/batchnorm.hpp"
#include "classifier.hpp"

namespace nmfdsl::attack {

/// Switches every BatchNorm of `model` that is in batch_statistics mode to running_statistics, with running values
/// estimated from `images` ([N, D] rows of the model's input, in [0, 1]): for batches b = 1 … B of `batch` rows
/// (whole batches only), the running mean and variance become the averages over b of each batch's mean and unbiased
/// variance (running = (1 − 1/b)·running + (1/b)·batch value, i.e. BatchNorm's own update with momentum 1/b).
/// BatchNorms already in running_statistics mode keep their values (momentum 0 during the passes). The model's
/// training flag and the other layers' options are restored. Returns the number of layers switched (0: nothing was
/// run or changed). Throws argument_error when fewer than `batch` images are given or batch < 2.
template <class M>
std::size_t use_population_statistics(M& model, const image_batch<typename M::value_type>& images, std::size_t batch)
{
    using In = typename M::input_shape;
    std::size_t switched = 0;
    model.template configure<BatchNorm::options>([&](BatchNorm::options& o) {
        switched += o.mode == bn_mode::batch_statistics;
    });
    if (switched == 0)
        return 0;
    if (batch < 2 || images.shape()[0] < batch || images.shape()[1] != In::size)
        throw argument_error("nmfdsl: use_population_statistics needs at least one batch of >= 2 images of " +
                             std::to_string(In::size) + " values, got " + std::to_string(images.shape()[0]) +
                             " images of " + std::to_string(images.shape()[1]) + " values, batch " +
                             std::to_string(batch));
    // the layers to estimate get running mode with momentum set per pass; the others' momentum is kept aside
    std::vector<std::pair<bool, double>> before;  // (was in batch mode, momentum)
    model.template configure<BatchNorm::options>([&](BatchNorm::options& o) {
        before.emplace_back(o.mode == bn_mode::batch_statistics, o.momentum);
        o.mode = bn_mode::running_statistics;
    });
    const bool was_training = model.training();
    model.set_training(true);
    typename M::workspace ws;
    const std::size_t batches = images.shape()[0] / batch;
    for (std::size_t b = 0; b < batches; ++b) {
        std::size_t k = 0;
        model.template configure<BatchNorm::options>([&](BatchNorm::options& o) {
            o.momentum = before[k++].first ? 1.0 / double(b + 1) : 0.0;
        });
        typename M::input_tensor x = M::input_tensor::from_shape(
            nmfdsl::detail::batch_shape<In, typename M::value_type>(batch));
        std::copy(images.data() + b * batch * In::size, images.data() + (b + 1) * batch * In::size, x.begin());
        model.forward(x, ws);
    }
    model.set_training(was_training);
    std::size_t k = 0;
    model.template configure<BatchNorm::options>([&](BatchNorm::options& o) { o.momentum = before[k++].second; });
    return switched;
}

} // namespace nmfdsl::attack
