// Data readers, checkpoints, optimisers and the trainer: normal operation and every bad-input path.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include <nmfdsl/io.hpp>
#include <nmfdsl/testing/compare.hpp>
#include <nmfdsl/testing/replicas.hpp>
#include <xtensor/xview.hpp>

#include "files.hpp"

namespace nd = nmfdsl;
namespace fs = std::filesystem;

namespace {

using test_files::read_bytes;
using test_files::scratch;
using test_files::write_bytes;

void put_be32(std::vector<std::uint8_t>& b, std::uint32_t v)
{
    for (int i = 3; i >= 0; --i)
        b.push_back(std::uint8_t(v >> (8 * i)));
}

std::vector<std::uint8_t> idx_images(std::uint32_t count, std::uint32_t rows, std::uint32_t cols,
                                     std::uint32_t magic = 0x803, std::size_t drop = 0)
{
    std::vector<std::uint8_t> b;
    put_be32(b, magic);
    put_be32(b, count);
    put_be32(b, rows);
    put_be32(b, cols);
    for (std::size_t i = 0; i < std::size_t(count) * rows * cols - drop; ++i)
        b.push_back(std::uint8_t((i * 7) % 256));
    return b;
}

std::vector<std::uint8_t> idx_labels(const std::vector<std::uint8_t>& labels, std::uint32_t magic = 0x801)
{
    std::vector<std::uint8_t> b;
    put_be32(b, magic);
    put_be32(b, std::uint32_t(labels.size()));
    b.insert(b.end(), labels.begin(), labels.end());
    return b;
}

/// A small two-class image data set: class 1 has a bright top half, class 0 a bright bottom half.
nd::data::split toy_data(std::size_t train, std::size_t test, std::uint64_t s = 3)
{
    nd::rng g(nd::seed{s});
    auto make = [&](std::size_t n) {
        nd::data::dataset d;
        d.channels = 1;
        d.height = d.width = 8;
        d.source = "toy";
        d.images.resize(n * 64);
        d.labels.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint8_t label = std::uint8_t(g.below(2));
            d.labels[i] = label;
            for (std::size_t y = 0; y < 8; ++y)
                for (std::size_t x = 0; x < 8; ++x)
                    d.images[i * 64 + y * 8 + x] =
                        float(((y < 4) == (label == 1) ? 0.6 : 0.1) + 0.3 * g.uniform01<double>());
        }
        return d;
    };
    return {make(train), make(test)};
}

struct Toy : nd::Seq<nd::CNMF<6, 3>, nd::Mix1x1<6>, nd::AvgPool<2>, nd::CNMF<10, nd::whole_map>, nd::Mix1x1<10>,
                     nd::Softmax, nd::Flatten> {};
/// A training configuration for the tests: `epochs` epochs of batches of `batch`, no progress output.
nd::train_config quiet_config(std::size_t epochs, std::size_t batch)
{
    nd::train_config cfg;
    cfg.epochs = epochs;
    cfg.batch = batch;
    cfg.progress = nd::train_config::progress_mode::quiet;
    return cfg;
}

using ToyIn = nd::Shape<1, 8, 8>;
using ToyModel = nd::Model<Toy, ToyIn>;

} // namespace

TEST_CASE("IDX files: plain and gzip round trip", "[data]")
{
    const auto dir = scratch("idx_ok");
    write_bytes(dir / "train-images-idx3-ubyte", idx_images(3, 4, 5));
    write_bytes(dir / "train-labels-idx1-ubyte", idx_labels({1, 9, 0}));
    write_bytes(dir / "t10k-images-idx3-ubyte.gz", idx_images(2, 4, 5), true);
    write_bytes(dir / "t10k-labels-idx1-ubyte.gz", idx_labels({4, 2}), true);
    const auto s = nd::data::load_idx_directory(dir.string());
    CHECK(s.train.size() == 3);
    CHECK(s.test.size() == 2);
    CHECK(s.train.height == 4);
    CHECK(s.train.width == 5);
    CHECK(s.train.labels == std::vector<std::uint8_t>{1, 9, 0});
    CHECK(s.test.labels == std::vector<std::uint8_t>{4, 2});
    CHECK(s.train.images[1] == Approx(7 / 255.0));
    CHECK(s.test.images[2] == Approx(14 / 255.0));
}

TEST_CASE("IDX files: every bad file gets a data_error naming the file and the problem", "[data]")
{
    const auto dir = scratch("idx_bad");
    const std::string img = (dir / "img").string(), lab = (dir / "lab").string();
    auto expect = [&](const std::string& what) {
        CHECK_THROWS_AS(nd::data::load_idx(img, lab), nd::data_error);
        CHECK_THROWS_WITH(nd::data::load_idx(img, lab), Catch::Contains(what));
    };
    write_bytes(lab, idx_labels({1, 2, 3}));
    CHECK_THROWS_WITH(nd::data::load_idx(img, lab), Catch::Contains("'" + img + "' does not exist"));

    write_bytes(img, idx_images(3, 4, 4, 0x801));
    expect("magic number 0x00000801, expected 0x00000803");
    write_bytes(img, idx_images(3, 4, 4, 0x803, 5));
    expect("declares 3 images of 4x4 (48 bytes) but holds 43 bytes of pixels (truncated)");
    write_bytes(img, {0, 0, 8});
    expect("is truncated: 3 bytes");

    auto good = idx_images(3, 4, 4);
    write_bytes(img, good, true);
    auto gz = read_bytes(img);
    gz.resize(gz.size() / 2);
    write_bytes(img, gz);
    expect("corrupt or truncated");

    write_bytes(img, idx_images(3, 4, 4));
    write_bytes(lab, idx_labels({1, 12, 3}));
    expect("label 12 at index 1 is above 9");
    write_bytes(lab, idx_labels({1, 2}));
    expect("holds 3 images but");
    write_bytes(lab, idx_labels({1, 2, 3}, 0x803));
    expect("is not an IDX label file");
    auto short_labels = idx_labels({1, 2, 3});
    short_labels.pop_back();
    write_bytes(lab, short_labels);
    expect("declares 3 labels but holds 2 (truncated)");
    CHECK_THROWS_WITH(nd::data::load_idx_directory((dir / "nowhere").string()), Catch::Contains("has no"));
}

TEST_CASE("CIFAR-10 binary batches: reader and errors", "[data]")
{
    const auto dir = scratch("cifar");
    auto batch = [](std::vector<std::uint8_t> labels) {
        std::vector<std::uint8_t> b;
        for (std::size_t r = 0; r < labels.size(); ++r) {
            b.push_back(labels[r]);
            for (std::size_t p = 0; p < 3072; ++p)
                b.push_back(std::uint8_t((p + r) % 251));
        }
        return b;
    };
    for (int i = 1; i <= 5; ++i)
        write_bytes(dir / ("data_batch_" + std::to_string(i) + ".bin"), batch({std::uint8_t(i), 0}));
    write_bytes(dir / "test_batch.bin", batch({7}));
    CHECK(nd::data::is_cifar10_directory(dir.string()));
    const auto s = nd::data::load_cifar10_directory(dir.string());
    CHECK(s.train.size() == 10);
    CHECK(s.train.channels == 3);
    CHECK(s.train.height == 32);
    CHECK(s.train.labels[2] == 2);
    CHECK(s.test.labels[0] == 7);
    CHECK(s.train.images[3072 + 1] == Approx(2 / 255.0));  // record 1, red channel, pixel 1
    auto bad = batch({1});
    bad.pop_back();
    write_bytes(dir / "test_batch.bin", bad);
    CHECK_THROWS_WITH(nd::data::load_cifar10_directory(dir.string()),
                      Catch::Contains("test_batch.bin") && Catch::Contains("not a positive multiple"));
    write_bytes(dir / "test_batch.bin", batch({10}));
    CHECK_THROWS_WITH(nd::data::load_cifar10_directory(dir.string()), Catch::Contains("label 10 of record 0"));
}

