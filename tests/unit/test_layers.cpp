// Forward semantics of the layers: known values, invariants, initialisations and modes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>

#include <nmfdsl/nmfdsl.hpp>

namespace nd = nmfdsl;

namespace {
template <class S>
auto random_batch(std::size_t n, double lo, double hi, std::uint64_t s = 1)
{
    nd::rng g(nd::seed{s});
    auto x = xt::xtensor<double, S::rank + 1>::from_shape(nd::detail::batch_shape<S, double>(n));
    for (auto& v : x)
        v = g.uniform(lo, hi);
    return x;
}
} // namespace

TEST_CASE("ReLU, L1Norm and Softmax forward", "[layers]")
{
    using In = nd::Shape<3, 2, 2>;
    nd::Model<nd::ReLU, In, double> relu;
    auto x = random_batch<In>(2, -1, 1);
    auto y = relu.forward(x);
    for (std::size_t i = 0; i < x.size(); ++i)
        CHECK(y.data()[i] == std::max(0.0, x.data()[i]));

    nd::Model<nd::L1Norm, In, double> l1;
    auto p = random_batch<In>(2, 0, 1);
    auto q = l1.forward(p);
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t i = 0; i < 2; ++i)
            for (std::size_t j = 0; j < 2; ++j)
                CHECK(q(n, 0, i, j) + q(n, 1, i, j) + q(n, 2, i, j) == Approx(1.0));
    xt::xtensor<double, 4> zeros = xt::zeros<double>({1, 3, 2, 2});
    auto z = l1.forward(zeros);
    CHECK(std::all_of(z.begin(), z.end(), [](double v) { return v == 0.0; }));

    nd::Model<nd::Softmax, nd::Shape<4>, double> sm;
    xt::xtensor<double, 2> v{{1000.0, 1000.0, 0.0, -5.0}};
    auto s = sm.forward(v);
    CHECK(s(0, 0) == Approx(0.5));
    CHECK(s(0, 1) == Approx(0.5));
    CHECK(std::isfinite(s(0, 2)));
}

TEST_CASE("Pooling forward on known values", "[layers]")
{
    using In = nd::Shape<1, 4, 5>;
    xt::xtensor<double, 4> x = xt::xtensor<double, 4>::from_shape({1, 1, 4, 5});
    std::iota(x.begin(), x.end(), 0.0);  // row-major 0..19
    nd::Model<nd::AvgPool<2>, In, double> avg;
    auto a = avg.forward(x);
    REQUIRE(a.shape()[2] == 2);
    REQUIRE(a.shape()[3] == 2);
    CHECK(a(0, 0, 0, 0) == Approx((0 + 1 + 5 + 6) / 4.0));
    CHECK(a(0, 0, 1, 1) == Approx((12 + 13 + 17 + 18) / 4.0));
    nd::Model<nd::MaxPool<2>, In, double> mx;
    auto m = mx.forward(x);
    CHECK(m(0, 0, 0, 0) == 6.0);
    CHECK(m(0, 0, 1, 1) == 18.0);
}

TEST_CASE("MaxPool in float over many channels: the first maximum wins, its gradient goes there", "[layers]")
{
    using In = nd::Shape<37, 5, 7>;  // vectors of channels and a tail; the last row and column are dropped
    nd::Model<nd::MaxPool<2>, In, float> model;
    xt::xtensor<float, 4> x = xt::xtensor<float, 4>::from_shape({2, 37, 5, 7});
    nd::rng g(nd::seed{6});
    for (auto& v : x)
        v = std::round(g.uniform<float>(-2.0f, 2.0f));  // many ties
    const float inf = std::numeric_limits<float>::infinity();
    for (std::size_t c = 0; c < 37; c += 5) {  // some windows hold only −∞, some a NaN first
        x(0, c, 0, 0) = x(0, c, 0, 1) = x(0, c, 1, 0) = x(0, c, 1, 1) = -inf;
        x(1, c, 2, 2) = std::nanf("");
    }
    const auto y = model.forward(x);
    xt::xtensor<float, 4> dy = xt::xtensor<float, 4>::from_shape(y.shape());
    for (std::size_t i = 0; i < dy.size(); ++i)
        dy.flat(i) = float(i % 11) + 1.0f;
    const auto dx = model.backward(dy);
    xt::xtensor<float, 4> want_dx = xt::zeros<float>(x.shape());
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t c = 0; c < 37; ++c)
            for (std::size_t oy = 0; oy < 2; ++oy)
                for (std::size_t ox = 0; ox < 3; ++ox) {
                    float best = -inf;
                    std::size_t by = 2 * oy, bx = 2 * ox;  // the window's first element unless a value beats −∞
                    for (std::size_t ky = 0; ky < 2; ++ky)
                        for (std::size_t kx = 0; kx < 2; ++kx)
                            if (x(n, c, 2 * oy + ky, 2 * ox + kx) > best) {
                                best = x(n, c, 2 * oy + ky, 2 * ox + kx);
                                by = 2 * oy + ky;
                                bx = 2 * ox + kx;
                            }
                    const float got = y(n, c, oy, ox), want = x(n, c, by, bx);
                    CHECK((got == want || (std::isnan(got) && std::isnan(want))));
                    want_dx(n, c, by, bx) += dy(n, c, oy, ox);
                }
    CHECK(std::equal(dx.begin(), dx.end(), want_dx.begin()));
}

TEST_CASE("Conv forward equals a direct convolution", "[layers]")
{
    using In = nd::Shape<2, 6, 5>;
    using L = nd::Conv<3, 3, 2>;
    nd::Model<L, In, double> model{nd::seed{4}};
    auto x = random_batch<In>(2, -1, 1);
    auto y = model.forward(x);
    auto w = model.layer<0>().params("weight");  // [out][(ky, kx, c)]
    auto b = model.layer<0>().params("bias");
    REQUIRE(y.shape()[2] == 2);
    REQUIRE(y.shape()[3] == 2);
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t o = 0; o < 3; ++o)
            for (std::size_t oy = 0; oy < 2; ++oy)
                for (std::size_t ox = 0; ox < 2; ++ox) {
                    double s = b[o];
                    for (std::size_t ky = 0; ky < 3; ++ky)
                        for (std::size_t kx = 0; kx < 3; ++kx)
                            for (std::size_t c = 0; c < 2; ++c)
                                s += w[o * 18 + (ky * 3 + kx) * 2 + c] * x(n, c, oy * 2 + ky, ox * 2 + kx);
                    CHECK(y(n, o, oy, ox) == Approx(s).epsilon(1e-12));
                }
}

