// Compares the three gradient modes of the NMF layer on random problems (I = 12, H = 5):
// the exact gradient of the T-step forward (unrolled), the paper's approximation, and implicit differentiation at
// the fixed point. Directions are compared where they matter: the x̂-gradient centred (the patch L1 norm removes a
// constant shift) and each row of the W-gradient centred (W's rows stay on the simplex).
//   ./nmfdsl-gradient-modes
#include <cmath>
#include <iomanip>
#include <iostream>
#include <vector>

#include <nmfdsl/nmfdsl.hpp>

namespace nd = nmfdsl;
namespace k = nmfdsl::kernels;

namespace {
struct grads {
    std::vector<double> x, w;
};

void centre(std::vector<double>& v, std::size_t len)
{
    for (std::size_t s = 0; s < v.size(); s += len) {
        double m = 0;
        for (std::size_t i = 0; i < len; ++i)
            m += v[s + i];
        m /= double(len);
        for (std::size_t i = 0; i < len; ++i)
            v[s + i] -= m;
    }
}

double cosine(const std::vector<double>& a, const std::vector<double>& b)
{
    double ab = 0, aa = 0, bb = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        ab += a[i] * b[i];
        aa += a[i] * a[i];
        bb += b[i] * b[i];
    }
    return ab / std::sqrt(aa * bb);
}

double norm_ratio(const std::vector<double>& a, const std::vector<double>& b)
{
    double aa = 0, bb = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        aa += a[i] * a[i];
        bb += b[i] * b[i];
    }
    return std::sqrt(aa / bb);
}
} // namespace

int main()
{
    constexpr std::size_t I = 12, H = 5, problems = 20;
    std::cout << "mean over " << problems
              << " random problems (I = 12, H = 5); reference: the exact (unrolled) gradient\n";
    std::cout << std::setw(6) << "T" << std::setw(14) << "mode" << std::setw(10) << "cos x" << std::setw(10) << "cos W"
              << std::setw(16) << "|mode|/|exact|" << '\n';
    for (std::size_t T : {5, 20, 200}) {
        double sums[2][3] = {};
        for (std::size_t p = 0; p < problems; ++p) {
            nd::rng g(nd::seed{100 + p});
            std::vector<double> W(H * I), G(H);
            for (std::size_t r = 0; r < H; ++r) {
                double s = 0;
                for (std::size_t i = 0; i < I; ++i)
                    s += W[r * I + i] = g.uniform01<double>();
                for (std::size_t i = 0; i < I; ++i)
                    W[r * I + i] /= s;
            }
            for (auto& v : G)
                v = g.uniform(-1.0, 1.0);
            k::nmf_weights<double> wts;
            wts.assign(W.data(), H, I);
            nd::aligned_vector<double> x(k::nmf_layout<double>::pad_rows(1) * wts.ip, 0.0);
            double s = 0;
            for (std::size_t i = 0; i < I; ++i)
                s += x[i] = g.uniform01<double>();
            for (std::size_t i = 0; i < I; ++i)
                x[i] /= s;
            std::vector<double> h(H);
            k::nmf_forward(wts, x.data(), 1, T, std::nullopt, h.data());
            auto run = [&](int mode) {
                grads r{std::vector<double>(x.size()), std::vector<double>(H * wts.ip)};
                k::nmf_backward_scratch<double> bs;
                if (mode == 0)
                    k::nmf_backward_unrolled(wts, x.data(), 1, T, std::nullopt, G.data(), r.x.data(), r.w.data(), bs);
                else if (mode == 1)
                    k::nmf_backward_approx(wts, x.data(), h.data(), G.data(), 1, r.x.data(), r.w.data(), bs);
                else
                    k::nmf_backward_implicit(wts, x.data(), h.data(), G.data(), 1, r.x.data(), r.w.data(), bs);
                r.x.resize(I);
                std::vector<double> w(H * I);
                for (std::size_t q = 0; q < H; ++q)
                    for (std::size_t i = 0; i < I; ++i)
                        w[q * I + i] = r.w[q * wts.ip + i];
                r.w = w;
                centre(r.x, I);
                centre(r.w, I);
                return r;
            };
            const grads exact = run(0);
            for (int m = 1; m <= 2; ++m) {
                const grads got = run(m);
                sums[m - 1][0] += cosine(got.x, exact.x);
                sums[m - 1][1] += cosine(got.w, exact.w);
                sums[m - 1][2] += norm_ratio(got.w, exact.w);
            }
        }
        const char* names[] = {"approximate", "implicit"};
        for (int m = 0; m < 2; ++m)
            std::cout << std::setw(6) << T << std::setw(14) << names[m] << std::fixed << std::setprecision(3)
                      << std::setw(10) << sums[m][0] / problems << std::setw(10) << sums[m][1] / problems
                      << std::setw(16) << sums[m][2] / problems << '\n';
    }
    return 0;
}
