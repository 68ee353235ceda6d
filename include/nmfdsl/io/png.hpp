#pragma once
/// @file png.hpp
/// Writes 8-bit grey or RGB PNG images with libpng, atomically (temporary file + rename).
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <png.h>

#include "../core/error.hpp"

namespace nmfdsl::io {

/// pixels: height × width × channels bytes, row-major; channels is 1 (grey) or 3 (RGB).
inline void write_png(const std::string& path, std::size_t width, std::size_t height, std::size_t channels,
                      const std::vector<std::uint8_t>& pixels)
{
    if ((channels != 1 && channels != 3) || pixels.size() != width * height * channels || width == 0 || height == 0)
        throw io_error("nmfdsl: write_png('" + path + "'): expected " + std::to_string(width) + "x" +
                       std::to_string(height) + "x" + std::to_string(channels) + " pixels (1 or 3 channels), got " +
                       std::to_string(pixels.size()) + " bytes");
    const std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr)
        throw io_error("nmfdsl: cannot write '" + tmp + "'");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png ? png_create_info_struct(png) : nullptr;
    if (png == nullptr || info == nullptr || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        std::fclose(f);
        std::remove(tmp.c_str());
        throw io_error("nmfdsl: libpng failed writing '" + path + "'");
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (std::size_t y = 0; y < height; ++y)
        png_write_row(png, const_cast<png_bytep>(pixels.data() + y * width * channels));
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    if (std::fclose(f) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw io_error("nmfdsl: cannot replace '" + path + "'");
    }
}

} // namespace nmfdsl::io
