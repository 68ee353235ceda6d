#pragma once
/// @file im2col.hpp
/// Patch extraction for channels-last maps. The input is [N, H, W, C]; a window of KH×KW with stride S yields
/// OH×OW = valid_extent(H, KH, S) × valid_extent(W, KW, S) positions. The column matrix is [N·OH·OW, KH·KW·C] with
/// feature order (ky, kx, c) — channel fastest — so each (sample, ky) copies one contiguous run of KW·C values.
/// The naive twins are nmfdsl::testing::naive_im2col / naive_col2im.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <xsimd/xsimd.hpp>

#include "../core/parallel.hpp"
#include "../core/params.hpp"
#include "../core/shape.hpp"
#include "simd.hpp"

namespace nmfdsl::kernels {

struct window {
    std::size_t h, w, c;      ///< input extents
    std::size_t kh, kw, stride;
    constexpr std::size_t oh() const { return valid_extent(h, kh, stride); }
    constexpr std::size_t ow() const { return valid_extent(w, kw, stride); }
    constexpr std::size_t patch() const { return kh * kw * c; }
};

/// A window fixed at compile time. The row-range functions below take either a `window` or a `fixed_window<G>{}`;
/// with the latter the compiler sees the short runs of small kernels (5 values for a 5×5 single-channel window) and
/// unrolls them — the CNMF layers' case.
template <window G>
struct fixed_window {
    static constexpr window value = G;
};

namespace detail {
constexpr const window& window_of(const window& g) { return g; }
template <window G>
constexpr const window& window_of(fixed_window<G>)
{
    return fixed_window<G>::value;
}

/// The extents the run loops need: KH runs per patch, KW·C values per run, W·C values per input line. For a
/// fixed_window they are std::integral_constant, so the loops over a run have a constant trip count that the
/// compiler unrolls; with a count known only at run time g++ called memcpy for every 5-value run (a tenth of the
/// approximate backward of a 5×5 single-channel layer, AVX2).
template <class KH, class Run, class Line>
struct run_extents {
    KH kh;
    Run run;
    Line line;
};
inline run_extents<std::size_t, std::size_t, std::size_t> runs_of(const window& w)
{
    return {w.kh, w.kw * w.c, w.w * w.c};
}
template <window G>
constexpr auto runs_of(fixed_window<G>)
{
    using c = std::size_t;
    return run_extents<std::integral_constant<c, G.kh>, std::integral_constant<c, G.kw * G.c>,
                       std::integral_constant<c, G.w * G.c>>{};
}

/// dst[i] = src[i] (Add = false) or dst[i] += src[i] (Add = true) for i < n; the buffers do not overlap. The runs of
/// small windows are short (5 values for a 5×5 single-channel window, 15 for three channels) and a scalar loop
/// would cost a load and a store per value, so with AVX-512 a run of at most 16 floats is one masked vector
/// operation (masked-off lanes are neither read nor written, so nothing outside the run is touched).
template <bool Add, class T>
inline void run_op(T* __restrict dst, const T* __restrict src, std::size_t n)
{
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
        if (n <= 16) {
            const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(m, src);
            if constexpr (Add)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, dst));
            _mm512_mask_storeu_ps(dst, m, v);
            return;
        }
    }
#endif
    for (std::size_t i = 0; i < n; ++i) {
        if constexpr (Add)
            dst[i] += src[i];
        else
            dst[i] = src[i];
    }
}

/// The distance between consecutive column rows: row_stride, or the patch when row_stride is 0 (the default).
inline std::size_t row_length(std::size_t row_stride, std::size_t patch)
{
    return row_stride ? row_stride : patch;
}

/// Calls f(pointer to the row in cols, pointer to the window's top-left [y][x][0] in image) for the column rows
/// [first, first + count) in order; cols points at row `first`.
template <class Geometry, class T, class U, class F>
inline void for_patch_rows(const Geometry& geo, T* cols, std::size_t first, std::size_t count, U* image,
                           std::size_t row_stride, F&& f)
{
    const window& w = window_of(geo);
    const std::size_t ow = w.ow(), oh = w.oh(), positions = oh * ow;
    const std::size_t patch = row_length(row_stride, w.patch());
    // (sample, oy, ox) of the first row, then stepped along
    std::size_t n = first / positions, oy = first % positions / ow, ox = first % ow;
    for (std::size_t i = 0; i < count; ++i) {
        f(cols + i * patch, image + ((n * w.h + oy * w.stride) * w.w + ox * w.stride) * w.c);
        if (++ox == ow) {
            ox = 0;
            if (++oy == oh) {
                oy = 0;
                ++n;
            }
        }
    }
}

