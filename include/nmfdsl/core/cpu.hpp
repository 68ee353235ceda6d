#pragma once
/// @file cpu.hpp
/// The instruction sets a program was compiled for, and a check at start that the CPU has them. A binary built with
/// -march=native (NMFDSL_NATIVE) and copied to an older machine would otherwise die with SIGILL somewhere inside a
/// kernel; instead, before main, it prints one line naming the missing instruction set and exits with status 1.
/// The check itself is compiled for the x86-64 baseline, so that it runs on any x86-64 CPU.
#include <array>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "function_ref.hpp"

namespace nmfdsl::cpu {

/// Instruction sets the kernels' code may use, in the order they are checked (older before newer).
enum class isa { sse4_2, avx, fma, avx2, avx512f, avx512dq, avx512bw, avx512vl };

constexpr std::string_view isa_name(isa i)
{
    switch (i) {
    case isa::sse4_2: return "SSE4.2";
    case isa::avx: return "AVX";
    case isa::fma: return "FMA";
    case isa::avx2: return "AVX2";
    case isa::avx512f: return "AVX-512F";
    case isa::avx512dq: return "AVX-512DQ";
    case isa::avx512bw: return "AVX-512BW";
    default: return "AVX-512VL";
    }
}

/// The instruction sets this translation unit is compiled for (the compiler's predefined macros).
inline constexpr auto compiled_isas = [] {
    constexpr std::array<bool, 8> on{
#if defined(__SSE4_2__)
        true,
#else
        false,
#endif
#if defined(__AVX__)
        true,
#else
        false,
#endif
#if defined(__FMA__)
        true,
#else
        false,
#endif
#if defined(__AVX2__)
        true,
#else
        false,
#endif
#if defined(__AVX512F__)
        true,
#else
        false,
#endif
#if defined(__AVX512DQ__)
        true,
#else
        false,
#endif
#if defined(__AVX512BW__)
        true,
#else
        false,
#endif
#if defined(__AVX512VL__)
        true,
#else
        false,
#endif
    };
    struct list {
        std::array<isa, 8> items{};
        std::size_t size = 0;
    } l;
    for (std::size_t i = 0; i < on.size(); ++i)
        if (on[i])
            l.items[l.size++] = static_cast<isa>(i);
    return l;
}();

/// The first of `required` that `cpu_has` says is missing, or nothing.
inline std::optional<isa> first_missing(const isa* required, std::size_t count, function_ref<bool(isa)> cpu_has)
{
    for (std::size_t i = 0; i < count; ++i)
        if (!cpu_has(required[i]))
            return required[i];
    return std::nullopt;
}

#if defined(__x86_64__) && defined(__GNUC__)
/// Whether this CPU has instruction set i (CPUID, through the compiler's runtime).
[[gnu::target("arch=x86-64")]] inline bool cpu_has(isa i)
{
    __builtin_cpu_init();
    switch (i) {
    case isa::sse4_2: return __builtin_cpu_supports("sse4.2");
    case isa::avx: return __builtin_cpu_supports("avx");
    case isa::fma: return __builtin_cpu_supports("fma");
    case isa::avx2: return __builtin_cpu_supports("avx2");
    case isa::avx512f: return __builtin_cpu_supports("avx512f");
    case isa::avx512dq: return __builtin_cpu_supports("avx512dq");
    case isa::avx512bw: return __builtin_cpu_supports("avx512bw");
    default: return __builtin_cpu_supports("avx512vl");
    }
}

namespace detail {
/// Runs before main, ahead of ordinary static initialisers (priority 101), in every program that includes nmfdsl
/// (each translation unit registers it; it is idempotent).
[[gnu::constructor(101), gnu::target("arch=x86-64")]] inline void check_cpu_at_start()
{
    for (std::size_t k = 0; k < compiled_isas.size; ++k) {
        const isa need = compiled_isas.items[k];
        if (!cpu_has(need)) {
            const std::string_view name = isa_name(need);
            std::fprintf(stderr,
                         "nmfdsl: this program was compiled for %.*s (e.g. -march=native on another machine), which "
                         "this CPU lacks; rebuild it here, or without NMFDSL_NATIVE\n",
                         static_cast<int>(name.size()), name.data());
            std::_Exit(1);
        }
    }
}
} // namespace detail
#else
/// Other architectures (aarch64: NEON is part of the baseline) need no check.
inline bool cpu_has(isa) { return true; }
#endif

} // namespace nmfdsl::cpu
