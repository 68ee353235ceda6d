#pragma once
/// @file npy.hpp
/// NumPy's .npy format: arrays in and out of Python (np.load / np.save) without a converter.
///
/// A .npy file is the magic "\x93NUMPY", a version byte pair (1.0: a 2-byte header length; 2.0 and 3.0: 4 bytes),
/// a header that is a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
/// spaces and a newline so that the data start on a 64-byte boundary, then the elements.
///
/// write_npy writes C order in the host's byte order, byte for byte what np.save writes for the same array, and
/// atomically (a failed write leaves the old file). read_npy<T> reads any version, either byte order, C or Fortran
/// order (returned in C order), booleans, integers of 1–8 bytes and 4- or 8-byte floats:
/// - into a floating-point T, every such element type (integers above 2^24 round when T is float);
/// - into an integer T, integer and boolean elements whose values T can hold; a value it cannot hold, or float
///   elements, throw.
/// Every problem with a file throws nmfdsl::data_error naming the file and what is wrong (missing, not .npy, an
/// unknown version, a malformed header, an element type such as complex, strings or Python objects, truncated data
/// or trailing bytes); failed writes throw io_error.
/// write_parameters_npy / read_parameters_npy move a Model's trainable tensors and buffers to and from one file per
/// tensor.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <xtensor/xarray.hpp>

#include "../core/error.hpp"
#include "../core/params.hpp"
#include "file.hpp"

namespace nmfdsl::io {

/// What a .npy header says.
struct npy_header {
    std::string descr;                ///< the element type as NumPy spells it: "<f4", "|u1", ">i8", ...
    char kind = 0;                    ///< 'f' float, 'i' signed, 'u' unsigned integer, 'b' boolean
    std::size_t item_size = 0;        ///< bytes per element
    bool big_endian = false;          ///< the elements' byte order
    bool fortran_order = false;       ///< column-major data
    std::vector<std::size_t> shape;   ///< empty for a 0-d array (one element)
    std::size_t data_offset = 0;      ///< where the elements start in the file

    std::size_t count() const
    {
        std::size_t n = 1;
        for (std::size_t d : shape)
            n *= d;
        return n;
    }
};

namespace detail {

inline constexpr char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
inline constexpr std::size_t npy_alignment = 64;

/// A cursor over the header's dict literal; every failure names the file and the offending text.
class npy_header_parser {
public:
    npy_header_parser(std::string_view text, const std::string& path) : s_(text), path_(path) {}

