// The Model: runtime shape errors, summary, parameter groups and alignment, layer access, workspaces, determinism.
#include <catch2/catch.hpp>

#include <algorithm>
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

namespace {
/// Parameters gradients and input gradient of one forward/backward of `m` on x, with upstream gradient g.
template <class M>
std::pair<std::vector<float>, std::vector<float>> step_results(M& m, const xt::xtensor<float, 4>& x,
                                                               const xt::xtensor<float, 2>& g)
{
    m.zero_grad();
    m.forward(x);
    const auto dx = m.backward(g);
    return {{m.flat_gradients().begin(), m.flat_gradients().end()}, {dx.begin(), dx.end()}};
}
} // namespace

TEST_CASE("a Model is a value: a copy taken between forward and backward back-propagates its own batch", "[model]")
{
    using M = nd::Model<Small, SmallIn>;
    const auto x1 = ramp(3, 2, 8, 8);
    const xt::xtensor<float, 4> x2 = 1.f - x1;
    xt::xtensor<float, 2> g = xt::ones<float>({3, 3});
    g(1, 2) = -3.f;
    M reference{nd::seed{4}};
    const auto expected = step_results(reference, x1, g);

    M original{nd::seed{4}};
    original.zero_grad();
    original.forward(x1);
    M copy = original;               // holds x1's pending forward
    original.forward(x2);            // the original moves on; its buffers are refilled with x2
    original.reset_parameters(nd::seed{9});
    const auto dx = copy.backward(g);
    CHECK(std::equal(expected.second.begin(), expected.second.end(), dx.begin()));
    CHECK(std::equal(expected.first.begin(), expected.first.end(), copy.flat_gradients().begin()));

    M moved = std::move(copy);       // a move keeps the state
    moved.zero_grad();
    const auto dx2 = moved.backward(g);
    CHECK(std::equal(dx.begin(), dx.end(), dx2.begin()));
    M assigned{nd::seed{1}};
    assigned = moved;                // copy assignment too
    CHECK(std::equal(moved.flat_parameters().begin(), moved.flat_parameters().end(),
                     assigned.flat_parameters().begin()));
    CHECK(assigned.flat_parameters().data() != moved.flat_parameters().data());
}

TEST_CASE("a const Model runs forward with a workspace and lists its parameters without changing anything",
          "[model]")
{
    struct WithRunningStats : nd::Seq<nd::Conv<3, 3>, nd::BatchNorm, nd::Flatten, nd::Dense<2>> {};
    using M = nd::Model<WithRunningStats, SmallIn>;
    M model{nd::seed{2}};
    model.layer<1>().options().mode = nd::bn_mode::running_statistics;
    const M& shared = model;
    const std::vector<float> buffers(shared.flat_buffers().begin(), shared.flat_buffers().end());
    M::workspace ws;
    const auto y_const = shared.forward(ramp(2, 2, 8, 8), ws);
    CHECK(std::equal(buffers.begin(), buffers.end(), shared.flat_buffers().begin()));  // running stats untouched
    const auto y = model.forward(ramp(2, 2, 8, 8));
    CHECK(std::equal(y.begin(), y.end(), y_const.begin()));
    CHECK(!std::equal(buffers.begin(), buffers.end(), model.flat_buffers().begin()));  // the non-const one updates
    std::size_t n = 0;
    for (const auto& p : shared.parameters())
        n += p.value.size();
    CHECK(n == M::parameter_count);
    static_assert(std::is_same_v<decltype(shared.parameters()[0].value), std::span<const float>>);
}

TEST_CASE("backward_parameters accumulates the same gradients as backward without making an input gradient",
          "[model]")
{
    using M = nd::Model<paper::CNMF1x1, paper::MnistInput>;
    M a{nd::seed{3}}, b{nd::seed{3}};
    xt::xtensor<float, 4> x = ramp(2, 1, 28, 28);
    a.forward(x);
    b.forward(x);
    xt::xtensor<float, 2> g = xt::ones<float>({2, 10});
    g(0, 3) = -2.f;
    a.backward(g);
    b.backward_parameters(g);
    b.backward_parameters(g);  // accumulates, like backward
    const auto ga = a.flat_gradients(), gb = b.flat_gradients();
    for (std::size_t i = 0; i < ga.size(); ++i)
        REQUIRE(gb[i] == Approx(2 * ga[i]).margin(1e-6));
    CHECK(std::any_of(ga.begin(), ga.end(), [](float v) { return v != 0.f; }));
}

