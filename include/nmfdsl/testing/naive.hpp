#pragma once
/// @file naive.hpp
/// Naive reference twins of the optimised kernels: the obvious loops, written for clarity, used by the tests.
#include <cstddef>
#include <vector>

#include "../kernels/im2col.hpp"

namespace nmfdsl::testing {

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

} // namespace nmfdsl::testing
