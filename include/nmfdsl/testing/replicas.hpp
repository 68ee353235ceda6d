#pragma once
/// @file replicas.hpp
/// testing::thread_replicas: R replicas of a data-parallel run inside one process, one std::thread each, for tests of
/// the replica_group contract (core/replicas.hpp) without MPI. member(r) is replica r's group; its sums meet at a
/// barrier and add the R vectors in replica order, as <nmfdsl/mpi.hpp> does across processes. The kernels' own
/// thread pool is global: run the replicas with set_threads(1).
#include <barrier>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/replicas.hpp"

namespace nmfdsl::testing {

class thread_replicas {
public:
    explicit thread_replicas(std::size_t replicas) : meeting_(std::ptrdiff_t(replicas)), slots_(replicas)
    {
        if (replicas == 0)
            throw argument_error("nmfdsl: thread_replicas needs at least one replica");
        for (std::size_t r = 0; r < replicas; ++r)
            members_.emplace_back(*this, r);
    }
    thread_replicas(const thread_replicas&) = delete;
    thread_replicas& operator=(const thread_replicas&) = delete;

    replica_group& member(std::size_t r) { return members_.at(r); }
    std::size_t size() const { return slots_.size(); }
    /// The number of sums each replica has taken part in (replica 0's count).
    std::size_t sums() const { return members_.front().sums; }

private:
    struct slot {
        const void* data = nullptr;
        std::size_t length = 0;
    };

    class replica final : public replica_group {
    public:
        replica(thread_replicas& all, std::size_t rank) : all_(&all), rank_(rank) {}
        std::size_t rank() const override { return rank_; }
        std::size_t size() const override { return all_->size(); }
        void sum(std::span<double> v) override
        {
            all_->sum(rank_, v);
            ++sums;
        }
        void sum(std::span<float> v) override
        {
            all_->sum(rank_, v);
            ++sums;
        }
        std::size_t sums = 0;

    private:
        thread_replicas* all_;
        std::size_t rank_;
    };

    template <class T>
    void sum(std::size_t rank, std::span<T> v)
    {
        slots_[rank] = {v.data(), v.size()};
        meeting_.arrive_and_wait();  // every replica's vector is in place
        std::vector<T> total(v.size());
        for (std::size_t r = 0; r < slots_.size(); ++r) {
            if (slots_[r].length != v.size())
                throw argument_error("nmfdsl: thread_replicas: replica " + std::to_string(r) + " sums " +
                                     std::to_string(slots_[r].length) + " values, replica " + std::to_string(rank) +
                                     " " + std::to_string(v.size()));
            const T* x = static_cast<const T*>(slots_[r].data);
            for (std::size_t i = 0; i < v.size(); ++i)
                total[i] = r == 0 ? x[i] : total[i] + x[i];
        }
        meeting_.arrive_and_wait();  // every replica has read every vector
        std::copy(total.begin(), total.end(), v.begin());
    }

    std::barrier<> meeting_;
    std::vector<slot> slots_;
    std::vector<replica> members_;
};

} // namespace nmfdsl::testing