TEST_CASE("every error the library throws derives from nmfdsl::error", "[model]")
{
    nd::cnmf_options o;
    CHECK_THROWS_AS(o.iterations(0), nd::error);
    nd::Model<Small, SmallIn> model;
    CHECK_THROWS_AS(model.layer<1>().params("nope"), nd::lookup_error);
    CHECK_THROWS_AS(model.layer<1>().params(7), nd::lookup_error);
    CHECK_THROWS_AS(nd::set_threads(0), nd::argument_error);
    auto lr = nd::optim::learning_rates::paper();
    lr[nd::group::mix] = -1;
    CHECK_THROWS_AS(nd::optim::SGD<float>(model.parameters(), lr), nd::error);
}

namespace {
/// A CNMF in branch 1 of a Concat, and one in the body of a Residual.
struct Branchy : nd::Seq<nd::ReLU,
                         nd::Concat<nd::Conv<3, 3>, nd::Seq<nd::CNMFCore<4, 3>, nd::ReLU>>,
                         nd::Residual<nd::Seq<nd::ReLU, nd::CNMFCore<7, 1>>>, nd::Flatten, nd::Dense<2>> {};
using BranchyIn = nd::Shape<2, 6, 6>;
} // namespace

TEST_CASE("the network is a tree: every layer, inside Concat and Residual too, has a path", "[model][tree]")
{
    nd::Model<Branchy, BranchyIn> model{nd::seed{1}};
    std::vector<std::string> seen;
    model.for_each_layer([&](const auto& node) { seen.push_back(node.path + " " + node.name()); });
    const std::vector<std::string> expected{"0 ReLU",        "1 Concat<2 branches>", "1/0/0 Conv<3,3>",
                                            "1/1/0 CNMF<4,3>", "1/1/1 ReLU",        "2 Residual",
                                            "2/0/0 ReLU",    "2/0/1 CNMF<7,1>",     "3 Flatten",
                                            "4 Dense<2>"};
    CHECK(seen == expected);

    // options reach the NMF layers inside the branches
    CHECK(nd::configure_nmf(model, [](nd::cnmf_options& o) { o.iterations(3); }) == 2);
    CHECK(model.options_at<nd::cnmf_options>("1/1/0").iterations() == 3);
    CHECK(model.options_at<nd::cnmf_options>("2/0/1").iterations() == 3);
    model.options_at<nd::cnmf_options>("2/0/1").iterations(9);
    CHECK(std::get<1>(std::get<0>(std::get<2>(model.options()))).iterations() == 9);  // Residual → body → layer 1

    // bad paths and kinds name the path and the layer found there
    CHECK_THROWS_AS(model.options_at<nd::cnmf_options>("1/0/0"), nd::lookup_error);
    CHECK_THROWS_WITH(model.options_at<nd::cnmf_options>("1/0/0"),
                      "nmfdsl: the layer at path 1/0/0 is Conv<3,3>, which does not take the options asked for");
    CHECK_THROWS_WITH(model.options_at<nd::cnmf_options>("1/2/0"),
                      Catch::Contains("no layer at path '1/2/0'") && Catch::Contains("10 layers"));
    CHECK_THROWS_WITH(model.options_at<nd::cnmf_options>("7"), Catch::Contains("no layer at path '7'"));

    // options of any kind, as the tutorial shows: every BatchNorm of a paper model
    nd::Model<paper::CNMF1x1, paper::MnistInput> net;
    CHECK(net.configure<nd::BatchNorm::options>([](auto& o) { o.mode = nd::bn_mode::running_statistics; }) == 4);
    CHECK(net.options_at<nd::BatchNorm::options>("2").mode == nd::bn_mode::running_statistics);
    CHECK(net.options_at<nd::BatchNorm::options>("6").mode == nd::bn_mode::running_statistics);
}

TEST_CASE("parameters are named by path; the summary shows the tree", "[model][tree]")
{
    nd::Model<Branchy, BranchyIn> model{nd::seed{1}};
    std::vector<std::string> names;
    std::size_t total = 0;
    for (const auto& p : model.parameters()) {
        names.push_back(p.qualified_name());
        total += p.value.size();
    }
    CHECK(names == std::vector<std::string>{"1/0/0.weight", "1/0/0.bias", "1/1/0.V", "2/0/1.V", "4.weight",
                                            "4.bias"});
    CHECK(total == decltype(model)::parameter_count);
    // a parameter named by path is the one the layer's forward reads: zeroing 1/1/0's V changes the output
    const auto before = model.forward(ramp(1, 2, 6, 6));
    for (auto& p : model.parameters())
        if (p.qualified_name() == "2/0/1.V")
            std::fill(p.value.begin(), p.value.end(), 0.f);
    const auto after = model.forward(ramp(1, 2, 6, 6));
    CHECK(!std::equal(before.begin(), before.end(), after.begin()));

    const std::string s = decltype(model)::summary();
    INFO(s);
    CHECK_THAT(s, Catch::Contains("1/1/0    CNMF<4,3>"));  // path, then the name indented under its Concat
    CHECK_THAT(s, Catch::Contains("2/0/1") && Catch::Contains("  CNMF<7,1>"));
    CHECK_THAT(s, Catch::Contains("total parameters: " + std::to_string(decltype(model)::parameter_count)));
}

