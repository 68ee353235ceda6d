#pragma once
/// @file parallel.hpp
/// A small persistent thread pool. parallel_for(n, f) runs f(0) … f(n−1), each exactly once, on the pool's threads
/// (the caller works too) and returns when all are done. Work is split into the *tasks* the caller defines, and
/// kernels make each task's result independent of which thread runs it and reduce partial results in task order,
/// so results do not depend on the thread count. A parallel_for inside a task runs serially.
/// The thread count comes from set_threads(n), else the NMFDSL_THREADS environment variable, else
/// std::thread::hardware_concurrency().
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace nmfdsl {

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
            throw std::invalid_argument("nmfdsl: the thread count must be at least 1, got 0");
        if (n == threads())
            return;
        stop();
        start(n);
    }

    template <class F>
    void parallel_for(std::size_t n, F&& f)
    {
        if (n == 0)
            return;
        if (n == 1 || workers_.empty() || inside_task()) {
            for (std::size_t i = 0; i < n; ++i)
                f(i);
            return;
        }
        std::function<void(std::size_t)> job = [&f](std::size_t i) { f(i); };
        {
            std::unique_lock lock(mutex_);
            job_ = &job;
            tasks_ = n;
            next_.store(0);
            pending_ = n;
            ++generation_;
        }
        wake_.notify_all();
        work();
        std::unique_lock lock(mutex_);
        done_.wait(lock, [&] { return pending_ == 0; });
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
        for (std::size_t i = 1; i < n; ++i)
            workers_.emplace_back([this] { loop(); });
    }

    void stop()
    {
        {
            std::unique_lock lock(mutex_);
            quit_ = true;
        }
        wake_.notify_all();
        for (auto& t : workers_)
            t.join();
        workers_.clear();
    }

    void loop()
    {
        std::size_t seen = 0;
        for (;;) {
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
                if (quit_)
                    return;
                seen = generation_;
            }
            work();
        }
    }

    /// Takes tasks until none are left.
    void work()
    {
        inside_task() = true;
        for (;;) {
            const std::size_t i = next_.fetch_add(1);
            if (i >= tasks_)
                break;
            try {
                (*job_)(i);
            } catch (...) {
                std::unique_lock lock(mutex_);
                if (!error_)
                    error_ = std::current_exception();
            }
            std::unique_lock lock(mutex_);
            if (--pending_ == 0)
                done_.notify_all();
        }
        inside_task() = false;
    }

    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    std::function<void(std::size_t)>* job_ = nullptr;
    std::size_t tasks_ = 0, pending_ = 0, generation_ = 0;
    std::atomic<std::size_t> next_{0};
    std::exception_ptr error_;
    bool quit_ = false;
};

/// Sets the global pool's thread count (≥ 1).
inline void set_threads(std::size_t n) { thread_pool::global().set_threads(n); }
inline std::size_t threads() { return thread_pool::global().threads(); }

template <class F>
void parallel_for(std::size_t n, F&& f)
{
    thread_pool::global().parallel_for(n, std::forward<F>(f));
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