/// Calls f(r, rows, n, oy, ox) for each output line that the column rows [first, first + count) reach, in order:
/// rows [r, r + rows) of the range are the positions ox … ox + rows − 1 of output line oy of sample n.
template <window G, class F>
inline void for_output_lines(std::size_t first, std::size_t count, F&& f)
{
    constexpr std::size_t ow = G.ow(), oh = G.oh(), positions = oh * ow;
    std::size_t n = first / positions, oy = first % positions / ow, ox = first % ow;
    for (std::size_t r = 0; r < count;) {
        const std::size_t rows = std::min(count - r, ow - ox);  // the rest of this output line
        f(r, rows, n, oy, ox);
        r += rows;
        ox = 0;
        if (++oy == oh) {
            oy = 0;
            ++n;
        }
    }
}

/// Whether im2col_rows copies the runs of a compile-time window as whole vectors: each run is at most one vector
/// (KW·C ≤ L) and there is no masked store to copy it exactly (AVX-512 floats have one, see run_op). A run of 5
/// floats is then one load and one store of 8 instead of 5 of each (AVX2: the x̂ rows that a 5×5 single-channel
/// layer's approximate backward remakes took 8 % of it, copied value by value; 4 % with whole vectors).
template <class Geometry, class T>
constexpr bool whole_vector_runs()
{
    if constexpr (std::is_same_v<Geometry, window>) {
        return false;
    } else {
#if defined(__AVX512F__)
        if constexpr (std::is_same_v<T, float>)
            return false;
#endif
        return Geometry::value.kw * Geometry::value.c <= xsimd::batch<T>::size;
    }
}

/// im2col_rows by whole vectors (whole_vector_runs): run ky is stored as L values at its place in the row, in
/// increasing ky, so the L − run values it carries past its end are overwritten by run ky + 1; the last run's extra
/// lanes are set to zero. Reading L values where the run has fewer stays inside the image unless a run ends near
/// the end of the last sample the rows touch: those rows are copied value by value. Returns false, copying
/// nothing, when the last run's vector would pass the end of a row (row_stride < (KH − 1)·run + L).
template <window G, class T>
inline bool im2col_rows_by_vectors(const T* x, std::size_t first, std::size_t count, T* cols, std::size_t row_stride)
{
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size, run = G.kw * G.c, line = G.w * G.c, last = (G.kh - 1) * run;
    const std::size_t patch = row_length(row_stride, G.patch());
    if (count == 0 || last + L > patch)
        return false;
    constexpr std::size_t positions = G.oh() * G.ow(), map = G.h * line;
    const T* readable_end = x + ((first + count - 1) / positions + 1) * map;  // the end of the last sample's map
    alignas(64) static constexpr auto lane_index = [] {
        std::array<T, L> a{};
        for (std::size_t l = 0; l < L; ++l)
            a[l] = T(l);
        return a;
    }();
    const auto in_run = batch::load_aligned(lane_index.data()) < batch(T(run));
    for_patch_rows(fixed_window<G>{}, cols, first, count, x, row_stride, [&](T* row, const T* corner) {
        if (corner + (G.kh - 1) * line + L <= readable_end) {
#pragma GCC unroll 16
            for (std::size_t ky = 0; ky + 1 < G.kh; ++ky)
                batch::load_unaligned(corner + ky * line).store_unaligned(row + ky * run);
            xsimd::select(in_run, batch::load_unaligned(corner + (G.kh - 1) * line), batch(T(0)))
                .store_unaligned(row + last);
        } else {
            for (std::size_t ky = 0; ky < G.kh; ++ky)
                run_op<false>(row + ky * run, corner + ky * line, run);
        }
    });
    return true;
}

