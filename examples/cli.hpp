#pragma once
/// @file cli.hpp
/// Command-line helpers shared by the example programs: a bad command line is one line on stderr and exit code 2.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

/// A bad command line, thrown by fail() instead of exiting when throw_usage_errors() is set (a program whose MPI
/// ranks must agree before they exit).
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
inline bool& throw_usage_errors()
{
    static bool on = false;
    return on;
}

/// Prints "<program>: <message> (see --help)" and exits with code 2 (or throws usage_error with that text).
[[noreturn]] inline void fail(const char* program, const std::string& message)
{
    const std::string line = std::string(program) + ": " + message + " (see --help)";
    if (throw_usage_errors())
        throw usage_error(line);
    std::fprintf(stderr, "%s\n", line.c_str());
    std::exit(2);
}

/// A whole number ≥ min, or fail.
inline std::uint64_t parse_count(const char* program, const std::string& flag, const std::string& text,
                                 std::uint64_t min)
{
    std::size_t used = 0;
    unsigned long long v = 0;
    try {
        v = std::stoull(text, &used);
    } catch (...) {
        used = 0;
    }
    if (used != text.size() || text.empty() || text[0] == '-')
        fail(program, flag + " needs a whole number, got '" + text + "'");
    if (v < min)
        fail(program, flag + " must be at least " + std::to_string(min) + ", got " + text);
    return v;
}

/// A finite real ≥ min, or fail.
inline double parse_real(const char* program, const std::string& flag, const std::string& text, double min)
{
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || end == text.c_str() || *end != '\0' || !std::isfinite(v))
        fail(program, flag + " needs a number, got '" + text + "'");
    if (v < min) {
        char bound[32];
        std::snprintf(bound, sizeof bound, "%g", min);
        fail(program, flag + " must be at least " + bound + ", got " + text);
    }
    return v;
}

/// The comma-separated parts of text (empty parts kept, so that "a,,b" is caught by the caller's parser).
inline std::vector<std::string> split(const std::string& text)
{
    std::vector<std::string> parts;
    std::size_t from = 0;
    for (;;) {
        const std::size_t comma = text.find(',', from);
        parts.push_back(text.substr(from, comma - from));
        if (comma == std::string::npos)
            return parts;
        from = comma + 1;
    }
}

/// A comma-separated list of finite reals ≥ min, or fail.
inline std::vector<double> parse_reals(const char* program, const std::string& flag, const std::string& text,
                                       double min)
{
    std::vector<double> v;
    for (const auto& part : split(text))
        v.push_back(parse_real(program, flag, part, min));
    return v;
}

} // namespace cli