TEST_CASE("Conv on L1-normalised patches ignores the patch scale", "[layers]")
{
    using In = nd::Shape<2, 5, 5>;
    nd::Model<nd::Conv<3, 3, 1, nd::patch_norm::l1>, In, double> model{nd::seed{2}};
    auto x = random_batch<In>(1, 0.1, 1);
    auto y1 = model.forward(x);
    xt::xtensor<double, 4> x3 = x * 3.0;
    auto y3 = model.forward(x3);
    for (std::size_t i = 0; i < y1.size(); ++i)
        CHECK(y1.data()[i] == Approx(y3.data()[i]).epsilon(1e-12));
}

TEST_CASE("Pointwise starts near the identity on the leading diagonal", "[layers]")
{
    nd::Model<nd::Pointwise<3>, nd::Shape<5, 2, 2>> model{nd::seed{8}};
    auto w = model.layer<0>().params("weight");
    auto b = model.layer<0>().params("bias");
    for (std::size_t o = 0; o < 3; ++o) {
        for (std::size_t c = 0; c < 5; ++c)
            CHECK(std::abs(w[o * 5 + c] - (o == c ? 1.f : 0.f)) <= 0.5e-4f);
        CHECK(std::abs(b[o]) <= 0.5e-4f);
    }
    CHECK(w[0] != 1.f);  // the noise is there
}

TEST_CASE("BatchNorm: batch statistics in training and evaluation by default", "[layers][batchnorm]")
{
    using In = nd::Shape<3, 4, 4>;
    nd::Model<nd::BatchNorm, In, double> model;
    auto x = random_batch<In>(5, -2, 3);
    for (bool training : {true, false}) {
        model.set_training(training);
        auto y = model.forward(x);
        for (std::size_t c = 0; c < 3; ++c) {
            double mean = 0, sq = 0;
            for (std::size_t n = 0; n < 5; ++n)
                for (std::size_t i = 0; i < 4; ++i)
                    for (std::size_t j = 0; j < 4; ++j) {
                        mean += y(n, c, i, j);
                        sq += y(n, c, i, j) * y(n, c, i, j);
                    }
            mean /= 80;
            CHECK(std::abs(mean) < 1e-12);
            CHECK(sq / 80 - mean * mean == Approx(1.0).epsilon(1e-4));
        }
    }
    CHECK(model.flat_buffers()[0] == 0.0);  // running statistics untouched in the paper's mode
}

TEST_CASE("BatchNorm running-statistics mode", "[layers][batchnorm]")
{
    using In = nd::Shape<2>;
    nd::Model<nd::BatchNorm, In, double> model;
    model.layer<0>().options().mode = nd::bn_mode::running_statistics;
    xt::xtensor<double, 2> x{{1.0, 10.0}, {3.0, 20.0}};
    model.forward(x);  // batch mean (2, 15), unbiased variance (2, 50)
    const auto buf = model.flat_buffers();
    const std::size_t var_at = nd::padded_size(2);
    CHECK(buf[0] == Approx(0.2));
    CHECK(buf[1] == Approx(1.5));
    CHECK(buf[var_at] == Approx(0.9 + 0.1 * 2.0));
    CHECK(buf[var_at + 1] == Approx(0.9 + 0.1 * 50.0));
    model.set_training(false);
    xt::xtensor<double, 2> probe{{0.2, 1.5}};
    auto y = model.forward(probe);  // equals the running mean -> 0 after normalisation
    CHECK(std::abs(y(0, 0)) < 1e-12);
    CHECK(std::abs(y(0, 1)) < 1e-12);
}

TEST_CASE("Concat places branch outputs side by side along channels", "[layers][graph]")
{
    using In = nd::Shape<2, 3, 3>;
    using Net = nd::Concat<nd::ReLU, nd::Seq<nd::Pointwise<1>>>;
    static_assert(std::is_same_v<nd::output_shape_t<Net, In>, nd::Shape<3, 3, 3>>);
    nd::Model<Net, In, double> model;
    auto x = random_batch<In>(2, -1, 1);
    auto y = model.forward(x);
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t i = 0; i < 3; ++i)
            for (std::size_t j = 0; j < 3; ++j) {
                CHECK(y(n, 0, i, j) == std::max(0.0, x(n, 0, i, j)));
                CHECK(y(n, 1, i, j) == std::max(0.0, x(n, 1, i, j)));
                CHECK(y(n, 2, i, j) == Approx(x(n, 0, i, j)).margin(1e-3));  // near-identity Pointwise
            }
}

TEST_CASE("Residual adds its input", "[layers][graph]")
{
    using In = nd::Shape<3, 2, 2>;
    nd::Model<nd::Residual<nd::ReLU>, In, double> model;
    auto x = random_batch<In>(2, -1, 1);
    auto y = model.forward(x);
    for (std::size_t i = 0; i < x.size(); ++i)
        CHECK(y.data()[i] == Approx(x.data()[i] + std::max(0.0, x.data()[i])));
}

TEST_CASE("Losses: values, gradients and bad labels", "[loss]")
{
    xt::xtensor<double, 2> p{{0.7, 0.2, 0.1}, {0.1, 0.1, 0.8}};
    const std::size_t labels[] = {0, 1};
    const auto paper = nd::loss::PaperLoss{}(p, labels);
    const double mse = (0.09 + 0.04 + 0.01) + (0.01 + 0.81 + 0.64);
    const double kl = -std::log(0.7) - std::log(0.1);
    CHECK(paper.value == Approx((0.5 * mse / 3 + kl / 3) / 1.5));
    const auto ce = nd::loss::CrossEntropy{}(p, labels);
    CHECK(ce.value == Approx(kl / 2));
    // gradients by central differences
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t c = 0; c < 3; ++c) {
            auto hi = p, lo = p;
            hi(b, c) += 1e-7;
            lo(b, c) -= 1e-7;
            CHECK(paper.grad(b, c) == Approx((nd::loss::PaperLoss{}(hi, labels).value -
                                              nd::loss::PaperLoss{}(lo, labels).value) / 2e-7).epsilon(1e-6));
            CHECK(
                ce.grad(b, c) ==
                Approx((nd::loss::CrossEntropy{}(hi, labels).value - nd::loss::CrossEntropy{}(lo, labels).value) / 2e-7)
                    .epsilon(1e-6)
                    .margin(1e-8));
        }
    const std::size_t bad[] = {0, 3};
    CHECK_THROWS_WITH(nd::loss::PaperLoss{}(p, bad), Catch::Contains("PaperLoss") && Catch::Contains("label 3"));
    const std::size_t too_few[] = {0};
    CHECK_THROWS_AS(nd::loss::CrossEntropy{}(p, too_few), nd::shape_error);
}

