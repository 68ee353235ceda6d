#pragma once
/// @file dataset.hpp
/// Labelled image data sets and the readers for the IDX format (MNIST / Fashion-MNIST, plain or gzip), the
/// CIFAR-10 binary format and pairs of NumPy .npy files (images and labels, io/npy.hpp). Images are stored as float
/// in [0, 1] (bytes / 255), channels-first [N, C, H, W], with no mean/std normalisation (docs/method.md §4). Every
/// problem with a file throws nmfdsl::data_error naming the file and what is wrong: missing, truncated, wrong magic
/// number, wrong counts, a label out of range, or images and labels of different lengths.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <zlib.h>

#include "../core/error.hpp"
#include "../io/npy.hpp"

namespace nmfdsl::data {

struct dataset {
    std::size_t channels = 0, height = 0, width = 0;
    std::vector<float> images;         ///< count × channels × height × width, in [0, 1]
    std::vector<std::uint8_t> labels;  ///< count labels, each < classes
    std::size_t classes = 10;
    std::string source;                ///< where it was read from

    std::size_t size() const { return labels.size(); }
    std::size_t image_size() const { return channels * height * width; }
};

struct split {
    dataset train, test;
};

/// Throws data_error naming the data set's file and the first offending image when a value lies outside [0, 1] (or
/// is not a number): the attacks' box constraint assumes images in [0, 1].
inline void check_unit_range(const dataset& d)
{
    for (std::size_t i = 0; i < d.images.size(); ++i)
        if (!(d.images[i] >= 0.f && d.images[i] <= 1.f))
            throw data_error("nmfdsl: data set '" + d.source + "': image " + std::to_string(i / d.image_size()) +
                             " has the value " + std::to_string(d.images[i]) + ", outside [0, 1]");
}

namespace detail {

/// Reads a whole file; gzip-compressed files are decompressed transparently (zlib reads plain files as they are).
inline std::vector<std::uint8_t> read_file(const std::string& path)
{
    if (!std::filesystem::exists(path))
        throw data_error("nmfdsl: data file '" + path + "' does not exist");
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr)
        throw data_error("nmfdsl: cannot open data file '" + path + "'");
    std::vector<std::uint8_t> out;
    std::uint8_t buf[1 << 16];
    for (;;) {
        const int n = gzread(f, buf, sizeof buf);
        if (n < 0) {
            int code = 0;
            const std::string msg = gzerror(f, &code);
            gzclose(f);
            throw data_error("nmfdsl: data file '" + path + "' is corrupt or truncated (" + msg + ")");
        }
        if (n == 0)
            break;
        out.insert(out.end(), buf, buf + n);
    }
    // gzread reports a truncated gzip stream only at close (Z_BUF_ERROR)
    const int rc = gzclose(f);
    if (rc != Z_OK)
        throw data_error("nmfdsl: data file '" + path + "' is corrupt or truncated (gzip stream ends early)");
    return out;
}

inline std::uint32_t big_endian(const std::uint8_t* p)
{
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

inline std::string hex(std::uint32_t v)
{
    static const char* digits = "0123456789abcdef";
    std::string s = "0x";
    for (int i = 28; i >= 0; i -= 4)
        s.push_back(digits[(v >> i) & 0xf]);
    return s;
}

} // namespace detail

/// An IDX image file (magic 0x00000803): count × rows × cols unsigned bytes.
struct idx_images {
    std::size_t count, rows, cols;
    std::vector<std::uint8_t> pixels;
};

inline idx_images read_idx_images(const std::string& path)
{
    const auto bytes = detail::read_file(path);
    if (bytes.size() < 16)
        throw data_error("nmfdsl: IDX image file '" + path + "' is truncated: " + std::to_string(bytes.size()) +
                         " bytes, the header alone needs 16");
    const std::uint32_t magic = detail::big_endian(bytes.data());
    if (magic != 0x00000803)
        throw data_error("nmfdsl: '" + path + "' is not an IDX image file: magic number " + detail::hex(magic) +
                         ", expected 0x00000803");
    idx_images r{detail::big_endian(bytes.data() + 4), detail::big_endian(bytes.data() + 8),
                 detail::big_endian(bytes.data() + 12), {}};
    if (r.rows == 0 || r.cols == 0 || r.rows > 4096 || r.cols > 4096)
        throw data_error("nmfdsl: IDX image file '" + path + "' declares images of " + std::to_string(r.rows) + "x" +
                         std::to_string(r.cols) + " pixels");
    const std::size_t expected = r.count * r.rows * r.cols;
    if (bytes.size() - 16 != expected)
        throw data_error("nmfdsl: IDX image file '" + path + "' declares " + std::to_string(r.count) + " images of " +
                         std::to_string(r.rows) + "x" + std::to_string(r.cols) + " (" + std::to_string(expected) +
                         " bytes) but holds " + std::to_string(bytes.size() - 16) + " bytes of pixels" +
                         (bytes.size() - 16 < expected ? " (truncated)" : ""));
    r.pixels.assign(bytes.begin() + 16, bytes.end());
    return r;
}

/// An IDX label file (magic 0x00000801): count unsigned bytes.
inline std::vector<std::uint8_t> read_idx_labels(const std::string& path, std::size_t classes = 10)
{
    const auto bytes = detail::read_file(path);
    if (bytes.size() < 8)
        throw data_error("nmfdsl: IDX label file '" + path + "' is truncated: " + std::to_string(bytes.size()) +
                         " bytes, the header alone needs 8");
    const std::uint32_t magic = detail::big_endian(bytes.data());
    if (magic != 0x00000801)
        throw data_error("nmfdsl: '" + path + "' is not an IDX label file: magic number " + detail::hex(magic) +
                         ", expected 0x00000801");
    const std::size_t count = detail::big_endian(bytes.data() + 4);
    if (bytes.size() - 8 != count)
        throw data_error("nmfdsl: IDX label file '" + path + "' declares " + std::to_string(count) +
                         " labels but holds " + std::to_string(bytes.size() - 8) +
                         (bytes.size() - 8 < count ? " (truncated)" : ""));
    std::vector<std::uint8_t> labels(bytes.begin() + 8, bytes.end());
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (labels[i] >= classes)
            throw data_error("nmfdsl: IDX label file '" + path + "': label " + std::to_string(labels[i]) +
                             " at index " + std::to_string(i) + " is above " + std::to_string(classes - 1));
    return labels;
}

/// An image file and its label file as one data set (one channel).
inline dataset load_idx(const std::string& images_path, const std::string& labels_path)
{
    auto img = read_idx_images(images_path);
    auto lab = read_idx_labels(labels_path);
    if (img.count != lab.size())
        throw data_error("nmfdsl: '" + images_path + "' holds " + std::to_string(img.count) + " images but '" +
                         labels_path + "' holds " + std::to_string(lab.size()) + " labels");
    dataset d;
    d.channels = 1;
    d.height = img.rows;
    d.width = img.cols;
    d.images.resize(img.pixels.size());
    for (std::size_t i = 0; i < img.pixels.size(); ++i)
        d.images[i] = float(img.pixels[i]) / 255.f;
    d.labels = std::move(lab);
    d.source = images_path;
    return d;
}

namespace detail {
inline std::string find_with_optional_gz(const std::filesystem::path& dir, const std::string& name)
{
    for (const std::string& candidate : {name, name + ".gz"})
        if (std::filesystem::exists(dir / candidate))
            return (dir / candidate).string();
    throw data_error("nmfdsl: data directory '" + dir.string() + "' has no '" + name + "' (or '" + name + ".gz')");
}
} // namespace detail

/// A directory with the four standard MNIST / Fashion-MNIST file names (plain or .gz).
inline split load_idx_directory(const std::string& dir)
{
    const std::filesystem::path d(dir);
    split s;
    s.train = load_idx(detail::find_with_optional_gz(d, "train-images-idx3-ubyte"),
                       detail::find_with_optional_gz(d, "train-labels-idx1-ubyte"));
    s.test = load_idx(detail::find_with_optional_gz(d, "t10k-images-idx3-ubyte"),
                      detail::find_with_optional_gz(d, "t10k-labels-idx1-ubyte"));
    return s;
}

/// One CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major 32×32).
inline void append_cifar10_batch(const std::string& path, dataset& d)
{
    constexpr std::size_t record = 1 + 3 * 32 * 32;
    const auto bytes = detail::read_file(path);
    if (bytes.empty() || bytes.size() % record != 0)
        throw data_error("nmfdsl: CIFAR-10 batch '" + path + "' has " + std::to_string(bytes.size()) +
                         " bytes, not a positive multiple of the 3073-byte record (truncated or not CIFAR-10)");
    const std::size_t n = bytes.size() / record;
    d.channels = 3;
    d.height = d.width = 32;
    const std::size_t first = d.labels.size();
    d.images.resize((first + n) * 3072);
    d.labels.resize(first + n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t* r = bytes.data() + i * record;
        if (r[0] >= 10)
            throw data_error("nmfdsl: CIFAR-10 batch '" + path + "': label " + std::to_string(r[0]) + " of record " +
                             std::to_string(i) + " is above 9");
        d.labels[first + i] = r[0];
        for (std::size_t p = 0; p < 3072; ++p)
            d.images[(first + i) * 3072 + p] = float(r[1 + p]) / 255.f;
    }
    if (d.source.empty())
        d.source = path;
}

/// A directory with CIFAR-10's binary batches: data_batch_1.bin … data_batch_5.bin and test_batch.bin.
inline split load_cifar10_directory(const std::string& dir)
{
    const std::filesystem::path d(dir);
    split s;
    for (int b = 1; b <= 5; ++b)
        append_cifar10_batch(detail::find_with_optional_gz(d, "data_batch_" + std::to_string(b) + ".bin"), s.train);
    append_cifar10_batch(detail::find_with_optional_gz(d, "test_batch.bin"), s.test);
    return s;
}

/// A data set from two .npy files (as np.save writes them): images of shape [N, H, W] (one channel) or [N, C, H, W],
/// either uint8 (0–255, divided by 255) or float32 / float64 in [0, 1]; labels of shape [N], integers in
/// [0, classes). Throws data_error naming the file for any other element type, rank or value, or for counts that
/// differ (and as io::read_npy does for a bad file).
inline dataset load_npy_dataset(const std::string& images_path, const std::string& labels_path,
                                std::size_t classes = 10)
{
    const std::vector<std::uint8_t> file = io::detail::read_whole_file<data_error>(images_path, ".npy file");
    const io::npy_header h = io::detail::parse_npy(file, images_path);
    if (h.shape.size() != 3 && h.shape.size() != 4)
        throw data_error("nmfdsl: .npy image file '" + images_path + "' has " + std::to_string(h.shape.size()) +
                         " dimensions; images are [N, H, W] or [N, C, H, W]");
    const bool bytes = h.kind == 'u' && h.item_size == 1;
    if (!bytes && h.kind != 'f')
        throw data_error("nmfdsl: .npy image file '" + images_path + "' holds '" + h.descr +
                         "' elements; images are uint8 (0-255) or float32 / float64 in [0, 1]");
    dataset d;
    d.channels = h.shape.size() == 4 ? h.shape[1] : 1;
    d.height = h.shape[h.shape.size() - 2];
    d.width = h.shape[h.shape.size() - 1];
    if (d.image_size() == 0)
        throw data_error("nmfdsl: .npy image file '" + images_path + "' holds empty images (" +
                         std::to_string(d.channels) + "x" + std::to_string(d.height) + "x" + std::to_string(d.width) +
                         ")");
    d.source = images_path;
    const auto values = io::detail::decode_npy<float>(file, h, images_path);
    d.images.assign(values.data(), values.data() + values.size());
    if (bytes)
        for (float& v : d.images)
            v /= 255.f;
    else
        check_unit_range(d);
    const auto labels = io::read_npy<std::int64_t>(labels_path);
    if (labels.dimension() != 1)
        throw data_error("nmfdsl: .npy label file '" + labels_path + "' has " + std::to_string(labels.dimension()) +
                         " dimensions; labels are [N]");
    if (labels.size() != h.shape[0])
        throw data_error("nmfdsl: '" + images_path + "' holds " + std::to_string(h.shape[0]) + " images but '" +
                         labels_path + "' holds " + std::to_string(labels.size()) + " labels");
    d.classes = classes;
    d.labels.resize(labels.size());
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const std::int64_t label = labels.data()[i];
        if (label < 0 || std::uint64_t(label) >= classes || label > 255)
            throw data_error("nmfdsl: .npy label file '" + labels_path + "': label " + std::to_string(label) +
                             " at index " + std::to_string(i) + " is outside 0.." + std::to_string(classes - 1));
        d.labels[i] = std::uint8_t(label);
    }
    return d;
}