template <class Geometry, class T>
inline void im2col_rows(const Geometry& geo, const T* x, std::size_t first, std::size_t count, T* cols,
                        std::size_t row_stride)
{
    if constexpr (whole_vector_runs<Geometry, T>())
        if (im2col_rows_by_vectors<Geometry::value>(x, first, count, cols, row_stride))
            return;
    const auto e = runs_of(geo);
    for_patch_rows(geo, cols, first, count, x, row_stride, [&](T* row, const T* corner) {
        for (std::size_t ky = 0; ky < e.kh; ++ky)
            run_op<false>(row + ky * e.run, corner + ky * e.line, e.run);
    });
}

#if defined(__AVX512F__)
/// Whether col2im_rows_in_lines serves a window: an input line (W·C floats), a patch and a run (KW·C) each fit in
/// two vectors of 16 floats, and KH ≤ 8 (2·KH line accumulators). The 28×28 single-channel maps of Fashion-MNIST
/// with 5×5 windows are the case it is for.
template <window G>
inline constexpr bool col2im_in_lines = G.w * G.c <= 32 && G.patch() <= 32 && G.kw * G.c <= 16 && G.kh <= 8;

/// col2im_rows for such windows, float, AVX-512. Neighbouring positions overlap in dx, and adding each run with a
/// masked read-modify-write makes every position wait on the previous one's stores (a masked store does not
/// forward to a load that overlaps it partly). Here the rows of one output line (same sample and oy, consecutive
/// ox) are summed in registers instead: run ky of a row is moved to lanes [ox·S·C, ox·S·C + KW·C) of line
/// accumulator ky by a two-source permute, and each of the KH input lines is added to dx once per output line.
/// The sums per output line are then added in line order, so the rounding differs from the row-by-row form.
template <window G>
inline void col2im_rows_in_lines(const float* cols, std::size_t first, std::size_t count, float* dx,
                                 std::size_t row_stride)
{
    constexpr std::size_t run = G.kw * G.c, line = G.w * G.c;
    const std::size_t patch = row_length(row_stride, G.patch());
    constexpr auto low_lanes = [](std::size_t n) { return static_cast<__mmask16>(n >= 16 ? 0xffffu : (1u << n) - 1u); };
    constexpr __mmask16 patch_lo = low_lanes(G.patch()), patch_hi = low_lanes(G.patch() > 16 ? G.patch() - 16 : 0);
    constexpr __mmask16 line_lo = low_lanes(line);
    [[maybe_unused]] constexpr __mmask16 line_hi = low_lanes(line > 16 ? line - 16 : 0);  // lines over 16 only
    constexpr std::uint64_t run_mask = (std::uint64_t(1) << run) - 1;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i sixteen = _mm512_set1_epi32(16);
    for_output_lines<G>(first, count, [&](std::size_t i, std::size_t rows, std::size_t n, std::size_t oy,
                                          std::size_t ox) {
        __m512 lo[G.kh], hi[G.kh];
        for (std::size_t ky = 0; ky < G.kh; ++ky)
            lo[ky] = hi[ky] = _mm512_setzero_ps();
        for (std::size_t j = 0; j < rows; ++j) {
            const float* row = cols + (i + j) * patch;
            const __m512 g0 = _mm512_maskz_loadu_ps(patch_lo, row);
            const __m512 g1 = patch_hi ? _mm512_maskz_loadu_ps(patch_hi, row + 16) : _mm512_setzero_ps();
            const std::size_t shift = (ox + j) * G.stride * G.c;  // first lane of the runs in their lines
            const std::uint64_t lanes = run_mask << shift;
            const __mmask16 to_lo = static_cast<__mmask16>(lanes), to_hi = static_cast<__mmask16>(lanes >> 16);
            // lane l of accumulator ky takes element l − shift + ky·run of the row (bit 4 picks g1)
            __m512i from = _mm512_sub_epi32(lane, _mm512_set1_epi32(static_cast<int>(shift)));
#pragma GCC unroll 8
            for (std::size_t ky = 0; ky < G.kh; ++ky) {
                if (to_lo)
                    lo[ky] = _mm512_add_ps(lo[ky], _mm512_maskz_permutex2var_ps(to_lo, g0, from, g1));
                if constexpr (line > 16)
                    if (to_hi)
                        hi[ky] = _mm512_add_ps(
                            hi[ky], _mm512_maskz_permutex2var_ps(to_hi, g0, _mm512_add_epi32(from, sixteen), g1));
                from = _mm512_add_epi32(from, _mm512_set1_epi32(static_cast<int>(run)));
            }
        }
        float* top = dx + (n * G.h + oy * G.stride) * line;  // input line oy·S of sample n
        for (std::size_t ky = 0; ky < G.kh; ++ky) {
            float* d = top + ky * line;
            _mm512_mask_storeu_ps(d, line_lo, _mm512_add_ps(lo[ky], _mm512_maskz_loadu_ps(line_lo, d)));
            if constexpr (line > 16)
                _mm512_mask_storeu_ps(d + 16, line_hi, _mm512_add_ps(hi[ky], _mm512_maskz_loadu_ps(line_hi, d + 16)));
        }
    });
}
#endif

