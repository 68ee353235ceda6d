#pragma once
/// @file nmf_backward_approx.hpp
/// The approximate gradient of the NMF inference (kernels/nmf.hpp) with respect to x̂ and W — the deep-NMF paper's
/// (Nouri et al. 2025, eq. (1), (2)): back-propagation through *one* multiplicative update with h held at its final
/// value, so only x̂, W and the final h are needed, whatever T was:
///      R = hW, P = 1 ⊘ (R + 1e-20), HG = h ⊙ G,
///      GX = (HG·W) ⊙ P                    (1)
///      GW = HGᵀ·(X̂ ⊙ P) − hᵀ·(X̂ ⊙ P ⊙ GX) (2)
/// As four GEMMs (the reference, nmf_backward_approx_gemm) and fused over blocks of rows (nmf_backward_approx and
/// the streamed variant that needs no x̂ or gx matrix).
/// Conventions: N×I matrices have row stride Ip (nmf_layout::pad), GW is [H × Ip]. Where Σh̃ vanishes (an all-zero
/// patch, whose output without ε is h = 0), the derivative of the normalisation is taken as 0.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../core/parallel.hpp"
#include "gemm.hpp"
#include "nmf.hpp"
#include "simd.hpp"
#include "reduce.hpp"

namespace nmfdsl::kernels {

template <class T>
struct nmf_backward_scratch {
    aligned_vector<T> r, hg_w, hg, qx, z;            // the GEMM formulation
    aligned_vector<T> qz, at, gxb, xb;               // the fused tile formulation (per thread)
    std::vector<aligned_vector<T>> partials;         // per-task GW
    // the (columns in use, row stride) for which at and xb hold zeros in every padding column
    std::size_t at_h = 0, at_stride = 0, xb_i = 0, xb_stride = 0;
};

/// Rows per parallel task of the approximate backward: fixed, so the split does not depend on the thread count.
inline constexpr std::size_t nmf_backward_task_rows = 384;

/// Approximate gradient (eq. (1), (2)) as four GEMMs over the whole batch: the straightforward formulation, kept as
/// the reference the fused kernel is tested against. xhat [rows × Ip], h and g [rows × H]; writes gx [rows × Ip]
/// and gw [H × Ip] (both overwritten).
template <class T>
void nmf_backward_approx_gemm(const nmf_weights<T>& wts, const T* xhat, const T* h, const T* g, std::size_t rows, T* gx,
                         T* gw, nmf_backward_scratch<T>& s)
{
    const std::size_t H = wts.h, Ip = wts.ip;
    s.r.resize(rows * Ip);
    s.hg_w.resize(rows * Ip);
    s.hg.resize(rows * H);
    s.qx.resize(rows * Ip);
    s.z.resize(rows * Ip);
    for (std::size_t i = 0; i < rows * H; ++i)
        s.hg[i] = h[i] * g[i];
    gemm<T>(false, false, rows, Ip, H, T(1), h, H, wts.w.data(), wts.ldw, T(0), s.r.data(), Ip);
    gemm<T>(false, false, rows, Ip, H, T(1), s.hg.data(), H, wts.w.data(), wts.ldw, T(0), s.hg_w.data(), Ip);
    for (std::size_t n = 0; n < rows; ++n)
        for (std::size_t i = 0; i < Ip; ++i) {
            const std::size_t at = n * Ip + i;
            const T p = T(1) / (s.r[at] + T(1e-20));
            const T q = xhat[at] * p;
            gx[at] = s.hg_w[at] * p;
            s.qx[at] = q;
            s.z[at] = q * gx[at];
        }
    gemm<T>(true, false, H, Ip, rows, T(1), s.hg.data(), H, s.qx.data(), Ip, T(0), gw, Ip);
    gemm<T>(true, false, H, Ip, rows, T(-1), h, H, s.z.data(), Ip, T(1), gw, Ip);
}

namespace detail {

/// The patch L1 normalisation's backward for one row, gx ← (gx − d) / (s + 1e-19), with d = Σ gx ⊙ x̂ over the row
/// and s its raw patch sum: the formula of l1_backward_rows (layers/conv.hpp), applied a vector at a time.
template <class T>
struct patch_norm_backward {
    xsimd::batch<T> d, inv;
    patch_norm_backward(const xsimd::batch<T>& dot, T patch_sum)
        : d(horizontal_sum(dot)), inv(T(1) / (patch_sum + T(1e-19)))
    {
    }
    xsimd::batch<T> operator()(const xsimd::batch<T>& gx) const { return (gx - d) * inv; }
};

/// For MR rows and NB vectors of columns starting at c0: r = h·W and y = (h⊙G)·W in one pass over W, then
/// P = 1 ⊘ (r + 1e-20), gx = y ⊙ P, q = x̂ ⊙ P, z = −q ⊙ gx (negated for the GW update). dot[r] collects gx ⊙ x̂ of row
/// r over the column blocks (set at c0 = 0): its sum is the dot product the patch normalisation's backward needs.
/// WithPatchNorm: the call covers whole rows (c0 = 0, NB·L = Ip) and gx is stored already taken back through the
/// patch normalisation, gx ← (gx − Σ gx⊙x̂) / (patch_sum[r] + 1e-19), without a second pass over it.
template <class T, std::size_t MR, std::size_t NB, bool WithPatchNorm = false>
inline void backward_rows(const nmf_weights<T>& wts, const T* hp, const T* hgp, std::size_t Hp, const T* xhat, T* gx,
                          T* q, T* z, std::size_t c0, xsimd::batch<T>* dot, const T* patch_sum = nullptr)
{
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size;
    const std::size_t Ip = wts.ip;
    batch ar[MR][NB], ag[MR][NB];
    for (std::size_t r = 0; r < MR; ++r)
        for (std::size_t j = 0; j < NB; ++j)
            ar[r][j] = ag[r][j] = batch(T(0));
    for (std::size_t k = 0; k < wts.h; ++k) {
        batch b[NB];
#pragma GCC unroll 8
        for (std::size_t j = 0; j < NB; ++j) {
            b[j] = batch::load_aligned(wts.w.data() + k * wts.ldw + c0 + j * L);
            keep_in_register(b[j]);  // loaded once, used 2·MR times
        }
#pragma GCC unroll 16
        for (std::size_t r = 0; r < MR; ++r) {
            const batch hv(hp[r * Hp + k]), gv(hgp[r * Hp + k]);
#pragma GCC unroll 8
            for (std::size_t j = 0; j < NB; ++j) {
                ar[r][j] = xsimd::fma(hv, b[j], ar[r][j]);
                ag[r][j] = xsimd::fma(gv, b[j], ag[r][j]);
            }
        }
    }
    const batch eps(T(1e-20));
#pragma GCC unroll 16
    for (std::size_t r = 0; r < MR; ++r) {
#pragma GCC unroll 8
        for (std::size_t j = 0; j < NB; ++j) {
            const std::size_t at = r * Ip + c0 + j * L;
            const batch p = refined_reciprocal(ar[r][j] + eps);
            const batch g = ag[r][j] * p;
            const batch xv = batch::load_unaligned(xhat + at), qv = xv * p;
            if constexpr (WithPatchNorm)
                ag[r][j] = g;
            else
                g.store_unaligned(gx + at);
            qv.store_aligned(q + at);
            xsimd::fnma(qv, g, batch(T(0))).store_aligned(z + at);
            dot[r] = (c0 == 0 && j == 0) ? g * xv : xsimd::fma(g, xv, dot[r]);
        }
        if constexpr (WithPatchNorm) {
            const patch_norm_backward<T> back(dot[r], patch_sum[r]);
#pragma GCC unroll 8
            for (std::size_t j = 0; j < NB; ++j)
                back(ag[r][j]).store_unaligned(gx + r * Ip + j * L);
        }
    }
}

} // namespace detail

namespace detail {
/// Whether GW is accumulated transposed, as GWᵀ [I × Hp] with vectors along H and the x̂ columns broadcast, rather
/// than as [H × Ip] with vectors along the x̂ columns. Short patches waste lanes in the padding columns (I = 25 is
/// two vectors of 16, 32 columns) that the transposed form never multiplies, so it is taken when it needs fewer
/// vector FMAs: I·⌈H/L⌉ < H·⌈I/L⌉. Equal counts (I and H multiples of the lanes) keep the direct form.
template <class T>
bool backward_gw_transposed(const nmf_weights<T>& wts)
{
    constexpr std::size_t L = xsimd::batch<T>::size;
    return wts.i * (wts.hp / L) < wts.h * (wts.ip / L);
}

/// Size of one GW accumulator: [H × Ip], or [I × Hp] when transposed.
template <class T>
std::size_t backward_gw_size(const nmf_weights<T>& wts)
{
    return backward_gw_transposed(wts) ? wts.i * wts.hp : wts.h * wts.ip;
}

/// Asks for the cache lines of [p, p + count) to be loaded (a hint; no effect on results).
template <class T>
inline void prefetch_lines(const T* p, std::size_t count)
{
    constexpr std::size_t line = 64 / sizeof(T);
    for (std::size_t i = 0; i < count; i += line)
        __builtin_prefetch(p + i);
}

/// The rows [first, last) (first a multiple of 4) of nmf_backward_approx; GW of these rows is written to gw_acc:
/// [H × Ip], or GWᵀ [I × Hp] (columns < H are meaningful) if backward_gw_transposed(wts). x̂ rows come from the
/// matrix `xhat` if it is given, else block by block from `source(first_row, count, dst)` (see
/// nmf_forward_streamed). gx rows go to `gx` when it is given, else to a per-thread block buffer; either way
/// `sink(first_row, count, gx_rows)` is called once per block for the block's rows (count ≥ 1), in row order, while
/// they are still in cache.
template <class T>
void nmf_backward_approx_rows(const nmf_weights<T>& wts, const T* xhat, row_source<T> source, const T* h, const T* g,
                              std::size_t rows, std::size_t first, std::size_t last, T* gx, T* gw_acc,
                              const T* patch_sum, row_sink<T> sink)
{
    using batch = xsimd::batch<T>;
    using lay = nmf_layout<T>;
    constexpr std::size_t L = batch::size;
    // backward_rows keeps two MR × NB sets of accumulators (r and y), NB vectors of W and two broadcasts: 4 × 3
    // (24 + 5) with 32 registers, 3 × 2 (12 + 4) with 16 (measured fastest on AVX2 of 3 × 2, 2 × 3 and 4 × 3)
    constexpr std::size_t MR = gemm_config<T>::wide_registers ? 4 : 3, NB = gemm_config<T>::wide_registers ? 3 : 2;
    constexpr std::size_t block_rows = 4 * lay::tile_rows;  // rows per GW update (K = 2·block_rows)
    static_assert(block_rows % MR == 0);
    const std::size_t H = wts.h, Ip = wts.ip;
    const std::size_t Hq = wts.hp;  // row stride of the h blocks; columns ≥ H stay zero
    const bool transposed = backward_gw_transposed(wts);
    // at = [h⊙G; h] for the block (2·block_rows × Hq): the h half feeds backward_rows, and read transposed the
    // whole is the A operand of the GW update, whose B operand [Qx; −Z] carries the minus sign of eq. (2)
    // Padding columns of at (≥ H) and xb (≥ I) must be zero; nothing below writes them, so the buffers are zeroed
    // only when the layout changes (not per call: a one-row call would pay for 48 rows)
    thread_local nmf_backward_scratch<T> s;
    if (s.at_h != H || s.at_stride != Hq) {
        s.at.assign(2 * block_rows * Hq, T(0));
        s.at_h = H;
        s.at_stride = Hq;
    }
    s.qz.resize(2 * block_rows * Ip);  // every row the GW update reads is written first
    if (gx == nullptr)
        s.gxb.resize(block_rows * Ip);
    if (xhat == nullptr && (s.xb_i != wts.i || s.xb_stride != Ip)) {
        s.xb.assign(block_rows * Ip, T(0));  // the source writes columns [0, I) only
        s.xb_i = wts.i;
        s.xb_stride = Ip;
    }
    T* hgp = s.at.data();
    T* q = s.qz.data();
    for (std::size_t b0 = first; b0 < last; b0 += block_rows) {
        // rows of this block (any number: the last block of a task may be short, and no padding rows are made); h
        // and −Z follow h⊙G and Qx directly, so the GW update runs over K = 2·in_block rows with no gap
        const std::size_t in_block = std::min(block_rows, last - b0);
        T* hp = hgp + in_block * Hq;
        T* z = q + in_block * Ip;
        T* gxr = gx != nullptr ? gx + b0 * Ip : s.gxb.data();
        const T* xb = xhat != nullptr ? xhat + b0 * Ip : s.xb.data();
        if (xhat == nullptr)
            source(b0, in_block, s.xb.data());
        // h and h⊙G of the block's rows into at: one pass over all of them when at's rows are packed (Hq = H,
        // e.g. H = 32), else row by row (for a 5×5 single-channel layer row by row took 8 % of the backward, flat 4 %)
        auto copy_h = [&](const T* hs, const T* gs, T* hr, T* gr, std::size_t n) {
            std::size_t k = 0;
            for (; k + L <= n; k += L) {
                const batch hv = batch::load_unaligned(hs + k);
                hv.store_unaligned(hr + k);
                (hv * batch::load_unaligned(gs + k)).store_unaligned(gr + k);
            }
            for (; k < n; ++k) {
                hr[k] = hs[k];
                gr[k] = hs[k] * gs[k];
            }
        };
        if (Hq == H)
            copy_h(h + b0 * H, g + b0 * H, hp, hgp, in_block * H);
        else
            for (std::size_t r = 0; r < in_block; ++r)
                copy_h(h + (b0 + r) * H, g + (b0 + r) * H, hp + r * Hq, hgp + r * Hq, H);
        // rows in groups of MRg: r = hW and (h⊙G)W for the group, then its patch-L1 backward
        auto row_group = [&]<std::size_t MRg, std::size_t NBg>(std::size_t r0) {
            // the matching rows of the next block are requested from memory while this block computes: a few lines
            // per group of rows, so that the requests do not pile up
            if (const std::size_t next = b0 + in_block + r0; next < rows) {
                const std::size_t n = std::min(MRg, rows - next);
                prefetch_lines(h + next * H, n * H);
                prefetch_lines(g + next * H, n * H);
                if (xhat != nullptr)
                    prefetch_lines(xhat + next * Ip, n * Ip);
            }
            batch dot[MRg];
            for (auto& d : dot)
                d = batch(T(0));
            // rows that fit one column block are taken back through the patch normalisation in registers
            const bool fused = patch_sum != nullptr && Ip <= NBg * L;
            detail::for_column_blocks<T, MRg, NBg>(Ip, [&](auto nbc, std::size_t c0) {
                constexpr std::size_t nb = decltype(nbc)::value;
                const T* rows_h = hp + r0 * Hq;
                const T* rows_hg = hgp + r0 * Hq;
                if (fused)
                    detail::backward_rows<T, MRg, nb, true>(wts, rows_h, rows_hg, Hq, xb + r0 * Ip, gxr + r0 * Ip,
                                                            q + r0 * Ip, z + r0 * Ip, c0, dot, patch_sum + b0 + r0);
                else
                    detail::backward_rows<T, MRg, nb>(wts, rows_h, rows_hg, Hq, xb + r0 * Ip, gxr + r0 * Ip,
                                                      q + r0 * Ip, z + r0 * Ip, c0, dot);
            });
            // back through the patch normalisation while the rows are in cache: gx ← (gx − Σ gx⊙x̂) / Σ_raw
            if (patch_sum != nullptr && !fused)
                for (std::size_t r = 0; r < MRg; ++r) {
                    T* gr = gxr + (r0 + r) * Ip;
                    const detail::patch_norm_backward<T> back(dot[r], patch_sum[b0 + r0 + r]);
                    for (std::size_t i = 0; i < Ip; i += L)
                        back(batch::load_unaligned(gr + i)).store_unaligned(gr + i);
                }
        };
        std::size_t r0 = 0;
        // narrow rows (at most two vectors, e.g. 5×5 single-channel patches) with 32 registers: 6 rows at a time
        // (24 accumulators) load W and broadcast less per FMA than 4
        if constexpr (gemm_config<T>::wide_registers)
            if (Ip <= 2 * L)
                for (; r0 + 6 <= in_block; r0 += 6)
                    row_group.template operator()<6, 2>(r0);
        for (; r0 + MR <= in_block; r0 += MR)
            row_group.template operator()<MR, NB>(r0);
        // the rest of a short block, in wider column blocks: fewer rows leave registers for more columns, and a
        // single row sweeps W in longer runs (Zen 4, AVX-512, I = 1024, H = 96 at batch 1: the whole backward in
        // 0.96 of the time)
        constexpr std::size_t NB2 = gemm_config<T>::wide_registers ? 5 : 2;
        constexpr std::size_t NB1 = gemm_config<T>::wide_registers ? 8 : 4;
        for (; r0 + 2 <= in_block; r0 += 2)
            row_group.template operator()<2, NB2>(r0);
        if (r0 < in_block)
            row_group.template operator()<1, NB1>(r0);
        sink(b0, in_block, static_cast<const T*>(gxr));
        // GW update on one tile: acc = Σ_k A[r + k·ak] · B[k·ldb + c0 …] over the block's K = 2·in_block rows of
        // [h⊙G; h] and [Qx; −Z], written to rows of `dst` (row stride ld) by the task's first block, added after
        auto gw_tile = [&]<std::size_t MRg, std::size_t NBg>(const T* A, std::size_t ak, const T* B, std::size_t ldb,
                                                             std::size_t cols, T* dst, std::size_t ld) {
            detail::for_column_blocks<T, MRg, NBg>(cols, [&](auto nbc, std::size_t c0) {
                constexpr std::size_t nb = decltype(nbc)::value;
                batch acc[MRg][nb];
                detail::bcast_tile<T, MRg, nb>(2 * in_block, A, 1, B + c0, ldb, acc, ak);
                // fully unrolled, as every loop over acc: an index the compiler cannot fold keeps acc in memory
#pragma GCC unroll 16
                for (std::size_t r = 0; r < MRg; ++r)
#pragma GCC unroll 8
                    for (std::size_t j = 0; j < nb; ++j) {
                        T* d = dst + r * ld + c0 + j * L;
                        (b0 == first ? acc[r][j] : batch::load_aligned(d) + acc[r][j]).store_aligned(d);
                    }
            });
        };
        if (transposed) {
            // GWᵀ tiles of up to MRT x̂ columns × up to NBT vectors of H: 13 × 2 with 32 registers (26
            // accumulators), 6 × 2 with 16 (12 accumulators; 4 × 3 left H = 32's fourth vector to 4 × 1 tiles, whose
            // 4 accumulators wait on the FMA latency)
            constexpr std::size_t MRT = gemm_config<T>::wide_registers ? 13 : 6;
            constexpr std::size_t NBT = 2;
            const std::size_t I = wts.i, Hp = wts.hp;
            auto columns = [&]<std::size_t MRc>(std::size_t i0) {  // x̂ columns broadcast, vectors along H
                gw_tile.template operator()<MRc, NBT>(s.qz.data() + i0, Ip, s.at.data(), Hq, Hp, gw_acc + i0 * Hp, Hp);
            };
            std::size_t i0 = 0;
            if constexpr (MRT > 4) {
                // ⌈I/MRT⌉ tiles of nearly equal height (I = 25: 13 + 12), so no thin leftover tile wastes loads.
                // For I ≥ MRT the heights lie in [⌈MRT/2⌉, MRT] (the lowest at I = MRT + 1), the ⌊MRT/2⌋ + 1
                // instantiations below; I < MRT falls through to the tiles of 4 and 1
                if (I >= MRT) {
                    const std::size_t tiles = (I + MRT - 1) / MRT;
                    for (std::size_t t = 0; t < tiles; ++t) {
                        const std::size_t height = I / tiles + (t < I % tiles ? 1 : 0);
                        [&]<std::size_t... M>(std::index_sequence<M...>) {
                            ((height == MRT - M ? (columns.template operator()<MRT - M>(i0), 0) : 0), ...);
                        }(std::make_index_sequence<MRT / 2 + 1>{});
                        i0 += height;
                    }
                }
            }
            for (; i0 + 4 <= I; i0 += 4)
                columns.template operator()<4>(i0);
            for (; i0 < I; ++i0)
                columns.template operator()<1>(i0);
            continue;
        }
        // GW tiles of up to 8 rows × 3 vectors with AVX-512's 32 registers (24 accumulators: each pass over [Qx; Z]
        // serves 8 rows of GW), 4 × 3 with 16 registers; H rows in tiles of nearly equal height (H = 10: 5 + 5),
        // so GW has no padding rows and no thin last tile
        constexpr std::size_t MRW = gemm_config<T>::wide_registers ? 8 : 4, NBW = 3;
        auto rows_of_gw = [&](auto height, std::size_t k0) {  // h columns broadcast, vectors along x̂ columns
            gw_tile.template operator()<decltype(height)::value, NBW>(s.at.data() + k0, Hq, s.qz.data(), Ip, Ip,
                                                                      gw_acc + k0 * Ip, Ip);
        };
        if (H % MRW == 0)  // the same tiles as the balanced split, but without its dispatch over heights: through
                           // it g++ compiled the full tiles worse (Zen 4, AVX-512: L3 backward at batch 1 1.17×)
            for (std::size_t k0 = 0; k0 < H; k0 += MRW)
                rows_of_gw(std::integral_constant<std::size_t, MRW>{}, k0);
        else
            detail::for_balanced_blocks<MRW>(H, rows_of_gw);
    }
}

/// Rows per task: whole groups of `group_rows` rows (a task never splits a group) and a multiple of 4 rows, about
/// nmf_backward_task_rows in all. Depends only on group_rows, never on the thread count.
inline std::size_t backward_task_rows(std::size_t group_rows)
{
    std::size_t groups = std::max<std::size_t>(1, nmf_backward_task_rows / group_rows);
    while (groups * group_rows % 4 != 0)
        ++groups;
    return groups * group_rows;
}

template <class T>
void nmf_backward_approx_tasks(const nmf_weights<T>& wts, const T* xhat, row_source<T> source, const T* h,
                               const T* g, std::size_t rows, std::size_t group_rows, T* gx, T* gw,
                               nmf_backward_scratch<T>& s, const T* patch_sum, row_sink<T> sink)
{
    const std::size_t H = wts.h, I = wts.i, Ip = wts.ip, Hp = wts.hp;
    const std::size_t task_rows = backward_task_rows(group_rows);
    const std::size_t tasks = (rows + task_rows - 1) / task_rows;
    const bool transposed = backward_gw_transposed(wts);
    // one task, the direct layout and an aligned gw: GW straight into gw
    if (tasks == 1 && !transposed && reinterpret_cast<std::uintptr_t>(gw) % 64 == 0) {
        nmf_backward_approx_rows<T>(wts, xhat, source, h, g, rows, 0, rows, gx, gw, patch_sum, sink);
        return;
    }
    s.partials.resize(tasks);
    parallel_for(tasks, [&](std::size_t task) {
        const std::size_t first = task * task_rows;
        const std::size_t last = std::min(rows, first + task_rows);
        s.partials[task].resize(backward_gw_size(wts));  // the task's first block overwrites it
        nmf_backward_approx_rows<T>(wts, xhat, source, h, g, rows, first, last, gx, s.partials[task].data(),
                                    patch_sum, sink);
    });
    // partial GWs summed in task order: the result does not depend on the thread count
    if (transposed) {
        // summed in place in the first, a whole buffer at a time (element by element, the reads strided across the
        // tasks' buffers — 192 at batch 128 of a 28×28 map — missed L1), then transposed into gw
        T* sum = s.partials[0].data();
        for (std::size_t t = 1; t < tasks; ++t)
            for (std::size_t i = 0; i < I * Hp; ++i)
                sum[i] += s.partials[t][i];
        for (std::size_t k = 0; k < H; ++k)
            for (std::size_t i = 0; i < Ip; ++i)
                gw[k * Ip + i] = i < I ? sum[i * Hp + k] : T(0);  // padding columns of gw are zero
        return;
    }
    std::copy(s.partials[0].begin(), s.partials[0].begin() + H * Ip, gw);
    for (std::size_t t = 1; t < tasks; ++t)
        for (std::size_t i = 0; i < H * Ip; ++i)
            gw[i] += s.partials[t][i];
}
} // namespace detail

/// Approximate gradient (eq. (1), (2)), fused over blocks of rows like the forward: per group of MR rows, r = hW and
/// (h⊙G)W come from one pass over W, and P, GX, Qx = X̂⊙P and Z = Qx⊙GX are formed in registers; per block of
/// `block_rows` rows, GW += [h⊙G; h]ᵀ · [Qx; −Z] is accumulated with the broadcast micro-kernel.
/// xhat [pad_rows(rows) × Ip]; h, g [rows × H]; gx [pad_rows(rows) × Ip] (rows ≥ `rows` unspecified) and gw [H × Ip]
/// are overwritten.
/// If `patch_sum` is given (Σ of each raw patch before its L1 normalisation), gx is returned already taken back
/// through that normalisation: gx ← (gx − Σ gx ⊙ x̂) / (patch_sum + 1e-19), while the row is still in cache.
template <class T>
void nmf_backward_approx(const nmf_weights<T>& wts, const T* xhat, const T* h, const T* g, std::size_t rows, T* gx,
                         T* gw, nmf_backward_scratch<T>& s, const T* patch_sum = nullptr)
{
    auto no_source = [](std::size_t, std::size_t, T*) {};
    auto no_sink = [](std::size_t, std::size_t, const T*) {};
    detail::nmf_backward_approx_tasks<T>(wts, xhat, no_source, h, g, rows, 1, gx, gw, s, patch_sum, no_sink);
}

/// The same gradient without an x̂ or a gx matrix. x̂ rows are produced block by block by
/// `source(first_row, count, dst)` as in nmf_forward_streamed (it must give the rows the forward saw, and write
/// columns [0, I) only: the buffer's padding columns are zeroed once and must stay zero); each block
/// of gx rows, once computed (and taken back through the patch normalisation when `patch_sum` is given), is handed
/// to `sink(first_row, count, gx_rows)` — row stride Ip — and then overwritten. Rows come in groups of
/// `group_rows` (the positions of one sample); all rows of a group go to the same task, in order, so a sink that
/// scatters a group into that sample's part of dx (col2im) needs no locks and sums in a fixed order. Tasks run in
/// parallel; each task's source and sink calls are sequential.
template <class T>
void nmf_backward_approx_streamed(const nmf_weights<T>& wts, std::type_identity_t<row_source<T>> source, const T* h,
                                  const T* g, std::size_t rows, std::size_t group_rows, T* gw,
                                  nmf_backward_scratch<T>& s, const T* patch_sum,
                                  std::type_identity_t<row_sink<T>> sink)
{
    detail::nmf_backward_approx_tasks<T>(wts, static_cast<const T*>(nullptr), source, h, g, rows, group_rows,
                                         static_cast<T*>(nullptr), gw, s, patch_sum, sink);
}

} // namespace nmfdsl::kernels
