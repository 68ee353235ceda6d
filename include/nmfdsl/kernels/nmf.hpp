#pragma once
/// @file nmf.hpp
/// The NMF inference kernel (docs/method.md §1). For every row n (a sample × position) with normalised input
/// x̂_n ∈ R^I and row-normalised weights W ∈ R^{H×I}:
///   h⁰ = 1/H;  repeat T times:  r = h W + 1e-20;  u = (x̂ ⊘ r) Wᵀ;  h̃ = h ⊙ u  (or h ⊙ (1 + ε u));
///                               h = h̃ / (Σ h̃ + 1e-19)
/// The kernel is fused: rows are taken in tiles of `tile_rows`, and all T iterations run on one block of rows before
/// the next, so the block's x̂, the quotient x̂ ⊘ r, h and the weights stay in cache. Both products are
/// register-tiled broadcast-FMA micro-kernels over xsimd batches: r = h·W reads W's rows, u = q·Wᵀ reads a
/// transposed copy.
/// Caller buffers (x̂, h) need no particular alignment; the kernel's own buffers are 64-byte aligned.
/// Two layouts, chosen from I and H (nmf_rows_in_lanes): with I and H whole numbers of vectors, each row's x̂, q and
/// h lie along the vectors (the row layout; every extent is padded to the SIMD width with zeros, I → Ip, H → Hp,
/// rows → a multiple of the tile, so there is no remainder code: zero columns of x̂ give q = 0, zero columns of h
/// stay 0); otherwise a group of rows is transposed so that the vectors run across rows (rows in lanes), and the
/// padding of I and H costs nothing. The naive twin is nmfdsl::testing::naive_nmf_forward.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../core/function_ref.hpp"
#include "../core/parallel.hpp"
#include "../core/params.hpp"
#include "reduce.hpp"
#include "simd.hpp"

namespace nmfdsl::kernels {

template <class T>
struct nmf_layout {
    using batch = xsimd::batch<T>;
    static constexpr std::size_t lanes = batch::size;
    static constexpr std::size_t tile_rows = 12;  ///< rows per tile: a multiple of every micro-kernel's MR
    static constexpr std::size_t pad(std::size_t n) { return (n + lanes - 1) / lanes * lanes; }
    static constexpr std::size_t pad_rows(std::size_t n) { return (n + tile_rows - 1) / tile_rows * tile_rows; }
};

/// Tiles per parallel task: fixed, so that the split (and the result) does not depend on the thread count.
inline constexpr std::size_t nmf_tiles_per_task = 4;

/// Register tiles of the kernel's two products, per instruction set: an MR × NB tile keeps MR·NB accumulators,
/// NB vectors of the weights and one broadcast in registers, so MR·NB + NB + 1 must not exceed the vector registers
/// (32 with AVX-512 or NEON, 16 with AVX2 / SSE). The fused update keeps a whole padded row of h (≤ nb_fused
/// vectors) in registers and normalises it there.
template <class T>
struct nmf_tiling {
    static constexpr std::size_t registers = vector_registers<T>;
    static constexpr bool wide = registers >= 32;
    // measured (benchmarks/bench_cnmf.cpp): AVX-512 6×4 for all three; AVX2 6×2 for the products (12 accumulators,
    // the classic Haswell shape) and no fused update. A fused AVX2 tile of 4 vectors needs MR·4 + 5 registers: at
    // MR = 3 that is 17, so the compiler reloads the 4 weight vectors for every row (15 loads per 12 FMAs), and at
    // MR = 2 its 8 accumulators are no faster; 6×2 blocks and a separate normalisation pass over the rows of h took
    // L1 (H = 32) from 0.75 to 0.83 of the peak on an AMD Zen 4 (2026-12-04). nb_fused = 0: never fused.
    static constexpr std::size_t mr_r = 6, nb_r = wide ? 4 : 2;               ///< r = h·W
    static constexpr std::size_t mr_u = 6, nb_u = wide ? 4 : 2;               ///< u = q·Wᵀ
    static constexpr std::size_t mr_fused = 6, nb_fused = wide ? 4 : 0;       ///< u and the normalisation together
    /// the exact backward's dW += duᵀ·q + hᵀ·dr (kernels/nmf_backward_unrolled.hpp): MR rows of dW divide the lanes
    static constexpr std::size_t mr_w = std::min<std::size_t>(wide ? 8 : 4, nmf_layout<T>::lanes), nb_w = 3;
    static constexpr std::size_t row_group = std::max({mr_r, mr_u, mr_fused});
    /// Column vectors per tile of the two products for a block of M rows: a block of one or two rows (a sparse block
    /// split up, a short tile) widens its tiles to at least 8 accumulators, so that the FMA latency stays hidden.
    /// Each output still has one accumulator summed in the same order, so the width does not change a bit.
    static constexpr std::size_t nb_for(std::size_t M, std::size_t nb) { return std::max(nb, (8 + M - 1) / M); }
    /// rows per block solved on the union of their supports, and the largest share of a layer's I columns such a
    /// union may hold for that to pay (nmf_forward_tiles)
    static constexpr std::size_t mr_support = 6;
    static constexpr double support_fraction = 0.9;
    /// Time per row and support column of a pair of rows, and of a row alone, each solved on its own support,
    /// relative to a whole block of mr_support rows on theirs (wider unions, but weights shared by 6 rows instead
    /// of 2 or 1). Measured on AMD Zen 4, one thread, with AVX-512 and AVX2 alike: a pair runs at 0.66–0.73 of the
    /// block's speed per column, a lone row (its restriction of the weights included) at 0.44–0.47
    /// (cnmf_layer/L2/<fashion|random>/50 with every block split the same way; docs/cnmf.md).
    static constexpr double pair_cost = 1.45, single_cost = 2.3;
    /// A row whose non-zero columns are at most this share of I is solved alone, by columns of Wᵀ
    /// (nmf_row_by_columns), outside any block.
    static constexpr double alone_fraction = 0.6;
    /// A task's rows are regrouped by support only if that narrows its blocks' unions to at most this share of
    /// their width in the rows' own order: on Fashion-MNIST's second layer grouping narrows them to 0.83 and saves
    /// 9–10 % of the layer's time; on random input to 0.97, and the regrouped blocks ran 5 % slower (AMD Zen 4,
    /// AVX2; docs/cnmf.md).
    static constexpr double regroup_gain = 0.9;
    static_assert(nmf_layout<T>::tile_rows % mr_r == 0 && nmf_layout<T>::tile_rows % mr_u == 0 &&
                  nmf_layout<T>::tile_rows % mr_fused == 0 && row_group % mr_r == 0 && row_group % mr_u == 0 &&
                  row_group % mr_fused == 0);
};

/// The second layout of the kernel, rows in the SIMD lanes: a group of `group` rows is held transposed (x̂ as
/// I × group, h as H × group), so each vector holds one column of L consecutive rows and neither I nor H is padded.
/// Both products become broadcast-FMA tiles with the weights broadcast, r[i] = Σ_k W[k,i]·h[k] and
/// u[k] = Σ_i W[k,i]·q[i] (MR outputs × nbr row vectors: MR·nbr + nbr + 1 registers), and Σh̃ is a sum of vectors,
/// not a horizontal sum per row. A group is 3 vectors of rows (24 floats with AVX2, 48 with AVX-512), so a task's
/// nmf_tiles_per_task · tile_rows = 48 rows hold whole groups on every instruction set.
template <class T>
struct nmf_lanes_tiling {
    static constexpr std::size_t nbr = 3;                                 ///< row vectors per micro-tile
    static constexpr std::size_t group = nbr * nmf_layout<T>::lanes;      ///< rows per group
    static constexpr std::size_t mr = vector_registers<T> >= 32 ? 8 : 4;  ///< outputs per micro-tile, at most
};

/// Which layout serves a layer of I inputs and H outputs, a function of I, H and the instruction set only (so a
/// row's result never depends on the batch or the thread count): rows in lanes whenever I or H is not a whole number
/// of vectors. Measured on AMD Zen 4 (one thread, batch 32, AVX2 build): the 5×5 single-channel layer (I = 25,
/// H = 32; the row layout pads I to 32) takes 0.71 of the row layout's time, L1 (I = 75 → 80) 0.94. With I and H
/// whole vectors the row layout is as fast (L2, I = 800, H = 64: lanes 1.01) and better for few rows (L3, one row per
/// image: the lanes compute a whole vector of rows for one).
template <class T>
constexpr bool nmf_rows_in_lanes(std::size_t in, std::size_t out)
{
    using lay = nmf_layout<T>;
    return lay::pad(in) != in || lay::pad(out) != out;
}

/// Σh̃ at or below this counts as an all-zero patch in the backward modes (its normalisation is not differentiated).
inline constexpr double nmf_degenerate_sum = 1e-18;

/// Row stride for rows of `padded` values that the kernels walk down a column of: `padded`, plus one cache line when
/// a row is a multiple of 512 bytes. A column strip of W read at such a stride falls into at most 8 of the 64 sets of
/// a 32 KiB 8-way L1 cache (at 4 KiB, I = 1024 floats, into one), so the strip is evicted before the next row block
/// reuses it; one more line spreads its rows over every set. Measured on AMD Zen 4 with the 1×1 layer I = 1024,
/// H = 96 (one thread): the forward at batch 1 in 0.60 of the time with AVX2, 0.81 with AVX-512; at batch 32,
/// together with the unpadded short tile of nmf_forward_tiles, in 0.85 and 0.95.
template <class T>
constexpr std::size_t unaliased_stride(std::size_t padded)
{
    constexpr std::size_t line = 64;
    static_assert(line % sizeof(T) == 0 && (line / sizeof(T)) % nmf_layout<T>::lanes == 0);
    return (padded * sizeof(T)) % 512 == 0 ? padded + line / sizeof(T) : padded;
}

/// The weights in the two padded layouts the kernel reads: w [H × Ip] with row stride ldw, and wt [Ip × Hp] with row
/// stride ldwt (unaliased_stride), zero padded.
template <class T>
struct nmf_weights {
    std::size_t h = 0, i = 0, hp = 0, ip = 0;
    std::size_t ldw = 0, ldwt = 0;
    aligned_vector<T> w, wt;

