// The robustness module: PGD against the closed-form worst case of linear models, its box and ball constraints, bad
// options; noise that is reproducible and independent of batching and threads; the attacker's input gradient of an
// NMF network against finite differences.
#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>

#include <nmfdsl/attack.hpp>
#include <nmfdsl/nmfdsl.hpp>

namespace nd = nmfdsl;
namespace na = nmfdsl::attack;

namespace {
/// logits z = W x + b on 12 values, two classes.
struct Linear : nd::Seq<nd::Flatten, nd::Dense<2>, nd::Softmax> {};
using LinearIn = nd::Shape<1, 3, 4>;
using LinearModel = nd::Model<Linear, LinearIn>;
constexpr std::size_t D = 12;

nd::parameter_ref<float> tensor(LinearModel& m, std::string_view name)
{
    for (auto& p : m.parameters())
        if (p.name == name)
            return p;
    FAIL("no tensor " << name);
    return m.parameters().front();
}

/// A linear model with bias 20 for class 0, so that every image in the tests stays class 0 (its margin over class 1
/// is far above ε·‖w₀ − w₁‖), and images with values in [0.3, 0.7], away from the box.
struct linear_problem {
    LinearModel model{nd::seed{3}};
    na::image_batch<float> x;
    std::vector<std::size_t> labels;
    std::vector<double> dw;  ///< w₀ − w₁

    explicit linear_problem(std::size_t n)
    {
        auto b = tensor(model, "bias");
        b.value[0] = 20.f;
        b.value[1] = 0.f;
        auto w = tensor(model, "weight");
        for (std::size_t i = 0; i < D; ++i)
            dw.push_back(double(w.value[i]) - double(w.value[D + i]));
        nd::rng g(nd::seed{8});
        x = na::image_batch<float>::from_shape({n, D});
        for (auto& v : x)
            v = g.uniform(0.3f, 0.7f);
        labels.assign(n, 0);
    }
    /// z₀ − z₁ at image row b of t.
    double margin(const na::image_batch<float>& t, std::size_t b) const
    {
        double m = 20.0;
        for (std::size_t i = 0; i < D; ++i)
            m += dw[i] * double(t(b, i));
        return m;
    }
};
} // namespace

TEST_CASE("PGD finds the closed-form worst case of a linear model (linf: eps·|w0 - w1|_1, l2: eps·|w0 - w1|_2)",
          "[attack][pgd]")
{
    linear_problem lp(6);
    na::model_classifier target(lp.model);
    const double eps = 0.05;
    const double l1 =
        std::accumulate(lp.dw.begin(), lp.dw.end(), 0.0, [](double s, double v) { return s + std::abs(v); });
    const double l2 = std::sqrt(std::inner_product(lp.dw.begin(), lp.dw.end(), lp.dw.begin(), 0.0));
    REQUIRE(l1 > 0.5);
    for (const bool random_start : {false, true}) {
        na::pgd_options o;
        o.epsilon = eps;
        o.random_start = random_start;
        o.seed = 5;
        const auto r = na::pgd(target, lp.x, lp.labels, o);
        REQUIRE(r.size() == 6);
        CHECK(r.broken_count() == 0);
        CHECK(r.non_finite_count() == 0);
        for (std::size_t b = 0; b < 6; ++b)
            CHECK(lp.margin(r.adversarial, b) == Approx(lp.margin(lp.x, b) - eps * l1).epsilon(1e-5));

        o.norm = na::norm::l2;
        const auto q = na::pgd(target, lp.x, lp.labels, o);
        for (std::size_t b = 0; b < 6; ++b) {
            // without a random start every step is along w₀ − w₁; with one, the part of the start across that
            // direction shrinks with every projection but is not gone after 40 steps
            const double expected = lp.margin(lp.x, b) - eps * l2;
            CHECK(lp.margin(q.adversarial, b) == Approx(expected).epsilon(random_start ? 2e-3 : 1e-5));
            CHECK(lp.margin(q.adversarial, b) >= expected - 1e-4);  // never beyond the ball's best
        }
    }
}

