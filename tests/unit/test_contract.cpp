// The layer contract (testing/contract.hpp) for every layer, composite and graph layer, with finite-difference
// gradient checks in double; and one deliberately broken layer per rule, which check_layer must catch by name.
#include <catch2/catch.hpp>

#include <limits>
#include <string>

#include <nmfdsl/nmfdsl.hpp>
#include <nmfdsl/testing/contract.hpp>

namespace nd = nmfdsl;
using nd::testing::check_layer;
using nd::testing::contract_options;

namespace {
contract_options positive_inputs()
{
    contract_options o;
    o.input_min = 0.05;
    o.input_max = 1.0;
    return o;
}

#define NMFDSL_CHECK_CONTRACT(...)                                                                                     \
    do {                                                                                                               \
        const auto r_ = (__VA_ARGS__);                                                                                 \
        INFO(r_.message());                                                                                            \
        CHECK(r_.leaves_checked > 0);                                                                                  \
        CHECK(r_.ok());                                                                                                \
    } while (false)
} // namespace

TEST_CASE("contract: ReLU, L1Norm, Softmax, Flatten, Dense", "[contract]")
{
    NMFDSL_CHECK_CONTRACT(check_layer<nd::ReLU, nd::Shape<3, 5, 4>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::ReLU, nd::Shape<17>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::L1Norm, nd::Shape<5, 3, 4>>(positive_inputs()));
    NMFDSL_CHECK_CONTRACT(check_layer<nd::L1Norm, nd::Shape<9>>(positive_inputs()));
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Softmax, nd::Shape<6, 2, 3>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Softmax, nd::Shape<10>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Flatten, nd::Shape<2, 3, 3>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Dense<7>, nd::Shape<11>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Seq<nd::Flatten, nd::Dense<3>>, nd::Shape<2, 3, 5>>());
}

TEST_CASE("contract: Pointwise (1x1 mixing conv), wider and narrower than its input", "[contract]")
{
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Pointwise<5>, nd::Shape<3, 4, 5>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Pointwise<2>, nd::Shape<6, 3, 3>>());
}

TEST_CASE("contract: Conv plain, strided, whole map, L1-normalised patches", "[contract]")
{
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Conv<4, 3>, nd::Shape<3, 7, 6>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Conv<3, 3, 2>, nd::Shape<2, 9, 8>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Conv<5, nd::whole_map>, nd::Shape<3, 4, 3>>());
    NMFDSL_CHECK_CONTRACT(
        check_layer<nd::Conv<4, 3, 1, nd::patch_norm::none, nd::conv_bias::no_bias>, nd::Shape<2, 5, 4>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Conv<4, 3, 1, nd::patch_norm::l1>, nd::Shape<3, 6, 5>>(positive_inputs()));
}

TEST_CASE("contract: BatchNorm in both modes, training and evaluation", "[contract]")
{
    NMFDSL_CHECK_CONTRACT(check_layer<nd::BatchNorm, nd::Shape<4, 3, 3>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::BatchNorm, nd::Shape<6>>());
    auto running = [](auto& m) { m.template layer<0>().options().mode = nd::bn_mode::running_statistics; };
    NMFDSL_CHECK_CONTRACT(check_layer<nd::BatchNorm, nd::Shape<4, 3, 3>>({}, running));
    // the competition layers of sparse, strong activations (generic random inputs: no ties at the maxima or the
    // threshold), with σ and ρ away from their defaults too
    NMFDSL_CHECK_CONTRACT(check_layer<nd::DivisiveNorm, nd::Shape<3, 5, 4>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::DivisiveNorm, nd::Shape<2, 4, 4>>(
        {}, [](auto& m) { m.template layer<0>().options().sigma(0.6); }));
    NMFDSL_CHECK_CONTRACT(check_layer<nd::FractionalThreshold, nd::Shape<3, 5, 4>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::ZeroPad<2>, nd::Shape<2, 3, 4>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::WNConv<4, 3, 1, 1>, nd::Shape<3, 5, 4>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::WNConv<3, 2, 2>, nd::Shape<2, 6, 5>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::HaHBlock<4>, nd::Shape<2, 5, 5>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Normalize, nd::Shape<2, 3, 3>>(
        {}, [](auto& m) { m.template layer<0>().options().channels({0.25, -0.5}, {0.5, 2.0}); }));
    NMFDSL_CHECK_CONTRACT(check_layer<nd::FractionalThreshold, nd::Shape<2, 4, 4>>(
        {}, [](auto& m) { m.template layer<0>().options().remaining_ratio(0.5); }));
    contract_options eval;
    eval.training = false;
    NMFDSL_CHECK_CONTRACT(check_layer<nd::BatchNorm, nd::Shape<4, 3, 3>>(eval, running));
}

TEST_CASE("contract: pooling, including maps that do not divide evenly", "[contract]")
{
    NMFDSL_CHECK_CONTRACT(check_layer<nd::AvgPool<2>, nd::Shape<3, 5, 4>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::MaxPool<2>, nd::Shape<3, 5, 4>>());
    NMFDSL_CHECK_CONTRACT(check_layer<nd::MaxPool<3>, nd::Shape<2, 6, 7>>());
}