    /// Copies the row-normalised weights W [H × I] (row-major, unpadded).
    void assign(const T* W, std::size_t out, std::size_t in)
    {
        h = out;
        i = in;
        hp = nmf_layout<T>::pad(out);
        ip = nmf_layout<T>::pad(in);
        ldw = unaliased_stride<T>(ip);
        ldwt = unaliased_stride<T>(hp);
        w.assign(h * ldw, T(0));
        wt.assign(ip * ldwt, T(0));
        for (std::size_t k = 0; k < h; ++k)
            for (std::size_t j = 0; j < i; ++j) {
                w[k * ldw + j] = W[k * i + j];
                wt[j * ldwt + k] = W[k * i + j];
            }
    }
};

namespace detail {

/// acc[r][j] = Σ_k A[r·lda + k·ak] · B[k·ldb + j·L], for MR rows and NB vectors of columns (ak = 1: A row-major;
/// lda = 1, ak = stride: A read transposed). With Accumulate, the sum is added to acc instead.
template <class T, std::size_t MR, std::size_t NB, bool Accumulate = false>
inline void bcast_tile(std::size_t K, const T* A, std::size_t lda, const T* B, std::size_t ldb,
                       xsimd::batch<T> (&acc)[MR][NB], std::size_t ak = 1)
{
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size;
    if constexpr (!Accumulate) {
#pragma GCC unroll 16
        for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 8
            for (std::size_t j = 0; j < NB; ++j)
                acc[r][j] = batch(T(0));
    }
    for (std::size_t k = 0; k < K; ++k) {
        batch b[NB];
#pragma GCC unroll 8
        for (std::size_t j = 0; j < NB; ++j) {
            b[j] = batch::load_aligned(B + k * ldb + j * L);
            keep_in_register(b[j]);  // loaded once, used MR times
        }
#pragma GCC unroll 16
        for (std::size_t r = 0; r < MR; ++r) {
            const batch a(A[r * lda + k * ak]);
#pragma GCC unroll 8
            for (std::size_t j = 0; j < NB; ++j)
                acc[r][j] = xsimd::fma(a, b[j], acc[r][j]);
        }
    }
}

/// q[rows, c0 : c0 + NB·L] = x̂ / (h·W + 1e-20) for MR rows.
template <class T, std::size_t MR, std::size_t NB>
inline void quotient_block(const nmf_weights<T>& wts, const T* h, const T* xhat, T* q, std::size_t c0)
{
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size;
    batch acc[MR][NB];
    bcast_tile<T, MR, NB>(wts.h, h, wts.hp, wts.w.data() + c0, wts.ldw, acc);
    const batch eps(T(1e-20));
#pragma GCC unroll 16
    for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (std::size_t j = 0; j < NB; ++j) {
            const std::size_t at = r * wts.ip + c0 + j * L;
            (batch::load_unaligned(xhat + at) * refined_reciprocal(acc[r][j] + eps)).store_aligned(q + at);
        }
}

/// h̃[rows, c0 : c0 + NB·L] = h ⊙ (q·Wᵀ) (or h ⊙ (1 + ε q·Wᵀ)) for MR rows, written to hn.
template <class T, std::size_t MR, std::size_t NB>
inline void update_block(const nmf_weights<T>& wts, const T* h, const T* q, T* hn, std::size_t c0,
                         const std::optional<T>& eps)
{
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size;
    batch acc[MR][NB];
    bcast_tile<T, MR, NB>(wts.i, q, wts.ip, wts.wt.data() + c0, wts.ldwt, acc);
    if (eps) {
        const batch e(*eps), one(T(1));
#pragma GCC unroll 16
        for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 8
            for (std::size_t j = 0; j < NB; ++j) {
                const std::size_t at = r * wts.hp + c0 + j * L;
                (batch::load_aligned(h + at) * xsimd::fma(e, acc[r][j], one)).store_aligned(hn + at);
            }
    } else {
#pragma GCC unroll 16
        for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 8
            for (std::size_t j = 0; j < NB; ++j) {
                const std::size_t at = r * wts.hp + c0 + j * L;
                (batch::load_aligned(h + at) * acc[r][j]).store_aligned(hn + at);
            }
    }
}

/// When one column block covers the whole (padded) row of h: h ← normalise(h ⊙ (q·Wᵀ)) (or the damped form), with
/// the row sums and the normalisation done in registers, in place.
template <class T, std::size_t MR, std::size_t NB>
inline void update_normalise_rows(const nmf_weights<T>& wts, T* h, const T* q, const std::optional<T>& eps)
{
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size;
    batch acc[MR][NB];
    bcast_tile<T, MR, NB>(wts.i, q, wts.ip, wts.wt.data(), wts.ldwt, acc);
    const batch one(T(1));
    const batch e(eps ? *eps : T(0));
#pragma GCC unroll 16
    for (std::size_t r = 0; r < MR; ++r) {
        batch sum(T(0));
#pragma GCC unroll 8
        for (std::size_t j = 0; j < NB; ++j) {
            const batch hv = batch::load_aligned(h + r * wts.hp + j * L);
            acc[r][j] = eps ? hv * xsimd::fma(e, acc[r][j], one) : hv * acc[r][j];
            sum += acc[r][j];
        }
        const batch inv(T(1) / (horizontal_sum(sum) + T(1e-19)));
#pragma GCC unroll 8
        for (std::size_t j = 0; j < NB; ++j)
            (acc[r][j] * inv).store_aligned(h + r * wts.hp + j * L);
    }
}

/// Splits n outputs into ⌈n/MR⌉ blocks of nearly equal height (n = 25, MR = 4: 4,4,4,4,3,3,3), calling
/// block(integral_constant<height>, first) for each: no thin leftover block whose few accumulators would wait on
/// the FMA latency. Heights lie in [⌈MR/2⌉, MR] for n ≥ MR.
template <std::size_t MR, class Block>
inline void for_balanced_blocks(std::size_t n, Block&& block)
{
    const std::size_t blocks = (n + MR - 1) / MR;
    std::size_t first = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
        const std::size_t height = n / blocks + (b < n % blocks ? 1 : 0);
        [&]<std::size_t... M>(std::index_sequence<M...>) {
            ((height == M + 1 ? (block(std::integral_constant<std::size_t, M + 1>{}, first), 0) : 0), ...);
        }(std::make_index_sequence<MR>{});
        first += height;
    }
}

template <class T, std::size_t MR, std::size_t NBMax, class Block>
inline void for_column_blocks(std::size_t cols, Block&& block)
{
    constexpr std::size_t L = xsimd::batch<T>::size;
    std::size_t c0 = 0;
    for (; c0 + NBMax * L <= cols; c0 += NBMax * L)
        block(std::integral_constant<std::size_t, NBMax>{}, c0);
    const std::size_t rest = (cols - c0) / L;
    if constexpr (NBMax > 1) {
        if (rest != 0)
            [&]<std::size_t... N>(std::index_sequence<N...>) {
                ((rest == N + 1 ? (block(std::integral_constant<std::size_t, N + 1>{}, c0), 0) : 0), ...);
            }(std::make_index_sequence<NBMax - 1>{});
    }
}

} // namespace detail