TEST_CASE("PGD stays in the box and in the ball, breaks what it can, and stops at the first misclassified point",
          "[attack][pgd]")
{
    linear_problem lp(8);
    auto b = tensor(lp.model, "bias");
    b.value[0] = 0.f;  // margins now of the order of the weights: a large ε breaks every image
    std::vector<std::size_t> labels(8);
    {
        na::model_classifier target(lp.model);
        const auto p = target.probabilities(lp.x);
        for (std::size_t i = 0; i < 8; ++i)
            labels[i] = na::predicted_class(p, i);
    }
    na::model_classifier target(lp.model);
    for (const auto n : {na::norm::linf, na::norm::l2}) {
        na::pgd_options o;
        o.norm = n;
        o.epsilon = n == na::norm::linf ? 0.5 : 3.0;
        const auto r = na::pgd(target, lp.x, labels, o);
        CHECK(r.broken_count() == 8);
        const auto p = target.probabilities(r.adversarial);
        for (std::size_t i = 0; i < 8; ++i) {
            CHECK(na::predicted_class(p, i) != labels[i]);
            double linf = 0, sq = 0;
            for (std::size_t k = 0; k < D; ++k) {
                const float v = r.adversarial(i, k);
                CHECK((v >= 0.f && v <= 1.f));
                const double d = double(v) - double(lp.x(i, k));
                linf = std::max(linf, std::abs(d));
                sq += d * d;
            }
            if (n == na::norm::linf)
                CHECK(linf <= o.epsilon * (1 + 1e-6));
            else
                CHECK(std::sqrt(sq) <= o.epsilon * (1 + 1e-5));
        }
    }
    // a wrong label: broken before any step, the image returned as it was
    labels[3] = 1 - labels[3];
    na::pgd_options o;
    o.epsilon = 0.001;
    o.steps = 1;
    const auto r = na::pgd(target, lp.x, labels, o);
    CHECK(r.broken[3] == 1);
    CHECK(std::equal(r.adversarial.begin() + 3 * D, r.adversarial.begin() + 4 * D, lp.x.begin() + 3 * D));
    // ε = 0 moves nothing
    o.epsilon = 0;
    const auto still = na::pgd(target, lp.x, labels, o);
    CHECK(std::equal(still.adversarial.begin(), still.adversarial.end(), lp.x.begin()));
}

TEST_CASE("PGD's random start is reproducible from the seed and independent of the thread count and the batch split",
          "[attack][pgd][threads]")
{
    linear_problem lp(5);
    na::model_classifier target(lp.model);
    na::pgd_options o;
    o.epsilon = 0.03;
    o.steps = 5;
    o.step_size = 0.005;  // 5 steps do not reach the corner: the result depends on the random start
    o.seed = 11;
    const std::size_t before = nd::threads();
    nd::set_threads(1);
    const auto one = na::pgd(target, lp.x, lp.labels, o);
    nd::set_threads(3);
    const auto three = na::pgd(target, lp.x, lp.labels, o);
    nd::set_threads(before);
    CHECK(std::equal(one.adversarial.begin(), one.adversarial.end(), three.adversarial.begin()));
    // images 2..4 as a batch of their own, told where they start
    na::image_batch<float> tail = xt::view(lp.x, xt::range(2, 5), xt::all());
    std::vector<std::size_t> tail_labels(lp.labels.begin() + 2, lp.labels.end());
    o.first_sample = 2;
    const auto part = na::pgd(target, tail, tail_labels, o);
    CHECK(std::equal(part.adversarial.begin(), part.adversarial.end(), one.adversarial.begin() + 2 * D));
    // another seed, another start
    o.first_sample = 0;
    o.seed = 12;
    const auto other = na::pgd(target, lp.x, lp.labels, o);
    CHECK_FALSE(std::equal(other.adversarial.begin(), other.adversarial.end(), one.adversarial.begin()));
}

