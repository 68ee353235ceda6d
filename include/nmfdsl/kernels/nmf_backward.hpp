#pragma once
/// @file nmf_backward.hpp
/// Gradients of the NMF inference (kernels/nmf.hpp) with respect to x̂ and W, in three modes:
///  - approximate (the paper's, deep-nmf-spec §2.1 eq. (1), (2)): only x̂, W and the final h are needed;
///      R = hW, P = 1 ⊘ (R + 1e-20), HG = h ⊙ G,
///      GX = (HG·W) ⊙ P                    (1)
///      GW = HGᵀ·(X̂ ⊙ P) − hᵀ·(X̂ ⊙ P ⊙ GX) (2)
///    four GEMMs, independent of T.
///  - unrolled: exact back-propagation through all T iterations, from states recorded by nmf_forward_recording.
///  - implicit: implicit differentiation at the fixed point h* = F(h*), F the normalised update; one H×H solve per
///    row: λ = (I − ∂F/∂h)⁻ᵀ G, then (1), (2) with G replaced by (λ − (F·λ) 1) / Σh̃.
/// Conventions: N×I matrices have row stride Ip (nmf_layout::pad), GW is [H × Ip]. Where Σh̃ vanishes (an all-zero
/// patch, whose output is h = 0), the derivative of the normalisation is taken as 0, so zero patches give finite,
/// zero gradients in every mode.
#include <cmath>
#include <cstddef>
#include <optional>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "gemm.hpp"
#include "nmf.hpp"

