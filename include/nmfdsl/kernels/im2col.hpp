#pragma once
/// @file im2col.hpp
/// Patch extraction for channels-last maps. The input is [N, H, W, C]; a window of KH×KW with stride S yields
/// OH×OW = valid_extent(H, KH, S) × valid_extent(W, KW, S) positions. The column matrix is [N·OH·OW, KH·KW·C] with
/// feature order (ky, kx, c) — channel fastest — so each (sample, ky) copies one contiguous run of KW·C values.
/// The naive twins are nmfdsl::testing::naive_im2col / naive_col2im.
#include <algorithm>
#include <cstddef>

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

/// cols[n·OH·OW + oy·OW + ox][(ky·KW + kx)·C + c] = x[n][oy·S + ky][ox·S + kx][c].
/// `row_stride` (≥ patch, default patch) lets callers pad each row; the padding is left untouched.
template <class T>
void im2col(const T* x, std::size_t batch, const window& g, T* cols, std::size_t row_stride = 0)
{
    const std::size_t oh = g.oh(), ow = g.ow(), run = g.kw * g.c, patch = row_stride ? row_stride : g.patch();
    parallel_for(batch, [&](std::size_t n) {  // one sample per task: disjoint rows
        const T* xs = x + n * g.h * g.w * g.c;
        for (std::size_t oy = 0; oy < oh; ++oy)
            for (std::size_t ox = 0; ox < ow; ++ox) {
                T* row = cols + ((n * oh + oy) * ow + ox) * patch;
                for (std::size_t ky = 0; ky < g.kh; ++ky) {
                    const T* src = xs + ((oy * g.stride + ky) * g.w + ox * g.stride) * g.c;
                    std::copy(src, src + run, row + ky * run);
                }
            }
    });
}

namespace detail {
/// Geometry holders for col2im_rows: the window known at run time, or as a constant (then the compiler sees the
/// short runs of small kernels — 5 values for a 5×5 single-channel window — and unrolls them).
struct runtime_window {
    window value;
};
template <window G>
struct fixed_window {
    static constexpr window value = G;
};

/// dst[i] += src[i] for i < n; the buffers do not overlap (so the compiler may vectorise short runs).
template <class T>
inline void add_run(T* __restrict dst, const T* __restrict src, std::size_t n)
{
    for (std::size_t i = 0; i < n; ++i)
        dst[i] += src[i];
}

template <class Geometry, class T>
inline void col2im_rows(const Geometry& geo, const T* cols, std::size_t first, std::size_t count, T* dx,
                        std::size_t row_stride)
{
    constexpr auto g = [](const Geometry& x) -> const window& { return x.value; };
    const window& w = g(geo);
    const std::size_t ow = w.ow(), positions = w.oh() * ow, run = w.kw * w.c;
    const std::size_t patch = row_stride ? row_stride : w.patch();
    for (std::size_t row = first; row < first + count; ++row) {
        const std::size_t n = row / positions, p = row % positions, oy = p / ow, ox = p % ow;
        T* base = dx + ((n * w.h + oy * w.stride) * w.w + ox * w.stride) * w.c;
        const T* src = cols + (row - first) * patch;
        for (std::size_t ky = 0; ky < w.kh; ++ky, src += run)
            add_run(base + ky * w.w * w.c, src, run);
    }
}
} // namespace detail

/// The adjoint of im2col for the column rows [first, first + count) only (row = n·OH·OW + oy·OW + ox):
/// dx[n][y][x][c] += their entries, rows taken in increasing order. `cols` points at row `first`.
template <class T>
void col2im_add_rows(const T* cols, std::size_t first, std::size_t count, const window& g, T* dx,
                     std::size_t row_stride = 0)
{
    detail::col2im_rows(detail::runtime_window{g}, cols, first, count, dx, row_stride);
}

/// The same for a window fixed at compile time (the CNMF layers' case).
template <window G, class T>
void col2im_add_rows(const T* cols, std::size_t first, std::size_t count, T* dx, std::size_t row_stride = 0)
{
    detail::col2im_rows(detail::fixed_window<G>{}, cols, first, count, dx, row_stride);
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