TEST_CASE("PGD refuses bad options and bad images with messages naming them", "[attack][pgd][errors]")
{
    linear_problem lp(2);
    na::model_classifier target(lp.model);
    na::pgd_options o;
    o.epsilon = -0.1;
    CHECK_THROWS_WITH(na::pgd(target, lp.x, lp.labels, o), Catch::Contains("epsilon must be a finite value >= 0"));
    o.epsilon = 0.1;
    o.steps = 0;
    CHECK_THROWS_AS(na::pgd(target, lp.x, lp.labels, o), nd::argument_error);
    o.steps = 3;
    o.restarts = 0;
    CHECK_THROWS_WITH(na::pgd(target, lp.x, lp.labels, o), Catch::Contains("restarts must be at least 1"));
    o.restarts = 1;
    auto outside = lp.x;
    outside(1, 4) = 1.5f;
    CHECK_THROWS_WITH(na::pgd(target, outside, lp.labels, o),
                      Catch::Contains("image 1") && Catch::Contains("outside [0, 1]"));
    std::vector<std::size_t> bad_labels{0, 2};
    CHECK_THROWS_WITH(na::pgd(target, lp.x, bad_labels, o), Catch::Contains("label 2 of image 1"));
    std::vector<std::size_t> short_labels{0};
    CHECK_THROWS_AS(na::pgd(target, lp.x, short_labels, o), nd::shape_error);
    CHECK_THROWS_WITH(na::parse_norm("l3"), Catch::Contains("unknown norm 'l3'"));
    CHECK_THROWS_WITH(na::parse_noise("salt"), Catch::Contains("unknown noise 'salt'"));
}

TEST_CASE("Noise is reproducible from the seed, independent of threads and batch split, and has the asked spread",
          "[attack][noise][threads]")
{
    const std::size_t N = 64, W = 500;
    na::image_batch<float> x = xt::ones<float>({N, W}) * 0.5f;
    na::noise_options o;
    o.sigma = 0.1;
    o.seed = 2022;
    const std::size_t before = nd::threads();
    nd::set_threads(1);
    const auto one = na::add_noise(x, o);
    nd::set_threads(3);
    const auto three = na::add_noise(x, o);
    nd::set_threads(before);
    CHECK(std::equal(one.begin(), one.end(), three.begin()));
    na::image_batch<float> tail = xt::view(x, xt::range(10, N), xt::all());
    o.first_sample = 10;
    const auto part = na::add_noise(tail, o);
    CHECK(std::equal(part.begin(), part.end(), one.begin() + 10 * W));
    o.first_sample = 0;
    o.repetition = 1;
    const auto again = na::add_noise(x, o);
    CHECK_FALSE(std::equal(again.begin(), again.end(), one.begin()));
    for (const auto kind : {na::noise_kind::gaussian, na::noise_kind::uniform}) {
        o.kind = kind;
        const auto y = na::add_noise(x, o);
        double sum = 0, sq = 0, widest = 0;
        for (const float v : y) {
            sum += v - 0.5;
            sq += (v - 0.5) * (v - 0.5);
            widest = std::max(widest, std::abs(double(v) - 0.5));
        }
        const double n = double(y.size());
        CHECK(std::abs(sum / n) < 0.002);                          // 5 standard errors of the mean
        CHECK(std::sqrt(sq / n) == Approx(0.1).epsilon(0.01));     // σ = 0.1 (no clipping at 0.5 ± 0.5)
        if (kind == na::noise_kind::uniform)
            CHECK(widest <= std::sqrt(3.0) * 0.1 + 1e-6);
    }
    // clipping: values stay in [0, 1]
    o.sigma = 2.0;
    const auto wild = na::add_noise(x, o);
    CHECK(std::all_of(wild.begin(), wild.end(), [](float v) { return v >= 0.f && v <= 1.f; }));
    o.sigma = -1;
    CHECK_THROWS_WITH(na::add_noise(x, o), Catch::Contains("sigma must be a finite value >= 0"));
}