TEST_CASE("contract: composites Mix1x1 and PatchConv, with and without their BatchNorm", "[contract]")
{
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Mix1x1<6>, nd::Shape<4, 3, 3>>(positive_inputs()));
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Mix1x1<3>, nd::Shape<5, 1, 1>>(positive_inputs()));
    NMFDSL_CHECK_CONTRACT(check_layer<nd::PatchConv<4, 3>, nd::Shape<2, 6, 6>>(positive_inputs()));
    NMFDSL_CHECK_CONTRACT(check_layer<nd::PatchConv<4, nd::whole_map>, nd::Shape<2, 3, 3>>(positive_inputs()));
}

TEST_CASE("contract: the NMF module in every gradient mode", "[contract][cnmf]")
{
    auto mode = [](nd::nmf_gradient g) {
        return [g](auto& m) { nd::configure_nmf(m, [&](nd::cnmf_options& o) { o.iterations(4).gradient(g); }); };
    };
    // unrolled is the exact gradient of the T-step forward
    NMFDSL_CHECK_CONTRACT(check_layer<nd::CNMFCore<3, 3>, nd::Shape<2, 5, 6>>(positive_inputs(),
                                                                               mode(nd::nmf_gradient::unrolled)));
    NMFDSL_CHECK_CONTRACT(
        check_layer<nd::CNMF<4, 2, 2>, nd::Shape<3, 6, 6>>(positive_inputs(), mode(nd::nmf_gradient::unrolled)));
    // approximate and implicit are by design not the T-step forward's gradient: every other rule applies
    contract_options no_fd = positive_inputs();
    no_fd.finite_differences = false;
    NMFDSL_CHECK_CONTRACT(check_layer<nd::CNMF<4, 3>, nd::Shape<3, 6, 6>>(no_fd, mode(nd::nmf_gradient::approximate)));
    NMFDSL_CHECK_CONTRACT(
        check_layer<nd::CNMF<5, nd::whole_map>, nd::Shape<2, 3, 3>>(no_fd, mode(nd::nmf_gradient::approximate)));
    NMFDSL_CHECK_CONTRACT(check_layer<nd::CNMF<4, 3>, nd::Shape<3, 6, 6>>(no_fd, mode(nd::nmf_gradient::implicit)));
}

TEST_CASE("contract: Concat and Residual", "[contract][graph]")
{
    using Branchy =
        nd::Concat<nd::Conv<3, 5>, nd::Seq<nd::Conv<2, 5>, nd::ReLU>, nd::Seq<nd::MaxPool<2>, nd::Conv<1, 1>>>;
    NMFDSL_CHECK_CONTRACT(check_layer<Branchy, nd::Shape<2, 8, 8>>());
    using Res = nd::Residual<nd::Seq<nd::Pointwise<4>, nd::BatchNorm, nd::ReLU>>;
    NMFDSL_CHECK_CONTRACT(check_layer<nd::Seq<Res, Res>, nd::Shape<4, 3, 3>>());
    using Vectors = nd::Concat<nd::Dense<3>, nd::Seq<nd::Dense<2>, nd::Softmax>>;
    NMFDSL_CHECK_CONTRACT(check_layer<Vectors, nd::Shape<5>>());
}

TEST_CASE("A small paper-style network end to end", "[contract]")
{
    struct Tiny : nd::Seq<nd::PatchConv<4, 3>, nd::Mix1x1<4>, nd::AvgPool<2>, nd::PatchConv<5, nd::whole_map>,
                          nd::Mix1x1<5>, nd::Softmax, nd::Flatten> {};
    NMFDSL_CHECK_CONTRACT(check_layer<Tiny, nd::Shape<2, 8, 8>>(positive_inputs()));
}

// ---- one deliberately broken layer per rule ----

