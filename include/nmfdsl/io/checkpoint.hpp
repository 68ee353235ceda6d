#pragma once
/// @file checkpoint.hpp
/// Versioned binary checkpoints, written atomically.
/// Layout (little-endian): "NMFDSLCK", u32 version, then five sections, each a u64 byte length and the bytes —
/// the network signature (text), the parameters, the buffers, the optimiser state (doubles) and the trainer state
/// (opaque bytes) — and finally a u32 CRC-32 of everything before it.
/// write_checkpoint writes `path.tmp`, flushes it to disk and renames it over `path`, so a failed or interrupted
/// write never replaces the previous good checkpoint. read_checkpoint throws io_error for a missing, truncated or
/// corrupt file (bad magic, unknown version, checksum mismatch) and for another network (printing both signatures).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <zlib.h>

#include "../core/error.hpp"
#include "file.hpp"

namespace nmfdsl::io {

inline constexpr char checkpoint_magic[8] = {'N', 'M', 'F', 'D', 'S', 'L', 'C', 'K'};
inline constexpr std::uint32_t checkpoint_version = 1;

struct checkpoint {
    std::string signature;
    std::vector<std::uint8_t> params, buffers;  ///< raw scalars of the model's flat arrays
    std::vector<double> optimizer;
    std::vector<std::uint8_t> trainer;
};

namespace detail {
inline void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        out.push_back(std::uint8_t(v >> (8 * i)));
}
inline void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v)
{
    for (int i = 0; i < 8; ++i)
        out.push_back(std::uint8_t(v >> (8 * i)));
}
inline void put_section(std::vector<std::uint8_t>& out, const void* data, std::size_t n)
{
    put_u64(out, n);
    const auto* p = static_cast<const std::uint8_t*>(data);
    out.insert(out.end(), p, p + n);
}

class reader {
public:
    reader(const std::vector<std::uint8_t>& b, const std::string& path) : b_(b), path_(path) {}
    std::uint64_t u64()
    {
        need(8);
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i)
            v |= std::uint64_t(b_[at_ + i]) << (8 * i);
        at_ += 8;
        return v;
    }
    std::uint32_t u32()
    {
        need(4);
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i)
            v |= std::uint32_t(b_[at_ + i]) << (8 * i);
        at_ += 4;
        return v;
    }
    std::vector<std::uint8_t> section()
    {
        const std::uint64_t n = u64();
        need(n);
        std::vector<std::uint8_t> out(b_.begin() + at_, b_.begin() + at_ + n);
        at_ += n;
        return out;
    }
    std::size_t position() const { return at_; }

private:
    void need(std::uint64_t n) const
    {
        if (n > b_.size() - at_)
            throw io_error("nmfdsl: checkpoint '" + path_ + "' is truncated (" + std::to_string(b_.size()) +
                           " bytes; a section needs " + std::to_string(n) + " more at offset " + std::to_string(at_) +
                           ")");
    }
    const std::vector<std::uint8_t>& b_;
    const std::string& path_;
    std::size_t at_ = 0;
};
} // namespace detail

inline std::vector<std::uint8_t> encode_checkpoint(const checkpoint& c)
{
    std::vector<std::uint8_t> out(checkpoint_magic, checkpoint_magic + 8);
    detail::put_u32(out, checkpoint_version);
    detail::put_section(out, c.signature.data(), c.signature.size());
    detail::put_section(out, c.params.data(), c.params.size());
    detail::put_section(out, c.buffers.data(), c.buffers.size());
    detail::put_section(out, c.optimizer.data(), c.optimizer.size() * sizeof(double));
    detail::put_section(out, c.trainer.data(), c.trainer.size());
    detail::put_u32(out, static_cast<std::uint32_t>(crc32(0L, out.data(), static_cast<uInt>(out.size()))));
    return out;
}

inline void write_checkpoint(const std::string& path, const checkpoint& c)
{
    detail::write_atomically(path, encode_checkpoint(c));
}

/// Reads and verifies a checkpoint. If expected_signature is not empty, a different network throws io_error
/// showing both signatures.
inline checkpoint read_checkpoint(const std::string& path, const std::string& expected_signature = {})
{
    if (!std::filesystem::exists(path))
        throw io_error("nmfdsl: checkpoint '" + path + "' does not exist");
    const std::vector<std::uint8_t> b = detail::read_whole_file<io_error>(path, "checkpoint");
    if (b.size() < 12 || std::memcmp(b.data(), checkpoint_magic, 8) != 0)
        throw io_error("nmfdsl: '" + path + "' is not an nmfdsl checkpoint (bad magic number or too short)");
    if (b.size() < 16)
        throw io_error("nmfdsl: checkpoint '" + path + "' is truncated");
    const std::uint32_t stored = std::uint32_t(b[b.size() - 4]) | std::uint32_t(b[b.size() - 3]) << 8 |
                                 std::uint32_t(b[b.size() - 2]) << 16 | std::uint32_t(b[b.size() - 1]) << 24;
    detail::reader r(b, path);
    r.u64();  // the magic, already checked
    const std::uint32_t version = r.u32();
    if (version != checkpoint_version)
        throw io_error("nmfdsl: checkpoint '" + path + "' has format version " + std::to_string(version) +
                       ", this build reads version " + std::to_string(checkpoint_version));
    checkpoint c;
    const auto sig = r.section();
    c.signature.assign(sig.begin(), sig.end());
    c.params = r.section();
    c.buffers = r.section();
    const auto opt = r.section();
    c.optimizer.resize(opt.size() / sizeof(double));
    if (!c.optimizer.empty())
        std::memcpy(c.optimizer.data(), opt.data(), c.optimizer.size() * sizeof(double));
    c.trainer = r.section();
    if (r.position() + 4 != b.size())
        throw io_error("nmfdsl: checkpoint '" + path + "' is truncated or has trailing bytes (" +
                       std::to_string(b.size()) + " bytes, sections end at " + std::to_string(r.position()) + ")");
    const std::uint32_t actual = static_cast<std::uint32_t>(crc32(0L, b.data(), static_cast<uInt>(b.size() - 4)));
    if (actual != stored)
        throw io_error("nmfdsl: checkpoint '" + path + "' is corrupt (checksum mismatch)");
    if (!expected_signature.empty() && c.signature != expected_signature)
        throw io_error("nmfdsl: checkpoint '" + path + "' belongs to another network.\n--- checkpoint:\n" +
                       c.signature + "--- this model:\n" + expected_signature);
    return c;
}

/// Reads a checkpoint of model's network and copies its parameters and buffers into the model; returns the
/// checkpoint (optimiser and trainer state for a resume). Throws io_error as read_checkpoint does, and when the
/// sizes do not match the model.
template <class M>
checkpoint load_model(M& model, const std::string& path)
{
    checkpoint c = read_checkpoint(path, M::signature());
    auto params = model.flat_parameters();
    auto buffers = model.flat_buffers();
    if (c.params.size() != params.size_bytes() || c.buffers.size() != buffers.size_bytes())
        throw io_error("nmfdsl: checkpoint '" + path + "' holds " + std::to_string(c.params.size()) +
                       " parameter bytes, this model has " + std::to_string(params.size_bytes()));
    // std::copy, not memcpy: a model without parameters or buffers has empty (null) arrays
    std::copy(c.params.begin(), c.params.end(), reinterpret_cast<std::uint8_t*>(params.data()));
    std::copy(c.buffers.begin(), c.buffers.end(), reinterpret_cast<std::uint8_t*>(buffers.data()));
    return c;
}

} // namespace nmfdsl::io