TEST_CASE("The attacker's input gradient of an NMF network with the unrolled gradient matches finite differences",
          "[attack][cnmf]")
{
    struct Net : nd::Seq<nd::CNMF<4, 3>, nd::Mix1x1<4>, nd::CNMF<3, nd::whole_map>, nd::Flatten, nd::Dense<3>,
                         nd::Softmax> {};
    using M = nd::Model<Net, nd::Shape<1, 5, 5>, double>;
    M model{nd::seed{6}};
    model.configure<nd::cnmf_options>([](nd::cnmf_options& o) { o.gradient(nd::nmf_gradient::unrolled); });
    model.set_training(true);
    const std::vector<double> grads_before(model.flat_gradients().begin(), model.flat_gradients().end());
    nd::rng g(nd::seed{7});
    na::image_batch<double> x = na::image_batch<double>::from_shape({2, 25});
    for (auto& v : x)
        v = g.uniform(0.1, 0.9);
    const std::vector<std::size_t> y{0, 2};
    {
        na::model_classifier target(model);
        auto loss = [&](const na::image_batch<double>& at) {
            const auto p = target.probabilities(at);
            return -std::log(p(0, y[0])) - std::log(p(1, y[1]));
        };
        const auto p = target.probabilities(x);
        na::image_batch<double> dl_dp = xt::zeros<double>({2, 3});
        for (std::size_t b = 0; b < 2; ++b)
            dl_dp(b, y[b]) = -1.0 / p(b, y[b]);
        const auto dx = target.input_gradient(dl_dp);
        double worst = 0;
        for (std::size_t i = 0; i < x.size(); ++i) {
            auto up = x, down = x;
            up.data()[i] += 1e-6;
            down.data()[i] -= 1e-6;
            const double fd = (loss(up) - loss(down)) / 2e-6;
            worst = std::max(worst, std::abs(fd - dx.data()[i]) / std::max(1e-3, std::abs(fd)));
        }
        CHECK(worst < 1e-4);
        CHECK_FALSE(model.training());  // evaluation mode while attacked
    }
    CHECK(model.training());  // restored, and the parameter gradients left as they were
    CHECK(std::equal(grads_before.begin(), grads_before.end(), model.flat_gradients().begin()));
}

TEST_CASE("APGD's checkpoints and step-size halving follow the paper's rules (quadratic objective)", "[attack][apgd]")
{
    CHECK(na::apgd_checkpoints(100) == std::vector<std::size_t>{22, 41, 57, 70, 80, 87, 93, 99});
    CHECK(na::apgd_checkpoints(10) == std::vector<std::size_t>{2, 3, 4, 5, 6, 7, 8, 9, 10});
    CHECK(na::apgd_checkpoints(1) == std::vector<std::size_t>{1});
    // f(v) = −‖v − c‖², c outside the ε-ball around x: the best point of the ball is the clipped c
    const std::size_t dims = 3;
    na::image_batch<double> x = xt::ones<double>({std::size_t(1), dims}) * 0.5;
    const std::vector<double> c{0.8, 0.3, 0.52};
    auto f = [&](const na::image_batch<double>& v, std::span<const std::size_t>, std::vector<double>& loss,
                 na::image_batch<double>& grad, std::vector<std::uint8_t>&) {
        for (std::size_t j = 0; j < v.shape()[0]; ++j) {
            loss[j] = 0;
            for (std::size_t i = 0; i < dims; ++i) {
                loss[j] -= (v(j, i) - c[i]) * (v(j, i) - c[i]);
                grad(j, i) = -2 * (v(j, i) - c[i]);
            }
        }
    };
    for (const auto n : {na::norm::linf, na::norm::l2}) {
        na::apgd_options o;
        o.norm = n;
        o.epsilon = 0.05;
        na::apgd_trace trace;
        const auto r = na::apgd_run(f, x, o, 0, {}, &trace);
        REQUIRE(trace.loss.size() == 101);
        REQUIRE(trace.step_size.size() == 100);
        CHECK(trace.step_size[0] == 2 * o.epsilon);
        // the rule, replayed from the recorded losses: the step halves exactly where the paper says
        std::vector<std::size_t> expected;
        bool reduced_before = true;  // the second condition is not checked at the first checkpoint
        double best = trace.loss[0], best_at_check = best;
        std::size_t start = 0, next = 0;
        const auto checks = na::apgd_checkpoints(100);
        std::vector<double> best_after(101);
        for (std::size_t k = 0; k <= 100; ++k)
            best_after[k] = best = std::max(best, trace.loss[k]);
        for (const std::size_t w : checks) {
            std::size_t rises = 0;
            for (std::size_t k = start; k < w; ++k)
                rises += trace.loss[k + 1] > trace.loss[k];
            const bool halve = double(rises) <= 0.75 * double(w - start) ||
                               (!reduced_before && best_at_check >= best_after[w]);
            if (halve)
                expected.push_back(w);
            reduced_before = halve;
            best_at_check = best_after[w];
            start = w;
            ++next;
        }
        CHECK(trace.halved_after == expected);
        CHECK_FALSE(expected.empty());
        for (std::size_t k = 1; k < 100; ++k) {  // η changes only right after a checkpoint that halved it
            const bool halved_here = std::find(expected.begin(), expected.end(), k) != expected.end();
            CHECK(trace.step_size[k] == (halved_here ? trace.step_size[k - 1] / 2 : trace.step_size[k - 1]));
        }
        // the best point is the constrained maximiser
        double dist = 0, along = 0, cn = 0;
        for (std::size_t i = 0; i < dims; ++i) {
            const double d = c[i] - 0.5;
            if (n == na::norm::linf && std::abs(d) > 0.05)  // on the ball's face: exact
                dist = std::max(dist, std::abs(r.adversarial(0, i) - (0.5 + std::clamp(d, -0.05, 0.05))));
            if (n == na::norm::linf && std::abs(d) < 0.05)  // inside: sign steps land within the last step size
                CHECK(std::abs(r.adversarial(0, i) - c[i]) <= trace.step_size.back());
            along += (r.adversarial(0, i) - 0.5) * d;
            cn += d * d;
        }
        if (n == na::norm::linf)
            CHECK(dist < 1e-6);
        else
            CHECK(along / std::sqrt(cn) == Approx(0.05).epsilon(1e-4));  // on the sphere, towards c
    }
}

