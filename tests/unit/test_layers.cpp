// Forward semantics of the layers: known values, invariants, initialisations and modes.
#include <catch2/catch.hpp>

#include <cmath>
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
            CHECK(ce.grad(b, c) == Approx((nd::loss::CrossEntropy{}(hi, labels).value -
                                           nd::loss::CrossEntropy{}(lo, labels).value) / 2e-7).epsilon(1e-6).margin(1e-8));
        }
    const std::size_t bad[] = {0, 3};
    CHECK_THROWS_WITH(nd::loss::PaperLoss{}(p, bad), Catch::Contains("PaperLoss") && Catch::Contains("label 3"));
    const std::size_t too_few[] = {0};
    CHECK_THROWS_AS(nd::loss::CrossEntropy{}(p, too_few), nd::shape_error);
}