// ---- the competition layers of sparse, strong activations (layers/sparse.hpp) ----

namespace {
/// The worked example of the HaH method's description (two channels on a 3×3 map), as an NCHW batch of one.
xt::xtensor<double, 4> competition_example()
{
    xt::xtensor<double, 4> x = xt::zeros<double>({1, 2, 3, 3});
    const double a0[3][3] = {{0, 1, 2}, {0.5, 0, 0}, {3, 0, 1}};
    const double a1[3][3] = {{1, 0, 0}, {0, 4, 0}, {0, 0, 2}};
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j) {
            x(0, 0, i, j) = a0[i][j];
            x(0, 1, i, j) = a1[i][j];
        }
    return x;
}
} // namespace

TEST_CASE("DivisiveNorm: the worked example (σ = 0.1)", "[layers][hah]")
{
    // S̄ = [[2.5,3,3],[3.5,3.5,3],[3.5,3.5,2.5]], M = 3.5, D = 0.35 + 0.9·S̄ + 1e-7
    const double out0[3][3] = {{0, 0.327869, 0.655738}, {0.142857, 0, 0}, {0.857143, 0, 0.384615}};
    const double out1[3][3] = {{0.384615, 0, 0}, {0, 1.142857, 0}, {0, 0, 0.769231}};
    nd::Model<nd::DivisiveNorm, nd::Shape<2, 3, 3>, double> model;
    const auto y = model.forward(competition_example());
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j) {
            CHECK(y(0, 0, i, j) == Approx(out0[i][j]).margin(1e-6));
            CHECK(y(0, 1, i, j) == Approx(out1[i][j]).margin(1e-6));
        }
    // σ = 1: every position is divided by the image's maximum of S̄ (3.5)
    model.layer<0>().options().sigma(1.0);
    const auto y1 = model.forward(competition_example());
    CHECK(y1(0, 1, 1, 1) == Approx(4.0 / (3.5 + 1e-7)));
}

namespace {
/// Integer values in {−2, …, 2}: many ties, for the tie rules of the competition layers.
template <class In>
xt::xtensor<double, 4> tied_batch(std::size_t n, std::uint64_t s)
{
    auto x = random_batch<In>(n, -2.49, 2.49, s);
    for (auto& v : x)
        v = std::round(v);
    return x;
}
} // namespace

namespace {
/// DivisiveNorm's backward (σ = 0.3) against a naive twin on a map of C channels with ties.
template <std::size_t C>
void check_divisive_norm_backward()
{
    constexpr std::size_t H = 5, W = 6;
    using In = nd::Shape<C, H, W>;
    nd::Model<nd::DivisiveNorm, In, double> model;
    model.template layer<0>().options().sigma(0.3);
    const auto x = tied_batch<In>(2, 4);
    const auto y = model.forward(x);
    const auto dy = random_batch<In>(2, -1.0, 1.0, 9);
    const auto dx = model.backward(dy);
    // the naive twin: the forward's quantities again, then the window's first maximum in scan order by search
    for (std::size_t n = 0; n < 2; ++n) {
        double S[C][H][W], bar[H][W], D[H][W];
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t i = 0; i < H; ++i)
                for (std::size_t j = 0; j < W; ++j) {
                    S[c][i][j] = 0;
                    for (std::size_t a = (i ? i - 1 : 0); a <= std::min(H - 1, i + 1); ++a)
                        for (std::size_t b = (j ? j - 1 : 0); b <= std::min(W - 1, j + 1); ++b)
                            S[c][i][j] = std::max(S[c][i][j], std::abs(x(n, c, a, b)));
                }
        std::size_t pi = 0, pj = 0;
        for (std::size_t i = 0; i < H; ++i)
            for (std::size_t j = 0; j < W; ++j) {
                bar[i][j] = 0;
                for (std::size_t c = 0; c < C; ++c)
                    bar[i][j] += S[c][i][j];
                bar[i][j] /= double(C);
                if (bar[i][j] > bar[pi][pj])
                    pi = i, pj = j;
            }
        double gd[H][W], total = 0;
        double want[C][H][W];
        for (std::size_t i = 0; i < H; ++i)
            for (std::size_t j = 0; j < W; ++j) {
                D[i][j] = 0.3 * bar[pi][pj] + 0.7 * bar[i][j] + 1e-7;
                double dot = 0;
                for (std::size_t c = 0; c < C; ++c) {
                    dot += dy(n, c, i, j) * y(n, c, i, j);
                    want[c][i][j] = dy(n, c, i, j) / D[i][j];
                }
                gd[i][j] = -dot / D[i][j];
                total += gd[i][j];
            }
        for (std::size_t i = 0; i < H; ++i)
            for (std::size_t j = 0; j < W; ++j) {
                const double g_bar = 0.7 * gd[i][j] + (i == pi && j == pj ? 0.3 * total : 0.0);
                for (std::size_t c = 0; c < C; ++c) {
                    std::size_t ai = i ? i - 1 : 0, aj = j ? j - 1 : 0;
                    for (std::size_t a = (i ? i - 1 : 0); a <= std::min(H - 1, i + 1); ++a)
                        for (std::size_t b = (j ? j - 1 : 0); b <= std::min(W - 1, j + 1); ++b)
                            if (std::abs(x(n, c, a, b)) > std::abs(x(n, c, ai, aj)))
                                ai = a, aj = b;
                    const double v = x(n, c, ai, aj);
                    want[c][ai][aj] += (v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0)) * g_bar / double(C);
                }
            }
        double worst = 0;
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t i = 0; i < H; ++i)
                for (std::size_t j = 0; j < W; ++j)
                    worst = std::max(worst, std::abs(dx(n, c, i, j) - want[c][i][j]));
        INFO("channels " << C << ", image " << n);
        CHECK(worst <= 1e-12);
    }
}
} // namespace

TEST_CASE("DivisiveNorm's backward matches its naive twin, ties included", "[layers][hah]")
{
    check_divisive_norm_backward<3>();
    check_divisive_norm_backward<37>();  // whole vectors of channels and a tail on every instruction set
}

