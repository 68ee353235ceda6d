#pragma once
/// @file simd.hpp
/// Facts about the instruction set the kernels are compiled for, from which they choose their register tiles.
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#if defined(__AVX__)
#include <immintrin.h>
#endif

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

/// Pins v in a vector register: from here on the compiler cannot re-read v from memory as the operand of each
/// instruction that uses it. A register tile loads a vector once and uses it in several FMAs; GCC's tuning for AMD
/// Zen (-mtune=znver3, which -march=native picks on Zen 2, 3 and 4 with g++ 12) instead folds the load into every
/// FMA, one load per FMA, and an AVX2 tile of 16 registers becomes bound by the load ports (cnmf_forward/L1/32 ran
/// at 0.66 of peak_fma instead of 0.85). An empty asm statement: no instruction is emitted. Only with 16 registers
/// (x86 below AVX-512): AVX-512 tiles kept their speed unpinned and lost 6 % in the backward pinned, and aarch64
/// has no memory operands to fold.
template <class T, class A>
inline void keep_in_register([[maybe_unused]] xsimd::batch<T, A>& v)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if constexpr (vector_registers<T> == 16)
        asm("" : "+x"(v.data));
#endif
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

namespace nmfdsl::kernels::detail {

#if defined(__AVX__)
/// out[c·ld_out + r] = in[r·ld_in + c] for r, c < 8: an 8 × 8 block of floats transposed in registers.
inline void transpose_8x8(const float* in, std::size_t ld_in, float* out, std::size_t ld_out)
{
    __m256 r[8], t[8], q[8];
    for (std::size_t i = 0; i < 8; ++i)
        r[i] = _mm256_loadu_ps(in + i * ld_in);
    // pairs of rows interleaved: t[2p] = r2p[0] r2p+1[0] r2p[1] r2p+1[1] | the same of elements 4, 5;
    // t[2p+1] 2, 3 | 6, 7
    for (std::size_t p = 0; p < 4; ++p) {
        t[2 * p] = _mm256_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    // four rows' element c in each half: q[c] of rows 0–3 and q[4 + c] of rows 4–7 hold columns c | c + 4
    for (std::size_t h = 0; h < 2; ++h) {
        const __m256* u = t + 4 * h;
        q[4 * h + 0] = _mm256_shuffle_ps(u[0], u[2], 0x44);
        q[4 * h + 1] = _mm256_shuffle_ps(u[0], u[2], 0xee);
        q[4 * h + 2] = _mm256_shuffle_ps(u[1], u[3], 0x44);
        q[4 * h + 3] = _mm256_shuffle_ps(u[1], u[3], 0xee);
    }
    for (std::size_t c = 0; c < 4; ++c) {
        _mm256_storeu_ps(out + c * ld_out, _mm256_permute2f128_ps(q[c], q[4 + c], 0x20));
        _mm256_storeu_ps(out + (c + 4) * ld_out, _mm256_permute2f128_ps(q[c], q[4 + c], 0x31));
    }
}
#endif

/// out[c·ld_out + r] = in[r·ld_in + c] for r < rows, c < cols: by 8 × 8 blocks in registers for float with AVX when
/// both extents are multiples of 8, element by element otherwise.
template <class T>
inline void transpose(const T* in, std::size_t ld_in, std::size_t rows, std::size_t cols, T* out, std::size_t ld_out)
{
#if defined(__AVX__)
    if constexpr (std::is_same_v<T, float>) {
        if (rows % 8 == 0 && cols % 8 == 0) {
            for (std::size_t r = 0; r < rows; r += 8)
                for (std::size_t c = 0; c < cols; c += 8)
                    transpose_8x8(in + r * ld_in + c, ld_in, out + c * ld_out + r, ld_out);
            return;
        }
    }
#endif
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c)
            out[c * ld_out + r] = in[r * ld_in + c];
}

/// out[i] = Σ_j v[i][j], the sums of L vectors of L lanes as one vector. xsimd::haddp does this, but xsimd 8.1's
/// AVX-512 float version returns lanes 2–5 and 10–13 in the wrong order, so AVX-512 float has its own tree here:
/// 128-bit halves added pairwise (16 → 8 → 4 vectors, each source's lanes folded into one 128-bit block), then a
/// 4 × 4 transpose-and-add within the blocks; the inputs enter transposed (index 4c + j as 4j + c) so that the sum
/// of v[i] lands in lane i. 30 shuffles and 15 additions.
template <class T, class A>
inline xsimd::batch<T, A> sums_across_lanes(const xsimd::batch<T, A>* v)
{
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && sizeof(xsimd::batch<T, A>) == 64) {
        auto in = [&](std::size_t m) -> __m512 { return v[4 * (m % 4) + m / 4]; };
        __m512 w[8], y[4];
        for (std::size_t j = 0; j < 8; ++j)  // blocks 0 + 2, 1 + 3 of inputs 2j and 2j + 1
            w[j] = _mm512_add_ps(_mm512_shuffle_f32x4(in(2 * j), in(2 * j + 1), 0x44),
                                 _mm512_shuffle_f32x4(in(2 * j), in(2 * j + 1), 0xEE));
        for (std::size_t j = 0; j < 4; ++j)  // block c of y[j]: input 4j + c folded to 4 lanes
            y[j] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * j], w[2 * j + 1], 0x88),
                                 _mm512_shuffle_f32x4(w[2 * j], w[2 * j + 1], 0xDD));
        const __m512 p = _mm512_add_ps(_mm512_unpacklo_ps(y[0], y[1]), _mm512_unpackhi_ps(y[0], y[1]));
        const __m512 q = _mm512_add_ps(_mm512_unpacklo_ps(y[2], y[3]), _mm512_unpackhi_ps(y[2], y[3]));
        // lane 4c + j: the sum of input 4j + c, which is v[4c + j]
        return _mm512_add_ps(_mm512_shuffle_ps(p, q, 0x44), _mm512_shuffle_ps(p, q, 0xEE));
    }
#endif
    return xsimd::haddp(v);
}

/// Bit j of word w: x[64·w + j] != 0 (NaN counts as non-zero), for the n values at x; words = ⌈n / 64⌉.
template <class T>
inline void nonzero_bits(const T* x, std::size_t n, std::uint64_t* words)
{
    std::size_t j = 0;
#if defined(__AVX__)
    if constexpr (std::is_same_v<T, float>) {
        const __m256 zero = _mm256_setzero_ps();
        for (; j + 64 <= n; j += 64) {
            std::uint64_t w = 0;
            for (std::size_t b = 0; b < 64; b += 8) {
                const __m256 v = _mm256_loadu_ps(x + j + b);
                w |= std::uint64_t(unsigned(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ)))) << b;
            }
            words[j / 64] = w;
        }
    }
#endif
    for (; j < n; j += 64) {
        std::uint64_t w = 0;
        for (std::size_t b = 0; b < 64 && j + b < n; ++b)
            w |= std::uint64_t(!(x[j + b] == T(0))) << b;
        words[j / 64] = w;
    }
}

} // namespace nmfdsl::kernels::detail
