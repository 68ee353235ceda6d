#pragma once
/// @file replicas.hpp
/// Data-parallel training runs R replicas of one model (e.g. MPI ranks), each on its own slice of every global
/// batch. This header is the core's whole view of that: an interface through which the few computations that depend
/// on the whole batch (BatchNorm's batch statistics, the HaH cost's mean over images) and the Trainer's gradient and
/// metric sums reach the other replicas. The core implements no transport; <nmfdsl/mpi.hpp> implements it over MPI.
/// With no group active (the default) every function here is the identity: one process, as before.
#include <cstddef>
#include <span>

namespace nmfdsl {

/// R replicas that run the same program on different slices of each global batch.
/// Contract of both sums: element-wise over all replicas, in place, every replica gets the same result, and the
/// additions are done in replica order 0, 1, …, R−1 (so a run repeated with the same R is bit-identical). They are
/// collective: every replica calls them in the same sequence with spans of the same length.
class replica_group {
public:
    virtual ~replica_group() = default;
    virtual std::size_t rank() const = 0;  ///< this replica, 0 … size()−1
    virtual std::size_t size() const = 0;  ///< R ≥ 1
    virtual void sum(std::span<double> values) = 0;
    virtual void sum(std::span<float> values) = 0;
};

namespace detail {
/// Per thread: the layers of a model run on the thread that called forward/backward, and a process may run several
/// replicas in threads of its own (testing::thread_replicas).
inline replica_group*& active_replica_group()
{
    thread_local replica_group* group = nullptr;
    return group;
}
} // namespace detail

/// The group the layers on this thread synchronise through, or nullptr (one process).
inline replica_group* active_replicas() { return detail::active_replica_group(); }

/// Makes `group` the active one on this thread for the scope's lifetime (the Trainer does it while it trains or
/// evaluates), then restores the previous one. nullptr: no replicas.
class replica_scope {
public:
    explicit replica_scope(replica_group* group) : previous_(detail::active_replica_group())
    {
        detail::active_replica_group() = group;
    }
    ~replica_scope() { detail::active_replica_group() = previous_; }
    replica_scope(const replica_scope&) = delete;
    replica_scope& operator=(const replica_scope&) = delete;

private:
    replica_group* previous_;
};

/// Σ over the active replicas, in place (the identity without one).
inline void sum_over_replicas(std::span<double> values)
{
    if (replica_group* g = active_replicas(); g && g->size() > 1)
        g->sum(values);
}

/// The global batch of a batch-level statistic: `local` summed over the active replicas.
inline double global_count(std::size_t local)
{
    double n = double(local);
    sum_over_replicas({&n, 1});
    return n;
}

} // namespace nmfdsl