TEST_CASE("FractionalThreshold matches a sort on maps with zeros, negatives and ties", "[layers][hah]")
{
    using In = nd::Shape<4, 5, 5>;  // k = ⌊0.8·25⌋ = 20
    nd::Model<nd::FractionalThreshold, In, double> model;
    auto x = tied_batch<In>(3, 12);
    for (std::size_t i = 0; i < 25; ++i)  // channel 0 of image 0 after a ReLU: zeros and positive ties only
        x(0, 0, i / 5, i % 5) = std::max(0.0, x(0, 0, i / 5, i % 5));
    for (std::size_t i = 0; i < 25; ++i)  // channel 1 of image 1: mostly zeros (the threshold is then 0)
        x(1, 1, i / 5, i % 5) = i % 6 == 0 ? 1.5 : 0.0;
    const auto y = model.forward(x);
    for (std::size_t n = 0; n < 3; ++n)
        for (std::size_t c = 0; c < 4; ++c) {
            std::vector<double> v;
            for (std::size_t i = 0; i < 25; ++i)
                v.push_back(x(n, c, i / 5, i % 5));
            std::sort(v.begin(), v.end());
            const double thr = v[19];
            for (std::size_t i = 0; i < 25; ++i) {
                const double xi = x(n, c, i / 5, i % 5);
                CHECK(y(n, c, i / 5, i % 5) == (xi > thr ? xi : 0.0));
            }
        }
}

TEST_CASE("FractionalThreshold: the worked example keeps two values per channel", "[layers][hah]")
{
    nd::Model<nd::Seq<nd::DivisiveNorm, nd::FractionalThreshold>, nd::Shape<2, 3, 3>, double> model;
    const auto y = model.forward(competition_example());
    // k = ⌊0.8·9⌋ = 7; the 7th smallest is 0.384615 in both channels, and only values above it stay
    std::vector<double> kept0, kept1;
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j) {
            if (y(0, 0, i, j) != 0)
                kept0.push_back(y(0, 0, i, j));
            if (y(0, 1, i, j) != 0)
                kept1.push_back(y(0, 1, i, j));
        }
    REQUIRE(kept0.size() == 2);
    REQUIRE(kept1.size() == 2);
    CHECK(kept0[0] == Approx(0.655738).margin(1e-6));
    CHECK(kept0[1] == Approx(0.857143).margin(1e-6));
    CHECK(kept1[0] == Approx(1.142857).margin(1e-6));
    CHECK(kept1[1] == Approx(0.769231).margin(1e-6));
    CHECK(y(0, 0, 2, 2) == 0.0);  // 0.384615 ties with the threshold: dropped (strict >)
}

TEST_CASE("FractionalThreshold keeps at most H·W − k values per map, the largest", "[layers][hah]")
{
    using In = nd::Shape<3, 8, 8>;  // k = ⌊0.8·64⌋ = 51: at most 13 values per map survive
    nd::Model<nd::FractionalThreshold, In, double> model;
    const auto x = random_batch<In>(4, -1.0, 1.0, 7);
    const auto y = model.forward(x);
    for (std::size_t n = 0; n < 4; ++n)
        for (std::size_t c = 0; c < 3; ++c) {
            std::vector<double> values;
            std::size_t kept = 0;
            double smallest_kept = 1e9;
            for (std::size_t i = 0; i < 8; ++i)
                for (std::size_t j = 0; j < 8; ++j) {
                    values.push_back(x(n, c, i, j));
                    if (y(n, c, i, j) != 0) {
                        ++kept;
                        CHECK(y(n, c, i, j) == x(n, c, i, j));
                        smallest_kept = std::min(smallest_kept, x(n, c, i, j));
                    }
                }
            std::sort(values.begin(), values.end());
            CHECK(kept == 13);
            CHECK(smallest_kept == values[51]);
        }
    model.layer<0>().options().remaining_ratio(0.99);  // k = ⌊0.01·64⌋ = 0: nothing removed
    const auto all = model.forward(x);
    CHECK(std::equal(all.begin(), all.end(), x.begin()));
}

TEST_CASE("Competition layers: options are validated, vectors are refused", "[layers][hah]")
{
    nd::DivisiveNorm::options d;
    CHECK_THROWS_AS(d.sigma(-0.1), nd::argument_error);
    CHECK_THROWS_WITH(d.sigma(1.5), Catch::Contains("DivisiveNorm option 'sigma'") && Catch::Contains("1.5"));
    CHECK_THROWS_AS(d.sigma(std::nan("")), nd::argument_error);
    CHECK(d.sigma(0.0).sigma() == 0.0);
    nd::FractionalThreshold::options t;
    CHECK_THROWS_WITH(t.remaining_ratio(0.0), Catch::Contains("FractionalThreshold option 'remaining_ratio'") &&
                                                  Catch::Contains("(0, 1)") && Catch::Contains("got 0"));
    CHECK_THROWS_AS(t.remaining_ratio(1.0), std::invalid_argument);  // ρ lies in the open interval (0, 1)
    CHECK_THROWS_AS(t.remaining_ratio(1.2), nd::argument_error);
    CHECK_THROWS_AS(d.sigma(1.01), std::invalid_argument);
    CHECK(t.remaining_ratio(0.5).remaining_ratio() == 0.5);
    STATIC_REQUIRE(nd::detail::issue_of<nd::DivisiveNorm, nd::Shape<12>>() == nd::shape_issue::needs_map);
    STATIC_REQUIRE(nd::detail::issue_of<nd::FractionalThreshold, nd::Shape<12>>() == nd::shape_issue::needs_map);
    STATIC_REQUIRE(nd::detail::issue_of<nd::FractionalThreshold, nd::Shape<2, 3, 3>>() == nd::shape_issue::none);
    CHECK(nd::FractionalThreshold::rank_of(0.2, 32 * 32) == 819);
    CHECK(nd::FractionalThreshold::rank_of(0.2, 16 * 16) == 204);
    CHECK(nd::FractionalThreshold::rank_of(0.2, 8 * 8) == 51);
    CHECK(nd::FractionalThreshold::rank_of(0.2, 10) == 8);
}

TEST_CASE("Normalize standardises each channel with fixed statistics", "[layers][hah]")
{
    using In = nd::Shape<3, 2, 2>;
    nd::Model<nd::Normalize, In, double> model;
    const auto x = random_batch<In>(2, 0.0, 1.0, 3);
    const auto same = model.forward(x);  // no statistics set: the identity
    CHECK(std::equal(same.begin(), same.end(), x.begin()));
    model.layer<0>().options().channels({0.4914, 0.4822, 0.4465}, {0.2471, 0.2435, 0.2616});
    const auto y = model.forward(x);
    CHECK(y(1, 2, 1, 0) == Approx((x(1, 2, 1, 0) - 0.4465) / 0.2616));
    CHECK(y(0, 0, 0, 1) == Approx((x(0, 0, 0, 1) - 0.4914) / 0.2471));
    nd::Normalize::options o;
    CHECK_THROWS_WITH(o.channels({0.5, 0.5}, {0.2}), Catch::Contains("Normalize option 'channels'"));
    CHECK_THROWS_WITH(o.channels({0.5}, {0.0}), Catch::Contains("channel 0"));
    nd::Model<nd::Seq<nd::ReLU, nd::Normalize>, In, double> wrong;
    wrong.layer<1>().options().channels({0.5, 0.5}, {0.2, 0.2});
    CHECK_THROWS_WITH(wrong.forward(x), Catch::Contains("layer 1 (Normalize)") && Catch::Contains("3 channels"));
}

