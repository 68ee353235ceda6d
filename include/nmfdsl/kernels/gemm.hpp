#pragma once
/// @file gemm.hpp
/// Blocked single-precision / double-precision GEMM on row-major buffers, vectorised with xsimd:
///   C = alpha · op(A) · op(B) + beta · C,   op(X) = X or Xᵀ,   op(A) is M×K, op(B) is K×N, C is M×N.
/// Goto-style blocking: op(B) is packed into KC×NC panels of NR columns, op(A) into MC×KC panels of MR rows, and an
/// MR×NR register-tile micro-kernel accumulates with FMAs. Edges are zero-padded in the packed panels and written
/// through a small scratch tile, so any M, N, K is allowed (including 0). The naive twin is
/// nmfdsl::testing::naive_gemm.
#include <algorithm>
#include <cstddef>

#include <xsimd/xsimd.hpp>

#include "../core/parallel.hpp"
#include "../core/params.hpp"
#include "simd.hpp"

namespace nmfdsl::kernels {

template <class T>
struct gemm_config {
    using batch = xsimd::batch<T>;
    static constexpr std::size_t lanes = batch::size;
    static constexpr std::size_t nb = 2;                  ///< vector registers per tile row
    static constexpr std::size_t nr = nb * lanes;         ///< tile columns
    static constexpr bool wide_registers = lanes * sizeof(T) >= 64;  // AVX-512: 32 vector registers
    static constexpr std::size_t mr = wide_registers ? 12 : 6;        ///< tile rows (accumulators = mr · nb)
    static constexpr std::size_t kc = 384;  ///< measured ahead of 256 and 192 on AVX2 and AVX-512
    static constexpr std::size_t mc = mr * 12;
    static constexpr std::size_t nc = nr * 64;
};

namespace detail {

template <class T>
struct gemm_scratch {
    aligned_vector<T> a, b;
    aligned_vector<T> partial;  ///< the K parts' products of a split GEMM (the calling thread's)
};

template <class T>
gemm_scratch<T>& scratch()
{
    thread_local gemm_scratch<T> s;
    return s;
}

/// Packs rows [i0, i0+mc) × cols [p0, p0+kc) of op(A) into MR-row panels: panel[k·MR + r].
template <class T, std::size_t MR>
void pack_a(bool ta, const T* A, std::size_t lda, std::size_t i0, std::size_t mc, std::size_t p0, std::size_t kc,
            T* out)
{
    for (std::size_t ip = 0; ip < mc; ip += MR) {
        const std::size_t rows = std::min(MR, mc - ip);
        T* panel = out + ip * kc;
        if (!ta) {
            for (std::size_t r = 0; r < rows; ++r) {
                const T* src = A + (i0 + ip + r) * lda + p0;
                for (std::size_t k = 0; k < kc; ++k)
                    panel[k * MR + r] = src[k];
            }
        } else {
            for (std::size_t k = 0; k < kc; ++k) {
                const T* src = A + (p0 + k) * lda + i0 + ip;
                for (std::size_t r = 0; r < rows; ++r)
                    panel[k * MR + r] = src[r];
            }
        }
        for (std::size_t r = rows; r < MR; ++r)
            for (std::size_t k = 0; k < kc; ++k)
                panel[k * MR + r] = T(0);
    }
}

/// Packs rows [p0, p0+kc) × cols [j0, j0+nc) of op(B) into NR-column panels: panel[k·NR + c].
template <class T, std::size_t NR>
void pack_b(bool tb, const T* B, std::size_t ldb, std::size_t p0, std::size_t kc, std::size_t j0, std::size_t nc,
            T* out)
{
    for (std::size_t jp = 0; jp < nc; jp += NR) {
        const std::size_t cols = std::min(NR, nc - jp);
        T* panel = out + jp * kc;
        if (!tb) {
            for (std::size_t k = 0; k < kc; ++k) {
                const T* src = B + (p0 + k) * ldb + j0 + jp;
                T* dst = panel + k * NR;
                std::size_t c = 0;
                for (; c < cols; ++c)
                    dst[c] = src[c];
                for (; c < NR; ++c)
                    dst[c] = T(0);
            }
        } else {
            for (std::size_t c = 0; c < cols; ++c) {
                const T* src = B + (j0 + jp + c) * ldb + p0;
                for (std::size_t k = 0; k < kc; ++k)
                    panel[k * NR + c] = src[k];
            }
            for (std::size_t c = cols; c < NR; ++c)
                for (std::size_t k = 0; k < kc; ++k)
                    panel[k * NR + c] = T(0);
        }
    }
}

/// C[0:rows, 0:cols] += alpha · Ap(MR×kc) · Bp(kc×NR), or = when `overwrite` (C's prior contents, even NaN, are
/// then ignored).
template <class T>
void micro_kernel(std::size_t kc, const T* ap, const T* bp, T* c, std::size_t ldc, T alpha, std::size_t rows,
                  std::size_t cols, bool overwrite)
{
    using cfg = gemm_config<T>;
    using batch = typename cfg::batch;
    constexpr std::size_t MR = cfg::mr, NB = cfg::nb, L = cfg::lanes, NR = cfg::nr;
    batch acc[MR][NB];
#pragma GCC unroll 16
    for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (std::size_t j = 0; j < NB; ++j)
            acc[r][j] = batch(T(0));
    // unrolled: the loop's own instructions would otherwise take a tenth of a 4-wide front end's issue slots
#pragma GCC unroll 4
    for (std::size_t k = 0; k < kc; ++k) {
        batch b[NB];
#pragma GCC unroll 4
        for (std::size_t j = 0; j < NB; ++j) {
            b[j] = batch::load_aligned(bp + k * NR + j * L);
            keep_in_register(b[j]);  // loaded once, used MR times
        }
#pragma GCC unroll 16
        for (std::size_t r = 0; r < MR; ++r) {
            const batch a(ap[k * MR + r]);
#pragma GCC unroll 4
            for (std::size_t j = 0; j < NB; ++j)
                acc[r][j] = xsimd::fma(a, b[j], acc[r][j]);
        }
    }
    const batch va(alpha);
    if (rows == MR && cols == NR) {
        if (overwrite) {
#pragma GCC unroll 16
            for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
                for (std::size_t j = 0; j < NB; ++j)
                    (va * acc[r][j]).store_unaligned(c + r * ldc + j * L);
        } else {
#pragma GCC unroll 16
            for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
                for (std::size_t j = 0; j < NB; ++j) {
                    T* dst = c + r * ldc + j * L;
                    xsimd::fma(va, acc[r][j], batch::load_unaligned(dst)).store_unaligned(dst);
                }
        }
    } else {
        alignas(64) T tile[MR * NR];
        for (std::size_t r = 0; r < MR; ++r)
            for (std::size_t j = 0; j < NB; ++j)
                acc[r][j].store_aligned(tile + r * NR + j * L);
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t j = 0; j < cols; ++j)
                c[r * ldc + j] = alpha * tile[r * NR + j] + (overwrite ? T(0) : c[r * ldc + j]);
    }
}

} // namespace detail