    npy_header parse()
    {
        npy_header h;
        bool have_descr = false, have_order = false, have_shape = false;
        expect('{');
        for (skip_spaces(); peek() != '}'; skip_spaces()) {
            const std::string key = quoted();
            expect(':');
            if (key == "descr") {
                h.descr = quoted();
                have_descr = true;
            } else if (key == "fortran_order") {
                h.fortran_order = boolean();
                have_order = true;
            } else if (key == "shape") {
                h.shape = tuple();
                have_shape = true;
            } else {
                fail("has the unknown key '" + key + "' (a .npy header holds descr, fortran_order and shape)");
            }
            skip_spaces();
            if (peek() == ',')
                ++at_;
            else if (peek() != '}')
                fail("has '" + std::string(1, peek()) + "' where ',' or '}' belongs");
        }
        if (!have_descr || !have_order || !have_shape)
            fail("lacks the key '" + std::string(!have_descr ? "descr" : !have_order ? "fortran_order" : "shape") +
                 "'");
        return h;
    }

private:
    [[noreturn]] void fail(const std::string& what) const
    {
        const std::size_t shown = 160;  // a version 2.0 header may be huge
        throw data_error("nmfdsl: .npy file '" + path_ + "': the header " + what + " (header: " +
                         std::string(s_.substr(0, shown)) + (s_.size() > shown ? "..." : "") + ")");
    }
    char peek() const { return at_ < s_.size() ? s_[at_] : '\0'; }
    void skip_spaces()
    {
        while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\t' || s_[at_] == '\n'))
            ++at_;
    }
    void expect(char c)
    {
        skip_spaces();
        if (peek() != c)
            fail("has '" + std::string(1, peek()) + "' where '" + std::string(1, c) + "' belongs");
        ++at_;
    }
    std::string quoted()
    {
        skip_spaces();
        const char q = peek();
        if (q != '\'' && q != '"')
            fail("has '" + std::string(1, q) + "' where a quoted string belongs");
        const std::size_t end = s_.find(q, at_ + 1);
        if (end == std::string_view::npos)
            fail("has an unterminated string");
        std::string out(s_.substr(at_ + 1, end - at_ - 1));
        at_ = end + 1;
        return out;
    }
    bool boolean()
    {
        skip_spaces();
        if (s_.substr(at_, 4) == "True") {
            at_ += 4;
            return true;
        }
        if (s_.substr(at_, 5) == "False") {
            at_ += 5;
            return false;
        }
        fail("has a fortran_order that is neither True nor False");
    }
    std::vector<std::size_t> tuple()
    {
        std::vector<std::size_t> dims;
        expect('(');
        for (skip_spaces(); peek() != ')'; skip_spaces()) {
            if (peek() < '0' || peek() > '9')
                fail("has a shape entry that is not a non-negative whole number");
            std::size_t d = 0;
            for (; peek() >= '0' && peek() <= '9'; ++at_) {
                const std::size_t digit = std::size_t(peek() - '0');
                if (d > (std::numeric_limits<std::size_t>::max() - digit) / 10)
                    fail("has a shape entry too large for this machine");
                d = d * 10 + digit;
            }
            dims.push_back(d);
            skip_spaces();
            if (peek() == ',')
                ++at_;
            else if (peek() != ')')
                fail("has '" + std::string(1, peek()) + "' where ',' or ')' belongs in the shape");
        }
        ++at_;
        return dims;
    }

