#pragma once
/// @file mpi.hpp
/// Data-parallel training over MPI (optional: include this header and link MPI, e.g. CMake's MPI::MPI_C; nothing
/// else in nmfdsl depends on MPI).
///
///   nmfdsl::mpi::world world(argc, argv);      // MPI_Init when started by mpirun, else one process
///   cfg.replicas = &world;                      // train_config: the Trainer splits every batch over the ranks
///
/// world implements nmfdsl::replica_group (core/replicas.hpp) on MPI_COMM_WORLD:
///  - sum(): an element-wise sum whose additions are done in rank order 0, 1, …, R−1 on every rank, so a run repeated
///    with the same number of ranks is bit-identical (MPI_Allreduce leaves the order to the library). Long vectors
///    (the gradients) are reduce-scattered with MPI_Alltoallv — rank r adds up block r of every rank's vector — and
///    the summed blocks are gathered with MPI_Allgatherv: 2(R−1)/R of the vector sent and received per rank, as a
///    ring allreduce. Short vectors (batch statistics) are gathered whole and summed on every rank (one collective).
///  - Every collective waits at most timeout() seconds. A rank that has waited that long asks the others, on a
///    communicator of its own, which of them are still alive; the lowest live rank prints one line naming the ranks
///    that never answered (dead or hung) and the job is stopped with MPI_Abort. A rank that exits or crashes is
///    reported by mpirun itself, which stops the job at once.
///  - check_same(): compares a list of settings (options, hashes of the data) across ranks and throws
///    settings_mismatch on every rank, naming the first difference, instead of letting ranks that disagree hang.
/// Only the thread that constructed the world may call it (MPI_THREAD_FUNNELED); the Trainer calls it from there.
///
/// Fault injection for tests: NMFDSL_MPI_FAULT=exit:<rank>:<k> makes that rank exit (code 3) and
/// NMFDSL_MPI_FAULT=hang:<rank>:<k> makes it stop responding, just before its k-th gradient sum (k ≥ 1).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1  // the C API only
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/replicas.hpp"

namespace nmfdsl::mpi {

/// Ranks started with different settings (thrown on every rank; what() names the first difference).
class settings_mismatch : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Time and volume of the sums so far, per kind: `gradients` are the float sums (one per training step),
/// `statistics` the double sums (BatchNorm statistics, losses, counts).
struct traffic {
    std::size_t calls = 0;
    std::size_t bytes = 0;    ///< payload summed (vector length × element size), per rank
    double seconds = 0;       ///< wall time spent in the sums, waiting included
};

/// FNV-1a over bytes, continuing from h: the fingerprint check_same compares.
inline std::uint64_t fingerprint(const void* data, std::size_t bytes, std::uint64_t h = 0xcbf29ce484222325ULL)
{
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < bytes; ++i)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

class world final : public replica_group {
public:
    /// Starts MPI when an MPI launcher (mpirun, mpiexec, srun) started this process; otherwise the world is this
    /// one process (size 1) and MPI is never touched. timeout_seconds bounds every wait for the other ranks.
    world(int& argc, char**& argv, double timeout_seconds = 300) : timeout_(timeout_seconds)
    {
        if (!started_by_launcher())
            return;
        int provided = 0;
        if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            throw std::runtime_error("nmfdsl: MPI_Init_thread failed");
        active_ = true;
        instance() = this;
        std::atexit(&finalize_at_exit);  // std::exit (e.g. a bad command line) still finalises
        int r = 0, n = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &r);
        MPI_Comm_size(MPI_COMM_WORLD, &n);
        rank_ = std::size_t(r);
        size_ = std::size_t(n);
        MPI_Comm_dup(MPI_COMM_WORLD, &watch_);
        read_fault();
    }
    ~world() override
    {
        if (active_ && !finalized_) {
            finalized_ = true;
            MPI_Comm_free(&watch_);
            MPI_Finalize();
        }
        if (instance() == this)
            instance() = nullptr;
    }
    world(const world&) = delete;
    world& operator=(const world&) = delete;