#if defined(__AVX__) && !defined(__AVX512F__)
/// Whether col2im_rows_transposed serves a window: one channel, stride 1, input lines of at most 32 floats and
/// patches of at most 32 (the 28×28 maps of Fashion-MNIST with 5×5 windows are the case it is for).
template <window G>
inline constexpr bool col2im_transposed = G.c == 1 && G.stride == 1 && G.w <= 32 && G.patch() <= 32;

/// col2im_rows for such windows, float, AVX / AVX2, where the row-by-row form adds every value to dx on its own (a
/// scalar read-modify-write; neighbouring positions overlap in dx, so whole vectors would stall on stores that
/// forward only in part). The rows of one output line (same sample and oy, consecutive ox from ox0) are transposed
/// by 8 × 8 blocks into columns colT[i][8 + j] = row j's value i, with zeros around; then input line oy + ky gets,
/// at ox0 + t,  Σ_kx colT[ky·KW + kx][8 + t − kx]  — vectors along t, one addition to dx per vector. The sums per
/// output line are added in line order, so the rounding differs from the row-by-row form. Returns false, adding
/// nothing, when the rows are not readable up to the next multiple of 8 columns (row_stride < that multiple).
template <window G>
inline bool col2im_rows_transposed(const float* cols, std::size_t first, std::size_t count, float* dx,
                                   std::size_t row_stride)
{
    constexpr std::size_t W = G.w, KW = G.kw, patch = G.patch();
    constexpr std::size_t groups = (patch + 7) / 8;  // blocks of 8 columns transposed
    const std::size_t stride = row_length(row_stride, patch);
    if (stride < groups * 8)
        return false;
    constexpr std::size_t span = 8 + 32;             // a column: 8 zeros, then up to 32 rows (ow ≤ W ≤ 32)
    alignas(32) float colT[groups * 8][span];
    alignas(32) float part[8][groups * 8];  // the last rows of a line when fewer than 8 remain, zero padded
    for (std::size_t i = 0; i < patch; ++i)
        _mm256_store_ps(colT[i], _mm256_setzero_ps());
    std::size_t zeroed_from = span;  // colT[i][zeroed_from, span) is zero for i < patch
    for_output_lines<G>(first, count, [&](std::size_t r0, std::size_t rows, std::size_t n, std::size_t oy,
                                          std::size_t ox) {
        const std::size_t blocks = (rows + 7) / 8;
        for (std::size_t b = 0; b < blocks; ++b) {
            const float* src = cols + (r0 + 8 * b) * stride;
            std::size_t ld = stride;
            if (8 * b + 8 > rows) {
                const std::size_t have = rows - 8 * b;
                for (std::size_t j = 0; j < 8; ++j)
                    for (std::size_t i = 0; i < groups * 8; ++i)
                        part[j][i] = j < have ? src[j * stride + i] : 0.f;
                src = part[0];
                ld = groups * 8;
            }
            for (std::size_t gcol = 0; gcol < groups; ++gcol)
                transpose_8x8(src + 8 * gcol, ld, &colT[8 * gcol][8 + 8 * b], span);
        }
        for (std::size_t i = 0; i < patch; ++i)  // rows this line does not have: zero (once, or set by a longer line)
            for (std::size_t j = 8 + 8 * blocks; j < zeroed_from; j += 8)
                _mm256_store_ps(&colT[i][j], _mm256_setzero_ps());
        zeroed_from = 8 + 8 * blocks;
        const std::size_t extent = rows + KW - 1;  // input columns ox .. ox + extent − 1 receive values
        float* top = dx + (n * G.h + oy) * W + ox;
        for (std::size_t ky = 0; ky < G.kh; ++ky)
            for (std::size_t t = 0; t < extent; t += 8) {
                __m256 acc = _mm256_loadu_ps(&colT[ky * KW][8 + t]);
                for (std::size_t kx = 1; kx < KW; ++kx)
                    acc = _mm256_add_ps(acc, _mm256_loadu_ps(&colT[ky * KW + kx][8 + t - kx]));
                float* d = top + ky * W + t;
                if (t + 8 <= extent) {
                    _mm256_storeu_ps(d, _mm256_add_ps(acc, _mm256_loadu_ps(d)));
                } else {  // the line's last values: dx past them may belong to another sample
                    alignas(32) float a[8];
                    _mm256_store_ps(a, acc);
                    for (std::size_t l = 0; l < extent - t; ++l)
                        d[l] += a[l];
                }
            }
    });
    return true;
}
#endif