namespace {
enum class flaw {
    none,
    forward_adds_into_y,
    forward_writes_params,
    backward_adds_into_dx,
    backward_overwrites_grads,
    cache_consumed_by_backward,
    state_outside_the_cache,
    depends_on_thread_count,
    writes_buffers_always,
    buffer_leaves_its_range,
    wrong_gradient,
};

/// y = w ⊙ x on a flat vector (w: one weight per element), with one flaw switched on.
template <flaw F>
struct Scale : nd::layer_base {
    static std::string name() { return "Scale"; }
    template <class In>
    using output_shape = In;
    template <class In>
    static constexpr std::array<nd::param_spec, 1> param_tensors{{{"w", nd::group::other, In::size}}};
    template <class In>
    static constexpr std::array<nd::param_spec, 1> buffer_tensors{
        {{"calls", nd::group::other, 1, {}, nd::value_range::non_negative}}};
    template <class In, class T>
    struct cache {
        bool used = false;
    };
    template <class In, class T>
    static void init(T* p, T*, nd::rng& g)
    {
        for (std::size_t i = 0; i < In::size; ++i)
            p[i] = g.uniform(T(0.5), T(1.5));
    }
    template <class T>
    static std::vector<T>& outside_state()
    {
        static std::vector<T> last_x;
        return last_x;
    }
    template <class In, class T>
    static void forward(const options&, const nd::forward_args<T>& a, cache<In, T>& c)
    {
        const T extra = F == flaw::depends_on_thread_count ? T(1e-3) * T(nd::threads()) : T(0);
        for (std::size_t b = 0; b < a.batch; ++b)
            for (std::size_t i = 0; i < In::size; ++i) {
                const T v = a.params[i] * a.x[b * In::size + i] + extra;
                a.y[b * In::size + i] = F == flaw::forward_adds_into_y ? a.y[b * In::size + i] + v : v;
            }
        if constexpr (F == flaw::forward_writes_params)
            const_cast<T*>(a.params)[0] += T(1);
        if (F == flaw::writes_buffers_always || a.update_buffers)
            a.buffers[0] += F == flaw::buffer_leaves_its_range ? T(-1) : T(1);  // counts the updating calls
        if constexpr (F == flaw::state_outside_the_cache)
            outside_state<T>().assign(a.x, a.x + a.batch * In::size);
        c.used = false;
    }
    template <class In, class T>
    static void backward(const options&, const nd::backward_args<T>& a, cache<In, T>& c)
    {
        const T* x = F == flaw::state_outside_the_cache ? outside_state<T>().data() : a.x;
        const T once = F == flaw::cache_consumed_by_backward && c.used ? T(0) : T(1);
        c.used = true;
        for (std::size_t i = 0; i < In::size; ++i) {
            T g = 0;
            for (std::size_t b = 0; b < a.batch; ++b)
                g += a.dy[b * In::size + i] * x[b * In::size + i];
            a.grads[i] = F == flaw::backward_overwrites_grads ? g * once : a.grads[i] + g * once;
        }
        const T factor = F == flaw::wrong_gradient ? T(2) : T(1);
        for (std::size_t b = 0; b < a.batch; ++b)
            for (std::size_t i = 0; i < In::size; ++i) {
                const T d = factor * a.params[i] * a.dy[b * In::size + i];
                a.dx[b * In::size + i] = F == flaw::backward_adds_into_dx ? a.dx[b * In::size + i] + d : d;
            }
    }
};

template <flaw F>
nd::testing::contract_result check_flaw()
{
    return check_layer<Scale<F>, nd::Shape<7>>();
}
} // namespace

TEST_CASE("check_layer names the rule each deliberately broken layer breaks", "[contract]")
{
    NMFDSL_CHECK_CONTRACT(check_flaw<flaw::none>());  // the unbroken twin passes
    const std::pair<nd::testing::contract_result, const char*> cases[] = {
        {check_flaw<flaw::forward_adds_into_y>(), "forward overwrites y"},
        {check_flaw<flaw::forward_writes_params>(), "forward leaves x and params"},
        {check_flaw<flaw::backward_adds_into_dx>(), "backward overwrites dx"},
        {check_flaw<flaw::backward_overwrites_grads>(), "backward accumulates grads"},
        {check_flaw<flaw::cache_consumed_by_backward>(), "backward can be repeated"},
        {check_flaw<flaw::state_outside_the_cache>(), "caches are independent"},
        {check_flaw<flaw::depends_on_thread_count>(), "results independent of threads"},
        {check_flaw<flaw::writes_buffers_always>(), "buffers change only on update"},
        {check_flaw<flaw::buffer_leaves_its_range>(), "buffers stay in their range"},
        {check_flaw<flaw::wrong_gradient>(), "gradient matches finite differences"},
    };
    for (const auto& [result, rule] : cases) {
        INFO("rule '" << rule << "'; found:\n" << result.message());
        CHECK(result.broke(rule));
        CHECK_THAT(result.message(), Catch::Contains("layer 0 (Scale) breaks the rule") ||
                                         Catch::Contains("Scale breaks the rule"));
    }
    // the range rule names the buffer, the element, its value and the range it must hold
    CHECK_THAT(check_flaw<flaw::buffer_leaves_its_range>().message(),
               Catch::Contains("element 0 of buffer 'calls' is -1; it must hold finite values >= 0"));
}

TEST_CASE("value ranges: within and range_text", "[contract]")
{
    using nd::value_range;
    CHECK(nd::within(value_range::any, -3.5f));
    CHECK(nd::within(value_range::non_negative, 0.0));
    CHECK(nd::within(value_range::non_negative, -0.0));  // -0 is not below 0
    CHECK_FALSE(nd::within(value_range::non_negative, -1e-30));
    CHECK_FALSE(nd::within(value_range::any, std::numeric_limits<float>::infinity()));
    CHECK_FALSE(nd::within(value_range::non_negative, std::numeric_limits<double>::quiet_NaN()));
    CHECK(std::string(nd::range_text(value_range::any)) == "finite values");
    CHECK(std::string(nd::range_text(value_range::non_negative)) == "finite values >= 0");
}
