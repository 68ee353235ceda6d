#pragma once
/// @file reduce.hpp
/// Vectorised reductions for the per-row sums of the layers (a scalar loop would be one long chain of dependent
/// additions: the compiler may not reorder floating-point sums). The summation order is fixed for a given length
/// and SIMD width, so results do not depend on the thread count. Pointers need no particular alignment.
#include <cmath>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace nmfdsl::kernels {

/// The sum of a batch's lanes, as a tree. float: xsimd::hadd; double: through memory (g++ 12 warns spuriously inside
/// xsimd::hadd for double on AVX-512).
template <class T, class A>
inline T horizontal_sum(const xsimd::batch<T, A>& v)
{
    if constexpr (std::is_same_v<T, float>) {
        return xsimd::hadd(v);
    } else {
        constexpr std::size_t n = xsimd::batch<T, A>::size;
        alignas(A::alignment()) T lanes[n];
        v.store_aligned(lanes);
        for (std::size_t width = n / 2; width >= 1; width /= 2)
            for (std::size_t i = 0; i < width; ++i)
                lanes[i] += lanes[i + width];
        return lanes[0];
    }
}

namespace detail {
/// Σ_i f(a[i], b[i]) for f = fma-style accumulation (op(acc, va, vb)) over four independent vector accumulators.
template <class T, class VecOp, class ScalarOp>
inline T reduce_pairs(const T* a, const T* b, std::size_t n, VecOp vec, ScalarOp scalar)
{
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size;
    batch acc[4] = {batch(T(0)), batch(T(0)), batch(T(0)), batch(T(0))};
    std::size_t i = 0;
    for (; i + 4 * L <= n; i += 4 * L)
        for (std::size_t j = 0; j < 4; ++j)
            acc[j] = vec(acc[j], a + i + j * L, b + i + j * L);
    for (; i + L <= n; i += L)
        acc[0] = vec(acc[0], a + i, b + i);
    T sum = horizontal_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
    // the tail counted from 0 (a loop continuing from i made g++ 12 warn of undefined behaviour at -O2 when n is
    // a known constant such as 12)
    const T* ta = a + i;
    const T* tb = b + i;
    for (std::size_t k = 0, rest = n - i; k < rest; ++k)
        sum = scalar(sum, ta[k], tb[k]);
    return sum;
}
} // namespace detail

/// Σ_i a[i]·b[i].
template <class T>
T dot(const T* a, const T* b, std::size_t n)
{
    using batch = xsimd::batch<T>;
    return detail::reduce_pairs(
        a, b, n,
        [](batch acc, const T* x, const T* y) {
            return xsimd::fma(batch::load_unaligned(x), batch::load_unaligned(y), acc);
        },
        [](T acc, T x, T y) { return acc + x * y; });
}

/// Σ_i a[i].
template <class T>
T sum(const T* a, std::size_t n)
{
    using batch = xsimd::batch<T>;
    return detail::reduce_pairs(
        a, a, n, [](batch acc, const T* x, const T*) { return acc + batch::load_unaligned(x); },
        [](T acc, T x, T) { return acc + x; });
}

/// Σ_i |a[i]|.
template <class T>
T abs_sum(const T* a, std::size_t n)
{
    using batch = xsimd::batch<T>;
    return detail::reduce_pairs(
        a, a, n, [](batch acc, const T* x, const T*) { return acc + xsimd::abs(batch::load_unaligned(x)); },
        [](T acc, T x, T) { return acc + std::abs(x); });
}

} // namespace nmfdsl::kernels
