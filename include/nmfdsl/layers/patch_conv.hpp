#pragma once
/// @file patch_conv.hpp
/// PatchConv<Out, K, Stride, Norm>: the "neuron a" of the paper's CNN baselines (docs/method.md §3), the
/// convolutional twin of CNMF:
///   ReLU → Conv<Out, K, Stride, Norm> (by default a conv on L1-normalised patches, with bias)
///   → BatchNorm, the last only when the output map is larger than 1×1.
/// Norm = patch_norm::none gives the same block with a standard convolution (the alternative baseline, docs/method.md
/// §5). A composite: it expands, for its input shape, into those leaf layers.
#include <type_traits>

#include "batchnorm.hpp"
#include "conv.hpp"
#include "elementwise.hpp"
#include "mix1x1.hpp"

namespace nmfdsl {

template <std::size_t Out, std::size_t K, std::size_t Stride = 1, patch_norm Norm = patch_norm::l1>
struct PatchConv {
    template <class In>
    using expand =
        std::conditional_t<detail::core_output_larger_than_1x1<Conv<Out, K, Stride, Norm>, In>(),
                           Seq<ReLU, Conv<Out, K, Stride, Norm>, BatchNorm>, Seq<ReLU, Conv<Out, K, Stride, Norm>>>;
};

} // namespace nmfdsl
