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

/// The adjoint of im2col: dx[n][y][x][c] += Σ over the patches containing (y, x) of their column entry.
/// dx is accumulated into (zero it first for a plain col2im).
template <class T>
void col2im_add(const T* cols, std::size_t batch, const window& g, T* dx, std::size_t row_stride = 0)
{
    const std::size_t oh = g.oh(), ow = g.ow(), run = g.kw * g.c, patch = row_stride ? row_stride : g.patch();
    parallel_for(batch, [&](std::size_t n) {  // one sample per task: disjoint parts of dx, fixed summation order
        T* xs = dx + n * g.h * g.w * g.c;
        for (std::size_t oy = 0; oy < oh; ++oy)
            for (std::size_t ox = 0; ox < ow; ++ox) {
                const T* row = cols + ((n * oh + oy) * ow + ox) * patch;
                for (std::size_t ky = 0; ky < g.kh; ++ky) {
                    T* dst = xs + ((oy * g.stride + ky) * g.w + ox * g.stride) * g.c;
                    const T* src = row + ky * run;
                    for (std::size_t i = 0; i < run; ++i)
                        dst[i] += src[i];
                }
            }
    });
}

} // namespace nmfdsl::kernels