namespace detail {
/// C = alpha · op(A) · op(B) + (beta = 0 ? 0 : C) for K > 0, beta ∈ {0, 1}: the blocked loops. Parallel over blocks
/// of C (row blocks when there are several, else column panels) when `parallel`: every element of C is computed by
/// one task with the same summation order, so the result does not depend on the thread count.
template <class T>
void gemm_blocked(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, std::size_t lda,
                  const T* B, std::size_t ldb, bool accumulate, T* C, std::size_t ldc, bool parallel)
{
    using cfg = gemm_config<T>;
    auto& s = scratch<T>();
    const std::size_t kc_max = std::min(cfg::kc, K);
    const std::size_t mc_max = std::min(cfg::mc, (M + cfg::mr - 1) / cfg::mr * cfg::mr);
    const std::size_t nc_max = std::min(cfg::nc, (N + cfg::nr - 1) / cfg::nr * cfg::nr);
    if (s.a.size() < mc_max * kc_max)
        s.a.resize(mc_max * kc_max);
    if (s.b.size() < nc_max * kc_max)
        s.b.resize(nc_max * kc_max);
    for (std::size_t jc = 0; jc < N; jc += cfg::nc) {
        const std::size_t nc = std::min(cfg::nc, N - jc);
        for (std::size_t pc = 0; pc < K; pc += cfg::kc) {
            const std::size_t kc = std::min(cfg::kc, K - pc);
            const bool overwrite = pc == 0 && !accumulate;  // the first K block writes C instead of adding to it
            pack_b<T, cfg::nr>(tb, B, ldb, pc, kc, jc, nc, s.b.data());
            const T* packed_b = s.b.data();
            auto row_block = [&](std::size_t ic, T* packed_a, std::size_t jr_first, std::size_t jr_last, bool pack) {
                const std::size_t mc = std::min(cfg::mc, M - ic);
                if (pack)
                    pack_a<T, cfg::mr>(ta, A, lda, ic, mc, pc, kc, packed_a);
                for (std::size_t jr = jr_first; jr < jr_last; jr += cfg::nr) {
                    const std::size_t cols = std::min(cfg::nr, nc - jr);
                    for (std::size_t ir = 0; ir < mc; ir += cfg::mr) {
                        const std::size_t rows = std::min(cfg::mr, mc - ir);
                        micro_kernel<T>(kc, packed_a + ir * kc, packed_b + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc,
                                        alpha, rows, cols, overwrite);
                    }
                }
            };
            const std::size_t row_blocks = (M + cfg::mc - 1) / cfg::mc;
            if (parallel && row_blocks >= 2) {
                parallel_for(row_blocks, [&](std::size_t b) {
                    auto& own = scratch<T>();  // this thread's A panel
                    if (own.a.size() < mc_max * kc_max)
                        own.a.resize(mc_max * kc_max);
                    row_block(b * cfg::mc, own.a.data(), 0, nc, true);
                });
            } else {
                for (std::size_t ic = 0; ic < M; ic += cfg::mc) {
                    pack_a<T, cfg::mr>(ta, A, lda, ic, std::min(cfg::mc, M - ic), pc, kc, s.a.data());
                    const std::size_t panels = (nc + cfg::nr - 1) / cfg::nr;
                    const std::size_t per_task = parallel ? std::max<std::size_t>(1, (panels + 7) / 8) : panels;
                    parallel_chunks(panels, per_task, [&](std::size_t p0, std::size_t p1) {
                        row_block(ic, s.a.data(), p0 * cfg::nr, std::min(nc, p1 * cfg::nr), false);
                    });
                }
            }
        }
    }
}
} // namespace detail