/// The four file names of a .npy data directory.
inline constexpr const char* npy_directory_files[4] = {"train_images.npy", "train_labels.npy", "test_images.npy",
                                                       "test_labels.npy"};

inline bool is_npy_directory(const std::string& dir)
{
    return std::filesystem::exists(std::filesystem::path(dir) / npy_directory_files[0]);
}

/// A directory with train_images.npy, train_labels.npy, test_images.npy and test_labels.npy (load_npy_dataset).
inline split load_npy_directory(const std::string& dir, std::size_t classes = 10)
{
    const std::filesystem::path d(dir);
    for (const char* name : npy_directory_files)
        if (!std::filesystem::exists(d / name))
            throw data_error("nmfdsl: data directory '" + dir + "' has no '" + name +
                             "' (a .npy data directory holds train_images.npy, train_labels.npy, test_images.npy and "
                             "test_labels.npy)");
    split s;
    s.train = load_npy_dataset((d / npy_directory_files[0]).string(), (d / npy_directory_files[1]).string(), classes);
    s.test = load_npy_dataset((d / npy_directory_files[2]).string(), (d / npy_directory_files[3]).string(), classes);
    if (s.train.channels != s.test.channels || s.train.height != s.test.height || s.train.width != s.test.width)
        throw data_error("nmfdsl: data directory '" + dir + "': the training images are " +
                         std::to_string(s.train.channels) + "x" + std::to_string(s.train.height) + "x" +
                         std::to_string(s.train.width) + ", the test images " + std::to_string(s.test.channels) + "x" +
                         std::to_string(s.test.height) + "x" + std::to_string(s.test.width));
    return s;
}

