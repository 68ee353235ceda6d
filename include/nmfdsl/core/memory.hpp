#pragma once
/// @file memory.hpp
/// Memory accounting for the library's own buffers. Every nmfdsl::aligned_vector — parameters, gradients,
/// optimiser state, activations, the state a layer keeps for its backward, kernel scratch — allocates through
/// counting_allocator, which keeps the bytes currently held and their high-water mark:
///
///     nmfdsl::memory::reset_peak();
///     trainer.step(...);
///     std::size_t need = nmfdsl::memory::peak_bytes();   // the step's peak, in bytes of library buffers
///
/// Not counted: xtensor tensors the caller passes in or receives, std::vector temporaries of the slow reference
/// gradient modes, and the allocator's own overhead. The counters are process-wide and thread-safe.
#include <atomic>
#include <cstddef>
#include <new>

#include <xsimd/xsimd.hpp>

namespace nmfdsl::memory {

namespace detail {
inline std::atomic<std::size_t>& current_counter()
{
    static std::atomic<std::size_t> c{0};
    return c;
}
inline std::atomic<std::size_t>& peak_counter()
{
    static std::atomic<std::size_t> p{0};
    return p;
}
inline void on_allocate(std::size_t bytes)
{
    const std::size_t now = current_counter().fetch_add(bytes, std::memory_order_relaxed) + bytes;
    std::size_t peak = peak_counter().load(std::memory_order_relaxed);
    while (now > peak && !peak_counter().compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
}
inline void on_free(std::size_t bytes) { current_counter().fetch_sub(bytes, std::memory_order_relaxed); }
} // namespace detail

/// Bytes held in library buffers right now.
inline std::size_t current_bytes() { return detail::current_counter().load(std::memory_order_relaxed); }

/// The most bytes held at once since the start or the last reset_peak().
inline std::size_t peak_bytes() { return detail::peak_counter().load(std::memory_order_relaxed); }

/// Starts a new measurement: the peak becomes what is held now.
inline void reset_peak() { detail::peak_counter().store(current_bytes(), std::memory_order_relaxed); }

/// A standard allocator returning `Align`-byte aligned storage and counting it (see the file comment).
template <class T, std::size_t Align = 64>
struct counting_allocator {
    using value_type = T;
    template <class U>
    struct rebind {
        using other = counting_allocator<U, Align>;
    };

    counting_allocator() noexcept = default;
    template <class U>
    counting_allocator(const counting_allocator<U, Align>&) noexcept
    {
    }

    T* allocate(std::size_t n)
    {
        if (n > static_cast<std::size_t>(-1) / sizeof(T))
            throw std::bad_array_new_length();
        void* p = xsimd::aligned_malloc(n * sizeof(T), Align);
        if (p == nullptr)
            throw std::bad_alloc();
        detail::on_allocate(n * sizeof(T));
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) noexcept
    {
        detail::on_free(n * sizeof(T));
        xsimd::aligned_free(p);
    }

    template <class U>
    bool operator==(const counting_allocator<U, Align>&) const noexcept
    {
        return true;
    }
};

} // namespace nmfdsl::memory