/// The length of the K ranges of a GEMM whose C is one block (M ≤ MC, N ≤ NC) and whose K is long: they are
/// computed as separate products in parallel and summed in order (a weight gradient, K = all positions of a batch).
template <class T>
inline constexpr std::size_t gemm_k_part = gemm_config<T>::kc * 16;

/// C = alpha · op(A) · op(B) + beta · C on row-major buffers. lda / ldb / ldc are the row strides of A, B, C as
/// stored (A is M×K, or K×M when ta; B is K×N, or N×K when tb). beta = 0 ignores C's prior contents (even NaN).
/// Threads share the work in a way fixed by the shape alone, so the result does not depend on the thread count.
template <class T>
void gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, std::size_t lda,
          const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc)
{
    using cfg = gemm_config<T>;
    if (M == 0 || N == 0)
        return;
    const auto scale_c = [&] {
        for (std::size_t i = 0; i < M; ++i) {
            T* row = C + i * ldc;
            if (beta == T(0))
                std::fill(row, row + N, T(0));
            else
                for (std::size_t j = 0; j < N; ++j)
                    row[j] *= beta;
        }
    };
    if (K == 0 || alpha == T(0)) {
        if (beta != T(1))
            scale_c();
        return;
    }
    const bool parallel = double(M) * double(N) * double(K) >= double(1 << 18);
    const std::size_t k_part = gemm_k_part<T>;
    if (M <= cfg::mc && N <= cfg::nc && K >= 2 * k_part) {
        // one block of C, long K: K split into fixed parts, each product into its own buffer, summed in part order
        const std::size_t parts = (K + k_part - 1) / k_part;
        auto& partial = detail::scratch<T>().partial;
        if (partial.size() < parts * M * N)
            partial.resize(parts * M * N);
        parallel_for(parts, [&](std::size_t q) {
            const std::size_t k0 = q * k_part, kn = std::min(k_part, K - k0);
            const T* Aq = ta ? A + k0 * lda : A + k0;
            const T* Bq = tb ? B + k0 : B + k0 * ldb;
            detail::gemm_blocked<T>(ta, tb, M, N, kn, alpha, Aq, lda, Bq, ldb, false, partial.data() + q * M * N, N,
                                    false);
        });
        for (std::size_t i = 0; i < M; ++i) {
            T* row = C + i * ldc;
            for (std::size_t j = 0; j < N; ++j) {
                T sum = partial[i * N + j];
                for (std::size_t q = 1; q < parts; ++q)
                    sum += partial[(q * M + i) * N + j];
                row[j] = beta == T(0) ? sum : beta * row[j] + sum;
            }
        }
        return;
    }
    if (beta != T(0) && beta != T(1))
        scale_c();
    detail::gemm_blocked<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta != T(0), C, ldc, parallel);
}

} // namespace nmfdsl::kernels