TEST_CASE("augmentation: crops, flips and jitter stay in range; evaluation takes the centre", "[data]")
{
    std::vector<float> img(3 * 6 * 6);
    for (std::size_t i = 0; i < img.size(); ++i)
        img[i] = float(i % 36) / 36.f;
    nd::data::augment_draw centre;
    centre.dy = centre.dx = 1;
    std::vector<float> out(3 * 4 * 4);
    nd::data::apply_augmentation(img.data(), 3, 6, 6, centre, 4, 4, out.data());
    CHECK(out[0] == img[7]);
    nd::data::augment_draw flip = centre;
    flip.flip = true;
    nd::data::apply_augmentation(img.data(), 3, 6, 6, flip, 4, 4, out.data());
    CHECK(out[0] == img[10]);
    nd::rng g(nd::seed{1});
    for (int k = 0; k < 20; ++k) {
        const auto d = nd::data::draw_augmentation(nd::data::augmentation::paper_cifar10(), 2, 2, g);
        CHECK(d.dy <= 2);
        CHECK(d.brightness >= 0.5);
        CHECK(d.brightness <= 1.5);
        nd::data::apply_augmentation(img.data(), 3, 6, 6, d, 4, 4, out.data());
        CHECK(std::all_of(out.begin(), out.end(), [](float v) { return v >= 0.f && v <= 1.f; }));
    }
}

TEST_CASE("augmentation: crops of the zero-padded image keep the size, shift the content, fill with zeros", "[data]")
{
    std::vector<float> img(2 * 5 * 5);
    for (std::size_t i = 0; i < img.size(); ++i)
        img[i] = 0.1f + float(i) / 100.f;  // no zeros inside the image
    const auto a = nd::data::augmentation::crop_flip(2);
    CHECK((a.crop && a.flip && !a.jitter() && !a.per_batch && a.pad == 2));
    std::vector<float> out(2 * 5 * 5);
    // corner (0, 0) of the 9×9 padded image: the image moves 2 down and 2 right, zeros above and to the left
    nd::data::augment_draw d;
    d.pad = 2;
    nd::data::apply_augmentation(img.data(), 2, 5, 5, d, 5, 5, out.data());
    for (std::size_t c = 0; c < 2; ++c)
        for (std::size_t y = 0; y < 5; ++y)
            for (std::size_t x = 0; x < 5; ++x) {
                const float v = out[(c * 5 + y) * 5 + x];
                CHECK(v == (y >= 2 && x >= 2 ? img[(c * 5 + y - 2) * 5 + x - 2] : 0.f));
            }
    // the centre (dy = dx = pad) is the image itself; flipped, its mirror image
    d.dy = d.dx = 2;
    nd::data::apply_augmentation(img.data(), 2, 5, 5, d, 5, 5, out.data());
    CHECK(std::equal(out.begin(), out.end(), img.begin()));
    d.flip = true;
    nd::data::apply_augmentation(img.data(), 2, 5, 5, d, 5, 5, out.data());
    CHECK(out[0] == img[4]);
    // draws cover every corner of the padded image, and both flips
    nd::rng g(nd::seed{3});
    std::size_t max_dy = 0, flips = 0;
    for (int k = 0; k < 200; ++k) {
        const auto r = nd::data::draw_augmentation(a, 4, 4, g);
        CHECK((r.dy <= 4 && r.dx <= 4 && r.pad == 2));
        max_dy = std::max(max_dy, r.dy);
        flips += r.flip;
    }
    CHECK(max_dy == 4);
    CHECK(flips > 50);
    CHECK(flips < 150);
}

TEST_CASE("Adam and SGD follow their update rules", "[optim]")
{
    nd::Model<nd::Dense<1>, nd::Shape<2>, double> m;
    auto params = m.parameters();
    const double w0 = params[0].value[0];
    nd::optim::learning_rates lr;
    lr[nd::group::dense] = 0.1;
    nd::optim::Adam<double> adam(m.parameters(), lr);
    params[0].grad[0] = 2.0;
    adam.step();  // first Adam step moves by lr·sign(g) (bias-corrected m̂/√v̂ = 1)
    CHECK(params[0].value[0] == Approx(w0 - 0.1).epsilon(1e-7));
    params[0].grad[0] = -1.0;
    adam.step();
    const double m2 = 0.9 * 0.2 + 0.1 * -1.0, v2 = 0.999 * 0.004 + 0.001 * 1.0;
    const double step2 = 0.1 * (m2 / (1 - 0.81)) / (std::sqrt(v2 / (1 - 0.999 * 0.999)) + 1e-8);
    CHECK(params[0].value[0] == Approx(w0 - 0.1 - step2).epsilon(1e-6));

    nd::optim::SGD<double> sgd(m.parameters(), lr, 0.5);
    const double w1 = params[0].value[0];
    params[0].grad[0] = 1.0;
    sgd.step();
    sgd.step();  // buffers 1, then 1.5
    CHECK(params[0].value[0] == Approx(w1 - 0.1 * 2.5));
    lr[nd::group::dense] = -1;
    CHECK_THROWS_AS(nd::optim::Adam<double>(m.parameters(), lr), nd::argument_error);
}

TEST_CASE("optimiser state is counted by nmfdsl::memory", "[optim][memory]")
{
    nd::Model<nd::Dense<50>, nd::Shape<100>> m;
    const std::size_t n = decltype(m)::parameter_count, before = nd::memory::current_bytes();
    {
        nd::optim::Adam<float> adam(m.parameters(), nd::optim::learning_rates::paper());
        CHECK(nd::memory::current_bytes() - before >= 2 * n * sizeof(float));  // m and v
        nd::optim::SGD<float> sgd(m.parameters(), nd::optim::learning_rates::paper());
        CHECK(nd::memory::current_bytes() - before >= 3 * n * sizeof(float));  // + the momentum buffer
    }
    CHECK(nd::memory::current_bytes() == before);
}

TEST_CASE("optimiser state: a restored optimiser continues exactly; a state of the wrong length is refused",
          "[optim][checkpoint]")
{
    using M = nd::Model<nd::Dense<3>, nd::Shape<4>, double>;
    auto run = [](auto make) {
        M a{nd::seed{1}};
        auto opt_a = make(a);
        auto pa = a.parameters();
        auto set_grads = [](auto& params, double x) {
            for (auto& p : params)
                for (std::size_t i = 0; i < p.grad.size(); ++i)
                    p.grad[i] = std::sin(x + double(i));
        };
        for (int t = 0; t < 3; ++t) {
            set_grads(pa, t);
            opt_a.step();
        }
        opt_a.rates()[nd::group::dense] = 0.05;  // a schedule's change of rate is part of the state
        M c{nd::seed{7}};  // a fresh model and optimiser, given a's weights and a's optimiser state
        auto pc = c.parameters();
        for (std::size_t k = 0; k < pa.size(); ++k)
            std::copy(pa[k].value.begin(), pa[k].value.end(), pc[k].value.begin());
        auto opt_c = make(c);
        opt_c.load_state(opt_a.state());
        CHECK(opt_c.rates()[nd::group::dense] == 0.05);
        set_grads(pa, 3);
        opt_a.step();
        set_grads(pc, 3);
        opt_c.step();
        for (std::size_t k = 0; k < pa.size(); ++k)
            CHECK(std::equal(pa[k].value.begin(), pa[k].value.end(), pc[k].value.begin()));
        auto state = opt_a.state();
        state.pop_back();
        CHECK_THROWS_AS(opt_c.load_state(state), nd::argument_error);
        return state.size() + 1;
    };
    nd::optim::learning_rates lr;
    lr[nd::group::dense] = 0.1;
    // Dense<3> on 4 inputs: 15 values; Adam keeps the step count, m and v; SGD one buffer; both the 6 rates
    CHECK(run([&](M& m) { return nd::optim::Adam<double>(m.parameters(), lr); }) == 1 + 2 * 15 + 6);
    CHECK(run([&](M& m) { return nd::optim::SGD<double>(m.parameters(), lr, 0.9); }) == 15 + 6);
    M m;
    nd::optim::Adam<double> adam(m.parameters(), lr);
    CHECK_THROWS_WITH(adam.load_state({1.0, 2.0}), Catch::Contains("Adam state has 2 values, expected 37"));
    nd::optim::SGD<double> sgd(m.parameters(), lr);
    CHECK_THROWS_WITH(sgd.load_state({}), Catch::Contains("SGD state has 0 values, expected 21"));
}