TEST_CASE("APGD-CE and APGD-T break a linear model at a large radius and keep every image at a small one",
          "[attack][apgd]")
{
    // four classes (APGD-T's DLR loss needs four)
    struct Linear4 : nd::Seq<nd::Flatten, nd::Dense<4>, nd::Softmax> {};
    nd::Model<Linear4, nd::Shape<1, 3, 4>> model{nd::seed{9}};
    nd::rng g(nd::seed{10});
    na::image_batch<float> x = na::image_batch<float>::from_shape({10, 12});
    for (auto& v : x)
        v = g.uniform(0.2f, 0.8f);
    na::model_classifier target(model);
    std::vector<std::size_t> labels(10);
    const auto p = target.probabilities(x);
    for (std::size_t b = 0; b < 10; ++b)
        labels[b] = na::predicted_class(p, b);
    na::apgd_options o;
    o.epsilon = 1.0;  // the whole box: every image can be moved to any class's region
    const auto ce = na::apgd_ce(target, x, labels, o);
    const auto t = na::apgd_t(target, x, labels, o);
    const auto both = na::apgd_ce_then_t(target, x, labels, o);
    CHECK(ce.broken_count() + t.broken_count() > 0);
    CHECK(both.broken_count() >= std::max(ce.broken_count(), t.broken_count()));
    const auto q = target.probabilities(both.adversarial);
    for (std::size_t b = 0; b < 10; ++b)
        if (both.broken[b])
            CHECK(na::predicted_class(q, b) != labels[b]);
    o.epsilon = 0;
    const auto none = na::apgd_ce_then_t(target, x, labels, o);
    CHECK(none.broken_count() == 0);
    CHECK(std::equal(none.adversarial.begin(), none.adversarial.end(), x.begin()));
    // bad input
    o.iterations = 0;
    CHECK_THROWS_WITH(na::apgd_ce(target, x, labels, o), Catch::Contains("iterations must be at least 1"));
    struct Linear3 : nd::Seq<nd::Flatten, nd::Dense<3>, nd::Softmax> {};
    nd::Model<Linear3, nd::Shape<1, 3, 4>> three{nd::seed{9}};
    na::model_classifier target3(three);
    o.iterations = 10;
    std::vector<std::size_t> zeros(10, 0);
    CHECK_THROWS_WITH(na::apgd_t(target3, x, zeros, o), Catch::Contains("needs at least 4 classes"));
}

