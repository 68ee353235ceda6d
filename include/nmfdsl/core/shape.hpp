#pragma once
/// @file shape.hpp
/// Static per-sample shapes. `Shape<C, H, W>` is a feature map (channels, height, width); `Shape<N>` is a flat
/// vector. The batch size is never part of a shape: it is a runtime value.
#include <cstddef>
#include <string>

namespace nmfdsl {

/// Kernel size meaning "the whole incoming map": the layer then produces a 1×1 map.
inline constexpr std::size_t whole_map = 0;

template <std::size_t... Dims>
struct Shape {
    static constexpr std::size_t rank = sizeof...(Dims);
    static constexpr std::size_t size = (std::size_t{1} * ... * Dims);
};

template <std::size_t C, std::size_t H, std::size_t W>
struct Shape<C, H, W> {
    static constexpr std::size_t rank = 3;
    static constexpr std::size_t c = C, h = H, w = W;
    static constexpr std::size_t size = C * H * W;
    static constexpr std::size_t positions = H * W;
};

template <std::size_t N>
struct Shape<N> {
    static constexpr std::size_t rank = 1;
    static constexpr std::size_t n = N;
    static constexpr std::size_t size = N;
};

namespace detail {
template <class T>
inline constexpr bool is_shape = false;
template <std::size_t... D>
inline constexpr bool is_shape<Shape<D...>> = true;

template <class S>
struct shape_dims;
template <std::size_t... D>
struct shape_dims<Shape<D...>> {
    static std::string text()
    {
        std::string s;
        ((s += (s.empty() ? "" : ", ") + std::to_string(D)), ...);
        return s;
    }
};
} // namespace detail

template <class S>
inline constexpr bool is_map_v = detail::is_shape<S> && S::rank == 3;
template <class S>
inline constexpr bool is_vector_v = detail::is_shape<S> && S::rank == 1;

/// "[3, 28, 28]" for Shape<3, 28, 28>.
template <class S>
std::string shape_string()
{
    std::string s(1, '[');
    s.append(detail::shape_dims<S>::text()).push_back(']');
    return s;
}

/// "[N, 3, 28, 28]": the batch-leading form used in runtime messages (channels-first, as users pass tensors).
template <class S>
std::string batch_shape_string(std::size_t batch)
{
    std::string s(1, '[');
    s.append(std::to_string(batch)).append(", ").append(detail::shape_dims<S>::text()).push_back(']');
    return s;
}

/// "[N, 3, 28, 28]": the batch-leading form with a symbolic batch size.
template <class S>
std::string symbolic_batch_shape_string()
{
    std::string s("[N, ");
    s.append(detail::shape_dims<S>::text()).push_back(']');
    return s;
}

/// Output extent of a valid (unpadded) window of size k and stride s over an extent n; 0 if the window does not fit.
constexpr std::size_t valid_extent(std::size_t n, std::size_t k, std::size_t s)
{
    return (k == 0 || s == 0 || k > n) ? 0 : (n - k) / s + 1;
}

} // namespace nmfdsl
