#pragma once
/// @file file.hpp
/// Whole-file reads and atomic writes, shared by the checkpoint and .npy formats.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "../core/error.hpp"

namespace nmfdsl::io::detail {

/// Writes bytes to path atomically: path.tmp, fsync, rename. On any failure path keeps its old content (or stays
/// absent), the temporary file is removed and io_error names the file and the reason.
inline void write_atomically(const std::string& path, const std::vector<std::uint8_t>& bytes)
{
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        throw io_error("nmfdsl: cannot write '" + tmp + "': " + std::strerror(errno));
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n <= 0) {
            const std::string why = std::strerror(errno);
            ::close(fd);
            std::remove(tmp.c_str());
            throw io_error("nmfdsl: writing '" + tmp + "' failed (" + why + "); '" + path + "' is unchanged");
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        std::remove(tmp.c_str());
        throw io_error("nmfdsl: flushing '" + tmp + "' failed; '" + path + "' is unchanged");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw io_error("nmfdsl: cannot replace '" + path + "': " + std::strerror(errno));
    }
}

/// The bytes of the file at path. Throws Error("nmfdsl: cannot open <what> '<path>': <reason>") when it cannot be
/// opened or read (a missing file included).
template <class Error>
std::vector<std::uint8_t> read_whole_file(const std::string& path, const std::string& what)
{
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr)
        throw Error("nmfdsl: cannot open " + what + " '" + path + "': " + std::strerror(errno));
    std::vector<std::uint8_t> bytes;
    std::uint8_t buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
        bytes.insert(bytes.end(), buf, buf + n);
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed)
        throw Error("nmfdsl: reading " + what + " '" + path + "' failed");
    return bytes;
}

} // namespace nmfdsl::io::detail
