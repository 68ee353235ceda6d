#pragma once
/// @file hah_models.hpp
/// The networks of the sparse, strong activations method (docs/method.md §6) for CIFAR-10's 3×32×32 images:
/// HaH-VGG16 — its first six convolutions are HaH blocks — and the standard VGG16 it is compared with. Both
/// standardise the [0, 1] images inside the model (Normalize; set CIFAR-10's statistics with
/// `model.layer<0>().options().channels(...)`, see cifar10_statistics) and end in Softmax for the cross-entropy loss.
#include <array>
#include <type_traits>
#include <vector>

#include <nmfdsl/nmfdsl.hpp>

namespace hah {
namespace nd = nmfdsl;

/// A VGG block of HaH-VGG16: weight-normalised 3×3 convolution (zero padding 1) → ReLU → BatchNorm.
template <std::size_t Out>
struct WNVggBlock : nd::Seq<nd::WNConv<Out, 3, 1, 1>, nd::ReLU, nd::BatchNorm> {};

/// A block of the standard VGG16: 3×3 convolution without bias (zero padding 1) → ReLU → BatchNorm.
template <std::size_t Out>
struct VggBlock : nd::Seq<nd::ZeroPad<1>, nd::Conv<Out, 3, 1, nd::patch_norm::none, nd::conv_bias::no_bias>, nd::ReLU,
                          nd::BatchNorm> {};

struct HaHVGG16 : nd::Seq<nd::Normalize,
                          nd::HaHBlock<64>, nd::HaHBlock<64>, nd::MaxPool<2>,             // 32×32 → 16×16
                          nd::HaHBlock<128>, nd::HaHBlock<128>, nd::MaxPool<2>,           //       →  8×8
                          nd::HaHBlock<256>, nd::HaHBlock<256>, WNVggBlock<256>, nd::MaxPool<2>,  // → 4×4
                          WNVggBlock<512>, WNVggBlock<512>, WNVggBlock<512>, nd::MaxPool<2>,      // → 2×2
                          WNVggBlock<512>, WNVggBlock<512>, WNVggBlock<512>, nd::MaxPool<2>,      // → 1×1
                          nd::Flatten, nd::Dense<10>, nd::Softmax> {};

struct VGG16 : nd::Seq<nd::Normalize,
                       VggBlock<64>, VggBlock<64>, nd::MaxPool<2>,
                       VggBlock<128>, VggBlock<128>, nd::MaxPool<2>,
                       VggBlock<256>, VggBlock<256>, VggBlock<256>, nd::MaxPool<2>,
                       VggBlock<512>, VggBlock<512>, VggBlock<512>, nd::MaxPool<2>,
                       VggBlock<512>, VggBlock<512>, VggBlock<512>, nd::MaxPool<2>,
                       nd::Flatten, nd::Dense<10>, nd::Softmax> {};

using CifarInput = nd::Shape<3, 32, 32>;

// The counts of the method's description: 14,710,464 bias-free convolution weights, BatchNorm's γ and β in the
// blocks that have it (7 blocks in HaH-VGG16, all 13 in VGG16), and the 5,130 of the linear head.
static_assert(nd::parameter_count_v<HaHVGG16, CifarInput> == 14'722'250);
static_assert(nd::parameter_count_v<VGG16, CifarInput> == 14'724'042);
static_assert(std::is_same_v<nd::output_shape_t<HaHVGG16, CifarInput>, nd::Shape<10>>);
static_assert(std::is_same_v<nd::output_shape_t<VGG16, CifarInput>, nd::Shape<10>>);

/// CIFAR-10's per-channel mean and standard deviation of [0, 1] pixels, for Normalize.
inline const std::vector<double> cifar10_mean{0.4914, 0.4822, 0.4465};
inline const std::vector<double> cifar10_std{0.2471, 0.2435, 0.2616};

/// The HaH cost weights α of the six HaH blocks, in network order (0 for every other convolution).
inline constexpr std::array<double, 6> hah_alpha{0.0045, 0.0025, 0.0013, 0.001, 0.0008, 0.0005};

} // namespace hah