/// Per-thread scratch for one tile (reused across tiles and calls).
template <class T>
struct nmf_scratch {
    aligned_vector<T> q, h, hn, x;  ///< x: the tile of x̂ rows when they are produced on the fly
    aligned_vector<T> inv_r0;       ///< 1 / (h⁰W + 1e-20), the first iteration's divisor, shared by every row
    aligned_vector<T> x_lanes;      ///< rows in lanes: a task's x̂ rows, transposed (I × task rows)
    /// a block of rows solved on the union of their supports (nmf_forward_tiles): the columns kept, the weights,
    /// x̂ rows and first divisors restricted to them
    std::vector<std::uint32_t> support;
    nmf_weights<T> compact;
    aligned_vector<T> x_compact, inv_r0_compact;
    /// the row layout's grouping of a task's rows (nmf_forward_tiles): their x̂ rows as they come, the order they
    /// are solved in (group_by_support), each row's non-zero bits, and one block's x̂ rows gathered in that order
    aligned_vector<T> x_task, x_block;
    std::vector<std::size_t> row_ids, order;
    std::vector<std::uint64_t> bits, union_bits;
    /// the rows of the last block solved on its support (1: a row by columns of Wᵀ), for tests of the split
    std::size_t support_rows = 0;
};

namespace detail {
template <class T>
nmf_scratch<T>& thread_scratch()
{
    thread_local nmf_scratch<T> s;
    return s;
}

/// h ← h / (Σh + 1e-19) for one padded row (padding columns are zero and stay zero).
template <class T>
inline void normalise_row(T* h, std::size_t hp)
{
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size;
    batch sum(T(0));
    for (std::size_t k = 0; k < hp; k += L)
        sum += batch::load_aligned(h + k);
    const batch inv(T(1) / (horizontal_sum(sum) + T(1e-19)));
    for (std::size_t k = 0; k < hp; k += L)
        (batch::load_aligned(h + k) * inv).store_aligned(h + k);
}

/// Every row starts from the same h⁰ = 1/H, so the first iteration's r = h⁰W + 1e-20 is one row shared by all:
/// inv_r0 = 1 / r⁰ [Ip], computed once with the same FMA sequence as the micro-kernels (so the result is
/// bit-identical to the general path); it saves one of the 2T products.
template <class T>
inline void first_divisor(const nmf_weights<T>& wts, aligned_vector<T>& inv_r0)
{
    using batch = xsimd::batch<T>;
    const batch h0(T(1) / T(wts.h));
    inv_r0.resize(wts.ip);
    for (std::size_t c = 0; c < wts.ip; c += batch::size) {
        batch acc(T(0));
        for (std::size_t k = 0; k < wts.h; ++k)
            acc = xsimd::fma(h0, batch::load_aligned(wts.w.data() + k * wts.ldw + c), acc);
        refined_reciprocal(acc + batch(T(1e-20))).store_aligned(inv_r0.data() + c);
    }
}

/// Where row n of the kernel's rows goes in h_out: row out_rows[n], or row n without a map.
inline std::size_t output_row(const std::size_t* out_rows, std::size_t n) { return out_rows ? out_rows[n] : n; }

/// All T iterations on one block of M rows with the weights `ww` (the layer's, or their restriction to a support):
/// x̂ rows at x (row stride ww.ip, padding columns zero), inv_r0 = 1 / r⁰ [ww.ip]; h, hn [M × ww.hp] and q [M × ww.ip]
/// are scratch. Returns the rows of h (row stride ww.hp). Each row gets the same FMA sequence in a block of any
/// height M, and on a support the same as on every column but for terms q_i·W[k,i] = +0 (x̂_i = 0) left out.
template <class T, std::size_t M>
const T* nmf_block_iterations(const nmf_weights<T>& ww, const T* inv_r0, const T* x, T* h, T* hn, T* q,
                              std::size_t iterations, const std::optional<T>& eps)
{
    using batch = xsimd::batch<T>;
    using tiles = nmf_tiling<T>;
    constexpr std::size_t L = batch::size;
    for (std::size_t r = 0; r < M; ++r)
        for (std::size_t k = 0; k < ww.hp; ++k)
            h[r * ww.hp + k] = k < ww.h ? T(1) / T(ww.h) : T(0);
    for (std::size_t it = 0; it < iterations; ++it) {
        if (it == 0) {  // q = x̂ ⊘ r⁰
            for (std::size_t r = 0; r < M; ++r)
                for (std::size_t c = 0; c < ww.ip; c += L)
                    (batch::load_unaligned(x + r * ww.ip + c) * batch::load_aligned(inv_r0 + c))
                        .store_aligned(q + r * ww.ip + c);
        } else {
            for_column_blocks<T, M, tiles::nb_for(M, tiles::nb_r)>(ww.ip, [&](auto nb, std::size_t c0) {
                quotient_block<T, M, decltype(nb)::value>(ww, h, x, q, c0);
            });
        }
        if constexpr (tiles::nb_fused > 0) {
            if (ww.hp <= tiles::nb_fused * L) {
                for_column_blocks<T, M, tiles::nb_fused>(ww.hp, [&](auto nb, std::size_t) {
                    update_normalise_rows<T, M, decltype(nb)::value>(ww, h, q, eps);
                });
                continue;
            }
        }
        for_column_blocks<T, M, tiles::nb_for(M, tiles::nb_u)>(ww.hp, [&](auto nb, std::size_t c0) {
            update_block<T, M, decltype(nb)::value>(ww, h, q, hn, c0, eps);
        });
        for (std::size_t r = 0; r < M; ++r)
            normalise_row(hn + r * ww.hp, ww.hp);
        std::swap(h, hn);
    }
    return h;
}

/// All T iterations on one row over the columns S of its support, reading the layer's Wᵀ rows i ∈ S in place, a
/// chunk of L columns at a time:
///   r_i = Σ_k h_k·Wᵀ[i,k] + 1e-20  (a dot product along H: partial sums in the lanes, then sums_across_lanes),
///   q_i = x̂_i / r_i,  u += q_i·Wᵀ[i,:]  (with the rows just read, still in L1),
/// so each weight on S comes from L2 once per iteration and serves both products, where nmf_block_iterations reads
/// W[:,S] for r and Wᵀ[S,:] for u, one FMA per weight each, from restricted copies of both. r sums in another order
/// than there, so a row solved here differs from the same row in a block in the last bits. HV = Hp / L vectors.
/// wt_rows[t] = S_t·ldwt for t < n (n a multiple of L; padding entries repeat a column of S), xs [n] the row's x̂ on
/// S (zero in the padding), inv_r0s [n] the first divisors on S. h [Hp] receives the result.
template <class T, std::size_t HV>
void nmf_row_by_columns(const nmf_weights<T>& wts, const std::uint32_t* wt_rows, std::size_t n, const T* xs,
                        const T* inv_r0s, T* h, std::size_t iterations, const std::optional<T>& eps)
{
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size;
    // u's accumulators: with few vectors, two sets alternate over the columns, so that enough FMA chains are in flight
    constexpr std::size_t sets = HV < 8 ? 2 : 1;
    const T* wt = wts.wt.data();
    batch hv[HV], u[HV];
#pragma GCC unroll 16
    for (std::size_t v = 0; v < HV; ++v) {
        alignas(64) T h0[L];
        for (std::size_t k = 0; k < L; ++k)
            h0[k] = v * L + k < wts.h ? T(1) / T(wts.h) : T(0);
        hv[v] = batch::load_aligned(h0);
    }
    alignas(64) T q[2][L];  // the chunk's quotients and the next chunk's
    const batch tiny(T(1e-20));
    for (std::size_t it = 0; it < iterations; ++it) {
        // q on the chunk of columns t0 (x̂ ⊘ r⁰ in the first iteration)
        auto quotients = [&](std::size_t t0, T* out) {
            const batch x = batch::load_unaligned(xs + t0);
            if (it == 0) {
                (x * batch::load_unaligned(inv_r0s + t0)).store_aligned(out);
                return;
            }
            batch dot[L];
#pragma GCC unroll 16
            for (std::size_t c = 0; c < L; ++c) {
                const T* w = wt + wt_rows[t0 + c];
                dot[c] = hv[0] * batch::load_aligned(w);
#pragma GCC unroll 16
                for (std::size_t v = 1; v < HV; ++v)
                    dot[c] = xsimd::fma(hv[v], batch::load_aligned(w + v * L), dot[c]);
            }
            (x * refined_reciprocal(sums_across_lanes(dot) + tiny)).store_aligned(out);
        };
#pragma GCC unroll 16
        for (std::size_t v = 0; v < HV; ++v)
            u[v] = batch(T(0));
        if (n > 0)
            quotients(0, q[0]);
        for (std::size_t t0 = 0, k = 0; t0 < n; t0 += L, k ^= 1) {
            // the next chunk's dot products first: their sums across lanes wait on the FMAs' latency, and this
            // chunk's update, independent of them, fills the wait
            if (t0 + L < n)
                quotients(t0 + L, q[k ^ 1]);
            batch acc[sets][HV];
#pragma GCC unroll 16
            for (std::size_t v = 0; v < HV; ++v) {
                acc[0][v] = u[v];
                if constexpr (sets == 2)
                    acc[1][v] = batch(T(0));
            }
#pragma GCC unroll 16
            for (std::size_t c = 0; c < L; ++c) {
                const T* w = wt + wt_rows[t0 + c];
                const batch qc(q[k][c]);
#pragma GCC unroll 16
                for (std::size_t v = 0; v < HV; ++v)
                    acc[c % sets][v] = xsimd::fma(qc, batch::load_aligned(w + v * L), acc[c % sets][v]);
            }
#pragma GCC unroll 16
            for (std::size_t v = 0; v < HV; ++v) {
                u[v] = acc[0][v];
                if constexpr (sets == 2)
                    u[v] += acc[1][v];
            }
        }
        // h ← normalise(h ⊙ u), or of h ⊙ (1 + ε u)
        batch sum(T(0));
#pragma GCC unroll 16
        for (std::size_t v = 0; v < HV; ++v) {
            hv[v] = eps ? hv[v] * xsimd::fma(batch(*eps), u[v], batch(T(1))) : hv[v] * u[v];
            sum += hv[v];
        }
        const batch inv(T(1) / (horizontal_sum(sum) + T(1e-19)));
#pragma GCC unroll 16
        for (std::size_t v = 0; v < HV; ++v)
            hv[v] *= inv;
    }
#pragma GCC unroll 16
    for (std::size_t v = 0; v < HV; ++v)
        hv[v].store_aligned(h + v * L);
}

/// The widest h (in vectors) nmf_row_by_columns is compiled for; wider layers take the restricted weights.
inline constexpr std::size_t nmf_by_columns_max_vectors = 8;

/// The columns i < I where at least one of the `count` x̂ rows at x (row stride ip) is non-zero (NaN counts as
/// non-zero), ascending, into support.
template <class T>
void union_support(const T* x, std::size_t count, std::size_t I, std::size_t ip, std::vector<std::uint32_t>& support)
{
    support.clear();
    for (std::size_t i0 = 0; i0 < I; i0 += 64) {  // 64 columns at a time, as the bits of a word
        const std::size_t width = std::min<std::size_t>(64, I - i0);
        std::uint64_t any = 0;
        for (std::size_t r = 0; r < count; ++r) {
            std::uint64_t bits = 0;
            nonzero_bits(x + r * ip + i0, width, &bits);
            any |= bits;
        }
        for (; any != 0; any &= any - 1)
            support.push_back(static_cast<std::uint32_t>(i0 + static_cast<std::size_t>(std::countr_zero(any))));
    }
}

/// |S|, the number of columns where at least one of the `count` x̂ rows at x (row stride ip, padding columns zero)
/// is non-zero (NaN counts as non-zero): a vector pass, so that a dense block pays little for the question.
template <class T>
std::size_t union_support_size(const T* x, std::size_t count, std::size_t ip)
{
    using batch = xsimd::batch<T>;
    const batch zero(T(0)), one(T(1));
    batch columns(T(0));
    for (std::size_t c = 0; c < ip; c += batch::size) {
        auto any = batch::load_unaligned(x + c) != zero;
        for (std::size_t r = 1; r < count; ++r)
            any = any | (batch::load_unaligned(x + r * ip + c) != zero);
        columns += xsimd::select(any, one, zero);
    }
    return static_cast<std::size_t>(horizontal_sum(columns));
}

/// The number of non-zero columns (NaN counts as non-zero) of a block of M rows at x (row stride ip, padding columns
/// zero), counted in one vector pass: of each row, of each pair of rows (2p, 2p + 1) and of the whole block.
template <std::size_t M>
struct support_counts {
    std::size_t row[M], pair[M / 2], all;
};

template <class T, std::size_t M>
support_counts<M> count_supports(const T* x, std::size_t ip)
{
    using batch = xsimd::batch<T>;
    const batch zero(T(0)), one(T(1));
    batch row[M], pair[M / 2], all(T(0));
    std::fill(row, row + M, zero);
    std::fill(pair, pair + M / 2, zero);
    for (std::size_t c = 0; c < ip; c += batch::size) {
        typename batch::batch_bool_type nonzero[M];
        for (std::size_t r = 0; r < M; ++r) {
            nonzero[r] = batch::load_unaligned(x + r * ip + c) != zero;
            row[r] += xsimd::select(nonzero[r], one, zero);
        }
        auto any = nonzero[0];
        for (std::size_t r = 1; r < M; ++r)
            any = any | nonzero[r];
        all += xsimd::select(any, one, zero);
        for (std::size_t p = 0; p < M / 2; ++p)
            pair[p] += xsimd::select(nonzero[2 * p] | nonzero[2 * p + 1], one, zero);
    }
    support_counts<M> n;
    for (std::size_t r = 0; r < M; ++r)
        n.row[r] = static_cast<std::size_t>(horizontal_sum(row[r]));
    for (std::size_t p = 0; p < M / 2; ++p)
        n.pair[p] = static_cast<std::size_t>(horizontal_sum(pair[p]));
    n.all = static_cast<std::size_t>(horizontal_sum(all));
    return n;
}

/// Orders n rows into groups of `group` whose unions of non-zero columns are narrow, greedily: each group starts
/// with the first row left and adds, one at a time, the row that brings the fewest new columns (the first such row
/// on a tie); the n mod group rows left over come last, in their order. bits: each row's non-zero bits, `words` per
/// row. Writes the permutation to order[0, n).
inline void group_by_support(const std::uint64_t* bits, std::size_t words, std::size_t n, std::size_t group,
                             std::size_t* order, std::vector<std::uint64_t>& union_bits)
{
    std::size_t left = n;  // order[n - left, n) are the rows not yet placed, in their original order
    for (std::size_t r = 0; r < n; ++r)
        order[r] = r;
    union_bits.resize(words);
    if (group == 0)  // no groups: the rows keep their order
        return;
    while (left >= group) {
        std::size_t* g = order + (n - left);  // the group being built: g[0, taken)
        std::copy_n(bits + g[0] * words, words, union_bits.data());
        for (std::size_t taken = 1; taken < group; ++taken) {
            std::size_t best = taken, best_new = std::numeric_limits<std::size_t>::max();
            for (std::size_t c = taken; c < left && best_new > 0; ++c) {
                const std::uint64_t* row = bits + g[c] * words;
                std::size_t added = 0;
                for (std::size_t w = 0; w < words; ++w)
                    added += static_cast<std::size_t>(std::popcount(row[w] & ~union_bits[w]));
                if (added < best_new) {
                    best_new = added;
                    best = c;
                }
            }
            // move the chosen row to position `taken`, keeping the others in their order
            std::rotate(g + taken, g + best, g + best + 1);
            for (std::size_t w = 0; w < words; ++w)
                union_bits[w] |= bits[g[taken] * words + w];
        }
        left -= group;
    }
}

/// Σ over the n / group full groups of `order` (consecutive runs of `group` rows) of the number of columns in the
/// group's union: the columns its block would be solved on.
inline std::size_t grouped_union_columns(const std::uint64_t* bits, std::size_t words, std::size_t n,
                                         std::size_t group, const std::size_t* order)
{
    std::size_t columns = 0;
    for (std::size_t g = 0; g + group <= n; g += group)
        for (std::size_t w = 0; w < words; ++w) {
            std::uint64_t any = 0;
            for (std::size_t r = 0; r < group; ++r)
                any |= bits[order[g + r] * words + w];
            columns += static_cast<std::size_t>(std::popcount(any));
        }
    return columns;
}

/// How nmf_forward_tiles divides a full block of mr_support rows whose x̂ are sparse: as the cost model of
/// nmf_tiling says (automatic), or always whole, in pairs or row by row (for tests and measurements).
enum class block_split { automatic, whole, pairs, rows };

/// Restricts the layer's weights, the first divisors and `count` x̂ rows to the columns in `support`: the weights
/// W[:, S] in both padded layouts (out.w [Hp × pad(|S|)], out.wt [pad(|S|) × Hp]), inv_r0[S] and x̂[:, S] (row
/// stride pad(|S|)), zero padded.
template <class T>
void restrict_to_support(const nmf_weights<T>& wts, const T* inv_r0, const T* x, std::size_t count,
                         const std::vector<std::uint32_t>& support, nmf_weights<T>& out, aligned_vector<T>& inv_r0_out,
                         aligned_vector<T>& x_out)
{
    const std::size_t u = support.size();
    out.h = wts.h;
    out.hp = wts.hp;
    out.i = u;
    out.ip = nmf_layout<T>::pad(u);
    out.ldw = unaliased_stride<T>(out.ip);
    out.ldwt = wts.ldwt;
    out.w.resize(out.hp * out.ldw);
    out.wt.resize(out.ip * out.ldwt);
    inv_r0_out.resize(out.ip);
    x_out.resize(count * out.ip);
    // Wᵀ's rows i ∈ S are whole rows of wts.wt; W[:, S] is their transpose (columns [pad(|S|), ldw) are not read)
    for (std::size_t t = 0; t < u; ++t)
        std::copy_n(wts.wt.data() + support[t] * wts.ldwt, wts.ldwt, out.wt.data() + t * out.ldwt);
    std::fill(out.wt.begin() + std::ptrdiff_t(u * out.ldwt), out.wt.end(), T(0));
    transpose(out.wt.data(), out.ldwt, out.ip, out.hp, out.w.data(), out.ldw);
    for (std::size_t t = 0; t < u; ++t)
        inv_r0_out[t] = inv_r0[support[t]];
    std::fill(inv_r0_out.begin() + std::ptrdiff_t(u), inv_r0_out.end(), T(0));
    for (std::size_t r = 0; r < count; ++r) {
        for (std::size_t t = 0; t < u; ++t)
            x_out[r * out.ip + t] = x[r * wts.ip + support[t]];
        std::fill(x_out.begin() + std::ptrdiff_t(r * out.ip + u), x_out.begin() + std::ptrdiff_t((r + 1) * out.ip),
                  T(0));
    }
}

/// Runs all T iterations on the tiles [first, last), block of rows by block of rows (nmf_block_iterations).
/// tile_rows(t0, valid) gives the tile's x̂ rows starting at row t0 (tile_rows × Ip; rows ≥ valid are padding and
/// must be zero). Row n's h goes to row output_row(out_rows, n) of h_out. A row whose non-zero columns are at most
/// alone_fraction of I (0: none) is solved alone by columns of Wᵀ (nmf_row_by_columns; to rounding the result of a
/// block). The other rows of each run of nmf_tiles_per_task tiles are grouped into blocks of narrow union of
/// non-zero columns (group_by_support); a block whose union holds at most support_fraction of the I columns is
/// solved on them alone (0: never, and the rows keep their order); a full block may be solved in pairs of rows or
/// row by row instead, each on its own support (`split`). A row's result is the same in any block, and whether it
/// is solved alone depends on the row only, so a row's result never depends on the other rows.
template <class T>
void nmf_forward_tiles(const nmf_weights<T>& wts, function_ref<const T*(std::size_t, std::size_t)> tile_rows,
                       std::size_t rows, std::size_t first_tile, std::size_t last_tile, std::size_t iterations,
                       const std::optional<T>& eps, T* h_out, const std::size_t* out_rows = nullptr,
                       double support_fraction = nmf_tiling<T>::support_fraction,
                       block_split split = block_split::automatic,
                       double alone_fraction = nmf_tiling<T>::alone_fraction)
{
    using lay = nmf_layout<T>;
    using tiles = nmf_tiling<T>;
    constexpr std::size_t NT = lay::tile_rows;
    auto& s = thread_scratch<T>();
    s.q.resize(NT * wts.ip);
    s.h.resize(NT * wts.hp);
    s.hn.resize(NT * wts.hp);
    first_divisor(wts, s.inv_r0);
    // one row-block height serves all three products and the supports
    static_assert(tiles::mr_r == tiles::mr_u && tiles::mr_u == tiles::mr_fused && tiles::mr_support == tiles::mr_r);
    constexpr std::size_t MR = tiles::mr_r;
    static_assert(MR % 2 == 0, "a full block splits into pairs of rows");
    // Each block of rows runs all T iterations on its own. A block whose x̂ are zero outside a few columns S (a
    // ReLU's output) runs with the weights restricted to S: there q = 0 in every iteration, so those columns add
    // exactly 0 to u, and their r is never needed.
    // M rows at x (row stride Ip) whose union of non-zero columns has `support` columns; ids: their row numbers
    auto solve_rows = [&](const T* x, const std::size_t* ids, auto height, std::size_t support) {
        constexpr std::size_t M = decltype(height)::value;
        const bool on_support = support_fraction > 0 && double(support) <= support_fraction * double(wts.i);
        if (on_support) {
            s.support_rows = M;
            union_support(x, M, wts.i, wts.ip, s.support);
            restrict_to_support(wts, s.inv_r0.data(), x, M, s.support, s.compact, s.inv_r0_compact, s.x_compact);
        }
        const T* h = nmf_block_iterations<T, M>(on_support ? s.compact : wts,
                                                on_support ? s.inv_r0_compact.data() : s.inv_r0.data(),
                                                on_support ? s.x_compact.data() : x, s.h.data(), s.hn.data(),
                                                s.q.data(), iterations, eps);
        for (std::size_t r = 0; r < M; ++r)
            copy_short_row(h + r * wts.hp, wts.h, h_out + output_row(out_rows, ids[r]) * wts.h);
    };
    // A row whose own support is narrow enough is solved alone, by columns of Wᵀ read in place (nmf_row_by_columns).
    // Whether it is depends on the row alone, so no row's result depends on the rows beside it.
    const bool alone = alone_fraction > 0 && wts.hp <= nmf_by_columns_max_vectors * lay::lanes;
    auto solve_alone = [&](const T* x, const std::uint64_t* bits, std::size_t id) {
        s.support_rows = 1;
        s.support.clear();  // the row's non-zero columns, ascending, from its bits (padding columns are zero)
        for (std::size_t w = 0; w < (wts.ip + 63) / 64; ++w)
            for (std::uint64_t b = bits[w]; b != 0; b &= b - 1)
                s.support.push_back(static_cast<std::uint32_t>(64 * w + std::size_t(std::countr_zero(b))));
        const std::size_t u = s.support.size(), n = lay::pad(u);
        s.x_compact.resize(n);
        s.inv_r0_compact.resize(n);
        s.support.resize(n, u > 0 ? s.support[u - 1] : 0);  // the padding repeats a column, with x̂ = 0
        for (std::size_t t = 0; t < n; ++t) {
            const std::size_t i = s.support[t];
            s.x_compact[t] = t < u ? x[i] : T(0);
            s.inv_r0_compact[t] = t < u ? s.inv_r0[i] : T(0);
            s.support[t] = static_cast<std::uint32_t>(i * wts.ldwt);
        }
        [&]<std::size_t... V>(std::index_sequence<V...>) {
            ((wts.hp == (V + 1) * lay::lanes
                  ? (nmf_row_by_columns<T, V + 1>(wts, s.support.data(), n, s.x_compact.data(),
                                                  s.inv_r0_compact.data(), s.h.data(), iterations, eps),
                     0)
                  : 0),
             ...);
        }(std::make_index_sequence<nmf_by_columns_max_vectors>{});
        copy_short_row(s.h.data(), wts.h, h_out + output_row(out_rows, id) * wts.h);
    };
    using one_row = std::integral_constant<std::size_t, 1>;
    using two_rows = std::integral_constant<std::size_t, 2>;
    // A full block splits when its rows' supports overlap little: the pairs (or rows) then compute fewer columns,
    // though each at a lower speed per column (nmf_tiling::pair_cost, single_cost). Per pair, the cheaper of the
    // pair and its two rows; the block splits if the pairs' sum beats the whole block.
    auto solve_full_block = [&](const T* x, const std::size_t* ids) {
        const support_counts<MR> n = count_supports<T, MR>(x, wts.ip);
        const bool restricted = support_fraction > 0;
        // a union wider than support_fraction of I is solved on every column
        const bool whole_on_support = restricted && double(n.all) <= support_fraction * double(wts.i);
        double whole = double(MR) * double(whole_on_support ? n.all : wts.i), in_pairs = 0;
        bool pair_whole[MR / 2];
        for (std::size_t p = 0; p < MR / 2; ++p) {
            const double pair = 2 * tiles::pair_cost * double(n.pair[p]);
            const double alone = tiles::single_cost * double(n.row[2 * p] + n.row[2 * p + 1]);
            pair_whole[p] = split == block_split::pairs || (split == block_split::automatic && pair <= alone);
            in_pairs += std::min(pair, alone);
        }
        if (split == block_split::whole || (split == block_split::automatic && (!restricted || whole <= in_pairs))) {
            solve_rows(x, ids, std::integral_constant<std::size_t, MR>{}, n.all);
            return;
        }
        for (std::size_t p = 0; p < MR / 2; ++p) {
            const T* xp = x + 2 * p * wts.ip;
            if (pair_whole[p]) {
                solve_rows(xp, ids + 2 * p, two_rows{}, n.pair[p]);
            } else {
                solve_rows(xp, ids + 2 * p, one_row{}, n.row[2 * p]);
                solve_rows(xp + wts.ip, ids + 2 * p + 1, one_row{}, n.row[2 * p + 1]);
            }
        }
    };
    const std::size_t words = (wts.ip + 63) / 64;
    for (std::size_t run = first_tile; run < last_tile && run * NT < rows; run += nmf_tiles_per_task) {
        // the run's rows, in their order, and their non-zero bits
        const std::size_t r0 = run * NT, n = std::min(rows, std::min(last_tile, run + nmf_tiles_per_task) * NT) - r0;
        s.x_task.resize(n * wts.ip);
        for (std::size_t t0 = 0; t0 < n; t0 += NT) {
            const std::size_t valid = std::min(NT, n - t0);
            std::copy_n(tile_rows(r0 + t0, valid), valid * wts.ip, s.x_task.data() + t0 * wts.ip);
        }
        // the rows sparse enough are solved alone; the others, row_ids[0, kept) in their order (with their bits
        // moved to the front), go in blocks
        s.row_ids.resize(n);
        std::iota(s.row_ids.begin(), s.row_ids.end(), std::size_t(0));
        std::size_t kept = n;
        bool some_sparse = false;  // a kept row narrow enough to be restricted: grouping may narrow its block
        if (support_fraction > 0 || alone) {
            s.bits.resize(n * words);
            kept = 0;
            for (std::size_t r = 0; r < n; ++r) {
                std::uint64_t* bits = s.bits.data() + kept * words;
                nonzero_bits(s.x_task.data() + r * wts.ip, wts.ip, bits);
                std::size_t count = 0;
                for (std::size_t w = 0; w < words; ++w)
                    count += static_cast<std::size_t>(std::popcount(bits[w]));
                if (alone && double(count) <= alone_fraction * double(wts.i)) {
                    solve_alone(s.x_task.data() + r * wts.ip, bits, r0 + r);
                    continue;
                }
                some_sparse = some_sparse || double(count) <= support_fraction * double(wts.i);
                s.row_ids[kept++] = r;
            }
        }
        bool grouped = false;
        if (some_sparse && kept > MR) {
            s.order.resize(kept);
            std::iota(s.order.begin(), s.order.end(), std::size_t(0));
            const std::size_t in_order = grouped_union_columns(s.bits.data(), words, kept, MR, s.order.data());
            group_by_support(s.bits.data(), words, kept, MR, s.order.data(), s.union_bits);
            grouped = double(grouped_union_columns(s.bits.data(), words, kept, MR, s.order.data())) <=
                      tiles::regroup_gain * double(in_order);
            if (grouped) {  // the kept rows' numbers in the grouped order
                for (std::size_t k = 0; k < kept; ++k)
                    s.order[k] = s.row_ids[s.order[k]];
                std::copy_n(s.order.begin(), kept, s.row_ids.begin());
            }
        }
        // blocks in that order (gathered unless they are the run's rows as they came): full ones, then the rest —
        // 3 to 5 rows in one block, 7 or 8 in two, or 1 or 2 rows of a run that short alone
        const bool as_they_came = kept == n && !grouped;
        s.x_block.resize((MR + 2) * wts.ip);
        std::size_t ids[2 * MR];
        auto gather = [&](std::size_t k0, std::size_t m) {
            for (std::size_t k = 0; k < m; ++k)
                ids[k] = r0 + s.row_ids[k0 + k];
            if (as_they_came)
                return static_cast<const T*>(s.x_task.data() + k0 * wts.ip);
            for (std::size_t k = 0; k < m; ++k)
                std::copy_n(s.x_task.data() + s.row_ids[k0 + k] * wts.ip, wts.ip, s.x_block.data() + k * wts.ip);
            return static_cast<const T*>(s.x_block.data());
        };
        // one or two rows left over join the last full block in two balanced blocks (8 rows: 4 + 4, not 6 + 1 + 1):
        // a lone dense row runs at half the speed of a block
        const std::size_t full = (kept % MR == 1 || kept % MR == 2) && kept > MR ? kept / MR - 1 : kept / MR;
        std::size_t k0 = 0;
        for (; k0 < full * MR; k0 += MR)
            solve_full_block(gather(k0, MR), ids);
        const std::size_t rest = kept - k0;
        if (rest == 0)
            continue;
        const T* x = gather(k0, rest);
        auto block = [&](auto height, std::size_t first) {
            solve_rows(x + first * wts.ip, ids + first, height,
                       union_support_size(x + first * wts.ip, decltype(height)::value, wts.ip));
        };
        if (rest <= 2)
            for_balanced_blocks<1>(rest, block);
        else
            for_balanced_blocks<MR>(rest, block);
    }
}

/// One group of rows of nmf_forward_lanes, in NB ≤ nmf_lanes_tiling::nbr vectors of rows (a last group with fewer
/// rows computes only the vectors that hold them): all T iterations for x̂ᵀ at x (row stride span, rows in the
/// lanes), with q and h [· × G] as scratch; writes the first `count` rows of h, the kernel's rows first_row … , to
/// their rows of h_out (output_row).
/// Flattened: its tiles are inlined into it (left to the inliner, with three widths in a translation unit, the
/// tile loops were outlined and the full groups ran up to 9 % slower with AVX2).
template <class T, std::size_t NB>
__attribute__((flatten)) void nmf_lanes_group(const nmf_weights<T>& wts, const T* x, std::size_t span,
                                              const T* inv_r0, T* q, T* h, std::size_t iterations,
                                              const std::optional<T>& eps, std::size_t count, T* h_out,
                                              std::size_t first_row, const std::size_t* out_rows)
{
    using batch = xsimd::batch<T>;
    using lt = nmf_lanes_tiling<T>;
    constexpr std::size_t L = batch::size, G = lt::group;
    static_assert(NB >= 1 && NB <= lt::nbr);
    const std::size_t I = wts.i, H = wts.h;
    const batch eps_r(T(1e-20)), one(T(1)), damping(eps ? *eps : T(0));
    std::fill(h, h + H * G, T(1) / T(H));
    for (std::size_t it = 0; it < iterations; ++it) {
        if (it == 0) {  // qᵀ = x̂ᵀ ⊘ r⁰, r⁰ one value per column i
            for (std::size_t i = 0; i < I; ++i) {
                const batch inv(inv_r0[i]);
                for (std::size_t v = 0; v < NB * L; v += L)
                    (batch::load_aligned(x + i * span + v) * inv).store_aligned(q + i * G + v);
            }
        } else {  // qᵀ[i] = x̂ᵀ[i] / (Σ_k W[k,i] hᵀ[k] + 1e-20): W's row k broadcast along i
            for_balanced_blocks<lt::mr>(I, [&](auto height, std::size_t i0) {
                constexpr std::size_t M = decltype(height)::value;
                batch acc[M][NB];
                bcast_tile<T, M, NB>(H, wts.w.data() + i0, 1, h, G, acc, wts.ldw);
#pragma GCC unroll 16
                for (std::size_t m = 0; m < M; ++m)
#pragma GCC unroll 4
                    for (std::size_t v = 0; v < NB; ++v)
                        (batch::load_aligned(x + (i0 + m) * span + v * L) * refined_reciprocal(acc[m][v] + eps_r))
                            .store_aligned(q + (i0 + m) * G + v * L);
            });
        }
        // h̃ᵀ[k] = hᵀ[k] ⊙ Σ_i W[k,i] qᵀ[i] (in place: only row k of hᵀ is read for it), and Σ_k h̃ᵀ[k]
        batch sum[NB];
        for (std::size_t v = 0; v < NB; ++v)
            sum[v] = batch(T(0));
        for_balanced_blocks<lt::mr>(H, [&](auto height, std::size_t k0) {
            constexpr std::size_t M = decltype(height)::value;
            batch acc[M][NB];
            bcast_tile<T, M, NB>(I, wts.wt.data() + k0, 1, q, G, acc, wts.ldwt);
#pragma GCC unroll 16
            for (std::size_t m = 0; m < M; ++m)
#pragma GCC unroll 4
                for (std::size_t v = 0; v < NB; ++v) {
                    T* at = h + (k0 + m) * G + v * L;
                    const batch hv = batch::load_aligned(at);
                    const batch ht = eps ? hv * xsimd::fma(damping, acc[m][v], one) : hv * acc[m][v];
                    ht.store_aligned(at);
                    sum[v] += ht;
                }
        });
        batch inv[NB];
        for (std::size_t v = 0; v < NB; ++v)
            inv[v] = one / (sum[v] + batch(T(1e-19)));
        for (std::size_t k = 0; k < H; ++k)
#pragma GCC unroll 4
            for (std::size_t v = 0; v < NB; ++v)
                (batch::load_aligned(h + k * G + v * L) * inv[v]).store_aligned(h + k * G + v * L);
    }
    for (std::size_t n = 0; n < count; ++n) {
        T* out = h_out + output_row(out_rows, first_row + n) * H;
        for (std::size_t k = 0; k < H; ++k)
            out[k] = h[k * G + n];
    }
}

/// The same T iterations on the tiles [first, last) (one task: whole groups of rows) with the rows in the SIMD
/// lanes (nmf_lanes_tiling). Per group of G rows, transposed: qᵀ = x̂ᵀ ⊘ (Wᵀhᵀ + 1e-20) [I × G],
/// h̃ᵀ = hᵀ ⊙ (W qᵀ) [H × G], hᵀ = h̃ᵀ · diag(1 / (Σ_k h̃ᵀ[k] + 1e-19)). Each row's arithmetic is the same in any lane
/// and any group: the result does not depend on the split. It differs from the row layout's only in the order of
/// the normalising sum (k ascending here, lanes then a tree there).
template <class T>
void nmf_forward_lanes(const nmf_weights<T>& wts, function_ref<const T*(std::size_t, std::size_t)> tile_rows,
                       std::size_t rows, std::size_t first_tile, std::size_t last_tile, std::size_t iterations,
                       const std::optional<T>& eps, T* h_out, const std::size_t* out_rows = nullptr)
{
    using batch = xsimd::batch<T>;
    using lt = nmf_lanes_tiling<T>;
    constexpr std::size_t NT = nmf_layout<T>::tile_rows, L = batch::size, G = lt::group, NBR = lt::nbr;
    static_assert(nmf_tiles_per_task * NT % G == 0, "a task holds whole groups of rows");
    const std::size_t I = wts.i, H = wts.h, Ip = wts.ip;
    constexpr std::size_t span = nmf_tiles_per_task * NT;  // a task's rows (the last task's too, zero padded)
    const std::size_t t0 = first_tile * NT, valid = std::min(rows, last_tile * NT) - t0;
    auto& s = thread_scratch<T>();
    first_divisor(wts, s.inv_r0);
    // the task's x̂ rows, transposed: x_lanes[i·span + n]; the rows [valid, end of the last group) are zero (only
    // the last task has such rows; nothing past that group is read)
    s.x_lanes.resize(I * span);
    const std::size_t end = (valid + G - 1) / G * G;
    for (std::size_t i = 0; i < I; ++i)
        std::fill(s.x_lanes.begin() + i * span + valid, s.x_lanes.begin() + i * span + end, T(0));
    for (std::size_t tile = first_tile; tile < last_tile && tile * NT < rows; ++tile) {
        const std::size_t n0 = (tile - first_tile) * NT, in_tile = std::min(NT, rows - tile * NT);
        const T* xt = tile_rows(tile * NT, in_tile);
        for (std::size_t n = 0; n < in_tile; ++n)
            for (std::size_t i = 0; i < I; ++i)
                s.x_lanes[i * span + n0 + n] = xt[n * Ip + i];
    }
    s.q.resize(I * G);
    s.h.resize(H * G);
    T* q = s.q.data();
    T* h = s.h.data();
    // groups holding real rows; a last group with fewer rows computes only the vectors that hold them (one image
    // through a 1×1 layer: one vector, not NBR)
    auto group = [&]<std::size_t NB>(std::size_t g0) {
        nmf_lanes_group<T, NB>(wts, s.x_lanes.data() + g0, span, s.inv_r0.data(), q, h, iterations, eps,
                               std::min(G, valid - g0), h_out, t0 + g0, out_rows);
    };
    std::size_t g0 = 0;
    for (; g0 + G <= valid; g0 += G)
        group.template operator()<NBR>(g0);
    if (g0 < valid) {
        const std::size_t vectors = (valid - g0 + L - 1) / L;
        [&]<std::size_t... N>(std::index_sequence<N...>) {
            ((vectors == N + 1 ? (group.template operator()<N + 1>(g0), 0) : 0), ...);
        }(std::make_index_sequence<NBR>{});
    }
}
} // namespace detail

