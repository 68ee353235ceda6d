#pragma once
/// @file dense_lu.hpp
/// A small dense LU factorisation with partial pivoting (PM = LU, L unit lower, both stored in M), its solves with
/// M and Mᵀ, and Hager's estimate of the 1-norm condition number ‖M‖₁·‖M⁻¹‖₁ (Hager 1984; Higham, "Accuracy and
/// Stability of Numerical Algorithms", §15.3). Used by the implicit NMF gradient for its H×H systems (H ≤ a few
/// hundred), where a LAPACK dependency would buy nothing: the systems are tiny and solved one per row.
#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>
#include <vector>

namespace nmfdsl::kernels {

class dense_lu {
public:
    /// Factorises the n×n row-major matrix m in place; m must outlive the solves. Returns false if a pivot is
    /// exactly zero (M is singular).
    bool factor(std::vector<double>& m, std::size_t n)
    {
        n_ = n;
        a_ = &m;
        perm_.resize(n);
        norm1_ = 0;
        for (std::size_t c = 0; c < n; ++c) {
            double s = 0;
            for (std::size_t r = 0; r < n; ++r)
                s += std::abs(m[r * n + c]);
            norm1_ = std::max(norm1_, s);
        }
        for (std::size_t i = 0; i < n; ++i)
            perm_[i] = i;
        for (std::size_t col = 0; col < n; ++col) {
            std::size_t piv = col;
            for (std::size_t r = col + 1; r < n; ++r)
                if (std::abs(m[r * n + col]) > std::abs(m[piv * n + col]))
                    piv = r;
            if (piv != col) {
                for (std::size_t c = 0; c < n; ++c)
                    std::swap(m[col * n + c], m[piv * n + c]);
                std::swap(perm_[col], perm_[piv]);
            }
            const double d = m[col * n + col];
            if (d == 0.0)
                return false;
            for (std::size_t r = col + 1; r < n; ++r) {
                const double f = m[r * n + col] / d;
                m[r * n + col] = f;
                if (f != 0.0)
                    for (std::size_t c = col + 1; c < n; ++c)
                        m[r * n + c] -= f * m[col * n + c];
            }
        }
        return true;
    }

    /// x ← M⁻¹ x.
    void solve(std::vector<double>& x) const
    {
        const auto& m = *a_;
        const std::size_t n = n_;
        tmp_.resize(n);
        for (std::size_t i = 0; i < n; ++i)
            tmp_[i] = x[perm_[i]];
        for (std::size_t r = 0; r < n; ++r)  // L y = P x
            for (std::size_t c = 0; c < r; ++c)
                tmp_[r] -= m[r * n + c] * tmp_[c];
        for (std::size_t r = n; r-- > 0;) {  // U x = y
            for (std::size_t c = r + 1; c < n; ++c)
                tmp_[r] -= m[r * n + c] * tmp_[c];
            tmp_[r] /= m[r * n + r];
        }
        x = tmp_;
    }

    /// x ← M⁻ᵀ x  (Mᵀ = Uᵀ Lᵀ P).
    void solve_transposed(std::vector<double>& x) const
    {
        const auto& m = *a_;
        const std::size_t n = n_;
        tmp_ = x;
        for (std::size_t r = 0; r < n; ++r) {  // Uᵀ w = x
            for (std::size_t c = 0; c < r; ++c)
                tmp_[r] -= m[c * n + r] * tmp_[c];
            tmp_[r] /= m[r * n + r];
        }
        for (std::size_t r = n; r-- > 0;)  // Lᵀ v = w
            for (std::size_t c = r + 1; c < n; ++c)
                tmp_[r] -= m[c * n + r] * tmp_[c];
        for (std::size_t i = 0; i < n; ++i)  // x = Pᵀ v
            x[perm_[i]] = tmp_[i];
    }

    /// Estimate of ‖M‖₁·‖M⁻¹‖₁ (a lower bound, usually within a factor of a few). Needs a successful factor().
    double condition_estimate() const
    {
        const std::size_t n = n_;
        std::vector<double> x(n, 1.0 / double(n)), y, z;
        double estimate = 0;
        for (int step = 0; step < 5; ++step) {
            y = x;
            solve(y);
            double norm = 0;
            for (double v : y)
                norm += std::abs(v);
            if (!std::isfinite(norm))
                return std::numeric_limits<double>::infinity();
            if (step > 0 && norm <= estimate)
                break;
            estimate = norm;
            z.resize(n);
            for (std::size_t i = 0; i < n; ++i)
                z[i] = y[i] >= 0 ? 1.0 : -1.0;
            solve_transposed(z);
            std::size_t j = 0;
            double zx = 0;
            for (std::size_t i = 0; i < n; ++i) {
                zx += z[i] * x[i];
                if (std::abs(z[i]) > std::abs(z[j]))
                    j = i;
            }
            if (std::abs(z[j]) <= zx)
                break;
            std::fill(x.begin(), x.end(), 0.0);
            x[j] = 1.0;
        }
        return norm1_ * estimate;
    }

private:
    std::size_t n_ = 0;
    std::vector<double>* a_ = nullptr;
    std::vector<std::size_t> perm_;
    mutable std::vector<double> tmp_;
    double norm1_ = 0;
};

} // namespace nmfdsl::kernels