    std::string_view s_;
    const std::string& path_;
    std::size_t at_ = 0;
};

/// Splits descr into kind, size and byte order; throws for the element types read_npy does not read.
inline void decode_descr(npy_header& h, const std::string& path)
{
    const std::string& d = h.descr;
    auto unsupported = [&] {
        throw data_error("nmfdsl: .npy file '" + path + "' holds elements of type '" + d +
                         "'; nmfdsl reads booleans, integers and 4- or 8-byte floats (descr like '<f4', '|u1', '<i8')");
    };
    if (d.size() < 3 || (d[0] != '<' && d[0] != '>' && d[0] != '|' && d[0] != '='))
        unsupported();
    h.kind = d[1];
    const std::string digits = d.substr(2);
    if (digits.empty() || digits.size() > 1 || digits[0] < '1' || digits[0] > '8')
        unsupported();
    h.item_size = std::size_t(digits[0] - '0');
    const bool valid = (h.kind == 'f' && (h.item_size == 4 || h.item_size == 8)) ||
                       ((h.kind == 'i' || h.kind == 'u') &&
                        (h.item_size == 1 || h.item_size == 2 || h.item_size == 4 || h.item_size == 8)) ||
                       (h.kind == 'b' && h.item_size == 1);
    if (!valid)
        unsupported();
    h.big_endian = d[0] == '>' || (d[0] == '=' && std::endian::native == std::endian::big);
}

/// Parses and checks the header of a .npy file's bytes: magic, version, the dict, and that exactly the elements it
/// announces follow it.
inline npy_header parse_npy(const std::vector<std::uint8_t>& b, const std::string& path)
{
    if (b.size() < 10 || std::memcmp(b.data(), npy_magic, sizeof npy_magic) != 0)
        throw data_error("nmfdsl: '" + path + "' is not a .npy file (bad magic number or shorter than 10 bytes)");
    const unsigned major = b[6], minor = b[7];
    if (minor != 0 || major < 1 || major > 3)
        throw data_error("nmfdsl: .npy file '" + path + "' has format version " + std::to_string(major) + "." +
                         std::to_string(minor) + "; nmfdsl reads versions 1.0, 2.0 and 3.0");
    const std::size_t length_bytes = major == 1 ? 2 : 4;
    if (b.size() < 8 + length_bytes)
        throw data_error("nmfdsl: .npy file '" + path + "' is truncated inside its header");
    std::size_t header_length = 0;
    for (std::size_t i = 0; i < length_bytes; ++i)
        header_length |= std::size_t(b[8 + i]) << (8 * i);
    const std::size_t start = 8 + length_bytes;
    if (header_length > b.size() - start)
        throw data_error("nmfdsl: .npy file '" + path + "' is truncated: its header announces " +
                         std::to_string(header_length) + " bytes, the file has " + std::to_string(b.size() - start) +
                         " after the magic");
    const std::string_view text(reinterpret_cast<const char*>(b.data() + start), header_length);
    npy_header h = npy_header_parser(text, path).parse();
    decode_descr(h, path);
    h.data_offset = start + header_length;
    std::size_t count = 1;
    for (std::size_t d : h.shape)
        if (d != 0 && count > std::numeric_limits<std::size_t>::max() / h.item_size / d)
            throw data_error("nmfdsl: .npy file '" + path + "' announces more elements than this machine can address");
        else
            count *= d;
    const std::size_t expected = count * h.item_size, found = b.size() - h.data_offset;
    if (found != expected)
        throw data_error("nmfdsl: .npy file '" + path + "' should hold " + std::to_string(expected) +
                         " bytes of elements after its header (" + std::to_string(count) + " × '" + h.descr +
                         "'), it holds " + std::to_string(found) +
                         (found < expected ? " (truncated)" : " (trailing bytes)"));
    return h;
}

/// Element `index` of the data, of the header's type, as the wider type W (std::int64_t, std::uint64_t or double).
/// The element's bytes are assembled into an integer in the file's byte order, then reinterpreted as its type.
template <class W>
W npy_element(const std::uint8_t* data, std::size_t index, const npy_header& h)
{
    const std::uint8_t* bytes = data + index * h.item_size;
    std::uint64_t bits = 0;
    for (std::size_t b = 0; b < h.item_size; ++b)
        bits |= std::uint64_t{bytes[h.big_endian ? b : h.item_size - 1 - b]} << (8 * (h.item_size - 1 - b));
    auto as = [bits]<class S>(S) {
        using Bits = std::conditional_t<sizeof(S) == 1, std::uint8_t,
                     std::conditional_t<sizeof(S) == 2, std::uint16_t,
                     std::conditional_t<sizeof(S) == 4, std::uint32_t, std::uint64_t>>>;
        return static_cast<W>(std::bit_cast<S>(static_cast<Bits>(bits)));
    };
    switch (h.kind) {
    case 'f': return h.item_size == 4 ? as(float{}) : as(double{});
    case 'b': return static_cast<W>(bits != 0);
    case 'u':
        switch (h.item_size) {
        case 1: return as(std::uint8_t{});
        case 2: return as(std::uint16_t{});
        case 4: return as(std::uint32_t{});
        default: return as(std::uint64_t{});
        }
    default:
        switch (h.item_size) {
        case 1: return as(std::int8_t{});
        case 2: return as(std::int16_t{});
        case 4: return as(std::int32_t{});
        default: return as(std::int64_t{});
        }
    }
}

/// A shape as Python writes a tuple: "(2, 3)", "(5,)", "()".
inline std::string shape_text(std::span<const std::size_t> shape)
{
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i)
        s += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
    return s + ")";
}

/// The NumPy descr of the host's T: "<f4", "|u1", "<i8", ...
template <class T>
std::string npy_descr()
{
    static_assert(std::is_arithmetic_v<T> && sizeof(T) <= 8, "nmfdsl: .npy files hold booleans, integers and floats");
    static_assert(!std::is_floating_point_v<T> || sizeof(T) == 4 || sizeof(T) == 8,
                  "nmfdsl: .npy files are written for float and double, not long double");
    const char order = sizeof(T) == 1 ? '|' : std::endian::native == std::endian::little ? '<' : '>';
    const char kind = std::is_same_v<T, bool>         ? 'b'
                      : std::is_floating_point_v<T> ? 'f'
                      : std::is_signed_v<T>         ? 'i'
                                                    : 'u';
    return std::string{order, kind, char('0' + sizeof(T))};
}

/// The whole file for T elements of the given shape (C order), laid out as np.save lays it out: after the dict,
/// room for the first dimension to grow to 21 digits, then spaces and a newline up to a multiple of 64 bytes.
template <class T>
std::vector<std::uint8_t> encode_npy(std::span<const T> data, std::span<const std::size_t> shape)
{
    std::string dict = "{'descr': '" + npy_descr<T>() + "', 'fortran_order': False, 'shape': " + shape_text(shape) +
                       ", }";
    if (!shape.empty())
        dict.append(21 - std::min<std::size_t>(21, std::to_string(shape[0]).size()), ' ');
    auto padded = [&](std::size_t prefix) {  // the header's length once padded after a prefix of that many bytes
        return dict.size() + 1 + (npy_alignment - (dict.size() + 1 + prefix) % npy_alignment);
    };
    const bool wide = padded(10) > 0xFFFF;  // version 1.0 has a 16-bit header length, 2.0 a 32-bit one
    const std::size_t prefix = wide ? 12 : 10;
    dict.append(padded(prefix) - dict.size() - 1, ' ');
    dict += '\n';
    std::vector<std::uint8_t> out(npy_magic, npy_magic + sizeof npy_magic);
    out.push_back(wide ? 2 : 1);
    out.push_back(0);
    for (std::size_t i = 0; i < prefix - 8; ++i)
        out.push_back(std::uint8_t(dict.size() >> (8 * i)));
    out.insert(out.end(), dict.begin(), dict.end());
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(data.data());
    out.insert(out.end(), bytes, bytes + data.size_bytes());
    return out;
}

} // namespace detail