    std::size_t rank() const override { return rank_; }
    std::size_t size() const override { return size_; }
    /// true when MPI was started (the process was launched by mpirun or similar).
    bool launched() const { return active_; }
    double timeout() const { return timeout_; }
    void set_timeout(double seconds)
    {
        if (!(seconds > 0))
            throw argument_error("nmfdsl: mpi::world: the timeout must be > 0 seconds, got " + std::to_string(seconds));
        timeout_ = seconds;
    }
    const traffic& gradient_traffic() const { return gradients_; }
    const traffic& statistics_traffic() const { return statistics_; }

    void sum(std::span<double> values) override { ordered_sum(values, MPI_DOUBLE, statistics_, "a statistics sum"); }
    void sum(std::span<float> values) override
    {
        ++gradient_sums_;
        inject_fault();
        ordered_sum(values, MPI_FLOAT, gradients_, "a gradient sum");
    }

    /// Compares settings (name, value) across the ranks; on a difference every rank throws settings_mismatch,
    /// whose message names the first differing setting, the first rank that differs from rank 0, and both values.
    void check_same(const std::vector<std::pair<std::string, std::string>>& settings)
    {
        if (size_ == 1)
            return;
        std::vector<std::uint64_t> mine;
        for (const auto& [name, value] : settings) {
            const std::string entry = name + '=' + value;
            mine.push_back(fingerprint(entry.data(), entry.size()));
        }
        // counts, then every rank's fingerprints
        std::uint64_t count = mine.size();
        std::vector<std::uint64_t> counts(size_);
        MPI_Request req;
        MPI_Iallgather(&count, 1, MPI_UINT64_T, counts.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD, &req);
        wait(req, "the settings check");
        std::vector<int> recv_counts(size_), displs(size_);
        std::size_t total = 0;
        for (std::size_t r = 0; r < size_; ++r) {
            recv_counts[r] = int(counts[r]);
            displs[r] = int(total);
            total += counts[r];
        }
        std::vector<std::uint64_t> all(total);
        MPI_Iallgatherv(mine.data(), int(count), MPI_UINT64_T, all.data(), recv_counts.data(), displs.data(),
                        MPI_UINT64_T, MPI_COMM_WORLD, &req);
        wait(req, "the settings check");
        // the first (setting, rank) that differs from rank 0, found alike on every rank
        std::size_t bad_rank = 0, bad_index = 0;
        for (std::size_t i = 0; i < counts[0] && !bad_rank; ++i)
            for (std::size_t r = 1; r < size_ && !bad_rank; ++r)
                if (i >= counts[r] || all[displs[r] + i] != all[i]) {
                    bad_rank = r;
                    bad_index = i;
                }
        for (std::size_t r = 1; r < size_ && !bad_rank; ++r)
            if (counts[r] != counts[0]) {
                bad_rank = r;
                bad_index = counts[0];
            }
        if (!bad_rank)
            return;
        // the differing rank tells rank 0 its value
        auto describe = [&](std::size_t i) {
            return i < settings.size() ? settings[i].first + " " + settings[i].second : std::string("nothing");
        };
        std::string message;
        if (rank_ == bad_rank) {
            const std::string text = describe(bad_index);
            MPI_Send(text.data(), int(text.size()), MPI_CHAR, 0, tag_mismatch, watch_);
        } else if (rank_ == 0) {
            MPI_Status st;
            MPI_Probe(int(bad_rank), tag_mismatch, watch_, &st);
            int n = 0;
            MPI_Get_count(&st, MPI_CHAR, &n);
            std::string theirs(std::size_t(n), '\0');
            MPI_Recv(theirs.data(), n, MPI_CHAR, int(bad_rank), tag_mismatch, watch_, MPI_STATUS_IGNORE);
            message = "nmfdsl: the ranks were started with different settings: rank " + std::to_string(bad_rank) +
                      " has " + theirs + ", rank 0 has " + describe(bad_index);
        }
        if (message.empty())
            message = "nmfdsl: the ranks were started with different settings (rank 0 names the difference)";
        throw settings_mismatch(message);
    }

