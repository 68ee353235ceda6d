#pragma once
/// @file nmf_backward_unrolled.hpp
/// The exact gradient of the T-step NMF inference: back-propagation through every multiplicative update, from the
/// states nmf_forward_recording keeps (T·rows·(Ip + 2H + 1) values). Valid everywhere, for any T; costs T times
/// the approximate gradient's arithmetic and memory.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <vector>

#include "gemm.hpp"
#include "nmf.hpp"

namespace nmfdsl::kernels {

/// What the unrolled gradient needs: every iteration's incoming h, its reconstruction r and back-projection u, and
/// the normaliser. T·rows·(Ip + 2H + 1) values; compare the approximate mode's rows·(Ip + H).
template <class T>
struct nmf_trace {
    std::size_t iterations = 0, rows = 0;
    aligned_vector<T> h_in, r, u, sum;  ///< [T][rows × H], [T][rows × Ip], [T][rows × H], [T][rows]
    std::size_t bytes() const { return (h_in.size() + r.size() + u.size() + sum.size()) * sizeof(T); }
};

/// The T-step forward written with GEMMs, recording the trace for nmf_backward_unrolled. Same result as
/// nmf_forward (up to rounding). xhat [rows × Ip]; h_out [rows × H].
template <class T>
void nmf_forward_recording(const nmf_weights<T>& wts, const T* xhat, std::size_t rows, std::size_t iterations,
                           std::type_identity_t<std::optional<T>> eps, T* h_out, nmf_trace<T>& tr)
{
    const std::size_t H = wts.h, Ip = wts.ip;
    tr.iterations = iterations;
    tr.rows = rows;
    tr.h_in.resize(iterations * rows * H);
    tr.r.resize(iterations * rows * Ip);
    tr.u.resize(iterations * rows * H);
    tr.sum.resize(iterations * rows);
    std::vector<T> h(rows * H, T(1) / T(H)), q(rows * Ip);
    for (std::size_t t = 0; t < iterations; ++t) {
        T* hin = tr.h_in.data() + t * rows * H;
        T* r = tr.r.data() + t * rows * Ip;
        T* u = tr.u.data() + t * rows * H;
        std::copy(h.begin(), h.end(), hin);
        gemm<T>(false, false, rows, Ip, H, T(1), hin, H, wts.w.data(), Ip, T(0), r, Ip);
        for (std::size_t i = 0; i < rows * Ip; ++i) {
            r[i] += T(1e-20);
            q[i] = xhat[i] / r[i];
        }
        gemm<T>(false, true, rows, H, Ip, T(1), q.data(), Ip, wts.w.data(), Ip, T(0), u, H);
        for (std::size_t n = 0; n < rows; ++n) {
            T s = 0;
            for (std::size_t k = 0; k < H; ++k) {
                const std::size_t at = n * H + k;
                h[at] = eps ? hin[at] * (T(1) + *eps * u[at]) : hin[at] * u[at];
                s += h[at];
            }
            s += T(1e-19);
            tr.sum[t * rows + n] = s;
            for (std::size_t k = 0; k < H; ++k)
                h[n * H + k] /= s;
        }
    }
    std::copy(h.begin(), h.end(), h_out);
}

/// Exact back-propagation through the recorded iterations. h_final [rows × H] is the forward's output, g = dL/dh.
/// Writes gx [rows × Ip] and gw [H × Ip] (overwritten); gw may be nullptr when the weight gradient is not needed
/// (an attacker's input gradient): two of the four products per iteration are then skipped.
template <class T>
void nmf_backward_unrolled(const nmf_weights<T>& wts, const T* xhat, const T* h_final, const T* g,
                           const nmf_trace<T>& tr, std::type_identity_t<std::optional<T>> eps, T* gx, T* gw)
{
    const std::size_t H = wts.h, Ip = wts.ip, rows = tr.rows;
    std::vector<T> gh(g, g + rows * H), gt(rows * H), du(rows * H), dq(rows * Ip), dr(rows * Ip), q(rows * Ip);
    std::fill(gx, gx + rows * Ip, T(0));
    if (gw)
        std::fill(gw, gw + H * Ip, T(0));
    std::vector<T> h_out(h_final, h_final + rows * H);  // the output of the iteration being reversed
    for (std::size_t t = tr.iterations; t-- > 0;) {
        const T* hin = tr.h_in.data() + t * rows * H;
        const T* r = tr.r.data() + t * rows * Ip;
        const T* u = tr.u.data() + t * rows * H;
        // through the normalisation h_out = h̃ / s:  dh̃ = (g − Σ g·h_out) / s
        for (std::size_t n = 0; n < rows; ++n) {
            const T s = tr.sum[t * rows + n];
            T dot = 0;
            for (std::size_t k = 0; k < H; ++k)
                dot += gh[n * H + k] * h_out[n * H + k];
            const bool degenerate = s <= T(nmf_degenerate_sum);
            for (std::size_t k = 0; k < H; ++k)
                gt[n * H + k] = degenerate ? T(0) : (gh[n * H + k] - dot) / s;
        }
        // through h̃ = h ⊙ u (or h ⊙ (1 + εu)): dh = dh̃ ⊙ u', du = dh̃ ⊙ h (· ε)
        for (std::size_t i = 0; i < rows * H; ++i) {
            du[i] = gt[i] * hin[i] * (eps ? *eps : T(1));
            gh[i] = gt[i] * (eps ? T(1) + *eps * u[i] : u[i]);
        }
        // through u = q Wᵀ: dq = du W, dW += duᵀ q
        for (std::size_t i = 0; i < rows * Ip; ++i)
            q[i] = xhat[i] / r[i];
        gemm<T>(false, false, rows, Ip, H, T(1), du.data(), H, wts.w.data(), Ip, T(0), dq.data(), Ip);
        if (gw)
            gemm<T>(true, false, H, Ip, rows, T(1), du.data(), H, q.data(), Ip, T(1), gw, Ip);
        // through q = x̂ ⊘ r: dx̂ += dq ⊘ r, dr = −dq ⊙ q ⊘ r
        for (std::size_t i = 0; i < rows * Ip; ++i) {
            gx[i] += dq[i] / r[i];
            dr[i] = -dq[i] * q[i] / r[i];
        }
        // through r = h W + 1e-20: dh += dr Wᵀ, dW += hᵀ dr
        gemm<T>(false, true, rows, H, Ip, T(1), dr.data(), Ip, wts.w.data(), Ip, T(1), gh.data(), H);
        if (gw)
            gemm<T>(true, false, H, Ip, rows, T(1), hin, H, dr.data(), Ip, T(1), gw, Ip);
        std::copy(hin, hin + rows * H, h_out.begin());
    }
}

} // namespace nmfdsl::kernels