TEST_CASE("WNConv: a convolution with unit-norm filters, blind to their scale; ZeroPad keeps the map size",
          "[layers][hah]")
{
    using In = nd::Shape<2, 5, 4>;
    using Net = nd::WNConv<3, 3, 1, 1>;
    static_assert(std::is_same_v<nd::output_shape_t<Net, In>, nd::Shape<3, 5, 4>>);
    static_assert(std::is_same_v<nd::output_shape_t<nd::WNConv<3, 3>, In>, nd::Shape<3, 3, 2>>);
    static_assert(nd::parameter_count_v<Net, In> == 3 * 3 * 3 * 2);  // no bias
    nd::Model<Net, In, double> model;
    const auto x = random_batch<In>(2, -1.0, 1.0, 5);
    const auto y = model.forward(x);
    // direct: y[n,k,i,j] = Σ W[k,(ky,kx,c)] x_pad[n,c,i+ky−1,j+kx−1] / (‖W_k‖ + 1e-6)
    const auto w = model.layer<1>().params("weight");
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t k = 0; k < 3; ++k) {
            double norm = 0;
            for (std::size_t i = 0; i < 18; ++i)
                norm += w[k * 18 + i] * w[k * 18 + i];
            norm = std::sqrt(norm) + 1e-6;
            for (std::size_t i = 0; i < 5; ++i)
                for (std::size_t j = 0; j < 4; ++j) {
                    double s = 0;
                    for (std::size_t ky = 0; ky < 3; ++ky)
                        for (std::size_t kx = 0; kx < 3; ++kx)
                            for (std::size_t c = 0; c < 2; ++c) {
                                const long yy = long(i + ky) - 1, xx = long(j + kx) - 1;
                                if (yy >= 0 && yy < 5 && xx >= 0 && xx < 4)
                                    s += w[k * 18 + (ky * 3 + kx) * 2 + c] * x(n, c, std::size_t(yy), std::size_t(xx));
                            }
                    CHECK(y(n, k, i, j) == Approx(s / norm).epsilon(1e-12));
                }
        }
    for (auto& v : model.layer<1>().params("weight"))
        v *= 7.0;  // the filters' scale does not change the output (up to the 1e-6 of the divisor)
    const auto y7 = model.forward(x);
    for (std::size_t i = 0; i < y.size(); ++i)
        CHECK(y7.data()[i] == Approx(y.data()[i]).epsilon(1e-5));
}

TEST_CASE("HaHBlock expands into WNConv → ReLU → DivisiveNorm → FractionalThreshold", "[layers][hah]")
{
    using In = nd::Shape<3, 8, 8>;
    using Net = nd::HaHBlock<6>;
    static_assert(std::is_same_v<nd::output_shape_t<Net, In>, nd::Shape<6, 8, 8>>);
    nd::Model<Net, In, double> model;
    const std::string s = model.summary();
    CHECK(s.find("ZeroPad<1>") != std::string::npos);
    CHECK(s.find("WNConv<6,3>") != std::string::npos);
    CHECK(s.find("FractionalThreshold") != std::string::npos);
    const auto y = model.forward(random_batch<In>(2, 0.0, 1.0, 9));
    // at most 13 of the 64 positions of each 8×8 map survive the threshold, and every survivor is positive
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t c = 0; c < 6; ++c) {
            std::size_t kept = 0;
            for (std::size_t i = 0; i < 8; ++i)
                for (std::size_t j = 0; j < 8; ++j)
                    if (y(n, c, i, j) != 0) {
                        ++kept;
                        CHECK(y(n, c, i, j) > 0);
                    }
            CHECK(kept <= 13);
        }
}

// ---- layer-local costs: the Hebbian/anti-Hebbian cost of WNConv ----

namespace {
/// −α·HaH of a conv output y [N, C, H, W], by sorting each position's channel vector (the naive twin).
double naive_hah(const xt::xtensor<double, 4>& y, double alpha, double k_ratio, double lambda)
{
    const std::size_t N = y.shape()[0], C = y.shape()[1], H = y.shape()[2], W = y.shape()[3];
    const std::size_t K =
        std::min<std::size_t>(C - 1, std::max<std::size_t>(1, std::size_t(std::ceil(k_ratio * C - 1e-9))));
    double total = 0;
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t i = 0; i < H; ++i)
            for (std::size_t j = 0; j < W; ++j) {
                std::vector<double> v;
                for (std::size_t c = 0; c < C; ++c)
                    v.push_back(std::max(0.0, y(n, c, i, j)));
                std::sort(v.rbegin(), v.rend());
                double top = 0, rest = 0;
                for (std::size_t c = 0; c < C; ++c)
                    (c < K ? top : rest) += v[c];
                total += top / double(K) - lambda * rest / double(C - K);
            }
    return -alpha * total / double(N * H * W);
}
} // namespace

TEST_CASE("WNConv's HaH cost ranks a row's channels with ties", "[layers][hah][local]")
{
    using Core = nd::WNConvCore<8, 1>;
    const std::array<double, 8> y{3, 1, 3, 0, -1, 2, 3, 0};  // max(y, 0) sums to 12
    const auto two = Core::split_strongest(y.data(), 2);  // two of the three 3s
    CHECK((two.threshold == 3 && two.tied == 2 && two.top == 6 && two.rest == 6));
    const auto four = Core::split_strongest(y.data(), 4);  // 3, 3, 3, 2
    CHECK((four.threshold == 2 && four.tied == 1 && four.top == 11 && four.rest == 1));
    const auto seven = Core::split_strongest(y.data(), 7);  // the five positive values and two of the three zeros
    CHECK((seven.threshold == 0 && seven.tied == 2 && seven.top == 12 && seven.rest == 0));
    using Wide = nd::WNConvCore<37, 1>;  // longer than a vector, with a tail
    std::array<float, 37> w{};
    for (std::size_t i = 0; i < 37; ++i)
        w[i] = float((i * 7) % 5) - 1.0f;  // values −1 … 3, many ties
    const auto s = Wide::split_strongest(w.data(), 4);
    CHECK((s.threshold == 3.0f && s.tied == 4 && s.top == 12.0));
}

