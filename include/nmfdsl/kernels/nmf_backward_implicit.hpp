#pragma once
/// @file nmf_backward_implicit.hpp
/// The implicit gradient of the NMF inference: differentiation at a fixed point h* = F(h*) of the normalised update
/// F (implicit function theorem), one H×H solve per row: λ = (I − ∂F/∂h)⁻ᵀ G, then eq. (1), (2) of the
/// approximate gradient with G replaced by (λ − (F·λ) 1) / Σh̃.
/// It is the gradient of the forward only where the iteration has converged to an isolated fixed point; far from
/// convergence (few iterations, or H > I where the fixed point need not be isolated) it may differ from the
/// unrolled gradient by orders of magnitude. A singular or ill-conditioned system throws numeric_error.
#include <algorithm>
#include <cmath>
#include <limits>
#include <cstddef>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "dense_lu.hpp"
#include "nmf_backward_approx.hpp"

namespace nmfdsl::kernels {

/// Largest 1-norm condition number of (I − ∂F/∂h)ᵀ the implicit gradient accepts: beyond it the solve keeps fewer
/// correct digits than the float result carries.
inline constexpr double nmf_implicit_max_condition = 1e10;

/// Implicit differentiation at the fixed point (see the file comment). Uses the final h as h*; epsilon does not
/// change the result (the damped map has the same fixed points and a proportional Jacobian).
template <class T>
void nmf_backward_implicit(const nmf_weights<T>& wts, const T* xhat, const T* h, const T* g, std::size_t rows, T* gx,
                           T* gw, nmf_backward_scratch<T>& s)
{
    const std::size_t H = wts.h, I = wts.i, Ip = wts.ip;
    std::vector<double> A(H * H), c(I), u(H), lam(H), F(H);
    dense_lu lu;  // factors A in place
    std::vector<T> lam_scaled(rows * H);
    for (std::size_t n = 0; n < rows; ++n) {
        const T* x = xhat + n * Ip;
        const T* hn = h + n * H;
        // r = hW + 1e-20, c = x̂ / r², u = (x̂ / r) Wᵀ at h
        std::fill(u.begin(), u.end(), 0.0);
        for (std::size_t i = 0; i < I; ++i) {
            double r = 1e-20;
            for (std::size_t k = 0; k < H; ++k)
                r += double(hn[k]) * double(wts.w[k * wts.ldw + i]);
            c[i] = double(x[i]) / (r * r);
            for (std::size_t k = 0; k < H; ++k)
                u[k] += double(wts.w[k * wts.ldw + i]) * double(x[i]) / r;
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
                    b += double(wts.w[k * wts.ldw + i]) * double(wts.w[m * wts.ldw + i]) * c[i];
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
        const bool regular = lu.factor(A, H);
        const double condition = regular ? lu.condition_estimate() : std::numeric_limits<double>::infinity();
        if (!(condition <= nmf_implicit_max_condition))
            throw numeric_error("nmfdsl: implicit NMF gradient: the system (I - dF/dh)^T of patch row " +
                                std::to_string(n) + " is " +
                                (regular ? "ill-conditioned (condition ~" + std::to_string(condition) + ", limit " +
                                               std::to_string(nmf_implicit_max_condition) + ")"
                                         : std::string("singular")) +
                                ": the iteration has not converged to an isolated fixed point there; use the "
                                "unrolled gradient or more iterations");
        lu.solve(lam);
        double dot = 0;
        for (std::size_t k = 0; k < H; ++k)
            dot += F[k] * lam[k];
        for (std::size_t k = 0; k < H; ++k)
            lam_scaled[n * H + k] = static_cast<T>((lam[k] - dot) / sum);
    }
    nmf_backward_approx_gemm(wts, xhat, h, lam_scaled.data(), rows, gx, gw, s);
}

} // namespace nmfdsl::kernels
