#pragma once
/// @file paper_models.hpp
/// The four networks of the deep-NMF paper (docs/method.md §3) as type expressions: CNMF and CNMF+1×1, and the
/// CNN baselines of equal size, whose "neuron a" is a convolution on L1-normalised patches (PatchConv). The "+1×1"
/// module is Mix1x1.
#include <nmfdsl/nmfdsl.hpp>

namespace paper {
namespace nd = nmfdsl;

/// CNN baseline: four PatchConv blocks, average pooling after the first two, Softmax read-out.
struct CNN : nd::Seq<nd::PatchConv<32, 5>, nd::AvgPool<2>,       // 3×28×28 → 32×24×24 → 32×12×12
                     nd::PatchConv<64, 5>, nd::AvgPool<2>,       //          → 64×8×8   → 64×4×4
                     nd::PatchConv<96, nd::whole_map>,           //          → 96×1×1
                     nd::PatchConv<10, 1>,                       //          → 10×1×1
                     nd::Softmax, nd::Flatten> {};               //          → 10

/// One CNN+1×1 block: the conv "neuron a" followed by the mixing module.
template <std::size_t Out, std::size_t K>
struct ConvMixBlock : nd::Seq<nd::PatchConv<Out, K>, nd::Mix1x1<Out>> {};

struct CNN1x1 : nd::Seq<ConvMixBlock<32, 5>, nd::AvgPool<2>,
                        ConvMixBlock<64, 5>, nd::AvgPool<2>,
                        ConvMixBlock<96, nd::whole_map>,
                        ConvMixBlock<10, 1>,
                        nd::Softmax, nd::Flatten> {};

/// CNMF: four CNMF modules, average pooling after the first two, Softmax read-out (on an NMF output, as in the
/// reference code, docs/method.md §5).
struct CNMF : nd::Seq<nd::CNMF<32, 5>, nd::AvgPool<2>,
                      nd::CNMF<64, 5>, nd::AvgPool<2>,
                      nd::CNMF<96, nd::whole_map>,
                      nd::CNMF<10, 1>,
                      nd::Softmax, nd::Flatten> {};

/// One CNMF+1×1 block: the NMF module followed by the mixing module.
template <std::size_t Out, std::size_t K>
struct NmfMixBlock : nd::Seq<nd::CNMF<Out, K>, nd::Mix1x1<Out>> {};

struct CNMF1x1 : nd::Seq<NmfMixBlock<32, 5>, nd::AvgPool<2>,
                         NmfMixBlock<64, 5>, nd::AvgPool<2>,
                         NmfMixBlock<96, nd::whole_map>,
                         NmfMixBlock<10, 1>,
                         nd::Softmax, nd::Flatten> {};

/// The alternative baselines of docs/method.md §5: the same networks with standard convolutions (no L1 normalisation of
/// the patches), same parameter counts.
template <std::size_t Out, std::size_t K>
using PlainConv = nd::PatchConv<Out, K, 1, nd::patch_norm::none>;

struct CNNPlain : nd::Seq<PlainConv<32, 5>, nd::AvgPool<2>, PlainConv<64, 5>, nd::AvgPool<2>,
                          PlainConv<96, nd::whole_map>, PlainConv<10, 1>, nd::Softmax, nd::Flatten> {};

template <std::size_t Out, std::size_t K>
struct PlainMixBlock : nd::Seq<PlainConv<Out, K>, nd::Mix1x1<Out>> {};

struct CNN1x1Plain : nd::Seq<PlainMixBlock<32, 5>, nd::AvgPool<2>, PlainMixBlock<64, 5>, nd::AvgPool<2>,
                             PlainMixBlock<96, nd::whole_map>, PlainMixBlock<10, 1>, nd::Softmax, nd::Flatten> {};

using CifarInput = nd::Shape<3, 28, 28>;   // CIFAR-10 crops (docs/method.md §4)
using MnistInput = nd::Shape<1, 28, 28>;   // Fashion-MNIST

// The paper's parameter counts (docs/method.md §3).
static_assert(nd::parameter_count_v<CNN, CifarInput> == 153'258);
static_assert(nd::parameter_count_v<CNN1x1, CifarInput> == 168'088);
static_assert(nd::parameter_count_v<CNMF, CifarInput> == 153'056);
static_assert(nd::parameter_count_v<CNNPlain, CifarInput> == 153'258);
static_assert(nd::parameter_count_v<CNN1x1Plain, CifarInput> == 168'088);
static_assert(nd::parameter_count_v<CNMF1x1, CifarInput> == 167'886);
static_assert(std::is_same_v<nd::output_shape_t<CNMF1x1, CifarInput>, nd::Shape<10>>);
static_assert(std::is_same_v<nd::output_shape_t<CNN, CifarInput>, nd::Shape<10>>);
static_assert(std::is_same_v<nd::output_shape_t<CNN1x1, CifarInput>, nd::Shape<10>>);
// One input channel: the first block sees 25 instead of 75 values per patch (32·50 = 1,600 fewer weights).
static_assert(nd::parameter_count_v<CNN, MnistInput> == 153'258 - 1'600);
static_assert(nd::parameter_count_v<CNN1x1, MnistInput> == 168'088 - 1'600);
static_assert(nd::parameter_count_v<CNMF, MnistInput> == 153'056 - 1'600);
static_assert(nd::parameter_count_v<CNMF1x1, MnistInput> == 167'886 - 1'600);

} // namespace paper
