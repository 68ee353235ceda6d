#pragma once
/// @file im2col.hpp
/// Patch extraction for channels-last maps. The input is [N, H, W, C]; a window of KH×KW with stride S yields
/// OH×OW = valid_extent(H, KH, S) × valid_extent(W, KW, S) positions. The column matrix is [N·OH·OW, KH·KW·C] with
/// feature order (ky, kx, c) — channel fastest — so each (sample, ky) copies one contiguous run of KW·C values.
/// The naive twins are nmfdsl::testing::naive_im2col / naive_col2im.
#include <algorithm>
#include <cstddef>
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
    const window& w = window_of(geo);
    const std::size_t run = w.kw * w.c, line = w.w * w.c;
    for_patch_rows(geo, cols, first, count, x, row_stride, [&](T* row, const T* corner) {
        for (std::size_t ky = 0; ky < w.kh; ++ky)
            run_op<false>(row + ky * run, corner + ky * line, run);
    });
}

template <class Geometry, class T>
inline void col2im_rows(const Geometry& geo, const T* cols, std::size_t first, std::size_t count, T* dx,
                        std::size_t row_stride)
{
    const window& w = window_of(geo);
    const std::size_t run = w.kw * w.c, line = w.w * w.c;
    for_patch_rows(geo, cols, first, count, dx, row_stride, [&](const T* row, T* corner) {
        for (std::size_t ky = 0; ky < w.kh; ++ky)
            run_op<true>(corner + ky * line, row + ky * run, run);
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

/// All N·OH·OW rows of the column matrix (see im2col_rows), one sample per parallel task.
template <class T>
void im2col(const T* x, std::size_t batch, const window& g, T* cols, std::size_t row_stride = 0)
{
    const std::size_t positions = g.oh() * g.ow(), patch = row_stride ? row_stride : g.patch();
    parallel_for(batch, [&](std::size_t n) {  // one sample per task: disjoint rows
        im2col_rows(x, n * positions, positions, g, cols + n * positions * patch, row_stride);
    });
}

/// The adjoint of im2col for the column rows [first, first + count) only (row = n·OH·OW + oy·OW + ox):
/// dx[n][y][x][c] += their entries, rows taken in increasing order. `cols` points at row `first`; `g` is a
/// `window` or a `fixed_window<G>{}`.
template <class Geometry, class T>
void col2im_add_rows(const T* cols, std::size_t first, std::size_t count, const Geometry& g, T* dx,
                     std::size_t row_stride = 0)
{
    detail::col2im_rows(g, cols, first, count, dx, row_stride);
}

/// The adjoint of im2col: dx[n][y][x][c] += Σ over the patches containing (y, x) of their column entry.
/// dx is accumulated into (zero it first for a plain col2im).
template <class T>
void col2im_add(const T* cols, std::size_t batch, const window& g, T* dx, std::size_t row_stride = 0)
{
    const std::size_t positions = g.oh() * g.ow(), patch = row_stride ? row_stride : g.patch();
    parallel_for(batch, [&](std::size_t n) {  // one sample per task: disjoint parts of dx, fixed summation order
        col2im_add_rows(cols + n * positions * patch, n * positions, positions, g, dx, row_stride);
    });
}

} // namespace nmfdsl::kernels