TEST_CASE("ReduceLROnPlateau and the lr-limit stopping rule", "[optim]")
{
    auto lr = nd::optim::learning_rates::paper();
    nd::optim::ReduceLROnPlateau s;
    CHECK(!s.step(10.0, lr));
    for (int i = 0; i < 10; ++i)
        CHECK(!s.step(10.0, lr));  // patience 10: ten bad epochs are tolerated
    CHECK(s.step(10.0, lr));       // the eleventh reduces
    CHECK(lr[nd::group::nmf] == Approx(0.001));
    CHECK(lr[nd::group::mix] == Approx(0.0001));
    CHECK(!s.step(9.99, lr));      // an improvement of 0.1 % resets the count
    for (int r = 0; r < 5; ++r)
        for (int i = 0; i < 11; ++i)
            s.step(100.0, lr);
    CHECK(!nd::optim::learning_rates_exhausted(lr));  // nmf at 1e-8 after six reductions
    for (int i = 0; i < 11; ++i)
        s.step(100.0, lr);
    CHECK(nd::optim::learning_rates_exhausted(lr));    // seventh: 1e-9 in double, below 1e-9 in float32
    CHECK(lr[nd::group::mix] == Approx(1e-10));        // changes below eps = 1e-10 are skipped
}

TEST_CASE("checkpoints: round trip, truncation, corruption, another network, failed writes", "[checkpoint]")
{
    const auto dir = scratch("checkpoint");
    const std::string path = (dir / "c.nmfd").string();
    nd::io::checkpoint c{"net A\n", {1, 2, 3, 4}, {5}, {0.5, -2.0}, {9, 9}};
    nd::io::write_checkpoint(path, c);
    const auto r = nd::io::read_checkpoint(path, "net A\n");
    CHECK(r.params == c.params);
    CHECK(r.optimizer == c.optimizer);
    CHECK(r.trainer == c.trainer);
    CHECK_THROWS_WITH(nd::io::read_checkpoint(path, "net B\n"),
                      Catch::Contains("belongs to another network") && Catch::Contains("net A") &&
                          Catch::Contains("net B"));
    const auto good = read_bytes(path);
    auto older = good;  // bytes 8..11: the format version, little-endian
    older[8] = 0;
    write_bytes(path, older);
    CHECK_THROWS_WITH(nd::io::read_checkpoint(path),
                      Catch::Contains("format version 0") &&
                          Catch::Contains("reads version " + std::to_string(nd::io::checkpoint_version)));
    auto cut = good;
    cut.resize(good.size() - 7);
    write_bytes(path, cut);
    CHECK_THROWS_WITH(nd::io::read_checkpoint(path), Catch::Contains("truncated"));
    auto flipped = good;
    flipped[good.size() - 5] ^= 0x10;  // a byte of the last section's payload
    write_bytes(path, flipped);
    CHECK_THROWS_WITH(nd::io::read_checkpoint(path), Catch::Contains("checksum"));
    write_bytes(path, {'h', 'e', 'l', 'l', 'o', '!', '!', '!', '!', '!', '!', '!', '!'});
    CHECK_THROWS_WITH(nd::io::read_checkpoint(path), Catch::Contains("not an nmfdsl checkpoint"));
    CHECK_THROWS_WITH(nd::io::read_checkpoint((dir / "none").string()), Catch::Contains("does not exist"));

    write_bytes(path, good);
    fs::create_directories(path + ".tmp");  // the temporary file cannot be created: the write fails ...
    CHECK_THROWS_AS(nd::io::write_checkpoint(path, nd::io::checkpoint{"net C\n", {}, {}, {}, {}}), nd::io_error);
    CHECK(read_bytes(path) == good);  // ... and the previous checkpoint is intact
}

