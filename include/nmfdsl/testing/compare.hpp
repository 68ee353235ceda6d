#pragma once
/// @file compare.hpp
/// How far apart two runs' parameter vectors are, in the measure the data-parallel tests and docs/scaling.md use:
/// per value d = |a − b| / max(|a|, |b|, floor), with floor = 1e-3 · max|a| over the vector, so that values tiny
/// next to the rest of their vector are compared at that scale rather than to zero. A NaN difference counts as
/// infinitely far.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>

#include "../core/error.hpp"

namespace nmfdsl::testing {

struct value_difference {
    static constexpr std::array<double, 4> limits{1e-6, 1e-5, 1e-4, 1e-2};
    double largest = 0;                   ///< the largest d
    std::size_t largest_at = 0;           ///< where it is
    std::size_t differing = 0;            ///< values that differ in some bit
    std::array<std::size_t, 4> above{};   ///< values whose d exceeds each of `limits`
};

/// Compares a and b value by value (they must have the same length).
template <class T>
value_difference compare_values(std::span<const T> a, std::span<const T> b)
{
    if (a.size() != b.size())
        throw argument_error("nmfdsl: compare_values: " + std::to_string(a.size()) + " values against " +
                             std::to_string(b.size()));
    double scale_of_a = 0;
    for (T x : a)
        scale_of_a = std::max(scale_of_a, std::abs(double(x)));
    const double floor = 1e-3 * scale_of_a;
    value_difference r;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0)
            ++r.differing;
        const double x = double(a[i]), y = double(b[i]);
        const double scale = std::max({std::abs(x), std::abs(y), floor});
        double d = scale > 0 ? std::abs(x - y) / scale : 0.0;
        if (std::isnan(d))
            d = INFINITY;
        if (d > r.largest) {
            r.largest = d;
            r.largest_at = i;
        }
        for (std::size_t k = 0; k < r.limits.size(); ++k)
            r.above[k] += d > r.limits[k];
    }
    return r;
}

} // namespace nmfdsl::testing