TEST_CASE("WNConv's HaH cost ranks blocks of rows as it ranks each row", "[layers][hah][local]")
{
    using Wide = nd::WNConvCore<37, 1>;
    constexpr std::size_t rows = 53;  // whole blocks of rows on every ISA, and rows after them
    std::vector<float> y(rows * 37);
    nd::rng g(nd::seed{9});
    for (std::size_t i = 0; i < y.size(); ++i)  // small whole numbers: ties everywhere, and rows of zeros
        y[i] = std::round(g.uniform<float>(i / 37 % 5 == 0 ? -40.0f : -4.0f, 3.0f));
    for (std::size_t strong : {std::size_t(1), std::size_t(4), std::size_t(36)}) {
        std::vector<Wide::strongest<float>> split;
        Wide::rank_rows(y.data(), rows, strong, split);
        REQUIRE(split.size() == rows);
        for (std::size_t r = 0; r < rows; ++r) {
            const auto one = Wide::split_strongest(y.data() + r * 37, strong);
            INFO("row " << r << ", K " << strong);
            CHECK(split[r].threshold == one.threshold);
            CHECK(split[r].tied == one.tied);
            CHECK((split[r].equal > split[r].tied) == (one.equal > one.tied));
            CHECK(split[r].top == one.top);  // whole numbers: every sum is exact
            CHECK(split[r].rest == one.rest);
        }
    }
}

TEST_CASE("WNConv's HaH cost gradient per row matches the naive rule, ties across the K-th place included",
          "[layers][hah][local]")
{
    using Wide = nd::WNConvCore<37, 1>;  // a vector's worth of channels and more, with a tail
    const float g_strong = -1.0f, g_weak = 0.25f;
    nd::rng g(nd::seed{4});
    for (std::size_t row = 0; row < 200; ++row) {
        std::array<float, 37> y{};
        for (auto& v : y)  // rounded values: many rows tie across the K-th place, some have fewer than K positives
            v = std::round(g.uniform<float>(row % 4 == 0 ? -30.0f : -3.0f, row % 4 == 0 ? 1.5f : 3.0f));
        for (std::size_t strong : {std::size_t(1), std::size_t(4), std::size_t(11)}) {
            const auto split = Wide::split_strongest(y.data(), strong);
            std::array<float, 37> got{};
            Wide::strong_weak_gradient(y.data(), split, g_strong, g_weak, got.data());
            // naive: order the channels by value, the lower index first among equals; the first `strong` win
            std::array<std::size_t, 37> order{};
            for (std::size_t c = 0; c < 37; ++c)
                order[c] = c;
            std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return y[a] > y[b]; });
            std::array<float, 37> want{};
            for (std::size_t place = 0; place < 37; ++place) {
                const std::size_t c = order[place];
                want[c] = y[c] > 0 ? (place < strong ? g_strong : g_weak) : 0.0f;
            }
            INFO("row " << row << ", K " << strong);
            CHECK(std::equal(got.begin(), got.end(), want.begin()));
        }
    }
}

TEST_CASE("WNConv's HaH cost: value, gradient on the weights only, paths inside graphs", "[layers][hah][local]")
{
    using In = nd::Shape<3, 5, 5>;
    using Core = nd::WNConvCore<10, 3>;
    nd::Model<nd::Seq<nd::Pointwise<3>, Core>, In, double> model;
    CHECK_THROWS_AS(model.add_local_costs(), nd::shape_error);  // before any forward
    const auto x = random_batch<In>(2, -1.0, 1.0, 21);
    model.forward(x);
    CHECK(model.add_local_costs().empty());  // α = 0 by default: no cost
    model.layer<1>().options().hah_alpha(0.5).hah_k_ratio(0.2).hah_lambda(0.7);  // K = 2 of 10 channels
    const auto y = model.forward(x);
    model.zero_grad();
    const auto costs = model.add_local_costs();
    REQUIRE(costs.size() == 1);
    CHECK(costs[0].path == "1");
    CHECK(costs[0].layer == "WNConv<10,3>");
    CHECK(costs[0].value == Approx(naive_hah(y, 0.5, 0.2, 0.7)).epsilon(1e-12));
    CHECK(costs[0].value < 0);  // the cost rewards the strong channels: −α·HaH with HaH > 0 here
    // the gradient reaches the WNConv weights only: the Pointwise before it (its input) gets none
    for (double g : model.layer<0>().grads("weight"))
        CHECK(g == 0.0);
    // and it is the gradient of the cost with the input held fixed: central differences on the weights
    const auto analytic = model.layer<1>().grads("weight");
    CHECK(std::any_of(analytic.begin(), analytic.end(), [](double g) { return std::abs(g) > 1e-4; }));
    auto w = model.layer<1>().params("weight");
    const double h = 1e-6;
    double worst = 0;
    for (std::size_t i = 0; i < w.size(); i += 7) {
        const double keep = w[i];
        w[i] = keep + h;
        const double up = naive_hah(model.forward(x), 0.5, 0.2, 0.7);
        w[i] = keep - h;
        const double down = naive_hah(model.forward(x), 0.5, 0.2, 0.7);
        w[i] = keep;
        const double fd = (up - down) / (2 * h);
        worst = std::max(worst, std::abs(fd - analytic[i]) / std::max(1e-3, std::abs(fd)));
    }
    CHECK(worst < 1e-5);
    // accumulate, like every gradient: a second call adds the same amount again
    model.forward(x);
    model.zero_grad();
    model.add_local_costs();
    const std::vector<double> once(model.layer<1>().grads("weight").begin(), model.layer<1>().grads("weight").end());
    model.add_local_costs();
    const auto twice = model.layer<1>().grads("weight");
    for (std::size_t i = 0; i < once.size(); ++i)
        CHECK(twice[i] == Approx(2 * once[i]));

    // inside a graph layer the cost is found and named by its path
    nd::Model<nd::Seq<nd::ReLU, nd::Residual<nd::Seq<nd::WNConv<3, 3, 1, 1>>>>, In, double> graph;
    graph.forward(x);
    graph.configure<Core::options>([](Core::options&) {});  // a different type: reaches nothing
    std::size_t reached = graph.configure<nd::WNConvCore<3, 3>::options>([](auto& o) { o.hah_alpha(0.1); });
    CHECK(reached == 1);
    graph.forward(x);
    const auto inner = graph.add_local_costs();
    REQUIRE(inner.size() == 1);
    CHECK(inner[0].path == "1/0/1");

    nd::WNConvCore<4, 3>::options o;
    CHECK_THROWS_WITH(o.hah_alpha(-1), Catch::Contains("WNConv option 'hah_alpha'") && Catch::Contains("got -1"));
    CHECK_THROWS_AS(o.hah_k_ratio(0), nd::argument_error);
    CHECK_THROWS_AS(o.hah_k_ratio(1.5), std::invalid_argument);
    CHECK_THROWS_AS(o.hah_lambda(-0.5), std::invalid_argument);
    CHECK(o.hah_k_ratio(1.0).hah_k_ratio() == 1.0);  // K-ratio's interval (0, 1] includes 1
    CHECK_THROWS_AS(o.hah_lambda(std::nan("")), nd::argument_error);
    CHECK(nd::WNConvCore<64, 3>::strong_count(0.1, 64) == 7);
    CHECK(nd::WNConvCore<512, 3>::strong_count(0.1, 512) == 52);
}