namespace nmfdsl::kernels {

inline constexpr double nmf_degenerate_sum = 1e-18;  ///< Σh̃ at or below this counts as an all-zero patch

template <class T>
struct nmf_backward_scratch {
    aligned_vector<T> r, hg_w, hg, qx, z;            // the GEMM formulation
    aligned_vector<T> hp, hgp, qz, at, gw_acc;       // the fused tile formulation
};

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
    gemm<T>(false, false, rows, Ip, H, T(1), h, H, wts.w.data(), Ip, T(0), s.r.data(), Ip);
    gemm<T>(false, false, rows, Ip, H, T(1), s.hg.data(), H, wts.w.data(), Ip, T(0), s.hg_w.data(), Ip);
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

/// Approximate gradient (eq. (1), (2)), fused over tiles of `tile_rows` rows like the forward: per tile, r = hW and
/// (h⊙G)W come from the broadcast micro-kernel, then P, GX, Qx = X̂⊙P and Z = Qx⊙GX are formed in registers, and
/// GW += [h⊙G; −h]ᵀ · [Qx; Z] is accumulated with the same micro-kernel. xhat [pad_rows(rows) × Ip]; h, g
/// [rows × H]; gx [pad_rows(rows) × Ip] and gw [H × Ip] are overwritten.
template <class T>
void nmf_backward_approx(const nmf_weights<T>& wts, const T* xhat, const T* h, const T* g, std::size_t rows, T* gx,
                         T* gw, nmf_backward_scratch<T>& s)
{
    using batch = xsimd::batch<T>;
    using lay = nmf_layout<T>;
    constexpr std::size_t L = batch::size, NT = lay::tile_rows, MR = 6, NB = 4;
    static_assert(NT % MR == 0);
    const std::size_t H = wts.h, Hp = wts.hp, Ip = wts.ip;
    const std::size_t Hr = (H + MR - 1) / MR * MR;  // GW rows, padded to the micro-kernel height
    s.hp.assign(NT * Hp, T(0));
    s.hgp.assign(NT * Hp, T(0));
    s.qz.resize(2 * NT * Ip);
    s.at.assign(Hr * 2 * NT, T(0));
    s.gw_acc.assign(Hr * Ip, T(0));
    for (std::size_t t0 = 0; t0 < rows; t0 += NT) {
        const std::size_t valid = std::min(NT, rows - t0);
        for (std::size_t r = 0; r < NT; ++r)
            for (std::size_t k = 0; k < H; ++k) {
                const bool in = r < valid;
                const T hv = in ? h[(t0 + r) * H + k] : T(0), gv = in ? g[(t0 + r) * H + k] : T(0);
                s.hp[r * Hp + k] = hv;
                s.hgp[r * Hp + k] = hv * gv;
                s.at[k * 2 * NT + r] = hv * gv;     // [HG; −h]ᵀ
                s.at[k * 2 * NT + NT + r] = -hv;
            }
        const T* xt = xhat + t0 * Ip;
        T* gxt = gx + t0 * Ip;
        T* q = s.qz.data();
        T* z = s.qz.data() + NT * Ip;
        for (std::size_t r0 = 0; r0 < NT; r0 += MR)
            detail::for_column_blocks<T, MR, NB>(Ip, [&](auto nbc, std::size_t c0) {
                constexpr std::size_t nb = decltype(nbc)::value;
                batch acc[MR][nb];
                detail::bcast_tile<T, MR, nb>(H, s.hp.data() + r0 * Hp, Hp, wts.w.data() + c0, Ip, acc);
                batch p[MR][nb];
                const batch eps(T(1e-20)), one(T(1));
                for (std::size_t r = 0; r < MR; ++r)
                    for (std::size_t j = 0; j < nb; ++j)
                        p[r][j] = one / (acc[r][j] + eps);
                detail::bcast_tile<T, MR, nb>(H, s.hgp.data() + r0 * Hp, Hp, wts.w.data() + c0, Ip, acc);
                for (std::size_t r = 0; r < MR; ++r)
                    for (std::size_t j = 0; j < nb; ++j) {
                        const std::size_t at = (r0 + r) * Ip + c0 + j * L;
                        const batch gxv = acc[r][j] * p[r][j];
                        const batch qv = batch::load_aligned(xt + at) * p[r][j];
                        gxv.store_aligned(gxt + at);
                        qv.store_aligned(q + at);
                        (qv * gxv).store_aligned(z + at);
                    }
            });
        for (std::size_t k0 = 0; k0 < Hr; k0 += MR)
            detail::for_column_blocks<T, MR, NB>(Ip, [&](auto nbc, std::size_t c0) {
                constexpr std::size_t nb = decltype(nbc)::value;
                batch acc[MR][nb];
                detail::bcast_tile<T, MR, nb>(2 * NT, s.at.data() + k0 * 2 * NT, 2 * NT, s.qz.data() + c0, Ip, acc);
                for (std::size_t r = 0; r < MR; ++r)
                    for (std::size_t j = 0; j < nb; ++j) {
                        T* dst = s.gw_acc.data() + (k0 + r) * Ip + c0 + j * L;
                        (batch::load_aligned(dst) + acc[r][j]).store_aligned(dst);
                    }
            });
    }
    std::copy(s.gw_acc.begin(), s.gw_acc.begin() + H * Ip, gw);
}

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
/// Writes gx [rows × Ip] and gw [H × Ip] (overwritten).
template <class T>
void nmf_backward_unrolled(const nmf_weights<T>& wts, const T* xhat, const T* h_final, const T* g,
                           const nmf_trace<T>& tr, std::type_identity_t<std::optional<T>> eps, T* gx, T* gw)
{
    const std::size_t H = wts.h, Ip = wts.ip, rows = tr.rows;
    std::vector<T> gh(g, g + rows * H), gt(rows * H), du(rows * H), dq(rows * Ip), dr(rows * Ip), q(rows * Ip);
    std::fill(gx, gx + rows * Ip, T(0));
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
        gemm<T>(true, false, H, Ip, rows, T(1), du.data(), H, q.data(), Ip, T(1), gw, Ip);
        // through q = x̂ ⊘ r: dx̂ += dq ⊘ r, dr = −dq ⊙ q ⊘ r
        for (std::size_t i = 0; i < rows * Ip; ++i) {
            gx[i] += dq[i] / r[i];
            dr[i] = -dq[i] * q[i] / r[i];
        }
        // through r = h W + 1e-20: dh += dr Wᵀ, dW += hᵀ dr
        gemm<T>(false, true, rows, H, Ip, T(1), dr.data(), Ip, wts.w.data(), Ip, T(1), gh.data(), H);
        gemm<T>(true, false, H, Ip, rows, T(1), hin, H, dr.data(), Ip, T(1), gw, Ip);
        std::copy(hin, hin + rows * H, h_out.begin());
    }
}

