#pragma once
/// @file simd.hpp
/// Facts about the instruction set the kernels are compiled for, from which they choose their register tiles.
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace nmfdsl::kernels {

/// Architectural vector registers of the compiled instruction set: 32 with AVX-512 (zmm0–31, 64-byte batches) and on
/// aarch64 (v0–31), 16 otherwise (AVX2 / AVX ymm0–15, SSE xmm0–15).
template <class T>
inline constexpr std::size_t vector_registers = sizeof(xsimd::batch<T>) >= 64 || XSIMD_WITH_NEON64 ? 32 : 16;

} // namespace nmfdsl::kernels

namespace nmfdsl::kernels {

/// 1 / d for d > 0 and finite. With AVX or AVX-512 single precision, the hardware estimate (12 or 14 bits) refined
/// by one Newton step, y ← y·(2 − d·y), to within about 2 ulp of the quotient: a division's throughput is a
/// quarter to a tenth of a multiplication's there, and the NMF quotient x̂ ⊘ r divides once per element per
/// iteration. Otherwise (double, SSE, NEON, whose estimates are too coarse for one step) a true division.
template <class T, class A>
inline xsimd::batch<T, A> refined_reciprocal(const xsimd::batch<T, A>& d)
{
    if constexpr (std::is_same_v<T, float> && sizeof(xsimd::batch<T, A>) >= 32) {
        const xsimd::batch<T, A> y = xsimd::reciprocal(d);
        return y * xsimd::fnma(d, y, xsimd::batch<T, A>(T(2)));
    } else {
        return xsimd::batch<T, A>(T(1)) / d;
    }
}

/// For short rows (a few vectors): f(k, batch) for every whole vector of [0, n) at offset k, then f_tail(k) for each of
/// the last n mod L elements, in a fully unrolled loop. The point is what it is not: a plain element loop that copies
/// is turned by g++ into a call to memmove, whose fixed cost at these lengths is that of the copy itself (it was a
/// tenth of the approximate backward of a 5×5 single-channel layer, one call per row).
template <class T, class Vec, class Tail>
inline void for_short_row(std::size_t n, Vec&& f, Tail&& f_tail)
{
    constexpr std::size_t L = xsimd::batch<T>::size;
    std::size_t k = 0;
    for (; k + L <= n; k += L)
        f(k);
#pragma GCC unroll 16
    for (std::size_t j = 0; j + 1 < L; ++j)
        if (k + j < n)
            f_tail(k + j);
}

/// dst[0, n) = src[0, n) for a short row (see for_short_row); unaligned pointers.
template <class T>
inline void copy_short_row(const T* src, std::size_t n, T* dst)
{
    using batch = xsimd::batch<T>;
    for_short_row<T>(
        n, [&](std::size_t k) { batch::load_unaligned(src + k).store_unaligned(dst + k); },
        [&](std::size_t k) { dst[k] = src[k]; });
}

} // namespace nmfdsl::kernels
