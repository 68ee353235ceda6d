#pragma once
/// @file parallel.hpp
/// A small persistent thread pool. parallel_for(n, f) runs f(0) … f(n−1), each exactly once, on the pool's threads
/// (the caller works too) and returns when all are done. Work is split into the *tasks* the caller defines, and
/// kernels make each task's result independent of which thread runs it and reduce partial results in task order,
/// so results do not depend on the thread count. A parallel_for inside a task runs serially.
/// The thread count comes from set_threads(n), else the NMFDSL_THREADS environment variable, else
/// std::thread::hardware_concurrency().
/// Between jobs a worker polls for the next one for spin_time before it sleeps, and the caller polls for the last
/// task's end the same way: a network's layers call parallel_for about a hundred times per training step, and
/// waking a sleeping thread costs tens of microseconds on a virtual machine.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cpu.hpp"
#include "error.hpp"
#include "function_ref.hpp"

namespace nmfdsl {

namespace detail {
/// A hint to the core that this thread is waiting in a polling loop.
inline void cpu_relax()
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

/// Polls done() until it is true or `limit` has passed; returns its last value.
template <class Done>
bool poll_for(std::chrono::microseconds limit, Done done)
{
    const auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (done())
                return true;
            cpu_relax();
        }
        if (std::chrono::steady_clock::now() >= until)
            return done();
    }
}
} // namespace detail

class thread_pool {
public:
    static thread_pool& global()
    {
        static thread_pool pool(default_threads());
        return pool;
    }

    explicit thread_pool(std::size_t threads) { start(threads); }
    ~thread_pool() { stop(); }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    std::size_t threads() const { return workers_.size() + 1; }

    /// Changes the number of threads (≥ 1, the caller included).
    void set_threads(std::size_t n)
    {
        if (n == 0)
            throw argument_error("nmfdsl: the thread count must be at least 1, got 0");
        if (n == threads())
            return;
        stop();
        start(n);
    }

    /// Runs f(i) for i in [0, n) over the pool (the caller included) and returns when all are done; the first
    /// exception a task throws is rethrown here.
    void parallel_for(std::size_t n, function_ref<void(std::size_t)> f)
    {
        if (n == 0)
            return;
        if (n == 1 || workers_.empty() || inside_task() || n > index_mask) {
            for (std::size_t i = 0; i < n; ++i)
                f(i);
            return;
        }
        function_ref<void(std::size_t)> job = f;
        std::uint64_t generation;
        {
            std::unique_lock lock(mutex_);
            generation = ++generation_;
            job_ = &job;
            tasks_ = n;
            pending_.store(n);
            next_.store(tag(generation));
            posted_.store(generation);
        }
        wake_.notify_all();
        work(generation, n, &job);
        detail::poll_for(spin_time, [&] { return pending_.load() == 0; });
        std::unique_lock lock(mutex_);
        done_.wait(lock, [&] { return pending_.load() == 0; });
        job_ = nullptr;
        if (error_) {
            auto e = error_;
            error_ = nullptr;
            std::rethrow_exception(e);
        }
    }

    static std::size_t default_threads()
    {
        if (const char* env = std::getenv("NMFDSL_THREADS")) {
            const long v = std::strtol(env, nullptr, 10);
            if (v >= 1)
                return static_cast<std::size_t>(v);
        }
        return std::max<std::size_t>(1, std::thread::hardware_concurrency());
    }

private:
    static bool& inside_task()
    {
        thread_local bool inside = false;
        return inside;
    }

    void start(std::size_t n)
    {
        quit_ = false;
        stopping_.store(false);
        for (std::size_t i = 1; i < n; ++i)
            workers_.emplace_back([this] { loop(); });
    }

    void stop()
    {
        {
            std::unique_lock lock(mutex_);
            quit_ = true;
            stopping_.store(true);
        }
        wake_.notify_all();
        for (auto& t : workers_)
            t.join();
        workers_.clear();
    }

    void loop()
    {
        std::uint64_t seen = 0;
        for (;;) {
            std::size_t tasks;
            function_ref<void(std::size_t)>* job;
            detail::poll_for(spin_time, [&] { return posted_.load() != seen || stopping_.load(); });
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
                if (quit_)
                    return;
                seen = generation_;
                tasks = tasks_;
                job = job_;
            }
            work(seen, tasks, job);
        }
    }

    /// The task counter: the generation in the high 32 bits, the next task index in the low 32.
    static constexpr std::uint64_t index_mask = 0xffffffffu;
    static constexpr std::chrono::microseconds spin_time{100};
    static std::uint64_t tag(std::uint64_t generation) { return (generation & index_mask) << 32; }

    /// Takes tasks of `generation` until none are left. A task is claimed only while the counter still belongs to
    /// this generation: a thread that arrives late (the caller already returned and started the next parallel_for)
    /// must neither run nor skip a task of the next one.
    void work(std::uint64_t generation, std::size_t tasks, function_ref<void(std::size_t)>* job)
    {
        inside_task() = true;
        for (;;) {
            std::uint64_t v = next_.load();
            bool claimed = false;
            while ((v & ~index_mask) == tag(generation) && (v & index_mask) < tasks)
                if (next_.compare_exchange_weak(v, v + 1)) {
                    claimed = true;
                    break;
                }
            if (!claimed)
                break;
            try {
                (*job)(static_cast<std::size_t>(v & index_mask));
            } catch (...) {
                std::unique_lock lock(mutex_);
                if (!error_)
                    error_ = std::current_exception();
            }
            if (pending_.fetch_sub(1) == 1) {  // the last task: wake the caller if it sleeps
                std::unique_lock lock(mutex_);
                done_.notify_all();
            }
        }
        inside_task() = false;
    }

    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    function_ref<void(std::size_t)>* job_ = nullptr;
    std::size_t tasks_ = 0;
    std::atomic<std::size_t> pending_{0};  ///< tasks of the current job not yet finished
    std::uint64_t generation_ = 0;
    std::atomic<std::uint64_t> posted_{0};  ///< generation_, for workers polling without the lock
    std::atomic<bool> stopping_{false};
    std::atomic<std::uint64_t> next_{0};
    std::exception_ptr error_;
    bool quit_ = false;
};

/// Sets the global pool's thread count (≥ 1).
inline void set_threads(std::size_t n) { thread_pool::global().set_threads(n); }
inline std::size_t threads() { return thread_pool::global().threads(); }

inline void parallel_for(std::size_t n, function_ref<void(std::size_t)> f)
{
    thread_pool::global().parallel_for(n, f);
}

/// Runs f(begin, end) over [0, n) in chunks of `chunk` items (the last may be shorter), spread over the pool. The
/// chunking depends only on n and chunk, never on the thread count.
template <class F>
void parallel_chunks(std::size_t n, std::size_t chunk, F&& f)
{
    if (chunk == 0)
        chunk = 1;
    const std::size_t tasks = (n + chunk - 1) / chunk;
    parallel_for(tasks, [&](std::size_t t) { f(t * chunk, std::min(n, (t + 1) * chunk)); });
}

} // namespace nmfdsl