    /// Stops every rank of the job (MPI_Abort) with the exit code; without MPI, std::exit(code).
    [[noreturn]] void abort(int code)
    {
        std::fflush(stdout);
        std::fflush(stderr);
        if (active_)
            MPI_Abort(MPI_COMM_WORLD, code);
        std::exit(code);
    }

    /// Waits until every rank arrives (with the timeout).
    void barrier(const char* what = "a barrier")
    {
        if (size_ == 1)
            return;
        MPI_Request req;
        MPI_Ibarrier(MPI_COMM_WORLD, &req);
        wait(req, what);
    }

private:
    static constexpr int tag_alive = 71, tag_mismatch = 72;
    static constexpr std::size_t scatter_threshold = 4096;  ///< vectors at least this long are reduce-scattered

    static bool started_by_launcher()
    {
        for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
            if (std::getenv(v))
                return true;
        return false;
    }

    static world*& instance()
    {
        static world* w = nullptr;
        return w;
    }
    static void finalize_at_exit()
    {
        if (world* w = instance(); w && w->active_ && !w->finalized_) {
            w->finalized_ = true;
            MPI_Finalize();
        }
    }

    template <class T>
    void ordered_sum(std::span<T> values, MPI_Datatype type, traffic& t, const char* what)
    {
        if (size_ == 1 || values.empty())
            return;
        const auto start = std::chrono::steady_clock::now();
        const std::size_t n = values.size(), R = size_;
        if (n < scatter_threshold) {
            // every rank gathers every vector and adds them up in rank order
            buffer_.resize(n * R * sizeof(T));
            T* all = reinterpret_cast<T*>(buffer_.data());
            MPI_Request req;
            MPI_Iallgather(values.data(), int(n), type, all, int(n), type, MPI_COMM_WORLD, &req);
            wait(req, what);
            for (std::size_t i = 0; i < n; ++i) {
                T s = all[i];
                for (std::size_t r = 1; r < R; ++r)
                    s += all[r * n + i];
                values[i] = s;
            }
        } else {
            // reduce-scatter: rank r receives block r of every rank and adds them in rank order; then all-gather
            std::vector<int> len(R), off(R);
            for (std::size_t r = 0; r < R; ++r) {
                const std::size_t b = n / R, extra = n % R;
                off[r] = int(r * b + std::min(r, extra));
                len[r] = int(b + (r < extra ? 1 : 0));
            }
            const std::size_t mine = std::size_t(len[rank_]);
            buffer_.resize(mine * R * sizeof(T));
            T* blocks = reinterpret_cast<T*>(buffer_.data());
            std::vector<int> recv_len(R, int(mine)), recv_off(R);
            for (std::size_t r = 0; r < R; ++r)
                recv_off[r] = int(r * mine);
            MPI_Request req;
            MPI_Ialltoallv(values.data(), len.data(), off.data(), type, blocks, recv_len.data(), recv_off.data(), type,
                           MPI_COMM_WORLD, &req);
            wait(req, what);
            T* out = values.data() + off[rank_];
            for (std::size_t i = 0; i < mine; ++i) {
                T s = blocks[i];
                for (std::size_t r = 1; r < R; ++r)
                    s += blocks[r * mine + i];
                out[i] = s;
            }
            MPI_Iallgatherv(MPI_IN_PLACE, 0, type, values.data(), len.data(), off.data(), type, MPI_COMM_WORLD, &req);
            wait(req, what);
        }
        ++t.calls;
        t.bytes += n * sizeof(T);
        t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }

    /// Completes req, or stops the job after timeout_ seconds (see the file's comment).
    void wait(MPI_Request& req, const char* what)
    {
        ++collectives_;
        const auto start = std::chrono::steady_clock::now();
        const auto deadline = start + std::chrono::duration<double>(timeout_);
        int done = 0;
        for (;;) {
            MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            if (done)
                return;
            const auto now = std::chrono::steady_clock::now();
            if (now > deadline)
                stop_unresponsive(what);
            // the first 2 ms: poll, only yielding the core (most waits are a rank a little behind at the same layer);
            // longer: the other ranks are far behind, poll every 50 µs and leave the cores to them
            if (now - start < std::chrono::milliseconds(2))
                std::this_thread::yield();
            else
                std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    }

    /// This rank has waited timeout_ seconds in collective number collectives_: find the ranks that no longer
    /// answer, name them (lowest live rank), and stop the job.
    [[noreturn]] void stop_unresponsive(const char* what)
    {
        const std::uint64_t me = collectives_;
        std::vector<std::uint64_t> theirs(size_, 0);
        std::vector<MPI_Request> sends(size_, MPI_REQUEST_NULL), recvs(size_, MPI_REQUEST_NULL);
        for (std::size_t r = 0; r < size_; ++r)
            if (r != rank_) {
                MPI_Isend(&me, 1, MPI_UINT64_T, int(r), tag_alive, watch_, &sends[r]);
                MPI_Irecv(&theirs[r], 1, MPI_UINT64_T, int(r), tag_alive, watch_, &recvs[r]);
            }
        // the live ranks reach this point within about one step of each other
        const double grace = std::clamp(timeout_ / 4, 2.0, 30.0);
        const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace);
        std::vector<bool> alive(size_, false);
        alive[rank_] = true;
        while (std::chrono::steady_clock::now() < until) {
            bool all = true;
            for (std::size_t r = 0; r < size_; ++r) {
                if (alive[r])
                    continue;
                int done = 0;
                MPI_Test(&recvs[r], &done, MPI_STATUS_IGNORE);
                alive[r] = done != 0;
                all = all && alive[r];
            }
            if (all)
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        std::string missing;
        for (std::size_t r = 0; r < size_; ++r)
            if (!alive[r])
                missing += (missing.empty() ? "" : ", ") + std::to_string(r);
        std::size_t lowest_live = 0;
        while (!alive[lowest_live])
            ++lowest_live;
        if (rank_ == lowest_live) {
            std::fprintf(stderr,
                         "nmfdsl: MPI rank%s %s did not reach %s (collective %llu) within %.0f s: dead or hung; "
                         "stopping the job\n",
                         missing.find(',') == std::string::npos ? "" : "s",
                         missing.empty() ? "(none: all ranks are waiting)" : missing.c_str(), what,
                         static_cast<unsigned long long>(me), timeout_);
            std::fflush(stderr);
        } else {
            std::this_thread::sleep_for(std::chrono::seconds(2));  // let the reporting rank print first
        }
        MPI_Abort(MPI_COMM_WORLD, 4);
        std::abort();  // not reached
    }

    void read_fault()
    {
        const char* f = std::getenv("NMFDSL_MPI_FAULT");
        if (!f)
            return;
        char kind[8] = {};
        unsigned long long r = 0, k = 0;
        if (std::sscanf(f, "%7[a-z]:%llu:%llu", kind, &r, &k) == 3 && k >= 1) {
            fault_kind_ = kind;
            fault_rank_ = r;
            fault_at_ = k;
        }
    }
    void inject_fault() const
    {
        if (fault_kind_.empty() || rank_ != fault_rank_ || gradient_sums_ != fault_at_)
            return;
        std::fprintf(stderr, "nmfdsl: NMFDSL_MPI_FAULT: rank %zu %s before gradient sum %zu\n", rank_,
                     fault_kind_ == "exit" ? "exits" : "hangs", gradient_sums_);
        std::fflush(stderr);
        if (fault_kind_ == "exit")
            std::_Exit(3);
        for (;;)
            std::this_thread::sleep_for(std::chrono::seconds(60));
    }

    bool active_ = false, finalized_ = false;
    std::size_t rank_ = 0, size_ = 1;
    double timeout_;
    MPI_Comm watch_ = MPI_COMM_NULL;  ///< for the liveness questions of stop_unresponsive
    std::uint64_t collectives_ = 0;
    std::size_t gradient_sums_ = 0;
    std::vector<unsigned char> buffer_;
    traffic gradients_, statistics_;
    std::string fault_kind_;
    std::size_t fault_rank_ = 0, fault_at_ = 0;
};

} // namespace nmfdsl::mpi
