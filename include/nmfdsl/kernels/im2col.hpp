#pragma once
/// @file im2col.hpp
/// Patch extraction for channels-last maps. The input is [N, H, W, C]; a window of KH×KW with stride S yields
/// OH×OW = valid_extent(H, KH, S) × valid_extent(W, KW, S) positions. The column matrix is [N·OH·OW, KH·KW·C] with
/// feature order (ky, kx, c) — channel fastest — so each (sample, ky) copies one contiguous run of KW·C values.
/// The naive twins are nmfdsl::testing::naive_im2col / naive_col2im.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../core/parallel.hpp"
#include "../core/shape.hpp"

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

/// Calls f(pointer to the row in cols, pointer to the window's top-left [y][x][0] in image) for the column rows
/// [first, first + count) in order; cols points at row `first`.
template <class Geometry, class T, class U, class F>
inline void for_patch_rows(const Geometry& geo, T* cols, std::size_t first, std::size_t count, U* image,
                           std::size_t row_stride, F&& f)
{
    const window& w = window_of(geo);
    const std::size_t ow = w.ow(), oh = w.oh(), positions = oh * ow;
    const std::size_t patch = row_stride ? row_stride : w.patch();
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

template <class Geometry, class T>
inline void im2col_rows(const Geometry& geo, const T* x, std::size_t first, std::size_t count, T* cols,
                        std::size_t row_stride)
{
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
    constexpr std::size_t ow = G.ow(), oh = G.oh(), positions = oh * ow, run = G.kw * G.c, line = G.w * G.c;
    const std::size_t patch = row_stride ? row_stride : G.patch();
    constexpr auto low_lanes = [](std::size_t n) { return static_cast<__mmask16>(n >= 16 ? 0xffffu : (1u << n) - 1u); };
    constexpr __mmask16 patch_lo = low_lanes(G.patch()), patch_hi = low_lanes(G.patch() > 16 ? G.patch() - 16 : 0);
    constexpr __mmask16 line_lo = low_lanes(line), line_hi = low_lanes(line > 16 ? line - 16 : 0);
    constexpr std::uint64_t run_mask = (std::uint64_t(1) << run) - 1;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i sixteen = _mm512_set1_epi32(16);
    std::size_t n = first / positions, oy = first % positions / ow, ox = first % ow;
    for (std::size_t i = 0; i < count;) {
        const std::size_t rows = std::min(count - i, ow - ox);  // the rest of this output line
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
        i += rows;
        ox = 0;
        if (++oy == oh) {
            oy = 0;
            ++n;
        }
    }
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
/// untouched.
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
    const std::size_t positions = w.oh() * w.ow(), patch = row_stride ? row_stride : w.patch();
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

/// The adjoint of im2col for the column rows [first, first + count) only (row = n·OH·OW + oy·OW + ox):
/// dx[n][y][x][c] += their entries, in an order fixed by (first, count) — row by row, or for small compile-time
/// windows with AVX-512 summed per output line first (detail::col2im_rows_in_lines). `cols` points at row
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
