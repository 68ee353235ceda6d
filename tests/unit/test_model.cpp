// The Model: runtime shape errors, summary, parameter groups and alignment, layer access, workspaces, determinism.
#include <catch2/catch.hpp>

#include <cstdint>

#include <nmfdsl/nmfdsl.hpp>

#include "../../examples/paper_models.hpp"

namespace nd = nmfdsl;

namespace {
struct Small : nd::Seq<nd::PatchConv<4, 3>, nd::Mix1x1<4>, nd::AvgPool<2>, nd::Flatten, nd::Dense<3>, nd::Softmax> {};
using SmallIn = nd::Shape<2, 8, 8>;

xt::xtensor<float, 4> ramp(std::size_t n, std::size_t c, std::size_t h, std::size_t w)
{
    xt::xtensor<float, 4> x = xt::xtensor<float, 4>::from_shape({n, c, h, w});
    for (std::size_t i = 0; i < x.size(); ++i)
        x.data()[i] = static_cast<float>((i * 37) % 101) / 101.f;
    return x;
}
} // namespace

TEST_CASE("A batch with the wrong per-sample shape throws shape_error naming the layer and both shapes", "[model]")
{
    nd::Model<Small, SmallIn> model;
    auto wrong_channels = ramp(5, 3, 8, 8);
    CHECK_THROWS_AS(model.forward(wrong_channels), nd::shape_error);
    CHECK_THROWS_WITH(model.forward(wrong_channels),
                      "nmfdsl: layer 0 (ReLU) expects input [N, 2, 8, 8], got [5, 3, 8, 8]");
    auto wrong_size = ramp(5, 2, 8, 9);
    CHECK_THROWS_WITH(model.forward(wrong_size), Catch::Contains("got [5, 2, 8, 9]"));
    xt::xtensor<float, 3> wrong_rank = xt::zeros<float>({5, 8, 8});
    CHECK_THROWS_WITH(model.forward(wrong_rank), "nmfdsl: layer 0 (ReLU) expects input [N, 2, 8, 8], got [5, 8, 8]");
}

TEST_CASE("An empty batch throws shape_error", "[model]")
{
    nd::Model<Small, SmallIn> model;
    auto empty = ramp(0, 2, 8, 8);
    CHECK_THROWS_WITH(model.forward(empty), "nmfdsl: layer 0 (ReLU) got an empty batch (batch size 0); expected "
                                            "[N, 2, 8, 8] with N > 0");
}

TEST_CASE("backward checks its gradient and needs a forward first", "[model]")
{
    nd::Model<Small, SmallIn> model;
    xt::xtensor<float, 2> g = xt::ones<float>({4, 3});
    CHECK_THROWS_WITH(model.backward(g), Catch::Contains("before forward"));
    model.forward(ramp(4, 2, 8, 8));
    xt::xtensor<float, 2> wrong = xt::ones<float>({4, 5});
    CHECK_THROWS_WITH(model.backward(wrong), "nmfdsl: backward expects the gradient of the network output [4, 3], "
                                             "got [4, 5]");
    const auto dx = model.backward(g);
    CHECK(dx.shape()[1] == 2);
    CHECK(dx.shape()[3] == 8);
}

TEST_CASE("summary prints the layer table with shapes, parameters and totals", "[model]")
{
    const std::string s = nd::Model<paper::CNN1x1, paper::CifarInput>::summary();
    CHECK_THAT(s, Catch::Contains("Conv<32,5,1,l1>") && Catch::Contains("[3, 28, 28]") &&
                      Catch::Contains("[32, 24, 24]") && Catch::Contains("2,432"));
    CHECK_THAT(s, Catch::Contains("total parameters: 168,088 (mix 14,638, conv 153,066, norm 384)"));
    CHECK(nd::Model<paper::CNN, paper::CifarInput>::parameter_count == 153'258);
}

TEST_CASE("parameters are grouped, 64-byte aligned and reachable by layer index", "[model]")
{
    nd::Model<paper::CNN1x1, paper::MnistInput> model{nd::seed{21}};
    std::size_t total = 0, mix = 0, norm = 0;
    for (const auto& p : model.parameters()) {
        total += p.value.size();
        CHECK(reinterpret_cast<std::uintptr_t>(p.value.data()) % 64 == 0);
        CHECK(reinterpret_cast<std::uintptr_t>(p.grad.data()) % 64 == 0);
        if (p.grp == nd::group::mix)
            mix += p.value.size();
        if (p.grp == nd::group::norm)
            norm += p.value.size();
    }
    CHECK(total == nd::parameter_count_v<paper::CNN1x1, paper::MnistInput>);
    CHECK(mix == 14'638);
    CHECK(norm == 384);
    auto conv = model.layer<1>();
    CHECK(conv.name() == "Conv<32,5,1,l1>");
    CHECK(conv.params("weight").size() == 32 * 25);
    CHECK(conv.grads(1).size() == 32);
    CHECK_THROWS_WITH(conv.params("gamma"), Catch::Contains("layer 1 (Conv<32,5,1,l1>) has no tensor named 'gamma'"));
}

TEST_CASE("the same seed gives the same model; separate workspaces give the same results", "[model]")
{
    nd::Model<Small, SmallIn> a{nd::seed{5}}, b{nd::seed{5}}, c{nd::seed{6}};
    const auto pa = a.flat_parameters(), pb = b.flat_parameters(), pc = c.flat_parameters();
    CHECK(std::equal(pa.begin(), pa.end(), pb.begin()));
    CHECK(!std::equal(pa.begin(), pa.end(), pc.begin()));

    const auto x1 = ramp(3, 2, 8, 8);
    xt::xtensor<float, 4> x2 = 1.f - x1;  // (a rescaled batch would not do: PatchConv normalises patches)
    typename nd::Model<Small, SmallIn>::workspace w1, w2;
    const auto y1 = a.forward(x1, w1);
    const auto y2 = a.forward(x2, w2);  // interleaved calls do not disturb each other
    xt::xtensor<float, 2> g = xt::ones<float>({3, 3});
    g(0, 0) = 2.f;
    a.zero_grad();
    const auto d1 = a.backward(g, w1);
    const std::vector<float> grads1(a.flat_gradients().begin(), a.flat_gradients().end());
    b.zero_grad();
    b.forward(x1);
    const auto d1b = b.backward(g);
    CHECK(std::equal(d1.begin(), d1.end(), d1b.begin()));
    CHECK(std::equal(grads1.begin(), grads1.end(), b.flat_gradients().begin()));
    CHECK(!std::equal(y1.begin(), y1.end(), y2.begin()));
}
