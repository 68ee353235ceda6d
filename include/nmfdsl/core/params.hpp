#pragma once
/// @file params.hpp
/// Parameter descriptions shared by layers and the Model: every trainable tensor has a name, a group (so that
/// optimisers can give groups their own learning rates) and a size. Buffers are non-trainable state saved with the
/// model (the running statistics of BatchNorm's optional running mode).
#include <array>
#include <cstddef>
#include <string_view>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "memory.hpp"

namespace nmfdsl {

/// Parameter groups. The paper trains `nmf` at lr 0.01 and `mix` / `norm` at 0.001 (deep-nmf-spec §4).
enum class group : unsigned char { nmf, mix, conv, norm, dense, other };

constexpr std::string_view group_name(group g)
{
    switch (g) {
    case group::nmf: return "nmf";
    case group::mix: return "mix";
    case group::conv: return "conv";
    case group::norm: return "norm";
    case group::dense: return "dense";
    default: return "other";
    }
}

struct param_spec {
    std::string_view name;
    group grp;
    std::size_t size;
};

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
constexpr std::array<param_spec, A + B> join_specs(const std::array<param_spec, A>& a, const std::array<param_spec, B>& b)
{
    std::array<param_spec, A + B> out{};
    for (std::size_t i = 0; i < A; ++i)
        out[i] = a[i];
    for (std::size_t i = 0; i < B; ++i)
        out[A + i] = b[i];
    return out;
}

} // namespace nmfdsl