template <class Geometry, class T>
inline void col2im_rows(const Geometry& geo, const T* cols, std::size_t first, std::size_t count, T* dx,
                        std::size_t row_stride)
{
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && !std::is_same_v<Geometry, window>)
        if constexpr (col2im_in_lines<Geometry::value>) {
            col2im_rows_in_lines<Geometry::value>(cols, first, count, dx, row_stride);
            return;
        }
#endif
#if defined(__AVX__) && !defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && !std::is_same_v<Geometry, window>)
        if constexpr (col2im_transposed<Geometry::value>)
            if (col2im_rows_transposed<Geometry::value>(cols, first, count, dx, row_stride))
                return;
#endif
    const auto e = runs_of(geo);
    for_patch_rows(geo, cols, first, count, dx, row_stride, [&](const T* row, T* corner) {
        for (std::size_t ky = 0; ky < e.kh; ++ky)
            run_op<true>(corner + ky * e.line, row + ky * e.run, e.run);
    });
}
} // namespace detail

/// The column rows [first, first + count) of im2col (row = n·OH·OW + oy·OW + ox), written from `cols` on (which
/// points at row `first`): cols[row][(ky·KW + kx)·C + c] = x[n][oy·S + ky][ox·S + kx][c]. `g` is a `window` or a
/// `fixed_window<G>{}`. `row_stride` (≥ patch, default patch) lets callers pad each row; the padding is left
/// untouched, except that with a compile-time window whose runs fit a vector of L values
/// (detail::whole_vector_runs) the L − KW·C columns after the patch may be set to zero.
template <class Geometry, class T>
void im2col_rows(const T* x, std::size_t first, std::size_t count, const Geometry& g, T* cols,
                 std::size_t row_stride = 0)
{
    detail::im2col_rows(g, x, first, count, cols, row_stride);
}

namespace detail {
/// f(first_row, count, offset of the first row in the column matrix) for each sample's rows, one sample per
/// parallel task: tasks touch disjoint rows and disjoint parts of the image, in a fixed order within each.
template <class Geometry, class F>
void for_each_sample(const Geometry& g, std::size_t batch, std::size_t row_stride, F&& f)
{
    const window& w = window_of(g);
    const std::size_t positions = w.oh() * w.ow(), patch = row_length(row_stride, w.patch());
    parallel_for(batch, [&](std::size_t n) { f(n * positions, positions, n * positions * patch); });
}
} // namespace detail

/// All N·OH·OW rows of the column matrix (see im2col_rows), one sample per parallel task. `g` is a `window` or a
/// `fixed_window<G>{}`.
template <class Geometry, class T>
void im2col(const T* x, std::size_t batch, const Geometry& g, T* cols, std::size_t row_stride = 0)
{
    detail::for_each_sample(g, batch, row_stride, [&](std::size_t first, std::size_t count, std::size_t at) {
        im2col_rows(x, first, count, g, cols + at, row_stride);
    });
}

