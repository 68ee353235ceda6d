#pragma once
/// @file nmf_backward_unrolled.hpp
/// The exact gradient of the T-step NMF inference (kernels/nmf.hpp): back-propagation through every multiplicative
/// update. Per iteration, with s = Σh̃ + 1e-19 and q = x̂ ⊘ r, the chain from the output h' = h̃ / s back is
///   dh̃ = (g − (g·h')) / s,   du = dh̃ ⊙ h (· ε),   g ← dh̃ ⊙ u  (or dh̃ ⊙ (1 + ε u)),
///   dq = du·W,   dx̂ += dq ⊘ r,   dr = −dq ⊙ q ⊘ r,   g ← g + dr·Wᵀ,
///   dW += duᵀ·q + hᵀ·dr.
/// Fused and recomputing: nothing is recorded between the layer's forward and backward except x̂. The backward
/// reruns the forward on one tile of rows at a time, keeping that tile's T states (h, u, 1/r, s) in per-thread
/// scratch — a few hundred kilobytes, in cache — and runs the chain above on the same tile straight away, with the
/// forward's register-tiled broadcast-FMA micro-kernels. Memory therefore does not grow with T; the arithmetic is
/// the forward's twice over (three times with dW). The recomputed states are bit-identical to nmf_forward's (same
/// FMA sequences) when I and H are whole numbers of vectors, except for the sparse rows nmf_forward solves alone by
/// columns of Wᵀ (r summed in another order); otherwise the forward runs with the rows in the SIMD lanes; in both
/// exceptions the two agree to rounding. The naive twin is
/// nmfdsl::testing::naive_nmf_backward_unrolled.
#include <algorithm>
#include <cstddef>
#include <optional>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../core/parallel.hpp"
#include "nmf.hpp"
#include "nmf_backward_approx.hpp"
#include "reduce.hpp"

namespace nmfdsl::kernels {

/// Tiles per parallel task of the unrolled backward: fixed, so the split (and the order in which the tasks' dW are
/// summed) does not depend on the thread count.
inline constexpr std::size_t nmf_unrolled_tiles_per_task = 8;

namespace detail {

/// One tile's recorded iterations and the backward's working rows (per thread, reused).
template <class T>
struct nmf_unrolled_tile {
    aligned_vector<T> h;      ///< [T + 1][NT × Hp]: the h entering each iteration, then the final h
    aligned_vector<T> u;      ///< [T][NT × Hp]: q·Wᵀ
    aligned_vector<T> inv_r;  ///< [T][NT × Ip]: 1 / (hW + 1e-20); iteration 0 keeps the one row all rows share
    aligned_vector<T> sum;    ///< [T][NT]: Σh̃ + 1e-19
    aligned_vector<T> q, dr, gx;  ///< [NT × Ip]
    aligned_vector<T> gh, du;     ///< [NT × Hp]

