#pragma once
/// @file naive.hpp
/// Naive reference twins of the optimised kernels: the obvious loops, written for clarity, used by the tests.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "../core/rng.hpp"
#include "../kernels/im2col.hpp"

namespace nmfdsl::testing {

/// Random rows on the simplex, as the NMF kernels expect them (a row-normalised W, rows of x̂): rows × cols uniform
/// values in [0, 1) at row stride `stride` (entries past cols untouched), each row then divided by its sum.
template <class T>
void random_simplex_rows(rng& g, T* a, std::size_t rows, std::size_t cols, std::size_t stride)
{
    for (std::size_t r = 0; r < rows; ++r) {
        T* row = a + r * stride;
        T sum = 0;
        for (std::size_t i = 0; i < cols; ++i)
            sum += row[i] = g.uniform01<T>();
        for (std::size_t i = 0; i < cols; ++i)
            row[i] /= sum;
    }
}

/// C = alpha · op(A) · op(B) + beta · C, triple loop in double accumulation.
template <class T>
void naive_gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, std::size_t lda,
                const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc)
{
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            long double s = 0;
            for (std::size_t k = 0; k < K; ++k) {
                const T a = ta ? A[k * lda + i] : A[i * lda + k];
                const T b = tb ? B[j * ldb + k] : B[k * ldb + j];
                s += static_cast<long double>(a) * b;
            }
            const T prior = beta == T(0) ? T(0) : beta * C[i * ldc + j];
            C[i * ldc + j] = static_cast<T>(alpha * static_cast<T>(s) + prior);
        }
}

/// im2col by its definition, element by element.
template <class T>
void naive_im2col(const T* x, std::size_t batch, const kernels::window& g, T* cols)
{
    const std::size_t oh = g.oh(), ow = g.ow();
    for (std::size_t n = 0; n < batch; ++n)
        for (std::size_t oy = 0; oy < oh; ++oy)
            for (std::size_t ox = 0; ox < ow; ++ox)
                for (std::size_t ky = 0; ky < g.kh; ++ky)
                    for (std::size_t kx = 0; kx < g.kw; ++kx)
                        for (std::size_t c = 0; c < g.c; ++c) {
                            const std::size_t row = (n * oh + oy) * ow + ox;
                            const std::size_t col = (ky * g.kw + kx) * g.c + c;
                            const std::size_t y = oy * g.stride + ky, xx = ox * g.stride + kx;
                            cols[row * g.patch() + col] = x[((n * g.h + y) * g.w + xx) * g.c + c];
                        }
}

/// col2im by its definition: dx (zeroed here) = Σ of column entries over every patch containing the element.
template <class T>
void naive_col2im(const T* cols, std::size_t batch, const kernels::window& g, T* dx)
{
    for (std::size_t i = 0; i < batch * g.h * g.w * g.c; ++i)
        dx[i] = T(0);
    const std::size_t oh = g.oh(), ow = g.ow();
    for (std::size_t n = 0; n < batch; ++n)
        for (std::size_t oy = 0; oy < oh; ++oy)
            for (std::size_t ox = 0; ox < ow; ++ox)
                for (std::size_t ky = 0; ky < g.kh; ++ky)
                    for (std::size_t kx = 0; kx < g.kw; ++kx)
                        for (std::size_t c = 0; c < g.c; ++c) {
                            const std::size_t row = (n * oh + oy) * ow + ox;
                            const std::size_t col = (ky * g.kw + kx) * g.c + c;
                            const std::size_t y = oy * g.stride + ky, xx = ox * g.stride + kx;
                            dx[((n * g.h + y) * g.w + xx) * g.c + c] += cols[row * g.patch() + col];
                        }
}

} // namespace nmfdsl::testing