/// Implicit differentiation at the fixed point (see the file comment). Uses the final h as h*; epsilon does not
/// change the result (the damped map has the same fixed points and a proportional Jacobian).
template <class T>
void nmf_backward_implicit(const nmf_weights<T>& wts, const T* xhat, const T* h, const T* g, std::size_t rows, T* gx,
                           T* gw, nmf_backward_scratch<T>& s)
{
    const std::size_t H = wts.h, I = wts.i, Ip = wts.ip;
    std::vector<double> A(H * H), c(I), u(H), lam(H), F(H);
    std::vector<T> lam_scaled(rows * H);
    for (std::size_t n = 0; n < rows; ++n) {
        const T* x = xhat + n * Ip;
        const T* hn = h + n * H;
        // r = hW + 1e-20, c = x̂ / r², u = (x̂ / r) Wᵀ at h
        std::fill(u.begin(), u.end(), 0.0);
        for (std::size_t i = 0; i < I; ++i) {
            double r = 1e-20;
            for (std::size_t k = 0; k < H; ++k)
                r += double(hn[k]) * double(wts.w[k * Ip + i]);
            c[i] = double(x[i]) / (r * r);
            for (std::size_t k = 0; k < H; ++k)
                u[k] += double(wts.w[k * Ip + i]) * double(x[i]) / r;
        }
        double sum = 1e-19;
        for (std::size_t k = 0; k < H; ++k)
            sum += double(hn[k]) * u[k];
        if (sum <= nmf_degenerate_sum) {
            std::fill(lam_scaled.begin() + n * H, lam_scaled.begin() + (n + 1) * H, T(0));
            continue;
        }
        for (std::size_t k = 0; k < H; ++k)
            F[k] = double(hn[k]) * u[k] / sum;
        // J̃ = diag(u) − diag(h) W diag(c) Wᵀ;  J = (I − F 1ᵀ) J̃ / sum;  A = I − J
        std::vector<double> Jt(H * H);
        for (std::size_t k = 0; k < H; ++k)
            for (std::size_t m = 0; m < H; ++m) {
                double b = 0;
                for (std::size_t i = 0; i < I; ++i)
                    b += double(wts.w[k * Ip + i]) * double(wts.w[m * Ip + i]) * c[i];
                Jt[k * H + m] = (k == m ? u[k] : 0.0) - double(hn[k]) * b;
            }
        std::vector<double> colsum(H, 0.0);
        for (std::size_t k = 0; k < H; ++k)
            for (std::size_t m = 0; m < H; ++m)
                colsum[m] += Jt[k * H + m];
        // Solve Aᵀ λ = g, Aᵀ[m][k] = A[k][m]
        for (std::size_t k = 0; k < H; ++k)
            for (std::size_t m = 0; m < H; ++m) {
                const double J = (Jt[k * H + m] - F[k] * colsum[m]) / sum;
                A[m * H + k] = (k == m ? 1.0 : 0.0) - J;
            }
        for (std::size_t k = 0; k < H; ++k)
            lam[k] = double(g[n * H + k]);
        for (std::size_t col = 0; col < H; ++col) {  // Gaussian elimination with partial pivoting
            std::size_t piv = col;
            for (std::size_t r = col + 1; r < H; ++r)
                if (std::abs(A[r * H + col]) > std::abs(A[piv * H + col]))
                    piv = r;
            if (piv != col) {
                for (std::size_t m = 0; m < H; ++m)
                    std::swap(A[col * H + m], A[piv * H + m]);
                std::swap(lam[col], lam[piv]);
            }
            const double d = A[col * H + col];
            if (d == 0.0)
                continue;
            for (std::size_t r = col + 1; r < H; ++r) {
                const double f = A[r * H + col] / d;
                if (f == 0.0)
                    continue;
                for (std::size_t m = col; m < H; ++m)
                    A[r * H + m] -= f * A[col * H + m];
                lam[r] -= f * lam[col];
            }
        }
        for (std::size_t col = H; col-- > 0;) {
            double v = lam[col];
            for (std::size_t m = col + 1; m < H; ++m)
                v -= A[col * H + m] * lam[m];
            lam[col] = A[col * H + col] != 0.0 ? v / A[col * H + col] : 0.0;
        }
        double dot = 0;
        for (std::size_t k = 0; k < H; ++k)
            dot += F[k] * lam[k];
        for (std::size_t k = 0; k < H; ++k)
            lam_scaled[n * H + k] = static_cast<T>((lam[k] - dot) / sum);
    }
    nmf_backward_approx_gemm(wts, xhat, h, lam_scaled.data(), rows, gx, gw, s);
}

} // namespace nmfdsl::kernels
