// NumPy's .npy format (io/npy.hpp) and .npy data directories (data/dataset.hpp): byte-for-byte agreement with
// np.save, every kind of file np.save writes, and every bad-input path.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nmfdsl/data/dataset.hpp>
#include <nmfdsl/io/npy.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xrandom.hpp>

#include "files.hpp"

namespace nd = nmfdsl;
namespace fs = std::filesystem;

namespace {

using test_files::read_bytes;
using test_files::write_bytes;

fs::path scratch(const std::string& name)
{
    return test_files::scratch("npy_" + name);
}

std::vector<std::uint8_t> from_hex(const std::string& hex)
{
    std::vector<std::uint8_t> b;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        b.push_back(std::uint8_t(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return b;
}

/// Files written by NumPy 1.24.2 (np.save, or np.lib.format.write_array with version=(2, 0)), as hex.
namespace numpy {
    const std::string f4_2x3 =
        "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73"
        "652c20277368617065273a2028322c2033292c207d202020202020202020202020202020202020202020202020202020"
        "202020202020202020202020202020202020202020202020202020202020200a000000000000803f0000004000004040"
        "000080400000a040";
    const std::string f8_fortran_2x3 =
        "934e554d5059010076007b276465736372273a20273c6638272c2027666f727472616e5f6f72646572273a2054727565"
        "2c20277368617065273a2028322c2033292c207d20202020202020202020202020202020202020202020202020202020"
        "202020202020202020202020202020202020202020202020202020202020200a0000000000000000000000000000f83f"
        "000000000000e03f0000000000000040000000000000f03f0000000000000440";
    const std::string be_i4 =
        "934e554d5059010076007b276465736372273a20273e6934272c2027666f727472616e5f6f72646572273a2046616c73"
        "652c20277368617065273a2028332c292c207d2020202020202020202020202020202020202020202020202020202020"
        "202020202020202020202020202020202020202020202020202020202020200a00000001fffffffe0000012c";
    const std::string u1_2x2_v2 =
        "934e554d50590200740000007b276465736372273a20277c7531272c2027666f727472616e5f6f72646572273a204661"
        "6c73652c20277368617065273a2028322c2032292c207d20202020202020202020202020202020202020202020202020"
        "202020202020202020202020202020202020202020202020202020202020200a0708090a";
    const std::string i2_fortran_2x3x4 =
        "934e554d5059010076007b276465736372273a20273c6932272c2027666f727472616e5f6f72646572273a2054727565"
        "2c20277368617065273a2028322c20332c2034292c207d20202020202020202020202020202020202020202020202020"
        "202020202020202020202020202020202020202020202020202020202020200a00000c00040010000800140001000d00"
        "050011000900150002000e00060012000a00160003000f00070013000b001700";
    const std::string f4_scalar =
        "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73"
        "652c20277368617065273a2028292c207d20202020202020202020202020202020202020202020202020202020202020"
        "202020202020202020202020202020202020202020202020202020202020200a00006040";
    const std::string u1_2x2 =
        "934e554d5059010076007b276465736372273a20277c7531272c2027666f727472616e5f6f72646572273a2046616c73"
        "652c20277368617065273a2028322c2032292c207d202020202020202020202020202020202020202020202020202020"
        "202020202020202020202020202020202020202020202020202020202020200a0708090a";
    const std::string b1_3 =
        "934e554d5059010076007b276465736372273a20277c6231272c2027666f727472616e5f6f72646572273a2046616c73"
        "652c20277368617065273a2028332c292c207d2020202020202020202020202020202020202020202020202020202020"
        "202020202020202020202020202020202020202020202020202020202020200a010001";
    const std::string i8_5 =
        "934e554d5059010076007b276465736372273a20273c6938272c2027666f727472616e5f6f72646572273a2046616c73"
        "652c20277368617065273a2028352c292c207d2020202020202020202020202020202020202020202020202020202020"
        "202020202020202020202020202020202020202020202020202020202020200a00000000000000000100000000000000"
        "020000000000000003000000000000000400000000000000";
} // namespace numpy

template <class A>
std::vector<std::size_t> dims(const A& a)
{
    return {a.shape().begin(), a.shape().end()};
}

/// A .npy file with the given header dict and data bytes, version 1.0, padded as np.save pads.
std::vector<std::uint8_t> npy_file(std::string dict, std::size_t data_bytes, unsigned major = 1)
{
    const std::size_t prefix = major == 1 ? 10 : 12;
    dict.append(64 - (dict.size() + 1 + prefix) % 64, ' ');
    dict += '\n';
    std::vector<std::uint8_t> b{0x93, 'N', 'U', 'M', 'P', 'Y', std::uint8_t(major), 0};
    for (std::size_t i = 0; i < prefix - 8; ++i)
        b.push_back(std::uint8_t(dict.size() >> (8 * i)));
    b.insert(b.end(), dict.begin(), dict.end());
    b.resize(b.size() + data_bytes, 0);
    return b;
}

} // namespace

TEST_CASE("npy: write_npy writes byte for byte what np.save writes", "[io][npy]")
{
    const auto dir = scratch("write");
    const std::string path = (dir / "a.npy").string();
    auto written_equals = [&](const std::string& golden) { return read_bytes(path) == from_hex(golden); };

    nd::io::write_npy(path, xt::xtensor<float, 2>{{0, 1, 2}, {3, 4, 5}});
    CHECK(written_equals(numpy::f4_2x3));
    nd::io::write_npy(path, xt::xtensor<std::uint8_t, 2>{{7, 8}, {9, 10}});
    CHECK(written_equals(numpy::u1_2x2));
    nd::io::write_npy(path, xt::xarray<float>(3.5f));
    CHECK(written_equals(numpy::f4_scalar));
    nd::io::write_npy(path, xt::xtensor<bool, 1>{true, false, true});
    CHECK(written_equals(numpy::b1_3));
    const std::vector<std::int64_t> raw{0, 1, 2, 3, 4};
    const std::vector<std::size_t> shape{5};
    nd::io::write_npy<std::int64_t>(path, raw, shape);
    CHECK(written_equals(numpy::i8_5));
    // a transposed view is written in C order of its own shape, as np.save writes a.T
    nd::io::write_npy(path, xt::transpose(xt::xtensor<float, 2>{{0, 3}, {1, 4}, {2, 5}}));
    CHECK(written_equals(numpy::f4_2x3));
}

TEST_CASE("npy: read_npy reads NumPy's files: versions, byte orders, Fortran order, conversions", "[io][npy]")
{
    const auto dir = scratch("read");
    const fs::path path = dir / "a.npy";
    auto put = [&](const std::string& golden) {
        write_bytes(path, from_hex(golden));
        return path.string();
    };
    CHECK((nd::io::read_npy<float>(put(numpy::f4_2x3)) == xt::xarray<float>{{0, 1, 2}, {3, 4, 5}}));
    CHECK((nd::io::read_npy<double>(put(numpy::f4_2x3)) == xt::xarray<double>{{0, 1, 2}, {3, 4, 5}}));
    // Fortran order comes back in C order
    CHECK((nd::io::read_npy<double>(put(numpy::f8_fortran_2x3)) == xt::xarray<double>{{0, .5, 1}, {1.5, 2, 2.5}}));
    const auto cube = nd::io::read_npy<int>(put(numpy::i2_fortran_2x3x4));
    REQUIRE(dims(cube) == std::vector<std::size_t>{2, 3, 4});
    for (std::size_t i = 0; i < 24; ++i)
        CHECK(cube.data()[i] == int(i));
    // big-endian
    CHECK((nd::io::read_npy<std::int32_t>(put(numpy::be_i4)) == xt::xarray<std::int32_t>{1, -2, 300}));
    CHECK((nd::io::read_npy<float>(put(numpy::be_i4)) == xt::xarray<float>{1, -2, 300}));
    // version 2.0, bytes into wider integers and floats
    CHECK((nd::io::read_npy<std::uint8_t>(put(numpy::u1_2x2_v2)) == xt::xarray<std::uint8_t>{{7, 8}, {9, 10}}));
    CHECK((nd::io::read_npy<std::int64_t>(put(numpy::u1_2x2_v2)) == xt::xarray<std::int64_t>{{7, 8}, {9, 10}}));
    const auto scalar = nd::io::read_npy<float>(put(numpy::f4_scalar));
    CHECK(scalar.dimension() == 0);
    CHECK(scalar() == 3.5f);
    CHECK((nd::io::read_npy<bool>(put(numpy::b1_3)) == xt::xarray<bool>{true, false, true}));
    CHECK((nd::io::read_npy<int>(put(numpy::b1_3)) == xt::xarray<int>{1, 0, 1}));

    const auto h = nd::io::read_npy_header(put(numpy::be_i4));
    CHECK(h.descr == ">i4");
    CHECK(h.kind == 'i');
    CHECK(h.item_size == 4);
    CHECK(h.big_endian);
    CHECK_FALSE(h.fortran_order);
    CHECK(h.shape == std::vector<std::size_t>{3});
    CHECK(h.data_offset == 128);
}

TEST_CASE("npy: round trips keep every bit (-0, infinity); empty arrays; sizes that disagree", "[io][npy]")
{
    const auto dir = scratch("round_trip");
    const std::string path = (dir / "a.npy").string();
    xt::random::seed(7);
    xt::xtensor<float, 3> a = xt::random::randn<float>({3, 4, 5});
    a(1, 2, 3) = -0.f;
    a(2, 0, 1) = std::numeric_limits<float>::infinity();
    nd::io::write_npy(path, a);
    const auto back = nd::io::read_npy<float>(path);
    REQUIRE(dims(back) == std::vector<std::size_t>{3, 4, 5});
    CHECK(std::memcmp(back.data(), a.data(), a.size() * sizeof(float)) == 0);

    const xt::xtensor<double, 2> d = xt::random::rand<double>({7, 3});
    nd::io::write_npy(path, d);
    CHECK((nd::io::read_npy<double>(path) == d));
    CHECK(nd::io::read_npy_header(path).descr == "<f8");

    nd::io::write_npy(path, xt::xtensor<float, 2>::from_shape({0, 3}));
    const auto empty = nd::io::read_npy<float>(path);
    CHECK(empty.size() == 0);
    CHECK(dims(empty) == std::vector<std::size_t>{0, 3});

    const std::vector<float> six(6, 1.f);
    const std::vector<std::size_t> wrong{4, 2};
    CHECK_THROWS_AS(nd::io::write_npy<float>(path, six, wrong), nd::argument_error);
    CHECK_THROWS_WITH(nd::io::write_npy<float>(path, six, wrong),
                      Catch::Contains("the shape holds 8 elements, the data 6"));
}

TEST_CASE("npy: every bad file gets a data_error naming the file and the problem", "[io][npy]")
{
    const auto dir = scratch("bad");
    const std::string path = (dir / "bad.npy").string();
    auto expect = [&](const std::vector<std::uint8_t>& bytes, const std::string& what) {
        write_bytes(path, bytes);
        CHECK_THROWS_AS(nd::io::read_npy<float>(path), nd::data_error);
        CHECK_THROWS_WITH(nd::io::read_npy<float>(path), Catch::Contains(path) && Catch::Contains(what));
    };
    CHECK_THROWS_WITH(nd::io::read_npy<float>((dir / "none.npy").string()),
                      Catch::Contains("cannot open .npy file") && Catch::Contains("none.npy"));
    expect({'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0, 0, 0}, "is not a .npy file");
    CHECK_THROWS_WITH(nd::io::read_npy_header(path), Catch::Contains(path) && Catch::Contains("is not a .npy file"));
    expect({0x93, 'N', 'U'}, "is not a .npy file");
    const auto good = from_hex(numpy::f4_2x3);
    auto v4 = good;
    v4[6] = 4;
    expect(v4, "format version 4.0; nmfdsl reads versions 1.0, 2.0 and 3.0");
    expect(std::vector<std::uint8_t>(good.begin(), good.begin() + 40), "its header announces 118 bytes");
    auto cut = good;
    cut.resize(cut.size() - 3);
    expect(cut, "should hold 24 bytes of elements after its header (6 × '<f4'), it holds 21 (truncated)");
    auto longer = good;
    longer.push_back(0);
    expect(longer, "it holds 25 (trailing bytes)");

    const std::string order = "'fortran_order': False, ";
    expect(npy_file("{'descr': '<f4', 'shape': (2,), }", 8), "lacks the key 'fortran_order'");
    expect(npy_file("{'descr': '<f4', " + order + "}", 8), "lacks the key 'shape'");
    expect(npy_file("{'descr': '<f4', " + order + "'shape': (2,), 'extra': 1}", 8), "unknown key 'extra'");
    expect(npy_file("{'descr': '<f4', 'fortran_order': maybe, 'shape': (2,), }", 8), "neither True nor False");
    expect(npy_file("{'descr': '<f4', " + order + "'shape': (2, -1), }", 8), "not a non-negative whole number");
    expect(npy_file("{'descr': '<f4', " + order + "'shape': (2; 1), }", 8), "where ',' or ')' belongs");
    expect(npy_file("{'descr': '<f4', " + order + "'shape': (99999999999999999999999,), }", 8), "too large");
    expect(npy_file("{'descr': '<f4', " + order + "'shape': (4294967296, 4294967296, 4), }", 8),
           "more elements than this machine can address");
    expect(npy_file("['descr', '<f4']", 8), "where '{' belongs");
    expect(npy_file("{'descr: '<f4', " + order + "'shape': (2,), }", 8), "where ':' belongs");
    for (const char* type : {"<c8", "|O", "<U3", "<f2", "|V8", "<i3", "f4"})
        expect(npy_file("{'descr': '" + std::string(type) + "', " + order + "'shape': (2,), }", 8),
               "holds elements of type '" + std::string(type) + "'");
    CHECK_NOTHROW(nd::io::read_npy<float>(
        (write_bytes(path, npy_file("{\"descr\": \"<f4\", \"shape\": (2,), \"fortran_order\": False}", 8)), path)));
    CHECK_NOTHROW(nd::io::read_npy<float>((write_bytes(path, npy_file("{'descr': '<f4', " + order +
                                                                      "'shape': (2,), }", 8, 3)), path)));

    // conversions that would lose values
    write_bytes(path, from_hex(numpy::f4_2x3));
    CHECK_THROWS_WITH(nd::io::read_npy<int>(path), Catch::Contains("holds floats ('<f4')"));
    write_bytes(path, from_hex(numpy::be_i4));
    CHECK_THROWS_WITH(nd::io::read_npy<std::uint16_t>(path),
                      Catch::Contains("element 1 (-2) does not fit the requested integer type (0 to 65535)"));
    CHECK_THROWS_WITH(nd::io::read_npy<std::int8_t>(path),
                      Catch::Contains("element 2 (300) does not fit the requested integer type (-128 to 127)"));

    // a failed write leaves the old file
    write_bytes(path, good);
    fs::create_directories(path + ".tmp");
    CHECK_THROWS_AS(nd::io::write_npy(path, xt::xtensor<float, 1>{1, 2}), nd::io_error);
    CHECK(read_bytes(path) == good);
}

TEST_CASE("npy data directories: uint8 and float images, labels, and their errors", "[data][npy]")
{
    const auto dir = scratch("data");
    auto path = [&](const char* name) { return (dir / name).string(); };
    const xt::xtensor<std::uint8_t, 3> train_images{{{0, 255}, {51, 102}}, {{1, 2}, {3, 4}}, {{9, 8}, {7, 6}}};
    nd::io::write_npy(path("train_images.npy"), train_images);
    nd::io::write_npy(path("train_labels.npy"), xt::xtensor<std::int64_t, 1>{3, 0, 9});
    CHECK_THROWS_WITH(nd::data::load_npy_directory(dir.string()), Catch::Contains("has no 'test_images.npy'"));
    const xt::xtensor<double, 4> test_images{{{{0.25, 0.5}, {0.75, 1.0}}}};
    nd::io::write_npy(path("test_images.npy"), test_images);
    nd::io::write_npy(path("test_labels.npy"), xt::xtensor<std::uint8_t, 1>{7});

    const auto s = nd::data::load_directory(dir.string());
    CHECK(s.train.size() == 3);
    CHECK(s.train.channels == 1);
    CHECK(s.train.height == 2);
    CHECK(s.train.width == 2);
    CHECK(s.train.images[1] == 1.f);
    CHECK(s.train.images[2] == 51.f / 255.f);
    CHECK(s.train.labels == std::vector<std::uint8_t>{3, 0, 9});
    CHECK(s.test.images == std::vector<float>{0.25f, 0.5f, 0.75f, 1.f});
    CHECK(s.test.labels == std::vector<std::uint8_t>{7});
    CHECK(s.train.source == path("train_images.npy"));

    auto expect = [&](const std::string& what) {
        CHECK_THROWS_AS(nd::data::load_npy_directory(dir.string()), nd::data_error);
        CHECK_THROWS_WITH(nd::data::load_npy_directory(dir.string()), Catch::Contains(what));
    };
    nd::io::write_npy(path("test_images.npy"), xt::xtensor<float, 4>{{{{0.5f, 1.5f}, {0.f, 0.f}}}});
    expect("image 0 has the value 1.500000, outside [0, 1]");
    nd::io::write_npy(path("test_images.npy"), xt::xtensor<float, 4>{{{{0.5f, 0.5f, 0.5f}, {0.f, 0.f, 0.f}}}});
    expect("the training images are 1x2x2, the test images 1x2x3");
    nd::io::write_npy(path("test_images.npy"), xt::xtensor<std::int32_t, 3>{{{1, 2}, {3, 4}}});
    expect("holds '<i4' elements; images are uint8 (0-255) or float32 / float64 in [0, 1]");
    nd::io::write_npy(path("test_images.npy"), xt::xtensor<float, 2>{{0.f, 0.f}});
    expect("has 2 dimensions; images are [N, H, W] or [N, C, H, W]");
    nd::io::write_npy(path("test_images.npy"), xt::xtensor<float, 3>::from_shape({1, 0, 2}));
    expect("holds empty images");
    nd::io::write_npy(path("test_images.npy"), test_images);
    nd::io::write_npy(path("test_labels.npy"), xt::xtensor<std::int64_t, 1>{10});
    expect("label 10 at index 0 is outside 0..9");
    nd::io::write_npy(path("test_labels.npy"), xt::xtensor<std::int64_t, 1>{-1});
    expect("label -1 at index 0 is outside 0..9");
    nd::io::write_npy(path("test_labels.npy"), xt::xtensor<std::int64_t, 1>{1, 2});
    expect("holds 1 images but '" + path("test_labels.npy") + "' holds 2 labels");
    nd::io::write_npy(path("test_labels.npy"), xt::xtensor<std::int64_t, 2>{{1}});
    expect("has 2 dimensions; labels are [N]");
    nd::io::write_npy(path("test_labels.npy"), xt::xtensor<float, 1>{1.f});
    expect("holds floats ('<f4')");

    const auto empty = scratch("empty");
    CHECK_THROWS_WITH(nd::data::load_directory(empty.string()),
                      Catch::Contains("holds no known data set") && Catch::Contains("train_images.npy") &&
                          Catch::Contains("data_batch_1.bin") && Catch::Contains("train-images-idx3-ubyte"));
    CHECK_THROWS_WITH(nd::data::load_directory((empty / "nowhere").string()), Catch::Contains("does not exist"));
}
