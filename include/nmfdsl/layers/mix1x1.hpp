#pragma once
/// @file mix1x1.hpp
/// Mix1x1<Out>: the paper's "+1×1" mixing module (docs/method.md §3, "neuron b"):
///   ReLU → L1Norm over channels (eps 1e-19) → Pointwise<Out> (1×1 conv with bias, identity + ±0.5e-4 noise init)
///   → BatchNorm, the last only when the map is larger than 1×1.
/// Out may differ from the incoming channel count (docs/method.md §5): the identity then covers the leading diagonal.
/// Mix1x1 is a composite: it expands, for its input shape, into the leaf layers above.
#include <type_traits>

#include "batchnorm.hpp"
#include "dense.hpp"
#include "elementwise.hpp"

namespace nmfdsl {

namespace detail {
template <class In>
constexpr bool map_larger_than_1x1()
{
    if constexpr (In::rank == 3)
        return In::h * In::w > 1;
    else
        return false;
}
} // namespace detail

template <std::size_t Out>
struct Mix1x1 {
    template <class In>
    using expand = std::conditional_t<detail::map_larger_than_1x1<In>(),
                                      Seq<ReLU, L1Norm, Pointwise<Out>, BatchNorm>, Seq<ReLU, L1Norm, Pointwise<Out>>>;
};

} // namespace nmfdsl