/// Produces rows [first_row, first_row + count) of x̂ into dst (row stride Ip, columns [0, I) only).
template <class T>
using row_source = function_ref<void(std::size_t first_row, std::size_t count, T* dst)>;
/// Receives rows [first_row, first_row + count) of a result (row stride Ip).
template <class T>
using row_sink = function_ref<void(std::size_t first_row, std::size_t count, const T* rows)>;

namespace detail {
/// One task's tiles, in the layout nmf_rows_in_lanes chooses for the layer's I and H.
template <class T>
void nmf_forward_task(const nmf_weights<T>& wts, function_ref<const T*(std::size_t, std::size_t)> tile_rows,
                      std::size_t rows, std::size_t first_tile, std::size_t last_tile, std::size_t iterations,
                      const std::optional<T>& eps, T* h_out, const std::size_t* out_rows = nullptr)
{
    if (nmf_rows_in_lanes<T>(wts.i, wts.h))
        nmf_forward_lanes<T>(wts, tile_rows, rows, first_tile, last_tile, iterations, eps, h_out, out_rows);
    else
        nmf_forward_tiles<T>(wts, tile_rows, rows, first_tile, last_tile, iterations, eps, h_out, out_rows);
}
} // namespace detail

/// Runs the T-step NMF inference for `rows` rows. xhat is [pad_rows(rows) × Ip] (zero padded; padded rows all
/// zero); h_out receives [rows × H] (unpadded). Requires iterations ≥ 1. Tiles are spread over the thread pool;
/// each row's result is independent of the split.
template <class T>
void nmf_forward(const nmf_weights<T>& wts, const T* xhat, std::size_t rows, std::size_t iterations,
                 std::type_identity_t<std::optional<T>> eps, T* h_out)
{
    const std::size_t tiles = (rows + nmf_layout<T>::tile_rows - 1) / nmf_layout<T>::tile_rows;
    const std::size_t tasks = (tiles + nmf_tiles_per_task - 1) / nmf_tiles_per_task;
    parallel_for(tasks, [&](std::size_t task) {
        const std::size_t first = task * nmf_tiles_per_task;
        auto tile_rows = [&](std::size_t t0, std::size_t) { return xhat + t0 * wts.ip; };
        detail::nmf_forward_task<T>(wts, tile_rows, rows, first, std::min(tiles, first + nmf_tiles_per_task),
                                    iterations, eps, h_out);
    });
}