    void size_for(const nmf_weights<T>& wts, std::size_t iterations)
    {
        constexpr std::size_t NT = nmf_layout<T>::tile_rows;
        h.resize((iterations + 1) * NT * wts.hp);
        u.resize(iterations * NT * wts.hp);
        inv_r.resize(iterations * NT * wts.ip);
        sum.resize(iterations * NT);
        q.resize(NT * wts.ip);
        dr.resize(NT * wts.ip);
        gx.resize(NT * wts.ip);
        gh.resize(NT * wts.hp);
        du.resize(NT * wts.hp);
    }
};

template <class T>
nmf_unrolled_tile<T>& unrolled_tile_scratch()
{
    thread_local nmf_unrolled_tile<T> s;
    return s;
}

/// The forward's iterations on the first `active` rows of one tile, every state recorded into s.
template <class T, std::size_t MRR, std::size_t MRU>
void record_tile(const nmf_weights<T>& wts, const T* x, std::size_t active, std::size_t iterations,
                 const std::optional<T>& eps, const T* inv_r0, nmf_unrolled_tile<T>& s)
{
    using batch = xsimd::batch<T>;
    using tiles = nmf_tiling<T>;
    constexpr std::size_t L = batch::size, NT = nmf_layout<T>::tile_rows;
    const std::size_t Hp = wts.hp, Ip = wts.ip;
    const T h0 = T(1) / T(wts.h);
    for (std::size_t r = 0; r < NT; ++r)
        for (std::size_t k = 0; k < Hp; ++k)
            s.h[r * Hp + k] = k < wts.h ? h0 : T(0);
    for (std::size_t it = 0; it < iterations; ++it) {
        const T* h = s.h.data() + it * NT * Hp;
        T* hn = s.h.data() + (it + 1) * NT * Hp;
        T* u = s.u.data() + it * NT * Hp;
        T* ir = s.inv_r.data() + it * NT * Ip;
        T* sum = s.sum.data() + it * NT;
        // q = x̂ ⊘ (hW + 1e-20), keeping 1/r; the first iteration's r is the row h⁰W shared by all rows
        if (it == 0) {
            std::copy(inv_r0, inv_r0 + Ip, ir);
            for (std::size_t r = 0; r < active; ++r)
                for (std::size_t c = 0; c < Ip; c += L)
                    (batch::load_unaligned(x + r * Ip + c) * batch::load_aligned(inv_r0 + c))
                        .store_aligned(s.q.data() + r * Ip + c);
        } else {
            for (std::size_t r0 = 0; r0 < active; r0 += MRR)
                for_column_blocks<T, MRR, tiles::nb_r>(Ip, [&](auto nb, std::size_t c0) {
                    constexpr std::size_t NB = decltype(nb)::value;
                    batch acc[MRR][NB];
                    bcast_tile<T, MRR, NB>(wts.h, h + r0 * Hp, Hp, wts.w.data() + c0, wts.ldw, acc);
#pragma GCC unroll 16
                    for (std::size_t r = 0; r < MRR; ++r)
#pragma GCC unroll 8
                        for (std::size_t j = 0; j < NB; ++j) {
                            const std::size_t at = (r0 + r) * Ip + c0 + j * L;
                            const batch inv = refined_reciprocal(acc[r][j] + batch(T(1e-20)));
                            inv.store_aligned(ir + at);
                            (batch::load_unaligned(x + at) * inv).store_aligned(s.q.data() + at);
                        }
                });
        }
        // u = q·Wᵀ
        for (std::size_t r0 = 0; r0 < active; r0 += MRU)
            for_column_blocks<T, MRU, tiles::nb_u>(Hp, [&](auto nb, std::size_t c0) {
                constexpr std::size_t NB = decltype(nb)::value;
                batch acc[MRU][NB];
                bcast_tile<T, MRU, NB>(wts.i, s.q.data() + r0 * Ip, Ip, wts.wt.data() + c0, wts.ldwt, acc);
#pragma GCC unroll 16
                for (std::size_t r = 0; r < MRU; ++r)
#pragma GCC unroll 8
                    for (std::size_t j = 0; j < NB; ++j)
                        acc[r][j].store_aligned(u + (r0 + r) * Hp + c0 + j * L);
            });
        // h' = h̃ / (Σh̃ + 1e-19), h̃ = h ⊙ u (or h ⊙ (1 + ε u)); the same operations as the forward's fused update
        const batch one(T(1)), e(eps ? *eps : T(0));
        for (std::size_t r = 0; r < active; ++r) {
            batch acc(T(0));
            for (std::size_t c = 0; c < Hp; c += L) {
                const std::size_t at = r * Hp + c;
                const batch uv = batch::load_aligned(u + at), hv = batch::load_aligned(h + at);
                const batch ht = eps ? hv * xsimd::fma(e, uv, one) : hv * uv;
                ht.store_aligned(hn + at);
                acc += ht;
            }
            const T total = horizontal_sum(acc) + T(1e-19);
            sum[r] = total;
            const batch inv(T(1) / total);
            for (std::size_t c = 0; c < Hp; c += L)
                (batch::load_aligned(hn + r * Hp + c) * inv).store_aligned(hn + r * Hp + c);
        }
    }
}

/// Back through the recorded iterations of one tile: g [active × H rows of dL/dh'] in, dx̂ into s.gx, and dW added to
/// gw_acc [Hp × Ip] when it is given.
template <class T, std::size_t MRR, std::size_t MRU>
void reverse_tile(const nmf_weights<T>& wts, const T* x, const T* g, std::size_t valid, std::size_t active,
                  std::size_t iterations, const std::optional<T>& eps, nmf_unrolled_tile<T>& s, T* gw_acc)
{
    using batch = xsimd::batch<T>;
    using tiles = nmf_tiling<T>;
    constexpr std::size_t L = batch::size, NT = nmf_layout<T>::tile_rows;
    const std::size_t H = wts.h, Hp = wts.hp, Ip = wts.ip;
    std::fill(s.gh.begin(), s.gh.end(), T(0));
    for (std::size_t r = 0; r < valid; ++r)
        copy_short_row(g + r * H, H, s.gh.data() + r * Hp);  // no memmove call per row
    std::fill(s.gx.begin(), s.gx.end(), T(0));
    const batch one(T(1)), e(eps ? *eps : T(0)), zero(T(0));
    for (std::size_t it = iterations; it-- > 0;) {
        const T* hin = s.h.data() + it * NT * Hp;
        const T* hout = s.h.data() + (it + 1) * NT * Hp;
        const T* u = s.u.data() + it * NT * Hp;
        const T* ir = s.inv_r.data() + it * NT * Ip;
        const std::size_t ir_stride = it == 0 ? 0 : Ip;  // iteration 0: one row of 1/r for all
        const T* sum = s.sum.data() + it * NT;
        // dh̃ = (g − g·h') / s (0 for an all-zero patch);  du = dh̃ ⊙ h (· ε);  g ← dh̃ ⊙ u (or ⊙ (1 + ε u))
        for (std::size_t r = 0; r < active; ++r) {
            batch dot(T(0));
            for (std::size_t c = 0; c < Hp; c += L)
                dot = xsimd::fma(batch::load_aligned(s.gh.data() + r * Hp + c), batch::load_aligned(hout + r * Hp + c),
                                 dot);
            const bool degenerate = sum[r] <= T(nmf_degenerate_sum);
            const batch d(horizontal_sum(dot)), total(sum[r]);
            for (std::size_t c = 0; c < Hp; c += L) {
                const std::size_t at = r * Hp + c;
                const batch dht = degenerate ? zero : (batch::load_aligned(s.gh.data() + at) - d) / total;
                const batch hv = batch::load_aligned(hin + at), uv = batch::load_aligned(u + at);
                (eps ? dht * hv * e : dht * hv).store_aligned(s.du.data() + at);
                (eps ? dht * xsimd::fma(e, uv, one) : dht * uv).store_aligned(s.gh.data() + at);
            }
        }
        // dq = du·W;  dx̂ += dq ⊘ r;  dr = −dq ⊙ q ⊘ r  (q = x̂ ⊘ r, remade; kept for dW)
        for (std::size_t r0 = 0; r0 < active; r0 += MRR)
            for_column_blocks<T, MRR, tiles::nb_r>(Ip, [&](auto nb, std::size_t c0) {
                constexpr std::size_t NB = decltype(nb)::value;
                batch acc[MRR][NB];
                bcast_tile<T, MRR, NB>(H, s.du.data() + r0 * Hp, Hp, wts.w.data() + c0, wts.ldw, acc);
#pragma GCC unroll 16
                for (std::size_t r = 0; r < MRR; ++r)
#pragma GCC unroll 8
                    for (std::size_t j = 0; j < NB; ++j) {
                        const std::size_t at = (r0 + r) * Ip + c0 + j * L;
                        const batch inv = batch::load_aligned(ir + (r0 + r) * ir_stride + c0 + j * L);
                        const batch q = batch::load_unaligned(x + at) * inv;
                        const batch dq_r = acc[r][j] * inv;
                        (batch::load_aligned(s.gx.data() + at) + dq_r).store_aligned(s.gx.data() + at);
                        (-(dq_r * q)).store_aligned(s.dr.data() + at);
                        if (gw_acc)
                            q.store_aligned(s.q.data() + at);
                    }
            });
        // g ← g + dr·Wᵀ
        for (std::size_t r0 = 0; r0 < active; r0 += MRU)
            for_column_blocks<T, MRU, tiles::nb_u>(Hp, [&](auto nb, std::size_t c0) {
                constexpr std::size_t NB = decltype(nb)::value;
                batch acc[MRU][NB];
                bcast_tile<T, MRU, NB>(wts.i, s.dr.data() + r0 * Ip, Ip, wts.wt.data() + c0, wts.ldwt, acc);
#pragma GCC unroll 16
                for (std::size_t r = 0; r < MRU; ++r)
#pragma GCC unroll 8
                    for (std::size_t j = 0; j < NB; ++j) {
                        T* at = s.gh.data() + (r0 + r) * Hp + c0 + j * L;
                        (batch::load_aligned(at) + acc[r][j]).store_aligned(at);
                    }
            });
        // dW += duᵀ·q + hᵀ·dr: rows of dW broadcast from columns of du and h, vectors along x̂'s columns
        if (gw_acc)
            for (std::size_t k0 = 0; k0 < Hp; k0 += tiles::mr_w)
                for_column_blocks<T, tiles::mr_w, tiles::nb_w>(Ip, [&](auto nb, std::size_t c0) {
                    constexpr std::size_t NB = decltype(nb)::value, MR = tiles::mr_w;
                    batch acc[MR][NB];
                    bcast_tile<T, MR, NB>(active, s.du.data() + k0, 1, s.q.data() + c0, Ip, acc, Hp);
                    bcast_tile<T, MR, NB, true>(active, hin + k0, 1, s.dr.data() + c0, Ip, acc, Hp);
#pragma GCC unroll 16
                    for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 8
                        for (std::size_t j = 0; j < NB; ++j) {
                            T* at = gw_acc + (k0 + r) * Ip + c0 + j * L;
                            (batch::load_aligned(at) + acc[r][j]).store_aligned(at);
                        }
                });
    }
}

} // namespace detail

/// Exact back-propagation through all T updates. xhat [pad_rows(rows) × Ip] (zero padded, as for nmf_forward),
/// g = dL/dh [rows × H]. Writes gx [pad_rows(rows) × Ip] (rows ≥ `rows` unspecified) and gw [H × Ip] (both
/// overwritten); gw may be nullptr when the weight gradient is not needed (an attacker's input gradient), which
/// skips a third of the work. dW is summed per task, then over the tasks in order: the result does not depend on the
/// thread count. Requires iterations ≥ 1.
template <class T>
void nmf_backward_unrolled(const nmf_weights<T>& wts, const T* xhat, std::size_t rows, std::size_t iterations,
                           std::type_identity_t<std::optional<T>> eps, const T* g, T* gx, T* gw,
                           nmf_backward_scratch<T>& scratch)
{
    using lay = nmf_layout<T>;
    using tiles = nmf_tiling<T>;
    constexpr std::size_t NT = lay::tile_rows;
    const std::size_t H = wts.h, Hp = wts.hp, Ip = wts.ip;
    const std::size_t tile_count = (rows + NT - 1) / NT;
    const std::size_t tasks = (tile_count + nmf_unrolled_tiles_per_task - 1) / nmf_unrolled_tiles_per_task;
    if (rows == 0) {
        if (gw)
            std::fill(gw, gw + H * Ip, T(0));
        return;
    }
    // the first iteration's 1/r: h⁰ is the same for every row (computed as nmf_forward does, bit for bit)
    aligned_vector<T> inv_r0(Ip);
    {
        using batch = xsimd::batch<T>;
        const T h0 = T(1) / T(H);
        for (std::size_t c = 0; c < Ip; c += lay::lanes) {
            batch acc(T(0));
            for (std::size_t k = 0; k < H; ++k)
                acc = xsimd::fma(batch(h0), batch::load_aligned(wts.w.data() + k * wts.ldw + c), acc);
            refined_reciprocal(acc + batch(T(1e-20))).store_aligned(inv_r0.data() + c);
        }
    }
    if (gw)
        scratch.partials.resize(tasks);
    parallel_for(tasks, [&](std::size_t task) {
        auto& s = detail::unrolled_tile_scratch<T>();
        s.size_for(wts, iterations);
        T* gw_acc = nullptr;
        if (gw) {
            scratch.partials[task].assign(Hp * Ip, T(0));
            gw_acc = scratch.partials[task].data();
        }
        const std::size_t last = std::min(tile_count, (task + 1) * nmf_unrolled_tiles_per_task);
        for (std::size_t tile = task * nmf_unrolled_tiles_per_task; tile < last; ++tile) {
            const std::size_t t0 = tile * NT, valid = std::min(NT, rows - t0);
            const T* x = xhat + t0 * Ip;
            // one or two rows run alone, otherwise whole row groups (a short tile's padding rows are computed too:
            // unlike nmf_forward, whose short tiles run in balanced row blocks, this mode is not tuned for it)
            auto run = [&]<std::size_t MRR, std::size_t MRU>(std::size_t active) {
                detail::record_tile<T, MRR, MRU>(wts, x, active, iterations, eps, inv_r0.data(), s);
                detail::reverse_tile<T, MRR, MRU>(wts, x, g + t0 * H, valid, active, iterations, eps, s, gw_acc);
            };
            if (valid <= 2)
                run.template operator()<1, 1>(valid);
            else
                run.template operator()<tiles::mr_r, tiles::mr_u>((valid + tiles::row_group - 1) / tiles::row_group *
                                                                  tiles::row_group);
            std::copy(s.gx.begin(), s.gx.begin() + valid * Ip, gx + t0 * Ip);
        }
    });
    if (!gw)
        return;
    // the tasks' dW summed in task order
    std::copy(scratch.partials[0].begin(), scratch.partials[0].begin() + H * Ip, gw);
    for (std::size_t t = 1; t < tasks; ++t)
        for (std::size_t i = 0; i < H * Ip; ++i)
            gw[i] += scratch.partials[t][i];
}

} // namespace nmfdsl::kernels
