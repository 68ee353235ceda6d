#pragma once
/// @file noise.hpp
/// Random corruptions of images in [0, 1]: x̃ = clip(x + n, 0, 1) with n ~ N(0, σ²) (Gaussian) or
/// n ~ U(−√3σ, √3σ) (uniform, the same standard deviation), i.i.d. per value. The noise of image i in repetition r
/// comes from a stream seeded by (seed, r, i) alone, so it does not depend on how the data set is split into
/// batches, on the batch order or on the thread count.
#include <cmath>
#include <cstdint>
#include <span>
#include <string>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "pgd.hpp"

namespace nmfdsl::attack {

enum class noise_kind { gaussian, uniform };

inline const char* noise_name(noise_kind k) { return k == noise_kind::gaussian ? "gaussian" : "uniform"; }

/// "gaussian" / "uniform"; throws argument_error naming the text otherwise.
inline noise_kind parse_noise(const std::string& text)
{
    if (text == "gaussian")
        return noise_kind::gaussian;
    if (text == "uniform")
        return noise_kind::uniform;
    throw argument_error("nmfdsl::attack: unknown noise '" + text + "' (choose gaussian or uniform)");
}

struct noise_options {
    noise_kind kind = noise_kind::gaussian;
    double sigma = 0.1;       ///< standard deviation of n (before clipping), in pixel units of [0, 1]
    std::uint64_t seed = 0;
    std::size_t repetition = 0;    ///< which of the fresh draws of a sweep
    std::size_t first_sample = 0;  ///< index of the batch's first image in the data set

    /// Throws argument_error for σ < 0 or not finite.
    void validate() const
    {
        if (!(std::isfinite(sigma) && sigma >= 0))
            throw argument_error("nmfdsl::attack::noise: sigma must be a finite value >= 0, got " +
                                 std::to_string(sigma));
    }
};

/// x̃ for a batch x [N, D] (values in [0, 1]); images are corrupted in parallel, each from its own stream.
template <class T>
image_batch<T> add_noise(const image_batch<T>& x, const noise_options& o)
{
    o.validate();
    if (x.dimension() != 2)
        throw shape_error("nmfdsl::attack::noise: expected a batch [N, D], got a tensor of rank " +
                          std::to_string(x.dimension()));
    const std::size_t N = x.shape()[0], D = x.shape()[1];
    image_batch<T> out = x;
    // a round number of its own (1 << 32 + r) keeps the noise streams apart from PGD's random starts
    const std::uint64_t round = (std::uint64_t(1) << 32) + o.repetition;
    const double half_width = std::sqrt(3.0) * o.sigma;
    parallel_for(N, [&](std::size_t b) {
        rng g = detail::image_stream(o.seed, round, o.first_sample + b);
        T* v = out.data() + b * D;
        for (std::size_t i = 0; i < D; ++i) {
            const double n = o.kind == noise_kind::gaussian ? o.sigma * double(detail::standard_normal<T>(g))
                                                            : half_width * (2.0 * g.uniform01<double>() - 1.0);
            v[i] = std::clamp<T>(static_cast<T>(double(v[i]) + n), T(0), T(1));
        }
    });
    return out;
}

/// How many of the images x [N, D] the classifier gets right.
template <class Classifier, class T = typename Classifier::value_type>
std::size_t count_correct(Classifier& model, const image_batch<T>& x, std::span<const std::size_t> labels)
{
    const image_batch<T> p = model.probabilities(x);
    check_batch("count_correct", x, labels, model.features(), p.shape()[1]);
    std::size_t correct = 0;
    for (std::size_t b = 0; b < labels.size(); ++b)
        correct += predicted_class(p, b) == labels[b];
    return correct;
}

} // namespace nmfdsl::attack