namespace nmfdsl::testing {

/// The NMF inference of docs/method.md §1 written exactly as its equations, one row at a time.
/// xhat [rows × I], W [H × I] (row-normalised), h [rows × H] out.
template <class T>
void naive_nmf_forward(const T* xhat, const T* W, std::size_t rows, std::size_t I, std::size_t H,
                       std::size_t iterations, const T* eps, T* h)
{
    std::vector<T> r(I), u(H);
    for (std::size_t n = 0; n < rows; ++n) {
        T* hn = h + n * H;
        const T* x = xhat + n * I;
        for (std::size_t k = 0; k < H; ++k)
            hn[k] = T(1) / T(H);
        for (std::size_t t = 0; t < iterations; ++t) {
            for (std::size_t i = 0; i < I; ++i) {
                T s = 0;
                for (std::size_t k = 0; k < H; ++k)
                    s += hn[k] * W[k * I + i];
                r[i] = s + T(1e-20);
            }
            for (std::size_t k = 0; k < H; ++k) {
                T s = 0;
                for (std::size_t i = 0; i < I; ++i)
                    s += W[k * I + i] * x[i] / r[i];
                u[k] = s;
            }
            T sum = 0;
            for (std::size_t k = 0; k < H; ++k) {
                hn[k] = eps ? hn[k] * (T(1) + *eps * u[k]) : hn[k] * u[k];
                sum += hn[k];
            }
            for (std::size_t k = 0; k < H; ++k)
                hn[k] /= sum + T(1e-19);
        }
    }
}

/// The exact gradient of naive_nmf_forward through all T updates, row by row with the states recorded: the plain
/// twin of kernels::nmf_backward_unrolled. Unpadded: xhat [rows × I], W [H × I], g = dL/dh [rows × H]; writes
/// gx [rows × I] and gw [H × I] (overwritten).
template <class T>
void naive_nmf_backward_unrolled(const T* xhat, const T* W, std::size_t rows, std::size_t I, std::size_t H,
                                 std::size_t iterations, const T* eps, const T* g, T* gx, T* gw)
{
    std::fill(gx, gx + rows * I, T(0));
    std::fill(gw, gw + H * I, T(0));
    const T e = eps ? *eps : T(1);
    for (std::size_t n = 0; n < rows; ++n) {
        const T* x = xhat + n * I;
        // forward, recording h before each update, r, u and the sums
        std::vector<std::vector<T>> hs(iterations + 1, std::vector<T>(H, T(1) / T(H))), rs(iterations),
            us(iterations);
        std::vector<T> sums(iterations);
        for (std::size_t t = 0; t < iterations; ++t) {
            rs[t].assign(I, T(0));
            us[t].assign(H, T(0));
            for (std::size_t i = 0; i < I; ++i) {
                for (std::size_t k = 0; k < H; ++k)
                    rs[t][i] += hs[t][k] * W[k * I + i];
                rs[t][i] += T(1e-20);
            }
            for (std::size_t k = 0; k < H; ++k)
                for (std::size_t i = 0; i < I; ++i)
                    us[t][k] += W[k * I + i] * x[i] / rs[t][i];
            T sum = 0;
            for (std::size_t k = 0; k < H; ++k) {
                hs[t + 1][k] = eps ? hs[t][k] * (T(1) + e * us[t][k]) : hs[t][k] * us[t][k];
                sum += hs[t + 1][k];
            }
            sums[t] = sum + T(1e-19);
            for (std::size_t k = 0; k < H; ++k)
                hs[t + 1][k] /= sums[t];
        }
        // backward: h' = h̃/s, h̃ = h ⊙ u (or h ⊙ (1 + ε u)), u = (x̂ ⊘ r) Wᵀ, r = hW + 1e-20
        std::vector<T> gh(g + n * H, g + (n + 1) * H), du(H), dr(I);
        for (std::size_t t = iterations; t-- > 0;) {
            T dot = 0;
            for (std::size_t k = 0; k < H; ++k)
                dot += gh[k] * hs[t + 1][k];
            for (std::size_t k = 0; k < H; ++k) {
                const T dht = sums[t] <= T(1e-18) ? T(0) : (gh[k] - dot) / sums[t];
                du[k] = dht * hs[t][k] * (eps ? e : T(1));
                gh[k] = dht * (eps ? T(1) + e * us[t][k] : us[t][k]);
            }
            for (std::size_t i = 0; i < I; ++i) {
                T dq = 0;
                for (std::size_t k = 0; k < H; ++k)
                    dq += du[k] * W[k * I + i];
                const T q = x[i] / rs[t][i];
                gx[n * I + i] += dq / rs[t][i];
                dr[i] = -dq * q / rs[t][i];
                for (std::size_t k = 0; k < H; ++k)
                    gw[k * I + i] += du[k] * q + hs[t][k] * dr[i];
            }
            for (std::size_t k = 0; k < H; ++k)
                for (std::size_t i = 0; i < I; ++i)
                    gh[k] += dr[i] * W[k * I + i];
        }
    }
}

} // namespace nmfdsl::testing