TEST_CASE("parameters and buffers to and from .npy files: shapes, round trip, nothing changed by a bad file",
          "[io][npy]")
{
    const auto dir = scratch("parameters_npy");
    ToyModel source{nd::seed{4}};
    float running = 0.25f;  // running statistics unlike the initial ones (mean 0, variance 1)
    for (auto& b : source.buffers())
        for (float& v : b.value)
            v = (running += 0.5f);
    const auto files = nd::io::write_parameters_npy(source, (dir / "p").string());
    const auto params = std::as_const(source).parameters();
    const auto buffers = std::as_const(source).buffers();
    REQUIRE(buffers.size() >= 2);  // the BatchNorms' running means and variances
    REQUIRE(files.size() == params.size() + buffers.size());
    CHECK(params[0].shape == std::vector<std::size_t>{6, 3, 3, 1});  // CNMF<6, 3>'s V: [Out, K, K, C]
    CHECK(files[0] == (dir / "p" / (params[0].path + ".V.npy")).string());
    for (std::size_t k = 0; k < params.size(); ++k) {
        const auto a = nd::io::read_npy<float>(files[k]);
        CHECK(std::vector<std::size_t>(a.shape().begin(), a.shape().end()) == params[k].shape);
        CHECK(std::equal(a.begin(), a.end(), params[k].value.begin(), params[k].value.end()));
        CHECK(files[k].find('/' + nd::io::parameter_file_name(params[k].path, params[k].name)) != std::string::npos);
    }
    for (std::size_t k = 0; k < buffers.size(); ++k) {  // the buffers follow the parameters
        const std::string& file = files[params.size() + k];
        CHECK(file == (dir / "p" / nd::io::parameter_file_name(buffers[k].path, buffers[k].name)).string());
        const auto a = nd::io::read_npy<float>(file);
        CHECK(std::vector<std::size_t>(a.shape().begin(), a.shape().end()) == buffers[k].shape);
        CHECK(buffers[k].shape == std::vector<std::size_t>{buffers[k].value.size()});
        CHECK(std::equal(a.begin(), a.end(), buffers[k].value.begin(), buffers[k].value.end()));
    }
    CHECK(files.back().ends_with(".running_var.npy"));
    const std::vector<std::size_t> pointwise{6, 6}, gamma{6};  // Mix1x1<6>: Pointwise [Out, In] and BatchNorm's γ
    CHECK(std::any_of(params.begin(), params.end(), [&](const auto& p) { return p.shape == pointwise; }));
    CHECK(std::any_of(params.begin(), params.end(), [&](const auto& p) { return p.shape == gamma; }));
    CHECK(nd::io::parameter_file_name("3/1/0", "weight") == "3-1-0.weight.npy");
    write_bytes(dir / "a_file", {1, 2, 3});  // a directory cannot be made where a file is
    CHECK_THROWS_AS(nd::io::write_parameters_npy(source, (dir / "a_file" / "p").string()), nd::io_error);
    CHECK_THROWS_WITH(nd::io::write_parameters_npy(source, (dir / "a_file" / "p").string()),
                      Catch::Contains("cannot create the directory '" + (dir / "a_file" / "p").string() + "'"));

    ToyModel target{nd::seed{5}};
    const std::vector<float> before(target.flat_parameters().begin(), target.flat_parameters().end());
    const std::vector<float> buffers_before(target.flat_buffers().begin(), target.flat_buffers().end());
    auto unchanged = [&] {
        return std::equal(before.begin(), before.end(), target.flat_parameters().begin(),
                          target.flat_parameters().end()) &&
               std::equal(buffers_before.begin(), buffers_before.end(), target.flat_buffers().begin(),
                          target.flat_buffers().end());
    };
    // a bad buffer file (the last file read) throws before any tensor changes: missing, or a negative variance
    const std::string variance = files.back();
    const auto variance_good = read_bytes(variance);
    fs::remove(variance);
    CHECK_THROWS_WITH(nd::io::read_parameters_npy(target, (dir / "p").string()),
                      Catch::Contains("'" + variance + "' of buffer " + buffers.back().path + ".running_var") &&
                          Catch::Contains("does not exist"));
    CHECK(unchanged());
    xt::xtensor<float, 1> negative = xt::ones<float>({buffers.back().value.size()});
    negative(3) = -0.5f;
    nd::io::write_npy(variance, negative);
    CHECK_THROWS_WITH(nd::io::read_parameters_npy(target, (dir / "p").string()),
                      Catch::Contains("element 3 is -0.5") && Catch::Contains("needs finite values >= 0"));
    CHECK(unchanged());
    write_bytes(variance, variance_good);

    // a bad parameter file (here the last parameter's) does the same
    const std::string last = files[params.size() - 1];
    const auto last_good = read_bytes(last);
    fs::remove(last);
    CHECK_THROWS_WITH(nd::io::read_parameters_npy(target, (dir / "p").string()),
                      Catch::Contains("'" + last + "' of tensor " + params.back().path) &&
                          Catch::Contains("does not exist"));
    CHECK(unchanged());
    nd::io::write_npy(last, xt::xtensor<float, 2>::from_shape({1, params.back().value.size()}));
    CHECK_THROWS_WITH(nd::io::read_parameters_npy(target, (dir / "p").string()),
                      Catch::Contains("holds an array of shape (1, " + std::to_string(params.back().value.size()) +
                                      "); tensor " + params.back().path) &&
                          Catch::Contains("has shape (" + std::to_string(params.back().value.size()) + ",)"));
    CHECK(unchanged());
    xt::xarray<double> with_nan = xt::zeros<double>(params.back().shape);
    with_nan.data()[1] = std::nan("");
    nd::io::write_npy(last, with_nan);
    CHECK_THROWS_WITH(nd::io::read_parameters_npy(target, (dir / "p").string()),
                      Catch::Contains("element 1 is nan") && Catch::Contains("needs finite values"));
    CHECK(unchanged());

    write_bytes(last, last_good);
    nd::io::read_parameters_npy(target, (dir / "p").string());
    CHECK(std::equal(target.flat_parameters().begin(), target.flat_parameters().end(),
                     source.flat_parameters().begin(), source.flat_parameters().end()));
    CHECK(std::equal(target.flat_buffers().begin(), target.flat_buffers().end(), source.flat_buffers().begin(),
                     source.flat_buffers().end()));
    const auto data = toy_data(8, 1);
    xt::xtensor<float, 4> x = xt::zeros<float>({std::size_t(8), std::size_t(1), std::size_t(8), std::size_t(8)});
    std::copy(data.train.images.begin(), data.train.images.end(), x.begin());
    ToyModel source_copy = source;
    CHECK((target.forward(x) == source_copy.forward(x)));
}

namespace {
// A custom layer declaring a parameter whose values must be non-negative; it is never run.
struct NonNegativeRate : nd::layer_base {
    static std::string name() { return "NonNegativeRate"; }
    template <class In>
    using output_shape = In;
    template <class In>
    static constexpr std::array<nd::param_spec, 2> param_tensors{
        {{"offset", nd::group::other, 3}, {"rate", nd::group::other, 3, {}, nd::value_range::non_negative}}};
    template <class In, class T>
    static void forward(const options&, const nd::forward_args<T>&, cache<In, T>&)
    {
    }
    template <class In, class T>
    static void backward(const options&, const nd::backward_args<T>&, cache<In, T>&)
    {
    }
};
} // namespace

TEST_CASE(".npy reading: a tensor's value range comes from its param_spec, for built-in and custom layers",
          "[npy][checkpoint]")
{
    const auto dir = scratch("npy_ranges");
    ToyModel toy{nd::seed{2}};
    for (const auto& p : std::as_const(toy).parameters())
        CHECK(p.range == nd::value_range::any);
    for (const auto& b : std::as_const(toy).buffers())
        CHECK(b.range == (b.name == "running_var" ? nd::value_range::non_negative : nd::value_range::any));

    // a negative running mean is a fine value; only the variance must be >= 0
    nd::io::write_parameters_npy(toy, (dir / "toy").string());
    const auto mean = std::as_const(toy).buffers().front();
    REQUIRE(mean.name == "running_mean");
    xt::xtensor<float, 1> negative = -xt::ones<float>({mean.value.size()});
    nd::io::write_npy((dir / "toy" / nd::io::parameter_file_name(mean.path, mean.name)).string(), negative);
    nd::io::read_parameters_npy(toy, (dir / "toy").string());
    CHECK(std::as_const(toy).buffers().front().value[0] == -1.f);

    // a custom layer's tensor flagged non-negative is checked the same way, whatever its name
    nd::Model<nd::Seq<NonNegativeRate>, nd::Shape<4>> custom{nd::seed{1}};
    const auto files = nd::io::write_parameters_npy(custom, (dir / "custom").string());
    REQUIRE(files.size() == 2);
    nd::io::write_npy(files[0], xt::xtensor<float, 1>{-1.f, 0.f, 2.f});  // offset: any sign
    nd::io::write_npy(files[1], xt::xtensor<float, 1>{0.f, 0.5f, -0.25f});
    CHECK_THROWS_WITH(nd::io::read_parameters_npy(custom, (dir / "custom").string()),
                      Catch::Contains(files[1]) && Catch::Contains("tensor 0.rate (NonNegativeRate)") &&
                          Catch::Contains("element 2 is -0.25") && Catch::Contains("needs finite values >= 0"));
    nd::io::write_npy(files[1], xt::xtensor<float, 1>{0.f, 0.5f, 0.25f});
    nd::io::read_parameters_npy(custom, (dir / "custom").string());
    CHECK(custom.parameters()[0].value[0] == -1.f);
    CHECK(custom.parameters()[1].value[2] == 0.25f);
}

TEST_CASE("the trainer learns a toy problem and writes metrics, checkpoint and pictures", "[trainer]")
{
    const auto dir = scratch("trainer");
    const auto data = toy_data(400, 100);
    ToyModel model{nd::seed{1}};
    nd::train_config cfg;
    cfg.epochs = 3;
    cfg.batch = 20;
    cfg.out_dir = dir.string();
    cfg.progress = nd::train_config::progress_mode::quiet;
    nd::Trainer<ToyModel> t(model, data, cfg);
    const auto& h = t.fit();
    REQUIRE(h.size() == 3);
    CHECK(h.back().test_accuracy > 0.9);
    CHECK(h.back().train_loss < h.front().train_loss);
    CHECK(fs::exists(dir / "checkpoint.nmfd"));
    std::ifstream csv(dir / "metrics.csv");
    std::string header, line;
    std::getline(csv, header);
    // the fixed columns, then the fraction of non-zero outputs of each ReLU (inside the CNMF and Mix1x1 composites)
    CHECK(header == "epoch,lr_nmf,lr_mix,lr_conv,lr_norm,lr_dense,lr_other,train_loss,train_accuracy,test_accuracy,"
                    "seconds,nonzero_0,nonzero_3,nonzero_8,nonzero_10");
    std::size_t rows = 0;
    while (std::getline(csv, line))
        ++rows;
    CHECK(rows == 3);
}

