#pragma once
// Files for the tests of the readers and writers: scratch directories and raw bytes in and out.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <zlib.h>

namespace test_files {

namespace fs = std::filesystem;

/// A fresh, empty scratch directory per name (under the system's temporary directory).
inline fs::path scratch(const std::string& name)
{
    const fs::path p = fs::temp_directory_path() / ("nmfdsl_test_" + name);
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
}

/// Writes the bytes to p, gzip-compressed if asked.
inline void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& b, bool gzip = false)
{
    if (gzip) {
        gzFile f = gzopen(p.c_str(), "wb");
        gzwrite(f, b.data(), static_cast<unsigned>(b.size()));
        gzclose(f);
    } else {
        std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    }
}

inline std::vector<std::uint8_t> read_bytes(const fs::path& p)
{
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

} // namespace test_files