TEST_CASE("Local costs added in the backward sweep equal backward_parameters then add_local_costs",
          "[layers][hah][local]")
{
    // HaH blocks fold their cost into the backward's weight-gradient product; the one inside Residual is added by
    // the graph layer's local_costs before its backward
    using In = nd::Shape<2, 8, 8>;
    struct Net : nd::Seq<nd::HaHBlock<12>, nd::Residual<nd::Seq<nd::WNConv<12, 3, 1, 1>, nd::ReLU>>, nd::MaxPool<2>,
                         nd::HaHBlock<20>, nd::Flatten, nd::Dense<4>, nd::Softmax> {};
    nd::Model<Net, In, double> separate{nd::seed{12}}, fused{nd::seed{12}};
    for (auto* m : {&separate, &fused}) {
        m->configure<nd::WNConvCore<12, 3>::options>([](auto& o) { o.hah_alpha(0.03).hah_lambda(0.5); });
        m->configure<nd::WNConvCore<20, 3>::options>([](auto& o) { o.hah_alpha(0.02); });
    }
    const auto x = random_batch<In>(5, 0.0, 1.0, 13);
    const auto y = separate.forward(x);
    fused.forward(x);
    const xt::xtensor<double, 2> dy = xt::ones_like(y) - y;
    separate.zero_grad();
    separate.backward_parameters(dy);
    const auto costs = separate.add_local_costs();
    fused.zero_grad();
    const auto folded = fused.backward_parameters_and_local_costs(dy);
    REQUIRE(costs.size() == 3);
    REQUIRE(folded.size() == costs.size());
    for (std::size_t i = 0; i < costs.size(); ++i) {
        CHECK(folded[i].path == costs[i].path);  // the same layers, in the same (layer) order
        CHECK(folded[i].layer == costs[i].layer);
        CHECK(folded[i].value == Approx(costs[i].value).epsilon(1e-12));
    }
    const auto a = separate.flat_gradients();
    const auto b = fused.flat_gradients();
    REQUIRE(a.size() == b.size());
    double worst = 0, largest = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::abs(a[i] - b[i]));
        largest = std::max(largest, std::abs(a[i]));
    }
    CHECK(largest > 0);
    CHECK(worst <= 1e-12 * largest);
    // and without any local cost it is backward_parameters exactly
    for (auto* m : {&separate, &fused})
        m->configure<nd::WNConvCore<12, 3>::options>([](auto& o) { o.hah_alpha(0); });
    separate.forward(x);
    fused.forward(x);
    separate.zero_grad();
    fused.zero_grad();
    separate.backward_parameters(dy);
    CHECK(fused.backward_parameters_and_local_costs(dy).size() == 1);  // the HaHBlock<20> alone
    fused.configure<nd::WNConvCore<20, 3>::options>([](auto& o) { o.hah_alpha(0); });
    separate.configure<nd::WNConvCore<20, 3>::options>([](auto& o) { o.hah_alpha(0); });
    separate.forward(x);
    fused.forward(x);
    separate.zero_grad();
    fused.zero_grad();
    separate.backward_parameters(dy);
    CHECK(fused.backward_parameters_and_local_costs(dy).empty());
    // bad input: a gradient of the wrong shape, and a call before any forward
    const xt::xtensor<double, 2> wrong = xt::zeros<double>({std::size_t(4), std::size_t(4)});
    CHECK_THROWS_WITH(fused.backward_parameters_and_local_costs(wrong),
                      Catch::Contains("backward expects the gradient of the network output [5, 4]") &&
                          Catch::Contains("got [4, 4]"));
    nd::Model<Net, In, double> fresh{nd::seed{12}};
    CHECK_THROWS_WITH(fresh.backward_parameters_and_local_costs(dy), Catch::Contains("before forward"));
    CHECK(std::equal(separate.flat_gradients().begin(), separate.flat_gradients().end(),
                     fused.flat_gradients().begin()));
}

TEST_CASE("A black image gives finite outputs and gradients through every HaH layer", "[layers][hah]")
{
    using In = nd::Shape<2, 6, 6>;
    using Net = nd::Seq<nd::Normalize, nd::HaHBlock<8>, nd::MaxPool<2>, nd::HaHBlock<4>, nd::Flatten, nd::Dense<3>,
                        nd::Softmax>;
    nd::Model<Net, In, double> model{nd::seed{5}};
    model.configure<nd::WNConvCore<8, 3>::options>([](auto& o) { o.hah_alpha(0.01); });
    model.configure<nd::WNConvCore<4, 3>::options>([](auto& o) { o.hah_alpha(0.01); });
    // a black image (0 everywhere), also after Normalize's standardisation with mean 0
    const xt::xtensor<double, 4> x = xt::zeros<double>({2, 2, 6, 6});
    const auto y = model.forward(x);
    for (double v : y)
        CHECK(std::isfinite(v));
    model.zero_grad();
    const auto dx = model.backward(xt::ones_like(y) - y);
    for (double v : dx)
        CHECK(std::isfinite(v));
    const auto costs = model.add_local_costs();
    CHECK(costs.size() == 2);
    for (const auto& c : costs)
        CHECK(std::isfinite(c.value));
    const auto grads = model.flat_gradients();
    CHECK(std::all_of(grads.begin(), grads.end(), [](double g) { return std::isfinite(g); }));
    CHECK(std::any_of(grads.begin(), grads.end(), [](double g) { return g != 0.0; }));  // the head still learns
}