TEST_CASE("resuming continues a run exactly as if it had not stopped", "[trainer]")
{
    const auto data = toy_data(200, 40);
    nd::train_config cfg;
    cfg.batch = 16;
    cfg.progress = nd::train_config::progress_mode::quiet;
    cfg.augment = {true, true, 0.2, 0.1, 0, 0, false};  // the augmentation RNG must resume too

    ToyModel straight{nd::seed{7}};
    cfg.epochs = 3;
    cfg.out_dir = scratch("resume_a").string();
    nd::Trainer<ToyModel> a(straight, data, cfg);
    a.fit();

    const auto dir = scratch("resume_b");
    cfg.out_dir = dir.string();
    {
        ToyModel first{nd::seed{7}};
        cfg.epochs = 1;
        nd::Trainer<ToyModel> b(first, data, cfg);
        b.fit();
    }
    ToyModel resumed{nd::seed{99}};  // a different initialisation: everything must come from the checkpoint
    cfg.epochs = 3;
    nd::Trainer<ToyModel> c(resumed, data, cfg);
    c.resume((dir / "checkpoint.nmfd").string());
    CHECK(c.history().size() == 1);
    c.fit();
    const auto pa = straight.flat_parameters(), pc = resumed.flat_parameters();
    CHECK(std::equal(pa.begin(), pa.end(), pc.begin()));
    CHECK(a.history().back().test_accuracy == c.history().back().test_accuracy);
    CHECK(a.history().back().train_loss == c.history().back().train_loss);

    // a checkpoint of another network is refused, naming both
    nd::Model<nd::Seq<nd::Conv<4, 3>, nd::AvgPool<2>, nd::Flatten, nd::Dense<10>, nd::Softmax>, ToyIn> other;
    cfg.out_dir.clear();
    nd::Trainer<decltype(other)> o(other, data, cfg);
    CHECK_THROWS_WITH(o.resume((dir / "checkpoint.nmfd").string()),
                      Catch::Contains("another network") && Catch::Contains("CNMF<6,3>") &&
                          Catch::Contains("Dense<10>"));
}

TEST_CASE("a non-finite loss stops training, naming epoch and batch, and keeps the last good checkpoint", "[trainer]")
{
    auto data = toy_data(100, 20);
    const auto dir = scratch("nonfinite");
    using Plain = nd::Model<nd::Seq<nd::Conv<4, 3>, nd::AvgPool<2>, nd::Flatten, nd::Dense<10>, nd::Softmax>, ToyIn>;
    Plain model;
    nd::train_config cfg;
    cfg.epochs = 1;
    cfg.batch = 10;
    cfg.out_dir = dir.string();
    cfg.progress = nd::train_config::progress_mode::quiet;
    nd::Trainer<Plain> t(model, data, cfg);
    t.fit();
    const auto good = read_bytes(dir / "checkpoint.nmfd");
    for (auto& v : data.train.images)
        v = std::numeric_limits<float>::infinity();
    nd::train_config more = cfg;
    more.epochs = 2;
    nd::Trainer<Plain> t2(model, data, more);
    t2.resume((dir / "checkpoint.nmfd").string());
    CHECK_THROWS_AS(t2.fit(), nd::numeric_error);
    CHECK_THROWS_WITH(t2.fit(), Catch::Contains("epoch 2, batch 1") && Catch::Contains("checkpoint.nmfd"));
    CHECK(read_bytes(dir / "checkpoint.nmfd") == good);
}

TEST_CASE("the trainer takes the caller's loss and optimiser, and vector-input models", "[trainer]")
{
    const auto data = toy_data(400, 100);
    nd::train_config cfg = quiet_config(3, 20);

    ToyModel adam_model{nd::seed{1}}, sgd_model{nd::seed{1}};
    nd::Trainer<ToyModel> paper(adam_model, data, cfg);
    CHECK(paper.optimizer().name() == "Adam");
    auto lr = nd::optim::learning_rates::paper();
    for (double& r : lr.lr)
        r = 0.05;
    nd::Trainer<ToyModel> custom(sgd_model, data, cfg, nd::loss::CrossEntropy{},
                                 std::make_unique<nd::optim::SGD<float>>(sgd_model.parameters(), lr, 0.9));
    CHECK(custom.optimizer().name() == "SGD");
    const auto& a = paper.fit();
    const auto& b = custom.fit();
    CHECK(b.back().test_accuracy > 0.9);  // SGD + cross-entropy learns the toy problem too ...
    CHECK(b.back().train_loss != a.back().train_loss);  // ... with its own loss values
    CHECK(b.front().lr[nd::group::dense] == 0.05);

    // a model on flat vectors (the 8x8 images flattened) trains with the same data
    using Flat = nd::Model<nd::Seq<nd::Dense<8>, nd::ReLU, nd::Dense<2>, nd::Softmax>, nd::Shape<64>>;
    Flat flat{nd::seed{2}};
    nd::Trainer<Flat> vectors(flat, data, cfg);
    CHECK(vectors.fit().back().test_accuracy > 0.9);
    nd::train_config flipping = cfg;
    flipping.augment.flip = true;
    CHECK_THROWS_AS((nd::Trainer<Flat>(flat, data, flipping)), nd::argument_error);
    nd::train_config padding = cfg;
    padding.augment.pad = 4;  // a crop of a padded image means nothing to a vector
    CHECK_THROWS_WITH((nd::Trainer<Flat>(flat, data, padding)), Catch::Contains("augmentation must be none"));
    using Wrong = nd::Model<nd::Seq<nd::Dense<2>, nd::Softmax>, nd::Shape<63>>;
    Wrong wrong;
    CHECK_THROWS_WITH((nd::Trainer<Wrong>(wrong, data, cfg)), Catch::Contains("expects vectors of 63 values"));
    CHECK_THROWS_AS((nd::Trainer<ToyModel>(adam_model, data, cfg, nd::loss_function<float>{}, nullptr)),
                    nd::argument_error);
}

TEST_CASE("the trainer rejects data of the wrong image size", "[trainer]")
{
    const auto data = toy_data(10, 10);
    nd::Model<nd::Seq<nd::Conv<4, 3>, nd::Flatten, nd::Dense<2>, nd::Softmax>, nd::Shape<3, 8, 8>> model;
    CHECK_THROWS_WITH((nd::Trainer<decltype(model)>(model, data, {})),
                      Catch::Contains("expects 3x8x8 images") && Catch::Contains("has 1x8x8"));
}

