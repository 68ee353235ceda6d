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
///
/// On Linux a buffer of at least huge_buffer_bytes (2 MiB) is mapped on its own, starting on a 2 MiB boundary, and
/// marked for transparent huge pages (madvise(MADV_HUGEPAGE); Debian's default THP mode honours only marked memory).
/// The kernels stream activations of several MiB (h and its gradient at batch 128); with 4 KiB pages that is a TLB
/// miss every 4 KiB, dearer still under a hypervisor's nested paging. The mark is a hint: where THP is off the buffer
/// keeps 4 KiB pages. Smaller buffers, and all under AddressSanitizer, come from the C heap, 64-byte aligned.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include <xsimd/xsimd.hpp>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

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

// Under AddressSanitizer every buffer stays on the heap, where ASan checks accesses past its ends.
#if defined(__SANITIZE_ADDRESS__)
#define NMFDSL_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NMFDSL_UNDER_ASAN 1
#endif
#endif
#if defined(__linux__) && !defined(NMFDSL_UNDER_ASAN)
#define NMFDSL_MAP_HUGE_BUFFERS 1
#endif

/// Whether buffers of at least huge_buffer_bytes are mapped on their own for huge pages (see the file comment): on
/// Linux, except under AddressSanitizer.
#if defined(NMFDSL_MAP_HUGE_BUFFERS)
inline constexpr bool maps_huge_buffers = true;
#else
inline constexpr bool maps_huge_buffers = false;
#endif
/// The size of a huge page on x86-64 and of the alignment of a mapped buffer; also the smallest buffer mapped.
inline constexpr std::size_t huge_buffer_bytes = std::size_t(2) << 20;

namespace detail {
#if defined(NMFDSL_MAP_HUGE_BUFFERS)
/// bytes rounded up to whole pages of the system's page size
inline std::size_t whole_pages(std::size_t bytes)
{
    static const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    return (bytes + page - 1) / page * page;
}

/// A private anonymous mapping of `bytes` (zero-filled) starting on a huge_buffer_bytes boundary, marked for huge
/// pages; nullptr if the system refuses. It spans whole_pages(bytes): the tail past the last 2 MiB boundary keeps small
/// pages, so no buffer holds more than a page of memory it did not ask for.
inline void* map_huge_buffer(std::size_t bytes)
{
    const std::size_t length = whole_pages(bytes);
    if (length > static_cast<std::size_t>(-1) - huge_buffer_bytes)
        return nullptr;
    // over-map by one huge page, then give back the unaligned head and the tail
    void* raw = mmap(nullptr, length + huge_buffer_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return nullptr;
    const auto base = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t start = (base + huge_buffer_bytes - 1) & ~std::uintptr_t(huge_buffer_bytes - 1);
    const std::uintptr_t end = start + length, mapped_end = base + length + huge_buffer_bytes;
    if (start > base)
        munmap(raw, start - base);
    if (mapped_end > end)
        munmap(reinterpret_cast<void*>(end), mapped_end - end);
    madvise(reinterpret_cast<void*>(start), length, MADV_HUGEPAGE);  // a hint: refused, the pages stay small
    return reinterpret_cast<void*>(start);
}

inline void unmap_huge_buffer(void* p, std::size_t bytes) noexcept { munmap(p, whole_pages(bytes)); }
#endif

/// Storage of `bytes` aligned to `align` (a power of two up to 2 MiB): mapped for huge pages from huge_buffer_bytes
/// up where maps_huge_buffers, else from the C heap. nullptr if none is to be had. Freed by release_bytes(p, bytes).
inline void* acquire_bytes(std::size_t bytes, std::size_t align)
{
#if defined(NMFDSL_MAP_HUGE_BUFFERS)
    if (bytes >= huge_buffer_bytes)
        return map_huge_buffer(bytes);
#endif
    return xsimd::aligned_malloc(bytes, align);
}

inline void release_bytes(void* p, std::size_t bytes) noexcept
{
#if defined(NMFDSL_MAP_HUGE_BUFFERS)
    if (bytes >= huge_buffer_bytes) {
        unmap_huge_buffer(p, bytes);
        return;
    }
#endif
    (void)bytes;
    xsimd::aligned_free(p);
}
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

    static_assert(Align > 0 && (Align & (Align - 1)) == 0 && Align <= huge_buffer_bytes,
                  "counting_allocator: Align must be a power of two of at most 2 MiB");

    T* allocate(std::size_t n)
    {
        if (n > static_cast<std::size_t>(-1) / sizeof(T))
            throw std::bad_array_new_length();
        void* p = detail::acquire_bytes(n * sizeof(T), Align);
        if (p == nullptr)
            throw std::bad_alloc();
        detail::on_allocate(n * sizeof(T));
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) noexcept
    {
        detail::on_free(n * sizeof(T));
        detail::release_bytes(p, n * sizeof(T));
    }

    template <class U>
    bool operator==(const counting_allocator<U, Align>&) const noexcept
    {
        return true;
    }
};

} // namespace nmfdsl::memory
