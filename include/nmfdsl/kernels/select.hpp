#pragma once
/// @file select.hpp
/// Rank selection in every column of a row-major matrix at once, vectorised across columns: the columns of a
/// channels-last map are its channels, so one pass over the map serves a whole vector of channels.
///
/// The method is a bisection on an order-preserving integer key of the values (key(a) < key(b) ⇔ a < b for
/// values that are not NaN; −0 counts as +0): each step counts, in every column at once, the values whose key is
/// at most the middle of the column's interval. At most 8·sizeof(T) + 1 steps whatever the data, so the work is
/// linear in the number of values; a column stops early once a step splits it exactly at the rank.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

namespace nmfdsl::kernels {

namespace detail {
template <class T>
using key_t = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;

/// The key of a scalar: its bits, with the magnitude bits flipped for negative values (an involution).
template <class T>
key_t<T> order_key(T v)
{
    v += T(0);  // −0 → +0
    key_t<T> bits;
    std::memcpy(&bits, &v, sizeof v);
    return bits < 0 ? bits ^ std::numeric_limits<key_t<T>>::max() : bits;
}
template <class T>
T from_order_key(key_t<T> key)
{
    const key_t<T> bits = key < 0 ? key ^ std::numeric_limits<key_t<T>>::max() : key;
    T v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}
} // namespace detail

/// For each column c of x [rows × columns] (row stride `stride` ≥ columns) and a rank k in [1, rows]: a threshold
/// t_c with  { r : x[r, c] > t_c } = { r : x[r, c] > the k-th smallest value of column c }  — t_c lies between the
/// k-th smallest value (included) and the next larger one. So "keep the values above t_c" keeps exactly the
/// rows − k values above the k-th smallest, minus those tied with it. Results do not depend on the thread count
/// (there is no threading inside); uses thread-local scratch of rows × one vector of keys.
template <class T>
void column_rank_thresholds(const T* x, std::size_t rows, std::size_t columns, std::size_t stride, std::size_t k,
                            T* threshold)
{
    using B = xsimd::batch<T>;
    using K = detail::key_t<T>;
    using KB = xsimd::batch<K, typename B::arch_type>;
    constexpr std::size_t L = B::size;
    static_assert(KB::size == L, "nmfdsl: the key and value vectors must have the same lane count");
    constexpr K flip = std::numeric_limits<K>::max();
    thread_local std::vector<K, xsimd::aligned_allocator<K>> keys;
    keys.resize(rows * L);
    for (std::size_t c0 = 0; c0 < columns; c0 += L) {
        const std::size_t width = std::min(L, columns - c0);
        // the group's keys [rows × L], lanes past the last column padded with zeros, and their range per lane
        KB lowest(std::numeric_limits<K>::max()), highest(std::numeric_limits<K>::min());
        for (std::size_t r = 0; r < rows; ++r) {
            B v;
            if (width == L) {
                v = B::load_unaligned(x + r * stride + c0);
            } else {
                alignas(B::arch_type::alignment()) std::array<T, L> lane{};
                std::copy(x + r * stride + c0, x + r * stride + c0 + width, lane.begin());
                v = B::load_aligned(lane.data());
            }
            const KB bits = xsimd::bitwise_cast<KB>(v + B(T(0)));
            const KB key = bits ^ xsimd::select(bits < KB(K(0)), KB(flip), KB(K(0)));
            key.store_aligned(keys.data() + r * L);
            lowest = xsimd::min(lowest, key);
            highest = xsimd::max(highest, key);
        }
        // invariant per lane: count(key ≤ below) < k ≤ count(key ≤ above); `below` starts under the minimum
        KB below = lowest - KB(K(1)), above = highest;
        const KB rank(static_cast<K>(k));
        auto open = below + KB(K(1)) < above;  // (not above − below > 1: the difference may overflow)
        for (std::size_t step = 0; xsimd::any(open) && step <= 8 * sizeof(T); ++step) {
            const KB middle = (below >> 1) + (above >> 1) + (below & above & KB(K(1)));  // ⌊(below + above)/2⌋
            // four independent counts: one dependent addition per row would bound the loop by its latency
            const KB one(K(1)), none(K(0));
            KB counts[4] = {none, none, none, none};
            const K* key = keys.data();
            std::size_t r = 0;
            for (; r + 4 <= rows; r += 4)
                for (std::size_t j = 0; j < 4; ++j)
                    counts[j] += xsimd::select(KB::load_aligned(key + (r + j) * L) <= middle, one, none);
            for (const K* rest = key + r * L; rest != key + rows * L; rest += L)
                counts[0] += xsimd::select(KB::load_aligned(rest) <= middle, one, none);
            const KB count = (counts[0] + counts[1]) + (counts[2] + counts[3]);
            const auto enough = count >= rank;
            above = xsimd::select(open && enough, middle, above);
            below = xsimd::select(open && !enough, middle, below);
            // a step that puts exactly k values at or under the middle has found the split: the lane is done
            open = open && (count != rank) && (below + KB(K(1)) < above);
        }
        alignas(KB::arch_type::alignment()) std::array<K, L> result;
        above.store_aligned(result.data());
        for (std::size_t j = 0; j < width; ++j) {
            // key −1 is the key of −0, which no canonical value has: the key below it splits the column the same way
            // and, unlike −0, compares as a float exactly as the keys do
            threshold[c0 + j] = detail::from_order_key<T>(result[j] == K(-1) ? K(-2) : result[j]);
        }
    }
}

} // namespace nmfdsl::kernels
