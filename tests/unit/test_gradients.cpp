// Finite-difference gradient checks in double for every layer, composite, graph layer and a small paper-style net.
#include <catch2/catch.hpp>

#include <nmfdsl/nmfdsl.hpp>
#include <nmfdsl/testing/gradcheck.hpp>

namespace nd = nmfdsl;
using nd::testing::check_gradients;
using nd::testing::gradcheck_options;

namespace {
constexpr double tolerance = 1e-6;

gradcheck_options positive_inputs()
{
    gradcheck_options o;
    o.input_min = 0.05;
    o.input_max = 1.0;
    return o;
}

#define NMFDSL_CHECK_GRADIENTS(result)                                                                                 \
    do {                                                                                                               \
        const auto r_ = (result);                                                                                      \
        INFO("worst entry: " << r_.worst << ", input error " << r_.input_error << ", parameter error "               \
                             << r_.param_error);                                                                       \
        CHECK(r_.checked > 0);                                                                                         \
        CHECK(r_.input_error < tolerance);                                                                             \
        CHECK(r_.param_error < tolerance);                                                                             \
    } while (false)
} // namespace

TEST_CASE("ReLU gradient", "[gradients]")
{
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::ReLU, nd::Shape<3, 5, 4>>()));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::ReLU, nd::Shape<17>>()));
}

TEST_CASE("L1Norm gradient (non-negative input)", "[gradients]")
{
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::L1Norm, nd::Shape<5, 3, 4>>(positive_inputs())));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::L1Norm, nd::Shape<9>>(positive_inputs())));
}

TEST_CASE("Softmax gradient", "[gradients]")
{
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Softmax, nd::Shape<6, 2, 3>>()));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Softmax, nd::Shape<10>>()));
}

TEST_CASE("Flatten and Dense gradients", "[gradients]")
{
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Flatten, nd::Shape<2, 3, 3>>()));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Dense<7>, nd::Shape<11>>()));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Seq<nd::Flatten, nd::Dense<3>>, nd::Shape<2, 3, 5>>()));
}

TEST_CASE("Pointwise (1x1 mixing conv) gradient, wider and narrower than its input", "[gradients]")
{
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Pointwise<5>, nd::Shape<3, 4, 5>>()));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Pointwise<2>, nd::Shape<6, 3, 3>>()));
}

TEST_CASE("Conv gradient: plain, strided, whole map, L1-normalised patches", "[gradients]")
{
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Conv<4, 3>, nd::Shape<3, 7, 6>>()));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Conv<3, 3, 2>, nd::Shape<2, 9, 8>>()));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Conv<5, nd::whole_map>, nd::Shape<3, 4, 3>>()));
    NMFDSL_CHECK_GRADIENTS(
        (check_gradients<nd::Conv<4, 3, 1, nd::patch_norm::l1>, nd::Shape<3, 6, 5>>(positive_inputs())));
}

TEST_CASE("BatchNorm gradient in both modes", "[gradients]")
{
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::BatchNorm, nd::Shape<4, 3, 3>>()));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::BatchNorm, nd::Shape<6>>()));
    auto running = [](auto& m) { m.template layer<0>().options().mode = nd::bn_mode::running_statistics; };
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::BatchNorm, nd::Shape<4, 3, 3>>({}, running)));
    gradcheck_options eval;
    eval.training = false;
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::BatchNorm, nd::Shape<4, 3, 3>>(eval, running)));
}

TEST_CASE("Pooling gradients, including maps that do not divide evenly", "[gradients]")
{
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::AvgPool<2>, nd::Shape<3, 5, 4>>()));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::MaxPool<2>, nd::Shape<3, 5, 4>>()));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::MaxPool<3>, nd::Shape<2, 6, 7>>()));
}

TEST_CASE("Composite gradients: Mix1x1 and PatchConv, with and without their BatchNorm", "[gradients]")
{
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Mix1x1<6>, nd::Shape<4, 3, 3>>(positive_inputs())));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Mix1x1<3>, nd::Shape<5, 1, 1>>(positive_inputs())));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::PatchConv<4, 3>, nd::Shape<2, 6, 6>>(positive_inputs())));
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::PatchConv<4, nd::whole_map>, nd::Shape<2, 3, 3>>(positive_inputs())));
}

TEST_CASE("Concat and Residual gradients", "[gradients][graph]")
{
    using Branchy = nd::Concat<nd::Conv<3, 5>, nd::Seq<nd::Conv<2, 5>, nd::ReLU>, nd::Seq<nd::MaxPool<2>, nd::Conv<1, 1>>>;
    NMFDSL_CHECK_GRADIENTS((check_gradients<Branchy, nd::Shape<2, 8, 8>>()));
    using Res = nd::Residual<nd::Seq<nd::Pointwise<4>, nd::BatchNorm, nd::ReLU>>;
    NMFDSL_CHECK_GRADIENTS((check_gradients<nd::Seq<Res, Res>, nd::Shape<4, 3, 3>>()));
    using Vectors = nd::Concat<nd::Dense<3>, nd::Seq<nd::Dense<2>, nd::Softmax>>;
    NMFDSL_CHECK_GRADIENTS((check_gradients<Vectors, nd::Shape<5>>()));
}

TEST_CASE("A small paper-style network end to end", "[gradients]")
{
    struct Tiny : nd::Seq<nd::PatchConv<4, 3>, nd::Mix1x1<4>, nd::AvgPool<2>, nd::PatchConv<5, nd::whole_map>,
                          nd::Mix1x1<5>, nd::Softmax, nd::Flatten> {};
    NMFDSL_CHECK_GRADIENTS((check_gradients<Tiny, nd::Shape<2, 8, 8>>(positive_inputs())));
}