namespace detail {

/// The elements of a parsed .npy file (bytes b, header h) in C order, converted to T as the file comment says.
template <class T>
xt::xarray<T> decode_npy(const std::vector<std::uint8_t>& b, const npy_header& h, const std::string& path)
{
    static_assert(std::is_arithmetic_v<T>, "nmfdsl: read_npy reads into an arithmetic type");
    if (std::is_integral_v<T> && h.kind == 'f')
        throw data_error("nmfdsl: .npy file '" + path + "' holds floats ('" + h.descr +
                         "'); reading it as integers would drop their fractions — read it as float or double");
    xt::xarray<T> out = xt::xarray<T>::from_shape(h.shape);
    const std::uint8_t* data = b.data() + h.data_offset;
    const std::size_t n = h.count();
    // the host's own type and byte order in C order: a copy (bool excepted: a byte other than 0 or 1 is no bool)
    if (!std::is_same_v<T, bool> && !h.fortran_order && h.descr == npy_descr<T>()) {
        if (n != 0)
            std::memcpy(out.data(), data, n * sizeof(T));
        return out;
    }
    auto does_not_fit = [&](std::size_t i, const std::string& value) {
        return data_error("nmfdsl: .npy file '" + path + "': element " + std::to_string(i) + " (" + value +
                          ") does not fit the requested integer type (" +
                          std::to_string(std::numeric_limits<T>::min()) + " to " +
                          std::to_string(std::numeric_limits<T>::max()) + ")");
    };
    // the file's index of the element at C-order position i: in Fortran order the first index runs fastest
    std::vector<std::size_t> index(h.shape.size(), 0), fortran_stride(h.shape.size(), 1);
    for (std::size_t k = 1; k < h.shape.size(); ++k)
        fortran_stride[k] = fortran_stride[k - 1] * h.shape[k - 1];
    std::size_t source = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (h.fortran_order && i > 0) {  // advance the C-order multi-index, last dimension fastest
            std::size_t k = h.shape.size();
            while (k-- > 0) {
                source += fortran_stride[k];
                if (++index[k] < h.shape[k])
                    break;
                source -= fortran_stride[k] * h.shape[k];
                index[k] = 0;
            }
        } else if (!h.fortran_order) {
            source = i;
        }
        if constexpr (std::is_floating_point_v<T>) {
            out.data()[i] = static_cast<T>(npy_element<double>(data, source, h));
        } else if (h.kind == 'i') {  // signed elements: range-checked against T
            const std::int64_t v = npy_element<std::int64_t>(data, source, h);
            if (v < std::int64_t(std::numeric_limits<T>::min()) ||
                (v > 0 && std::uint64_t(v) > std::uint64_t(std::numeric_limits<T>::max())))
                throw does_not_fit(i, std::to_string(v));
            out.data()[i] = static_cast<T>(v);
        } else {  // unsigned or boolean elements
            const std::uint64_t v = npy_element<std::uint64_t>(data, source, h);
            if (v > std::uint64_t(std::numeric_limits<T>::max()))
                throw does_not_fit(i, std::to_string(v));
            out.data()[i] = static_cast<T>(v);
        }
    }
    return out;
}

} // namespace detail