inline bool is_cifar10_directory(const std::string& dir)
{
    const std::filesystem::path d(dir);
    return std::filesystem::exists(d / "data_batch_1.bin") || std::filesystem::exists(d / "test_batch.bin");
}

/// A data directory in any of the three formats, told apart by its file names: CIFAR-10 binary batches
/// (data_batch_1.bin, ...), .npy files (train_images.npy, ...) or IDX files (train-images-idx3-ubyte[.gz], ...).
/// Throws data_error naming the directory when it does not exist or holds none of them.
inline split load_directory(const std::string& dir)
{
    if (!std::filesystem::is_directory(dir))
        throw data_error("nmfdsl: data directory '" + dir + "' does not exist");
    if (is_cifar10_directory(dir))
        return load_cifar10_directory(dir);
    if (is_npy_directory(dir))
        return load_npy_directory(dir);
    const std::filesystem::path d(dir);
    if (!std::filesystem::exists(d / "train-images-idx3-ubyte") &&
        !std::filesystem::exists(d / "train-images-idx3-ubyte.gz"))
        throw data_error("nmfdsl: data directory '" + dir + "' holds no known data set: expected CIFAR-10 binary "
                         "batches (data_batch_1.bin ... data_batch_5.bin, test_batch.bin), .npy files "
                         "(train_images.npy, train_labels.npy, test_images.npy, test_labels.npy) or IDX files "
                         "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                         "t10k-labels-idx1-ubyte, plain or .gz)");
    return load_idx_directory(dir);
}

/// Where the Debian package dataset-fashion-mnist puts the data.
inline const char* fashion_mnist_directory = "/usr/share/datasets/fashion-mnist";

} // namespace nmfdsl::data