namespace {
// BatchNorms at the top level, inside both branches of a Concat and inside a Residual: 3, 4, 7 and 7 channels
struct Normed : nd::Seq<nd::Concat<nd::Seq<nd::Conv<3, 3>, nd::BatchNorm>, nd::Seq<nd::CNMFCore<4, 3>, nd::BatchNorm>>,
                        nd::Residual<nd::Seq<nd::BatchNorm>>, nd::BatchNorm, nd::Flatten, nd::Dense<2>> {};
using NormedIn = nd::Shape<2, 6, 6>;
} // namespace

TEST_CASE("buffers are named by path, in branches too, and are the running statistics the layers use", "[model][tree]")
{
    nd::Model<Normed, NormedIn> model{nd::seed{2}};
    std::vector<std::string> names;
    for (const auto& b : model.buffers())
        names.push_back(b.qualified_name() + " " + std::to_string(b.shape.at(0)));
    CHECK(names == std::vector<std::string>{"0/0/1.running_mean 3", "0/0/1.running_var 3", "0/1/1.running_mean 4",
                                            "0/1/1.running_var 4", "1/0/0.running_mean 7", "1/0/0.running_var 7",
                                            "2.running_mean 7", "2.running_var 7"});
    // each view is its own part of the flat buffer array (a branch offset gone wrong would alias two of them) and
    // holds the layer's initial state: mean 0, variance 1
    const auto flat = model.flat_buffers();
    std::vector<const float*> starts;
    for (const auto& b : model.buffers()) {
        CHECK(b.value.data() >= flat.data());
        CHECK(b.value.data() + b.value.size() <= flat.data() + flat.size());
        for (const float* s : starts)
            CHECK((s + 7 <= b.value.data() || b.value.data() + b.value.size() <= s));
        starts.push_back(b.value.data());
        const float initial = b.name == "running_var" ? 1.f : 0.f;
        CHECK(std::all_of(b.value.begin(), b.value.end(), [&](float v) { return v == initial; }));
        CHECK(b.layer_name == "BatchNorm");
    }
    CHECK(model.buffers()[4].layer == 1);

    // the node of layer 1/0/0 sees the same memory, by name and position; unknown names are refused
    model.for_each_layer([&](const auto& node) {
        if (node.path == "1/0/0") {
            CHECK(node.buffers("running_var").data() == model.buffers()[5].value.data());
            CHECK(node.buffers(0).data() == model.buffers()[4].value.data());
            CHECK_THROWS_WITH(node.buffers("mean"), "nmfdsl: layer 1/0/0 (BatchNorm) has no buffer named 'mean'");
            CHECK_THROWS_WITH(node.buffers(2), Catch::Contains("has 2 buffers, asked for number 2"));
        }
    });

    // evaluation with running statistics reads them through these views: a changed variance changes the output
    model.configure<nd::BatchNorm::options>([](auto& o) { o.mode = nd::bn_mode::running_statistics; });
    model.set_training(false);
    const auto before = model.forward(ramp(2, 2, 6, 6));
    std::fill(model.buffers()[5].value.begin(), model.buffers()[5].value.end(), 4.f);
    const auto after = model.forward(ramp(2, 2, 6, 6));
    CHECK(!std::equal(before.begin(), before.end(), after.begin()));
    const nd::Model<Normed, NormedIn>& view = model;
    static_assert(std::is_same_v<decltype(view.buffers()[0].value), std::span<const float>>);
    CHECK(view.buffers()[5].value[0] == 4.f);
}

TEST_CASE("an empty network is the identity, forward and backward", "[model]")
{
    nd::Model<nd::Seq<>, nd::Shape<3>> id;
    xt::xtensor<float, 2> x = {{1.f, 2.f, 3.f}};
    const auto y = id.forward(x);
    CHECK(std::equal(y.begin(), y.end(), x.begin()));
    xt::xtensor<float, 2> g = {{0.5f, -1.f, 2.f}};
    const auto dx = id.backward(g);
    CHECK(std::equal(dx.begin(), dx.end(), g.begin()));
    id.forward(x);
    id.backward_parameters(g);  // nothing to accumulate, and no input gradient to make
    CHECK(id.parameters().empty());
}