TEST_CASE("CIFAR-10 data trains a 3x28x28 model with random crops and the paper's augmentation", "[trainer][data]")
{
    const auto dir = scratch("cifar_train");
    nd::rng g(nd::seed{8});
    auto batch = [&](std::size_t n) {
        std::vector<std::uint8_t> b;
        for (std::size_t r = 0; r < n; ++r) {
            b.push_back(std::uint8_t(g.below(10)));
            for (std::size_t p = 0; p < 3072; ++p)
                b.push_back(std::uint8_t(g.below(256)));
        }
        return b;
    };
    for (int i = 1; i <= 5; ++i)
        write_bytes(dir / ("data_batch_" + std::to_string(i) + ".bin"), batch(4));
    write_bytes(dir / "test_batch.bin", batch(6));
    const auto data = nd::data::load_cifar10_directory(dir.string());
    struct Small : nd::Seq<nd::CNMF<4, 5>, nd::Mix1x1<4>, nd::AvgPool<4>, nd::CNMF<10, nd::whole_map>, nd::Softmax,
                           nd::Flatten> {};
    using M = nd::Model<Small, nd::Shape<3, 28, 28>>;
    M model;
    nd::train_config cfg;
    cfg.epochs = 1;
    cfg.batch = 5;
    cfg.augment = nd::data::augmentation::paper_cifar10();
    cfg.progress = nd::train_config::progress_mode::quiet;
    nd::Trainer<M> t(model, data, cfg);
    const auto& h = t.fit();
    REQUIRE(h.size() == 1);
    CHECK(std::isfinite(h[0].train_loss));
    CHECK(h[0].test_accuracy >= 0.0);
    CHECK(h[0].test_accuracy <= 1.0);
}

TEST_CASE("bad arguments to SGD, the trainer and the PNG writer are refused with a message", "[optim][trainer]")
{
    nd::Model<nd::Dense<1>, nd::Shape<2>, double> m;
    CHECK_THROWS_WITH(nd::optim::SGD<double>(m.parameters(), nd::optim::learning_rates::paper(), 1.0),
                      Catch::Contains("momentum must be in [0, 1)"));
    const auto data = toy_data(10, 10);
    ToyModel model;
    nd::train_config cfg;
    cfg.batch = 0;
    CHECK_THROWS_WITH((nd::Trainer<ToyModel>(model, data, cfg)), Catch::Contains("batch size must be at least 1"));
    const auto dir = scratch("png");
    CHECK_THROWS_WITH(nd::io::write_png((dir / "x.png").string(), 4, 4, 2, std::vector<std::uint8_t>(32)),
                      Catch::Contains("1 or 3 channels"));
    CHECK(!fs::exists(dir / "x.png"));
    nd::io::write_png((dir / "ok.png").string(), 2, 2, 1, {0, 64, 128, 255});
    CHECK(read_bytes(dir / "ok.png").size() > 8);
}

TEST_CASE("the trainer adds the layers' local costs and reports their epoch means", "[trainer][local]")
{
    const auto data = toy_data(200, 50);
    nd::train_config cfg = quiet_config(1, 20);
    using Net = nd::Seq<nd::HaHBlock<6>, nd::AvgPool<2>, nd::Flatten, nd::Dense<2>, nd::Softmax>;
    using M = nd::Model<Net, ToyIn>;
    M off{nd::seed{4}}, on{nd::seed{4}}, on_again{nd::seed{4}};
    on.layer<1>().options().hah_alpha(0.05);  // layer 1: the HaH block's WNConv (after its ZeroPad)
    on_again.layer<1>().options().hah_alpha(0.05);
    nd::Trainer<M> plain(off, data, cfg, nd::loss::CrossEntropy{}, nullptr);  // nullptr: the default Adam
    nd::Trainer<M> hah(on, data, cfg, nd::loss::CrossEntropy{}, nullptr);
    const std::string dir = scratch("local_costs").string();
    cfg.out_dir = dir;
    nd::Trainer<M> reported(on_again, data, cfg, nd::loss::CrossEntropy{}, nullptr);
    const auto& a = plain.fit();
    const auto& b = hah.fit();
    CHECK(a.back().local_costs.empty());
    REQUIRE(b.back().local_costs.size() == 1);
    CHECK(b.back().local_costs[0].path == "1");
    CHECK(b.back().local_costs[0].value < 0);  // −α·HaH, HaH > 0 once ReLU leaves some channels active
    // the cost changed the training: the conv weights differ from the run without it
    const auto wa = off.layer<1>().params("weight");
    const auto wb = on.layer<1>().params("weight");
    CHECK_FALSE(std::equal(wa.begin(), wa.end(), wb.begin()));
    // the metrics CSV gets a column per layer with a local cost
    const auto& c = reported.fit();
    std::ifstream csv(dir + "/metrics.csv");
    std::string header, row;
    std::getline(csv, header);
    std::getline(csv, row);
    // ... and one per activation statistic of the test-set evaluation: the block's WNConv (1), ReLU (2) and
    // threshold (4)
    const std::string tail = ",cost_1,disparity_1,nonzero_2,nonzero_4";
    REQUIRE(header.size() > tail.size());
    CHECK(header.substr(header.size() - tail.size()) == tail);
    std::vector<double> cells;
    for (std::size_t at = 0; at != std::string::npos;) {
        const std::size_t next = row.find(',', at);
        cells.push_back(std::stod(row.substr(at, next == std::string::npos ? next : next - at)));
        at = next == std::string::npos ? next : next + 1;
    }
    REQUIRE(cells.size() >= 4);
    const auto& stats = c.back().statistics;
    REQUIRE(stats.size() == 3);
    CHECK(cells[cells.size() - 4] == Approx(c.back().local_costs[0].value));
    CHECK(cells[cells.size() - 3] == Approx(stats[0].value));
    CHECK(cells[cells.size() - 1] == Approx(stats[2].value));
    CHECK(stats[2].value <= 0.2 + 1e-12);  // the threshold keeps at most ρ = 0.2 of each map
    CHECK(stats[2].value > 0);
    CHECK(stats[1].value >= stats[2].value);  // ReLU keeps at least what the threshold keeps
    CHECK(stats[0].value > 0);
    // the same statistics as one forward over the whole test set (weighted means of the per-batch means)
    on_again.set_training(false);
    xt::xtensor<float, 4> all = xt::zeros<float>({data.test.size(), std::size_t(1), std::size_t(ToyIn::h),
                                                  std::size_t(ToyIn::w)});
    std::copy(data.test.images.begin(), data.test.images.end(), all.begin());
    on_again.forward(all);
    const auto whole = on_again.activation_statistics();
    REQUIRE(whole.size() == 3);
    for (std::size_t i = 0; i < 3; ++i)
        CHECK(whole[i].value == Approx(stats[i].value).epsilon(1e-5));
}

TEST_CASE("a multi-step learning-rate schedule decays the rates after its milestones", "[trainer]")
{
    const auto data = toy_data(100, 20);
    nd::train_config cfg = quiet_config(4, 20);
    cfg.lr_milestones = {1, 3};
    cfg.lr_gamma = 0.5;
    ToyModel model{nd::seed{2}};
    nd::Trainer<ToyModel> t(model, data, cfg);
    const auto& h = t.fit();
    REQUIRE(h.size() == 4);
    const double base = cfg.lr.lr[0];
    CHECK(h[0].lr.lr[0] == base);        // epoch 1
    CHECK(h[1].lr.lr[0] == base * 0.5);  // after milestone 1
    CHECK(h[2].lr.lr[0] == base * 0.5);
    CHECK(h[3].lr.lr[0] == base * 0.25);  // after milestone 3
    cfg.lr_milestones = {2, 2};
    CHECK_THROWS_WITH((nd::Trainer<ToyModel>(model, data, cfg)), Catch::Contains("lr_milestones must be increasing"));
    cfg.lr_milestones = {2};
    cfg.lr_gamma = 0;
    CHECK_THROWS_AS((nd::Trainer<ToyModel>(model, data, cfg)), nd::argument_error);
}