TEST_CASE("The Square attack breaks a linear model without gradients, within the ball and the box, reproducibly",
          "[attack][square]")
{
    linear_problem lp(8);
    auto bias = tensor(lp.model, "bias");
    bias.value[0] = 0.f;
    na::model_classifier target(lp.model);
    std::vector<std::size_t> labels(8);
    const auto p = target.probabilities(lp.x);
    for (std::size_t i = 0; i < 8; ++i)
        labels[i] = na::predicted_class(p, i);
    na::square_options o;
    o.epsilon = 0.5;
    o.queries = 300;
    o.channels = 1;
    o.height = 3;
    o.width = 4;
    o.seed = 4;
    const auto r = na::square_linf(target, lp.x, labels, o);
    CHECK(r.broken_count() == 8);
    const auto q = target.probabilities(r.adversarial);
    for (std::size_t i = 0; i < 8; ++i) {
        CHECK(na::predicted_class(q, i) != labels[i]);
        for (std::size_t k = 0; k < D; ++k) {
            CHECK(r.adversarial(i, k) >= 0.f);
            CHECK(r.adversarial(i, k) <= 1.f);
            CHECK(std::abs(r.adversarial(i, k) - lp.x(i, k)) <= 0.5f + 1e-6f);
        }
    }
    const auto again = na::square_linf(target, lp.x, labels, o);
    CHECK(std::equal(again.adversarial.begin(), again.adversarial.end(), r.adversarial.begin()));
    // at a small radius the margin only falls: the point returned never has a larger margin than the start
    o.epsilon = 0.01;
    const auto small = na::square_linf(target, lp.x, labels, o);
    CHECK(small.broken_count() <= 8);
    o.epsilon = 0;
    const auto none = na::square_linf(target, lp.x, labels, o);
    CHECK(std::equal(none.adversarial.begin(), none.adversarial.end(), lp.x.begin()));
    o.width = 5;
    CHECK_THROWS_WITH(na::square_linf(target, lp.x, labels, o), Catch::Contains("layout 1x3x5 does not match"));
    o.width = 4;
    o.queries = 0;
    CHECK_THROWS_WITH(na::square_linf(target, lp.x, labels, o), Catch::Contains("queries must be at least 1"));
    // the schedule of the square's share: p_init, halved after 1 %, 5 %, 20 % … of the budget
    na::square_options s;
    CHECK(s.share(0, 1000) == 0.8);
    CHECK(s.share(1, 1000) == 0.8);
    CHECK(s.share(2, 1000) == 0.4);
    CHECK(s.share(999, 1000) == Approx(0.8 / 512));
}

TEST_CASE("use_population_statistics freezes batch-statistics BatchNorms at the mean batch statistics, so each image "
          "is classified on its own", "[attack][batchnorm]")
{
    using In = nd::Shape<2>;
    using Net = nd::Seq<nd::BatchNorm, nd::Dense<3>, nd::BatchNorm>;
    nd::Model<Net, In, double> model{nd::seed{4}};
    model.layer<2>().options().mode = nd::bn_mode::running_statistics;  // already frozen: must keep its values
    nd::rng g(nd::seed{5});
    const std::size_t batch = 3, batches = 4;
    na::image_batch<double> images = xt::xtensor<double, 2>::from_shape({batches * batch + 2, 2});  // + a part batch
    for (auto& v : images)
        v = g.uniform01<double>();
    // the expected running values: the mean over the whole batches of each batch's mean and unbiased variance
    double mean[2] = {0, 0}, var[2] = {0, 0};
    for (std::size_t b = 0; b < batches; ++b)
        for (std::size_t c = 0; c < 2; ++c) {
            double m = 0, s = 0;
            for (std::size_t r = 0; r < batch; ++r)
                m += images(b * batch + r, c) / double(batch);
            for (std::size_t r = 0; r < batch; ++r)
                s += (images(b * batch + r, c) - m) * (images(b * batch + r, c) - m) / double(batch - 1);
            mean[c] += m / double(batches);
            var[c] += s / double(batches);
        }
    const std::vector<double> before(model.flat_buffers().begin(), model.flat_buffers().end());
    // in the paper's mode an image's output depends on the rest of its batch
    xt::xtensor<double, 2> probe = xt::view(images, xt::range(0, 5), xt::all());
    xt::xtensor<double, 2> other = probe;
    other(4, 0) += 1.0;
    model.set_training(false);
    CHECK(std::abs(model.forward(probe)(0, 0) - model.forward(other)(0, 0)) > 1e-3);
    model.set_training(true);

    CHECK(na::use_population_statistics(model, images, batch) == 1);
    const auto buf = model.flat_buffers();
    const std::size_t var_at = nd::padded_size(2);
    for (std::size_t c = 0; c < 2; ++c) {
        CHECK(buf[c] == Approx(mean[c]).epsilon(1e-12));
        CHECK(buf[var_at + c] == Approx(var[c]).epsilon(1e-12));
    }
    for (std::size_t i = 2 * var_at; i < buf.size(); ++i)  // the BatchNorm that was in running mode already
        CHECK(buf[i] == before[i]);
    CHECK(model.training());  // restored
    CHECK(model.layer<0>().options().momentum == 0.1);  // restored
    CHECK(model.layer<0>().options().mode == nd::bn_mode::running_statistics);
    // now every image is classified on its own: the same output alone or beside any others
    model.set_training(false);
    const auto together = model.forward(probe), changed = model.forward(other);
    for (std::size_t r = 0; r < 4; ++r)
        for (std::size_t k = 0; k < 3; ++k) {
            xt::xtensor<double, 2> alone = xt::view(probe, xt::range(r, r + 1), xt::all());
            CHECK(model.forward(alone)(0, k) == Approx(together(r, k)).margin(1e-12));
            CHECK(changed(r, k) == Approx(together(r, k)).margin(1e-12));
        }
    // nothing left in batch mode: a second call changes nothing; too few images are refused
    CHECK(na::use_population_statistics(model, images, batch) == 0);
    nd::Model<Net, In, double> fresh;
    na::image_batch<double> two = xt::view(images, xt::range(0, 2), xt::all());
    CHECK_THROWS_WITH(na::use_population_statistics(fresh, two, batch),
                      Catch::Contains("at least one batch of >= 2 images") && Catch::Contains("got 2 images"));
}