TEST_CASE("a const Model gives read-only access to its layers", "[model]")
{
    const nd::Model<Small, SmallIn> model{nd::seed{3}};
    const auto conv = model.layer<1>();
    static_assert(std::is_same_v<decltype(conv.params("weight")), std::span<const float>>);
    CHECK(conv.params("weight").size() == 4 * 9 * 2);
    CHECK(conv.name() == "Conv<4,3,1,l1>");
    CHECK_THROWS_WITH(conv.grads("gamma"), "nmfdsl: layer 1 (Conv<4,3,1,l1>) has no tensor named 'gamma'");
    std::size_t visited = 0;
    model.for_each_layer([&](const auto&) { ++visited; });
    CHECK(visited == decltype(model)::layer_count);
}

TEST_CASE("layer_boundaries: the input, then every top-level layer's output of the last forward, per image contiguous",
          "[model]")
{
    nd::Model<Small, SmallIn> model;
    typename nd::Model<Small, SmallIn>::workspace ws;
    CHECK_THROWS_WITH(model.layer_boundaries(ws), Catch::Contains("called before forward"));
    const auto x = ramp(3, 2, 8, 8);
    const auto y = model.forward(x, ws);
    const auto z = model.layer_boundaries(ws);
    REQUIRE(z.size() == nd::Model<Small, SmallIn>::layer_count + 1);
    CHECK(z.front().size() == x.size());
    for (std::size_t b = 0; b < 3; ++b) {  // channels-last, but each image's values are its own block
        double in = 0, seen = 0;
        for (std::size_t k = 0; k < 128; ++k) {
            in += double(x.data()[b * 128 + k]) * x.data()[b * 128 + k];
            seen += double(z.front()[b * 128 + k]) * z.front()[b * 128 + k];
        }
        CHECK(seen == Approx(in));
    }
    CHECK(std::equal(z.back().begin(), z.back().end(), y.begin(), y.end()));
}

namespace {
/// dx of Model::input_gradient against Model::backward, and the parameter gradients before and after.
template <class M>
void check_input_gradient(M& model, const typename M::input_tensor& x)
{
    typename M::workspace ws;
    const auto y = model.forward(x, ws);
    auto g = y;
    for (std::size_t i = 0; i < g.size(); ++i)
        g.data()[i] = static_cast<typename M::value_type>(std::sin(0.7 * double(i)));
    auto grads = model.flat_gradients();
    std::fill(grads.begin(), grads.end(), typename M::value_type(0.25));
    const auto dx = model.input_gradient(g, ws);
    CHECK(std::all_of(grads.begin(), grads.end(), [](auto v) { return v == typename M::value_type(0.25); }));
    const auto reference = model.backward(g, ws);
    CHECK(std::equal(dx.begin(), dx.end(), reference.begin(), reference.end()));
    CHECK_FALSE(std::all_of(grads.begin(), grads.end(), [](auto v) { return v == typename M::value_type(0.25); }));
}
} // namespace

TEST_CASE("input_gradient: the same dx as backward, no parameter gradient touched, for every kind of layer",
          "[model][attack]")
{
    struct Nmf : nd::Seq<nd::PatchConv<6, 3>, nd::Mix1x1<6>, nd::MaxPool<2>, nd::CNMF<5, 3>, nd::Mix1x1<5>,
                         nd::CNMF<4, nd::whole_map>, nd::Flatten, nd::Dense<3>, nd::Softmax> {};
    nd::Model<Nmf, nd::Shape<2, 12, 12>> nmf{nd::seed{3}};
    const auto x = ramp(4, 2, 12, 12);
    check_input_gradient(nmf, x);
    nmf.configure<nd::cnmf_options>([](nd::cnmf_options& o) { o.gradient(nd::nmf_gradient::unrolled); });
    check_input_gradient(nmf, x);
    nmf.configure<nd::cnmf_options>([](nd::cnmf_options& o) { o.gradient(nd::nmf_gradient::implicit); });
    check_input_gradient(nmf, x);
    struct Graph : nd::Seq<nd::HaHBlock<4>, nd::Concat<nd::Conv<3, 3>, nd::Seq<nd::Conv<2, 3>, nd::ReLU>>,
                           nd::Residual<nd::Seq<nd::Pointwise<5>, nd::BatchNorm, nd::ReLU>>, nd::Flatten,
                           nd::Dense<3>, nd::Softmax> {};
    nd::Model<Graph, nd::Shape<2, 12, 12>> graph{nd::seed{4}};
    check_input_gradient(graph, x);
    typename nd::Model<Graph, nd::Shape<2, 12, 12>>::workspace fresh;
    CHECK_THROWS_WITH(graph.input_gradient(xt::zeros<float>({4, 3}), fresh), Catch::Contains("called before forward"));
}
