#pragma once
/// @file common.hpp
/// Helpers shared by the layer headers.
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>

#include "../core/error.hpp"

#include "../core/infer.hpp"
#include "../core/layer.hpp"
#include "../core/params.hpp"
#include "../core/shape.hpp"

namespace nmfdsl::detail {

/// The allowed values of a real-valued layer option: from lo to hi, each end open or closed (hi may be +inf).
struct option_range {
    double lo, hi;
    bool lo_open, hi_open;
    bool holds(double v) const
    {
        return std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    }
    std::string text() const
    {
        char s[96];
        std::snprintf(s, sizeof s, "%c%g, %g%c", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
        return s;
    }
};
inline constexpr option_range at_least_zero{0.0, std::numeric_limits<double>::infinity(), false, true};

/// v if it lies in r, else argument_error (a std::invalid_argument) naming the layer, the option and the value.
inline double checked_option(const char* layer, const char* option, double v, option_range r)
{
    if (!r.holds(v)) {
        char value[48];
        std::snprintf(value, sizeof value, "%g", v);
        throw argument_error(std::string("nmfdsl: ") + layer + " option '" + option + "' must lie in " + r.text() +
                             ", got " + value);
    }
    return v;
}

/// A channels-last batch is a matrix of rows: a map has H·W rows per sample of C channels, a vector one row of N.
template <class S>
constexpr std::size_t channels()
{
    if constexpr (S::rank == 3)
        return S::c;
    else
        return S::size;
}

template <class S>
constexpr std::size_t rows_per_sample()
{
    return S::size / channels<S>();
}

/// Pointer to tensor k of a layer's parameter block.
template <class L, class In, class T>
T* tensor(T* block, std::size_t k)
{
    return block + tensor_offset(L::template param_tensors<In>, k);
}

/// Work split for the thread pool: elementwise layers in chunks of this many values, row-wise layers in chunks of
/// about as many values' worth of rows. Fixed sizes, so results never depend on the thread count.
inline constexpr std::size_t elementwise_chunk = 1 << 15;
template <std::size_t C>
constexpr std::size_t row_chunk()
{
    return C >= elementwise_chunk ? 1 : elementwise_chunk / C;
}

/// The check of a layer sliding a K×K window (whole_map: the whole map) with a stride over a map: `too_large` when
/// the window does not fit.
template <class In, std::size_t K, std::size_t Stride>
constexpr shape_issue window_check(shape_issue too_large)
{
    if constexpr (In::rank != 3)
        return shape_issue::needs_map;
    else if constexpr (K != whole_map && (K > In::h || K > In::w))
        return too_large;
    else if constexpr (Stride == 0)
        return shape_issue::rejected;
    else
        return shape_issue::none;
}

template <class In, std::size_t K>
constexpr std::size_t kernel_extent(bool height)
{
    if constexpr (In::rank != 3)
        return 0;
    else
        return K != whole_map ? K : (height ? In::h : In::w);
}
template <class In, std::size_t K>
inline constexpr std::size_t kernel_h = kernel_extent<In, K>(true);
template <class In, std::size_t K>
inline constexpr std::size_t kernel_w = kernel_extent<In, K>(false);

template <class T>
constexpr T l1_eps()
{
    return T(1e-19);  // docs/method.md §1 ("10e-20" in the reference code)
}

} // namespace nmfdsl::detail