namespace {
/// A classifier that passes a linear model through, except for images whose first value is below 0.2: for those
/// the probabilities (poison_loss) or the input gradient are NaN, as an exact NMF gradient can be.
struct poisoned_classifier {
    na::model_classifier<LinearModel>& inner;
    bool poison_loss;
    std::vector<std::uint8_t> marked;
    static constexpr std::size_t features() { return D; }
    na::image_batch<float> probabilities(const na::image_batch<float>& x)
    {
        auto p = inner.probabilities(x);
        marked.assign(x.shape()[0], 0);
        for (std::size_t b = 0; b < x.shape()[0]; ++b)
            if (x(b, 0) < 0.2f) {
                marked[b] = 1;
                if (poison_loss)
                    xt::view(p, b, xt::all()) = std::nanf("");
            }
        return p;
    }
    na::image_batch<float> input_gradient(const na::image_batch<float>& dl_dp)
    {
        auto g = inner.input_gradient(dl_dp);
        for (std::size_t b = 0; b < marked.size(); ++b)
            if (marked[b])
                xt::view(g, b, xt::all()) = std::nanf("");
        return g;
    }
};
} // namespace

TEST_CASE("a non-finite loss or gradient stops the attack on that image and is counted, neither broken nor robust",
          "[attack]")
{
    linear_problem lp(6);
    for (const std::size_t b : {1, 4})
        lp.x(b, 0) = 0.05f;  // the poisoned images
    na::model_classifier target(lp.model);
    for (const bool poison_loss : {true, false}) {
        INFO((poison_loss ? "NaN probabilities" : "NaN gradient"));
        poisoned_classifier bad{target, poison_loss, {}};
        auto check = [&](const na::attack_result<float>& r, bool gradient_free) {
            for (std::size_t b = 0; b < 6; ++b) {
                const bool poisoned = b == 1 || b == 4;
                // a gradient-free attack never sees a poisoned gradient
                const bool expect = poisoned && (poison_loss || !gradient_free);
                INFO("image " << b);
                CHECK(bool(r.non_finite[b]) == expect);
                if (expect)
                    CHECK(!r.broken[b]);
            }
            CHECK(r.robust_count() + r.broken_count() + r.non_finite_count() == 6);
        };
        na::pgd_options po;
        po.epsilon = 0.05;
        po.steps = 5;
        check(na::pgd(bad, lp.x, lp.labels, po), false);
        na::apgd_options ao;
        ao.epsilon = 0.05;
        ao.iterations = 10;
        check(na::apgd_ce(bad, lp.x, lp.labels, ao), false);  // (APGD-T needs 4 classes; it shares apgd_run)
        na::square_options so;
        so.epsilon = 0.05;
        so.queries = 20;
        so.height = 3;
        so.width = 4;
        check(na::square_linf(bad, lp.x, lp.labels, so), true);
    }
}