/// The same inference without an x̂ matrix: each tile's rows are produced when the tile starts, by
/// `source(first_row, count, dst)`, which writes columns [0, I) of rows [first_row, first_row + count) into dst
/// (row stride Ip). Tasks call it concurrently for disjoint rows; each row is requested exactly once.
/// With `out_rows`, row n's h goes to row out_rows[n] of h_out (distinct rows; the others are not written): the
/// caller solves a subset of its rows.
template <class T>
void nmf_forward_streamed(const nmf_weights<T>& wts, std::size_t rows, std::size_t iterations,
                          std::type_identity_t<std::optional<T>> eps, T* h_out,
                          std::type_identity_t<row_source<T>> source, const std::size_t* out_rows = nullptr)
{
    using lay = nmf_layout<T>;
    const std::size_t tiles = (rows + lay::tile_rows - 1) / lay::tile_rows;
    const std::size_t tasks = (tiles + nmf_tiles_per_task - 1) / nmf_tiles_per_task;
    parallel_for(tasks, [&](std::size_t task) {
        const std::size_t first = task * nmf_tiles_per_task;
        auto& x = detail::thread_scratch<T>().x;
        x.assign(lay::tile_rows * wts.ip, T(0));  // padding columns stay zero: the source writes [0, I) only
        auto tile_rows = [&](std::size_t t0, std::size_t valid) {
            if (valid < lay::tile_rows)  // the last tile: padding rows are zero
                std::fill(x.begin(), x.end(), T(0));
            source(t0, valid, x.data());
            return static_cast<const T*>(x.data());
        };
        detail::nmf_forward_task<T>(wts, tile_rows, rows, first, std::min(tiles, first + nmf_tiles_per_task),
                                    iterations, eps, h_out, out_rows);
    });
}

} // namespace nmfdsl::kernels