/// The header of the .npy file at path (checked as read_npy checks it, the data's length included).
inline npy_header read_npy_header(const std::string& path)
{
    return detail::parse_npy(detail::read_whole_file<data_error>(path, ".npy file"), path);
}

/// The array in the .npy file at path, in C order, converted to T as the file comment says.
template <class T>
xt::xarray<T> read_npy(const std::string& path)
{
    const std::vector<std::uint8_t> b = detail::read_whole_file<data_error>(path, ".npy file");
    return detail::decode_npy<T>(b, detail::parse_npy(b, path), path);
}

/// Writes `data` (C order, the product of `shape` elements) to path as a .npy file np.load reads, atomically.
/// Throws argument_error when the sizes disagree, io_error when the file cannot be written.
template <class T>
void write_npy(const std::string& path, std::span<const T> data, std::span<const std::size_t> shape)
{
    std::size_t count = 1;
    for (std::size_t d : shape)
        count *= d;
    if (count != data.size())
        throw argument_error("nmfdsl: write_npy('" + path + "'): the shape holds " + std::to_string(count) +
                             " elements, the data " + std::to_string(data.size()));
    detail::write_atomically(path, detail::encode_npy<T>(data, shape));
}

/// Writes an xtensor expression (any layout; evaluated in C order) to path as a .npy file.
template <class E>
void write_npy(const std::string& path, const xt::xexpression<E>& expression)
{
    using value_type = typename E::value_type;
    const xt::xarray<value_type, xt::layout_type::row_major> a = expression.derived_cast();
    const std::vector<std::size_t> shape(a.shape().begin(), a.shape().end());
    write_npy<value_type>(path, std::span<const value_type>(a.data(), a.size()), shape);
}

/// The file name of a model's tensor (parameter or buffer): its qualified name with the path's '/' written '-', plus
/// ".npy" ("3/1/0" and "weight" give "3-1-0.weight.npy").
inline std::string parameter_file_name(const std::string& layer_path, std::string_view tensor)
{
    std::string name = layer_path;
    std::replace(name.begin(), name.end(), '/', '-');
    return name + "." + std::string(tensor) + ".npy";
}

