#pragma once
/// @file error.hpp
/// The exception hierarchy. Every runtime check in nmfdsl throws one of these (all derive from nmfdsl::error), with a
/// message that starts with "nmfdsl:" and names the layer, option or file, what was expected and what was found.
/// The only other exceptions that can leave the library are the standard library's own: std::bad_alloc when memory
/// runs out, and std::system_error when the thread pool cannot start a thread.
#include <stdexcept>
#include <string>

namespace nmfdsl {

/// Base of every nmfdsl error.
struct error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A tensor reached a layer or entry point with a shape other than the one the network was built for.
struct shape_error : error {
    using error::error;
};

/// A non-finite or out-of-domain value was found where the numerics require finite (or non-negative) input.
struct numeric_error : error {
    using error::error;
};

/// A runtime option or argument is outside its domain (a CNMF option, a learning rate, a thread count, a label,
/// an optimiser state of the wrong length, ...).
struct argument_error : error {
    using error::error;
};

/// A layer path, tensor name or option kind that the network does not have was asked for.
struct lookup_error : error {
    using error::error;
};

/// A data file is missing, truncated or inconsistent.
struct data_error : error {
    using error::error;
};

/// A checkpoint or output file cannot be written, or a checkpoint is truncated, corrupt or of another network.
struct io_error : error {
    using error::error;
};

} // namespace nmfdsl
