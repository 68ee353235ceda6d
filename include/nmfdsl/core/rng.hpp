#pragma once
/// @file rng.hpp
/// Deterministic random numbers: xoshiro256** seeded through splitmix64. The float conversions are our own, so the
/// same seed gives the same numbers with every standard library (no std::*_distribution anywhere).
#include <array>
#include <cstdint>

namespace nmfdsl {

/// Strong type for seeds, so that `Model{seed{21}}` cannot be confused with a size.
struct seed {
    std::uint64_t value;
};

class rng {
public:
    explicit rng(seed s = seed{0}) { reseed(s); }

    void reseed(seed s)
    {
        std::uint64_t x = s.value;
        for (auto& w : state_) {
            x += 0x9e3779b97f4a7c15ULL;
            std::uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            w = z ^ (z >> 31);
        }
    }

    std::uint64_t next()
    {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const std::uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    /// Uniform on [0, 1) with the full mantissa of T (24 bits for float, 53 for double).
    template <class T>
    T uniform01()
    {
        if constexpr (sizeof(T) <= 4)
            return static_cast<T>(static_cast<float>(next() >> 40) * 0x1.0p-24f);
        else
            return static_cast<T>(static_cast<double>(next() >> 11) * 0x1.0p-53);
    }

    /// Uniform on [lo, hi).
    template <class T>
    T uniform(T lo, T hi)
    {
        return lo + (hi - lo) * uniform01<T>();
    }

    /// Uniform integer in [0, n); n must be > 0. Uses the multiply-shift reduction (bias below 2^-32 for n < 2^32).
    std::uint64_t below(std::uint64_t n)
    {
        return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
    }

    /// The full generator state, for checkpoints.
    std::array<std::uint64_t, 4> state() const { return {state_[0], state_[1], state_[2], state_[3]}; }
    void set_state(const std::array<std::uint64_t, 4>& s)
    {
        for (int i = 0; i < 4; ++i)
            state_[i] = s[i];
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t state_[4]{};
};

} // namespace nmfdsl