namespace detail {

/// One tensor of a model as the .npy exchange sees it: its file, a description for messages, its values and shape.
template <class T>
struct npy_tensor {
    std::string file, description;
    std::span<T> value;
    std::vector<std::size_t> shape;
    nmfdsl::value_range range;
};

/// The model's trainable tensors, then its buffers, each with the file of parameter_file_name inside `dir` (distinct:
/// paths are unique in a model, and a layer's tensor names are checked distinct at compile time).
template <class M>
auto model_npy_tensors(M& model, const std::string& dir)
{
    using T = std::remove_reference_t<decltype(*model.flat_parameters().data())>;
    std::vector<npy_tensor<T>> out;
    auto add = [&](const auto& t, bool buffer) {
        out.push_back({(std::filesystem::path(dir) / parameter_file_name(t.path, t.name)).string(),
                       std::string(buffer ? "buffer " : "tensor ") + t.qualified_name() + " (" + t.layer_name + ")",
                       t.value, t.shape, t.range});
    };
    for (const auto& p : model.parameters())
        add(p, false);
    for (const auto& b : model.buffers())
        add(b, true);
    return out;
}

} // namespace detail

/// Writes every trainable tensor and every buffer (BatchNorm's running statistics) of `model` (a Model) into `dir`,
/// created if missing: one .npy file per tensor, named by parameter_file_name, in the tensor's shape (a K×K
/// convolution or NMF weight is [Out, K, K, C], the patch in the order ky, kx, channel; a Dense or 1×1 weight
/// [Out, In]; per-channel tensors [C]). Returns the paths written: the parameters in the model's order, then the
/// buffers.
template <class M>
std::vector<std::string> write_parameters_npy(const M& model, const std::string& dir)
{
    const auto tensors = detail::model_npy_tensors(model, dir);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec)
        throw io_error("nmfdsl: cannot create the directory '" + dir + "': " + ec.message());
    std::vector<std::string> written;
    for (const auto& t : tensors) {
        using T = std::remove_const_t<typename decltype(t.value)::element_type>;
        write_npy<T>(t.file, std::span<const T>(t.value.data(), t.value.size()), t.shape);
        written.push_back(t.file);
    }
    return written;
}

/// Sets every trainable tensor and buffer of `model` from the .npy files of `dir` that write_parameters_npy names
/// (any element type read_npy converts to the model's scalar). All files are read and checked before anything
/// changes, so a missing file, a shape other than the tensor's, a non-finite value, a negative value in a tensor
/// whose param_spec::range is non_negative (BatchNorm's running variance) or a bad file throws data_error naming
/// the file and the tensor, and leaves the model as it was. Gradients are left alone.
template <class M>
void read_parameters_npy(M& model, const std::string& dir)
{
    const auto tensors = detail::model_npy_tensors(model, dir);
    using T = std::remove_reference_t<decltype(*model.flat_parameters().data())>;
    std::vector<xt::xarray<T>> staged;
    for (const auto& t : tensors) {
        if (!std::filesystem::exists(t.file))
            throw data_error("nmfdsl: the file '" + t.file + "' of " + t.description + " does not exist");
        xt::xarray<T> a = read_npy<T>(t.file);
        const std::vector<std::size_t> shape(a.shape().begin(), a.shape().end());
        if (shape != t.shape)
            throw data_error("nmfdsl: file '" + t.file + "' holds an array of shape " + detail::shape_text(shape) +
                             "; " + t.description + " has shape " + detail::shape_text(t.shape));
        for (std::size_t i = 0; i < a.size(); ++i)
            if (!nmfdsl::within(t.range, a.data()[i]))
                throw data_error("nmfdsl: file '" + t.file + "': element " + std::to_string(i) + " is " +
                                 std::to_string(a.data()[i]) + "; " + t.description + " needs " +
                                 nmfdsl::range_text(t.range));
        staged.push_back(std::move(a));
    }
    for (std::size_t k = 0; k < tensors.size(); ++k)
        std::copy(staged[k].begin(), staged[k].end(), tensors[k].value.begin());
}

} // namespace nmfdsl::io
