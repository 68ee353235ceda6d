#pragma once
/// @file params.hpp
/// Parameter descriptions shared by layers and the Model: every trainable tensor has a name, a group (so that
/// optimisers can give groups their own learning rates) and a size. Buffers are non-trainable state saved with the
/// model (the running statistics of BatchNorm's optional running mode).
#include <array>
#include <cmath>
#include <cstddef>
#include <string_view>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "memory.hpp"

namespace nmfdsl {

/// Parameter groups: optimisers give each its own learning rate.
enum class group : unsigned char { nmf, mix, conv, norm, dense, other };

struct group_info {
    group id;
    std::string_view name;  ///< as in the summary, the metrics CSV and nmfdsl-train's --lr-<name>
    double paper_lr;        ///< the deep-NMF paper's learning rate (Adam)
    std::string_view holds;
};

/// The one list of parameter groups, in the enum's order. Everything else — learning_rates, the summary, the
/// metrics CSV columns, nmfdsl-train's --lr-<group> options, the checkpoint's trainer state — is derived from it.
/// The deep-NMF paper (Nouri, Rotermund, Garcia-Ortiz & Pawelzik, "Interleaving cortex-analog mixing improves deep
/// non-negative matrix factorization networks", Front. Comput. Neurosci. 2025; arXiv 2503.20398) trains the NMF
/// weights at 0.01 and the 1×1 mixing and BatchNorm at 0.001; its CNN baselines' convolutions take the NMF rate.
inline constexpr std::array<group_info, 6> parameter_groups{{
    {group::nmf, "nmf", 0.01, "NMF basis weights V"},
    {group::mix, "mix", 0.001, "1x1 mixing weights and biases"},
    {group::conv, "conv", 0.01, "convolution weights and biases"},
    {group::norm, "norm", 0.001, "BatchNorm scale and shift"},
    {group::dense, "dense", 0.001, "fully connected weights and biases"},
    {group::other, "other", 0.001, "custom layers' tensors"},
}};
inline constexpr std::size_t group_count = parameter_groups.size();
static_assert([] {
    for (std::size_t i = 0; i < group_count; ++i)
        if (static_cast<std::size_t>(parameter_groups[i].id) != i)
            return false;
    return true;
}(), "nmfdsl: parameter_groups must list the groups in the enum's order");

constexpr std::string_view group_name(group g)
{
    return parameter_groups[static_cast<std::size_t>(g)].name;
}

/// The values a tensor may hold, beyond being finite. Readers of foreign data (io::read_parameters_npy) refuse
/// anything else; a layer's own updates are expected to keep it.
enum class value_range {
    any,           ///< every finite value
    non_negative,  ///< finite and >= 0 (a variance the layer takes the square root of)
};

/// Whether v lies in the range: finite, and >= 0 where the range is non_negative.
template <class T>
inline bool within(value_range range, T v)
{
    return std::isfinite(v) && (range != value_range::non_negative || v >= T(0));
}

/// The range in words, for error messages: "finite values" or "finite values >= 0".
constexpr const char* range_text(value_range range)
{
    return range == value_range::non_negative ? "finite values >= 0" : "finite values";
}

/// One tensor of a layer: its name, parameter group and element count, optionally its shape as NumPy or PyTorch
/// users see it, outermost first (a K×K convolution's weight: {Out, K, K, C}, the layer's patch order; entries
/// after the last nonzero one are unused, and all zeros mean one dimension of `size` elements), and the range its
/// values must lie in.
struct param_spec {
    std::string_view name;
    group grp;
    std::size_t size;
    std::array<std::size_t, 4> dims{};
    value_range range = value_range::any;
};

/// The shape of a tensor: its dims up to the first zero, or {size} when none are given.
inline std::vector<std::size_t> tensor_shape(const param_spec& p)
{
    std::vector<std::size_t> shape;
    for (std::size_t k = 0; k < p.dims.size() && p.dims[k] != 0; ++k)
        shape.push_back(p.dims[k]);
    if (shape.empty())
        shape.push_back(p.size);
    return shape;
}

/// True when every tensor's dims, if given, are nonzero up to the unused tail and multiply to its size.
template <std::size_t N>
constexpr bool dims_match_sizes(const std::array<param_spec, N>& specs)
{
    for (const auto& p : specs) {
        std::size_t product = 1, used = 0;
        while (used < p.dims.size() && p.dims[used] != 0)
            product *= p.dims[used++];
        for (std::size_t k = used; k < p.dims.size(); ++k)
            if (p.dims[k] != 0)
                return false;  // a zero inside the shape
        if (used != 0 && product != p.size)
            return false;
    }
    return true;
}

/// True when no two tensors of a layer — its parameters and buffers together — share a name (each names a file of
/// io::write_parameters_npy and a tensor of the layer's lookups).
template <std::size_t N, std::size_t B>
constexpr bool names_distinct(const std::array<param_spec, N>& params, const std::array<param_spec, B>& buffers)
{
    auto name = [&](std::size_t k) { return k < N ? params[k].name : buffers[k - N].name; };
    for (std::size_t i = 0; i < N + B; ++i)
        for (std::size_t j = i + 1; j < N + B; ++j)
            if (name(i) == name(j))
                return false;
    return true;
}

/// Every tensor starts on a 64-byte boundary (16 floats); sizes are padded to that granularity.
inline constexpr std::size_t param_alignment_elements = 16;

constexpr std::size_t padded_size(std::size_t n)
{
    return (n + param_alignment_elements - 1) / param_alignment_elements * param_alignment_elements;
}

template <class T>
using aligned_vector = std::vector<T, memory::counting_allocator<T, 64>>;  ///< 64-byte aligned, counted

template <std::size_t N>
constexpr std::size_t total_size(const std::array<param_spec, N>& specs)
{
    std::size_t s = 0;
    for (const auto& p : specs)
        s += p.size;
    return s;
}

template <std::size_t N>
constexpr std::size_t total_padded_size(const std::array<param_spec, N>& specs)
{
    std::size_t s = 0;
    for (const auto& p : specs)
        s += padded_size(p.size);
    return s;
}

/// Offset of tensor k inside a layer's block (sum of the padded sizes before it).
template <std::size_t N>
constexpr std::size_t tensor_offset(const std::array<param_spec, N>& specs, std::size_t k)
{
    std::size_t s = 0;
    for (std::size_t i = 0; i < k && i < N; ++i)
        s += padded_size(specs[i].size);
    return s;
}

template <std::size_t A, std::size_t B>
constexpr std::array<param_spec, A + B> join_specs(const std::array<param_spec, A>& a,
                                                   const std::array<param_spec, B>& b)
{
    std::array<param_spec, A + B> out{};
    for (std::size_t i = 0; i < A; ++i)
        out[i] = a[i];
    for (std::size_t i = 0; i < B; ++i)
        out[A + i] = b[i];
    return out;
}

} // namespace nmfdsl