TEST_CASE("Errors: one nmfdsl base, each also the standard exception that fits it", "[layers][errors]")
{
    STATIC_REQUIRE(std::is_base_of_v<std::invalid_argument, nd::argument_error>);
    STATIC_REQUIRE(std::is_base_of_v<nd::error, nd::argument_error>);
    STATIC_REQUIRE(std::is_base_of_v<std::runtime_error, nd::shape_error>);
    STATIC_REQUIRE(std::is_base_of_v<nd::error, nd::io_error>);
    // caught once by std::exception (one standard base, no ambiguity), and by nmfdsl::error with the same message
    try {
        nd::FractionalThreshold::options{}.remaining_ratio(2.0);
        FAIL("no exception");
    } catch (const nd::error& e) {
        CHECK(std::string(e.what()).find("got 2") != std::string::npos);
    }
    try {
        throw nd::data_error("nmfdsl: file 'x' is truncated");
    } catch (const std::exception& e) {
        CHECK(std::string(e.what()) == "nmfdsl: file 'x' is truncated");
    }
}

TEST_CASE("Activation statistics: non-zero fractions and WNConv's disparity, by layer path", "[layers][hah]")
{
    using In = nd::Shape<3, 6, 7>;
    using Core = nd::WNConvCore<10, 3>;
    nd::Model<nd::Seq<Core, nd::ReLU, nd::FractionalThreshold>, In, double> model{nd::seed{8}};
    CHECK_THROWS_AS(model.activation_statistics(), nd::shape_error);  // before any forward
    model.layer<0>().options().hah_k_ratio(0.2);  // K = 2 of 10 channels
    const auto x = random_batch<In>(3, -1.0, 1.0, 17);
    const auto y = model.forward(x);
    const auto stats = model.activation_statistics();
    REQUIRE(stats.size() == 3);
    CHECK((stats[0].path == "0" && stats[0].layer == "WNConv<10,3>" && stats[0].name == "disparity"));
    CHECK((stats[1].path == "1" && stats[1].layer == "ReLU" && stats[1].name == "nonzero"));
    CHECK((stats[2].path == "2" && stats[2].layer == "FractionalThreshold" && stats[2].name == "nonzero"));
    // the naive twins, from the convolution alone (same weights)
    nd::Model<Core, In, double> conv;
    std::copy(model.flat_parameters().begin(), model.flat_parameters().end(), conv.flat_parameters().begin());
    const auto u = conv.forward(x);  // [3, 10, 4, 5]
    double disparity = 0, positive = 0;
    for (std::size_t n = 0; n < 3; ++n)
        for (std::size_t i = 0; i < 4; ++i)
            for (std::size_t j = 0; j < 5; ++j) {
                double norm2 = 0;
                for (std::size_t c = 0; c < 3; ++c)
                    for (std::size_t a = 0; a < 3; ++a)
                        for (std::size_t b = 0; b < 3; ++b)
                            norm2 += x(n, c, i + a, j + b) * x(n, c, i + a, j + b);
                std::vector<double> v;
                for (std::size_t k = 0; k < 10; ++k) {
                    v.push_back(std::max(0.0, u(n, k, i, j)));
                    positive += u(n, k, i, j) > 0;
                }
                std::sort(v.rbegin(), v.rend());
                const double top = (v[0] + v[1]) / 2, rest = std::accumulate(v.begin() + 2, v.end(), 0.0) / 8;
                disparity += (top - rest) / (std::sqrt(norm2) + 1e-6);
            }
    CHECK(stats[0].value == Approx(disparity / 60).epsilon(1e-12));
    CHECK(stats[0].value > 0);
    CHECK(stats[0].value <= 1.0);  // a difference of cosines between unit filters and the patch
    CHECK(stats[1].value == Approx(positive / double(u.size())).epsilon(1e-12));
    const double kept = double(std::count_if(y.begin(), y.end(), [](double v) { return v != 0.0; }));
    CHECK(stats[2].value == Approx(kept / double(y.size())).epsilon(1e-12));
    CHECK(stats[2].value <= 0.2 + 1e-12);
    // statistics change nothing: the same values again
    const auto again = model.activation_statistics();
    CHECK(again[0].value == stats[0].value);

    // inside a graph layer they are found and named by their path
    nd::Model<nd::Seq<nd::ReLU, nd::Residual<nd::Seq<nd::Pointwise<3>, nd::ReLU>>>, In, double> graph;
    graph.forward(x);
    const auto inner = graph.activation_statistics();
    REQUIRE(inner.size() == 2);
    CHECK(inner[0].path == "0");
    CHECK(inner[1].path == "1/0/1");
}

TEST_CASE("HaH layers, their costs and statistics do not depend on the thread count", "[layers][hah][threads]")
{
    const std::size_t before = nd::threads();
    struct Net : nd::Seq<nd::HaHBlock<12>, nd::MaxPool<2>, nd::HaHBlock<20>, nd::Flatten, nd::Dense<4>, nd::Softmax> {};
    auto run = [](std::size_t threads) {
        nd::set_threads(threads);
        nd::Model<Net, nd::Shape<2, 12, 12>> m{nd::seed{6}};
        m.configure<nd::WNConvCore<12, 3>::options>([](auto& o) { o.hah_alpha(0.01); });
        m.configure<nd::WNConvCore<20, 3>::options>([](auto& o) { o.hah_alpha(0.02); });
        nd::rng g(nd::seed{7});
        xt::xtensor<float, 4> x = xt::xtensor<float, 4>::from_shape({29, 2, 12, 12});
        for (auto& v : x)
            v = g.uniform01<float>();
        const auto y = m.forward(x);
        m.zero_grad();
        const auto dx = m.backward(xt::ones_like(y) - y);
        std::vector<double> all(y.begin(), y.end());
        all.insert(all.end(), dx.begin(), dx.end());
        for (const auto& c : m.add_local_costs())
            all.push_back(c.value);
        all.insert(all.end(), m.flat_gradients().begin(), m.flat_gradients().end());
        for (const auto& s : m.activation_statistics())
            all.push_back(s.value);
        m.zero_grad();  // and training's path: the local costs added within the backward sweep
        for (const auto& c : m.backward_parameters_and_local_costs(xt::ones_like(y) - y))
            all.push_back(c.value);
        all.insert(all.end(), m.flat_gradients().begin(), m.flat_gradients().end());
        return all;
    };
    const auto one = run(1);
    const auto three = run(3);
    nd::set_threads(before);
    CHECK(one.size() == three.size());
    CHECK(one == three);
}