/// Which rows of the column matrix hold a non-zero value: nonzero[r] = 1 if patch r (row n·OH·OW + oy·OW + ox) has
/// a value ≠ 0, else 0, for the rows of `batch` samples; -0 counts as zero, NaN as non-zero. Per sample a summed-area
/// table of the pixels with a non-zero channel answers each window in four reads: one pass over the input instead
/// of one over the K·K times larger patches. One sample per parallel task.
template <class T, class Flag>
void mark_nonzero_patches(const T* x, std::size_t batch, const window& g, Flag* nonzero)
{
    const std::size_t positions = g.oh() * g.ow(), stride = g.w + 1, map = g.h * g.w * g.c;
    parallel_for(batch, [&](std::size_t n) {
        // table[y·(W+1) + x]: the pixels of rows < y and columns < x with a non-zero channel (per thread, kept
        // between calls: assign reuses its storage)
        thread_local aligned_vector<std::uint32_t> table;
        table.assign((g.h + 1) * stride, 0);
        const T* image = x + n * map;
        for (std::size_t y = 0; y < g.h; ++y) {
            std::uint32_t in_line = 0;
            for (std::size_t col = 0; col < g.w; ++col) {
                const T* pixel = image + (y * g.w + col) * g.c;
                in_line += std::any_of(pixel, pixel + g.c, [](T v) { return v != T(0); }) ? 1 : 0;
                table[(y + 1) * stride + col + 1] = table[y * stride + col + 1] + in_line;
            }
        }
        for (std::size_t oy = 0; oy < g.oh(); ++oy)
            for (std::size_t ox = 0; ox < g.ow(); ++ox) {
                const std::size_t y0 = oy * g.stride, x0 = ox * g.stride, y1 = y0 + g.kh, x1 = x0 + g.kw;
                const std::uint32_t count = table[y1 * stride + x1] - table[y0 * stride + x1] -
                                            table[y1 * stride + x0] + table[y0 * stride + x0];
                nonzero[n * positions + oy * g.ow() + ox] = count != 0 ? Flag(1) : Flag(0);
            }
    });
}

/// The adjoint of im2col for the column rows [first, first + count) only (row = n·OH·OW + oy·OW + ox):
/// dx[n][y][x][c] += their entries, in an order fixed by (first, count) — row by row, or for small compile-time
/// windows summed per output line first (AVX-512: detail::col2im_rows_in_lines; AVX / AVX2:
/// detail::col2im_rows_transposed). `cols` points at row
/// `first`; `g` is a `window` or a `fixed_window<G>{}`.
template <class Geometry, class T>
void col2im_add_rows(const T* cols, std::size_t first, std::size_t count, const Geometry& g, T* dx,
                     std::size_t row_stride = 0)
{
    detail::col2im_rows(g, cols, first, count, dx, row_stride);
}

/// The adjoint of im2col: dx[n][y][x][c] += Σ over the patches containing (y, x) of their column entry.
/// dx is accumulated into (zero it first for a plain col2im). `g` is a `window` or a `fixed_window<G>{}`.
template <class Geometry, class T>
void col2im_add(const T* cols, std::size_t batch, const Geometry& g, T* dx, std::size_t row_stride = 0)
{
    detail::for_each_sample(g, batch, row_stride, [&](std::size_t first, std::size_t count, std::size_t at) {
        col2im_add_rows(cols + at, first, count, g, dx, row_stride);
    });
}

/// The adjoint of im2col written into dx (its prior contents are ignored): each sample's map is zeroed inside its
/// own parallel task, then accumulated as col2im_add does.
template <class Geometry, class T>
void col2im(const T* cols, std::size_t batch, const Geometry& g, T* dx, std::size_t row_stride = 0)
{
    const window& w = detail::window_of(g);
    const std::size_t map = w.h * w.w * w.c;
    detail::for_each_sample(g, batch, row_stride, [&](std::size_t first, std::size_t count, std::size_t at) {
        std::fill(dx + first / (w.oh() * w.ow()) * map, dx + (first / (w.oh() * w.ow()) + 1) * map, T(0));
        col2im_add_rows(cols + at, first, count, g, dx, row_stride);
    });
}

} // namespace nmfdsl::kernels
