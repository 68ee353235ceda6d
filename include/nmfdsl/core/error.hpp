#pragma once
/// @file error.hpp
/// The exception hierarchy. Every runtime check in nmfdsl throws one of these, with a message that starts with
/// "nmfdsl:" and names the layer, option or file, what was expected and what was found. `catch (const nmfdsl::error&)`
/// catches them all; each is also the standard exception that fits it: argument_error is a std::invalid_argument, the
/// others are std::runtime_error (so `catch (const std::exception&)` sees each exactly once).
/// The only other exceptions that can leave the library are the standard library's own: std::bad_alloc when memory
/// runs out, and std::system_error when the thread pool cannot start a thread.
#include <stdexcept>
#include <string>

namespace nmfdsl {

/// Base of every nmfdsl error. Not a std::exception itself: each concrete error derives from exactly one standard
/// class (detail::error_as), which a second std::exception base would make ambiguous.
struct error {
    virtual ~error() = default;
    virtual const char* what() const noexcept = 0;
};

namespace detail {
/// An nmfdsl error that is also the standard exception `Standard`.
template <class Standard>
struct error_as : Standard, error {
    explicit error_as(const std::string& message) : Standard(message) {}
    explicit error_as(const char* message) : Standard(message) {}
    const char* what() const noexcept override { return Standard::what(); }
};
} // namespace detail

/// A tensor reached a layer or entry point with a shape other than the one the network was built for.
struct shape_error : detail::error_as<std::runtime_error> {
    using error_as::error_as;
};

/// A non-finite or out-of-domain value was found where the numerics require finite (or non-negative) input.
struct numeric_error : detail::error_as<std::runtime_error> {
    using error_as::error_as;
};

/// A runtime option or argument is outside its domain (a CNMF option, a learning rate, a thread count, a label,
/// an optimiser state of the wrong length, ...).
struct argument_error : detail::error_as<std::invalid_argument> {
    using error_as::error_as;
};

/// A layer path, tensor name or option kind that the network does not have was asked for.
struct lookup_error : detail::error_as<std::runtime_error> {
    using error_as::error_as;
};

/// A data file is missing, truncated or inconsistent.
struct data_error : detail::error_as<std::runtime_error> {
    using error_as::error_as;
};

/// A checkpoint or output file cannot be written, or a checkpoint is truncated, corrupt or of another network.
struct io_error : detail::error_as<std::runtime_error> {
    using error_as::error_as;
};

} // namespace nmfdsl