namespace hah {

/// Networks for 28×28 images (Fashion-MNIST; CIFAR-10's 28×28 crops), our design after HaH-VGG16's pattern: HaH
/// blocks first, a standard block after, a linear head. HaHSmall: HaH blocks of 32 and 64 channels (cost weights
/// α = 0.0045 and 0.0025, HaH-VGG16's first two), each followed by a 2×2 max-pool, then a weight-normalised block of
/// 128 channels, a max-pool (28 → 14 → 7 → 3), Flatten, Dense<10>, Softmax. HaHSmallBaseline: the same structure
/// with standard blocks (bias-free 3×3 convolution → ReLU → BatchNorm) everywhere and no HaH cost.
struct HaHSmall : nd::Seq<nd::Normalize, nd::HaHBlock<32>, nd::MaxPool<2>, nd::HaHBlock<64>, nd::MaxPool<2>,
                          WNVggBlock<128>, nd::MaxPool<2>, nd::Flatten, nd::Dense<10>, nd::Softmax> {};
struct HaHSmallBaseline : nd::Seq<nd::Normalize, VggBlock<32>, nd::MaxPool<2>, VggBlock<64>, nd::MaxPool<2>,
                                  VggBlock<128>, nd::MaxPool<2>, nd::Flatten, nd::Dense<10>, nd::Softmax> {};

static_assert(std::is_same_v<nd::output_shape_t<HaHSmall, nd::Shape<1, 28, 28>>, nd::Shape<10>>);
static_assert(nd::parameter_count_v<HaHSmall, nd::Shape<1, 28, 28>> ==
              32 * 9 + 64 * 32 * 9 + 128 * 64 * 9 + 2 * 128 + 10 * 128 * 9 + 10);
static_assert(nd::parameter_count_v<HaHSmallBaseline, nd::Shape<1, 28, 28>> ==
              nd::parameter_count_v<HaHSmall, nd::Shape<1, 28, 28>> + 2 * 32 + 2 * 64);

/// Whether a network is trained with the sparse-activation recipe (cross-entropy, Adam 1e-3, multi-step schedule,
/// BatchNorm with running statistics, Normalize with the data's statistics).
template <class Net>
inline constexpr bool uses_hah_recipe = std::is_same_v<Net, HaHSmall> || std::is_same_v<Net, HaHSmallBaseline> ||
                                        std::is_same_v<Net, HaHVGG16> || std::is_same_v<Net, VGG16>;

/// How many HaH blocks a network has: they come first, so they hold its first WNConv layers.
template <class Net>
inline constexpr std::size_t hah_block_count = std::is_same_v<Net, HaHVGG16>   ? 6
                                               : std::is_same_v<Net, HaHSmall> ? 2
                                                                               : 0;

/// Applies the recipe's model settings: the data's channel statistics, running-statistics BatchNorm, and the HaH
/// cost weight of each HaH block: the i-th WNConv of the network gets hah_alpha[i] while i < hah_block_count
/// (layer by layer, since blocks of equal width share a WNConvCore type).
template <class Net, class M>
void apply_hah_recipe(M& model, const std::vector<double>& mean, const std::vector<double>& stddev)
{
    model.template configure<nd::Normalize::options>([&](auto& o) { o.channels(mean, stddev); });
    model.template configure<nd::BatchNorm::options>([](auto& o) { o.mode = nd::bn_mode::running_statistics; });
    std::size_t wnconv = 0;
    model.for_each_layer([&](const auto& node) {
        if constexpr (requires { node.options().hah_alpha(0.0); }) {
            if (wnconv < hah_block_count<Net>)
                node.options().hah_alpha(hah_alpha[wnconv]);
            ++wnconv;
        }
    });
}

} // namespace hah