TEST_CASE("Plots: round ticks, PNG and SVG files with the text in them, bad file names refused", "[io][plot]")
{
    namespace io = nmfdsl::io;
    CHECK(io::detail::round_ticks(0, 100) == std::vector<double>{0, 20, 40, 60, 80, 100});
    const auto t = io::detail::round_ticks(0.01, 0.3);
    REQUIRE(t.size() == 6);
    for (std::size_t i = 0; i < 6; ++i)
        CHECK(t[i] == Approx(0.05 * double(i + 1)));
    CHECK(io::detail::round_ticks(1, 1).size() >= 2);  // an empty range still gets an axis
    // every curve of a plot of the robustness script's nine series (or up to twelve) has a colour of its own
    const auto& colours = io::detail::palette();
    REQUIRE(colours.size() >= 12);
    for (std::size_t i = 0; i < colours.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            CHECK(colours[i] != colours[j]);
    const auto dir = std::filesystem::temp_directory_path() / "nmfdsl_plot_test";
    std::filesystem::create_directories(dir);
    io::plot_panel a{"Loss", "epoch", "loss", {{"training", {1, 2, 3}, {3, 2, 1.5}, {}}}, 0.0, std::nullopt, true};
    io::plot_panel b{"Accuracy", "epoch", "accuracy (%)",
                     {{"training", {1, 2, 3}, {80, 85, 88}, {1, 1, 1}}, {"test", {1, 2, 3}, {79, 83, 86}, {}}},
                     std::nullopt, 100.0, true};
    const auto png = (dir / "p.png").string(), svg = (dir / "p.svg").string();
    io::write_plot(png, "A title", {a, b});
    io::write_plot(svg, "A title", {a, b});
    std::ifstream f(png, std::ios::binary);
    char magic[8] = {};
    f.read(magic, 8);
    CHECK(std::string(magic + 1, 3) == "PNG");
    CHECK(std::filesystem::file_size(png) > 5000);  // text and lines, not a blank page
    std::ifstream s(svg);
    const std::string text((std::istreambuf_iterator<char>(s)), std::istreambuf_iterator<char>());
    CHECK(text.find("<svg") != std::string::npos);
    CHECK(text.find("glyph") != std::string::npos);  // cairo writes text as glyphs
    CHECK_THROWS_WITH(io::write_plot((dir / "p.jpg").string(), "t", {a}), Catch::Contains("must end in .png or .svg"));
    CHECK_THROWS_AS(io::write_plot("/no/such/dir/p.png", "t", {a}), nmfdsl::io_error);
    io::write_image_grid(png, "Tiles", "two 2x2 tiles", {{0, 0.5f, 1, 0}, {1, 1, 0, 0}}, 2, 2, 1);
    CHECK(std::filesystem::file_size(png) > 0);
    CHECK_THROWS_WITH(io::write_image_grid(png, "Tiles", "", {{0, 1}}, 2, 2, 1),
                      Catch::Contains("a tile has 2 values"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("check_unit_range refuses a data set with a value outside [0, 1], naming the file and the image",
          "[data][attack]")
{
    nmfdsl::data::dataset d;
    d.channels = 1;
    d.height = d.width = 2;
    d.images = {0.f, 0.5f, 1.f, 0.25f, 0.f, 1.f, 1.5f, 0.f};
    d.labels = {0, 1};
    d.source = "imgs.idx";
    CHECK_THROWS_AS(nmfdsl::data::check_unit_range(d), nmfdsl::data_error);
    CHECK_THROWS_WITH(nmfdsl::data::check_unit_range(d), Catch::Contains("'imgs.idx'") && Catch::Contains("image 1") &&
                                                            Catch::Contains("outside [0, 1]"));
    d.images[6] = std::nanf("");
    CHECK_THROWS_AS(nmfdsl::data::check_unit_range(d), nmfdsl::data_error);
    d.images[6] = 1.f;
    CHECK_NOTHROW(nmfdsl::data::check_unit_range(d));
}

namespace {

/// Trains R replicas of a model (in threads, testing::thread_replicas) with the same configuration, with SGD or
/// Adam, and returns each replica's parameters and history; R = 1 runs the plain Trainer without a group.
template <class M, class Loss>
std::vector<std::pair<std::vector<float>, std::vector<nd::epoch_metrics>>>
train_replicas(std::size_t R, const nd::data::split& data, nd::train_config cfg, Loss loss, bool sgd,
               const std::function<void(M&)>& setup = {})
{
    const std::size_t threads_before = nd::threads();
    nd::set_threads(1);  // the kernels' pool is shared by the replicas' threads: keep it serial
    std::vector<std::pair<std::vector<float>, std::vector<nd::epoch_metrics>>> out(R);
    auto run = [&](std::size_t r, nd::replica_group* group) {
        M model{nd::seed{11}};
        if (setup)
            setup(model);
        nd::train_config c = cfg;
        c.replicas = group;
        std::unique_ptr<nd::optim::optimizer<float>> opt;  // nullptr: Adam
        if (sgd)
            opt = std::make_unique<nd::optim::SGD<float>>(model.parameters(), c.lr);
        nd::Trainer<M> t(model, data, c, loss, std::move(opt));
        const auto& h = t.fit();
        const auto p = model.flat_parameters();
        out[r] = {std::vector<float>(p.begin(), p.end()), h};
    };
    if (R == 1) {
        run(0, nullptr);
    } else {
        nd::testing::thread_replicas group(R);
        std::vector<std::thread> threads;
        for (std::size_t r = 0; r < R; ++r)
            threads.emplace_back(run, r, &group.member(r));
        for (auto& th : threads)
            th.join();
    }
    nd::set_threads(threads_before);
    return out;
}

/// The largest |a − b| / max(|a|, |b|, 1e-3 · max|a|) over two parameter vectors (testing::compare_values).
double largest_relative_difference(const std::vector<float>& a, const std::vector<float>& b)
{
    return nd::testing::compare_values<float>(a, b).largest;
}

} // namespace

TEST_CASE("testing::compare_values: relative differences at the vector's own scale", "[replicas]")
{
    const std::vector<float> a{1.0f, 2.0f, 1e-6f, 5.0f};
    const std::vector<float> b{1.0f, 2.002f, 2e-6f, 5.0f};
    const auto d = nd::testing::compare_values<float>(a, b);
    CHECK(d.differing == 2);
    CHECK(d.largest_at == 1);
    CHECK(d.largest == Approx(0.002 / 2.002).epsilon(1e-4));  // |2 − 2.002| / 2.002
    // 1e-6 against 2e-6 is measured at the floor 1e-3 · 5 (not as a 50 % difference): 1e-6 / 5e-3 = 2e-4
    CHECK(d.above == std::array<std::size_t, 4>{2, 2, 2, 0});
    const std::vector<float> with_nan{1.0f, 2.0f, std::nanf(""), 5.0f};
    CHECK(std::isinf(nd::testing::compare_values<float>(a, with_nan).largest));
    CHECK_THROWS_AS(nd::testing::compare_values<float>(a, std::vector<float>(3)), nd::argument_error);
}

TEST_CASE("data-parallel replicas train as one process: batch statistics, the HaH cost, losses summed or averaged",
          "[trainer][replicas]")
{
    const auto data = toy_data(200, 50);
    SECTION("CNMF with BatchNorm (batch statistics, also in evaluation), the paper's summed loss, augmentation")
    {
        nd::train_config cfg = quiet_config(2, 20);
        cfg.augment = {true, true, 0.2, 0.1, 0, 0, false};  // per-image draws: every replica draws the whole batch's
        const nd::loss::PaperLoss loss;
        const auto one = train_replicas<ToyModel>(1, data, cfg, loss, true);
        const auto two = train_replicas<ToyModel>(2, data, cfg, loss, true);
        const auto three = train_replicas<ToyModel>(3, data, cfg, loss, true);  // slices 7, 7, 6
        const auto two_again = train_replicas<ToyModel>(2, data, cfg, loss, true);
        // every replica holds the same parameters; repeated with the same R they are bit-identical
        for (const auto* run : {&two, &three})
            for (const auto& replica : *run)
                CHECK(replica.first == run->front().first);
        CHECK(two_again.front().first == two.front().first);
        // equal to one process up to the re-association of the sums over the batch
        CHECK(largest_relative_difference(one[0].first, two[0].first) < 1e-5);
        CHECK(largest_relative_difference(one[0].first, three[0].first) < 1e-5);
        CHECK(one[0].first != two[0].first);  // not trivially equal: the split is real
        // the metrics are those of the global batch and of the whole test set
        const auto& h1 = one[0].second;
        const auto& h3 = three[0].second;
        REQUIRE(h3.size() == 2);
        CHECK(h3.back().train_loss == Approx(h1.back().train_loss).epsilon(1e-5));
        CHECK(h3.back().train_accuracy == h1.back().train_accuracy);
        CHECK(std::abs(h3.back().test_accuracy - h1.back().test_accuracy) <= 1.0 / 50 + 1e-12);
        REQUIRE(h3.back().statistics.size() == h1.back().statistics.size());
        for (std::size_t i = 0; i < h1.back().statistics.size(); ++i)
            CHECK(h3.back().statistics[i].value == Approx(h1.back().statistics[i].value).epsilon(1e-4));
        // Adam amplifies the rounding-sized differences (a gradient that is zero up to rounding steps by ±lr; in one
        // process too, docs/scaling.md): parameters drift apart, but the losses agree and repeats are bit-identical
        const auto adam_one = train_replicas<ToyModel>(1, data, cfg, loss, false);
        const auto adam_two = train_replicas<ToyModel>(2, data, cfg, loss, false);
        const auto adam_two_again = train_replicas<ToyModel>(2, data, cfg, loss, false);
        CHECK(adam_two_again[1].first == adam_two[1].first);
        for (std::size_t e = 0; e < 2; ++e)
            CHECK(adam_two[0].second[e].train_loss == Approx(adam_one[0].second[e].train_loss).epsilon(1e-4));
    }
    SECTION("the HaH cost's mean over the global batch, the cross-entropy's mean")
    {
        using Net = nd::Seq<nd::HaHBlock<6>, nd::AvgPool<2>, nd::Flatten, nd::Dense<2>, nd::Softmax>;
        using M = nd::Model<Net, ToyIn>;
        const std::function<void(M&)> hah = [](M& m) { m.layer<1>().options().hah_alpha(0.05); };
        const nd::train_config cfg = quiet_config(1, 20);
        const auto one = train_replicas<M>(1, data, cfg, nd::loss::CrossEntropy{}, true, hah);
        const auto two = train_replicas<M>(2, data, cfg, nd::loss::CrossEntropy{}, true, hah);
        CHECK(largest_relative_difference(one[0].first, two[0].first) < 1e-5);
        REQUIRE(two[0].second.back().local_costs.size() == 1);
        CHECK(two[0].second.back().local_costs[0].value ==
              Approx(one[0].second.back().local_costs[0].value).epsilon(1e-5));
        CHECK(two[0].second.back().train_loss == Approx(one[0].second.back().train_loss).epsilon(1e-5));
    }
}

TEST_CASE("BatchNorm over replicas: the global batch's statistics and gradient, in three collectives",
          "[layers][batchnorm][replicas]")
{
    // 6 images of 3 features; replica r of 2 holds images [3r, 3r + 3)
    using M = nd::Model<nd::BatchNorm, nd::Shape<3>, double>;
    xt::xtensor<double, 2> x{{1, 2, -3}, {0.5, 7, 1}, {-2, 3, 3}, {4, -1, 0}, {2, 2, 2}, {0, 5, -4}};
    xt::xtensor<double, 2> dy{{1, 0, -1}, {0.3, 2, 1}, {-1, 1, 0.5}, {0.2, -2, 1}, {1, 1, -1}, {0.7, 0, 2}};
    M whole;
    const xt::xtensor<double, 2> y_whole = whole.forward(x);
    const xt::xtensor<double, 2> dx_whole = whole.backward(dy);

    const std::size_t threads_before = nd::threads();
    nd::set_threads(1);  // the kernels' pool is shared by the replicas' threads: keep it serial
    nd::testing::thread_replicas group(2);
    std::vector<xt::xtensor<double, 2>> y(2), dx(2);
    auto run = [&](std::size_t r) {
        const nd::replica_scope scope(&group.member(r));
        M model;
        const xt::xtensor<double, 2> xs = xt::view(x, xt::range(3 * r, 3 * r + 3), xt::all());
        const xt::xtensor<double, 2> dys = xt::view(dy, xt::range(3 * r, 3 * r + 3), xt::all());
        y[r] = model.forward(xs);
        dx[r] = model.backward(dys);
    };
    std::thread other(run, 1);
    run(0);
    other.join();
    nd::set_threads(threads_before);
    // forward: Σx then Σ(x − μ)²; backward: Σdy and Σdy·x̂ together
    CHECK(group.sums() == 3);
    for (std::size_t r = 0; r < 2; ++r)
        for (std::size_t i = 0; i < 3; ++i)
            for (std::size_t f = 0; f < 3; ++f) {
                CHECK(y[r](i, f) == Approx(y_whole(3 * r + i, f)).epsilon(1e-12).margin(1e-12));
                CHECK(dx[r](i, f) == Approx(dx_whole(3 * r + i, f)).epsilon(1e-12).margin(1e-12));
            }
}

TEST_CASE("data-parallel replicas: the batch split and its bad input", "[trainer][replicas]")
{
    using T = nd::Trainer<ToyModel>;
    // contiguous slices in replica order, sizes differing by at most one
    CHECK(T::replica_slice(50, 0, 3) == std::pair<std::size_t, std::size_t>{0, 17});
    CHECK(T::replica_slice(50, 1, 3) == std::pair<std::size_t, std::size_t>{17, 34});
    CHECK(T::replica_slice(50, 2, 3) == std::pair<std::size_t, std::size_t>{34, 50});
    CHECK(T::replica_slice(7, 0, 1) == std::pair<std::size_t, std::size_t>{0, 7});
    // the rule the Trainer and nmfdsl-train share: a short last batch holds 0 or at least one image per replica
    CHECK(nd::unsplittable_last_batch(201, 20, 2) == 1);
    CHECK(nd::unsplittable_last_batch(202, 20, 3) == 2);
    CHECK(nd::unsplittable_last_batch(203, 20, 3) == 0);  // 3 images for 3 replicas
    CHECK(nd::unsplittable_last_batch(200, 20, 3) == 0);  // no short batch
    CHECK(nd::unsplittable_last_batch(201, 20, 1) == 0);  // one replica takes any batch
    const auto data = toy_data(201, 50);  // 201 images in batches of 20: the last batch holds 1
    nd::testing::thread_replicas group(2);
    ToyModel model;
    nd::train_config cfg = quiet_config(1, 20);
    cfg.replicas = &group.member(0);
    CHECK_THROWS_WITH(T(model, data, cfg), Catch::Contains("the last training batch holds 1 images, fewer than the 2"));
    cfg.batch = 1;
    CHECK_THROWS_WITH(T(model, data, cfg), Catch::Contains("the batch (1 images) is smaller than the number of "
                                                           "replicas (2)"));
    cfg.batch = 20;
    cfg.max_train_batches = 10;  // the short batch is never reached
    cfg.max_test_samples = 41;   // but the test set's last batch holds 1
    CHECK_THROWS_WITH(T(model, data, cfg), Catch::Contains("the last test batch holds 1 images"));
    cfg.max_test_samples = 42;
    CHECK_NOTHROW(T(model, data, cfg));
    CHECK(group.sums() == 0);  // constructing talks to no other replica
}
