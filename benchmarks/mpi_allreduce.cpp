// The gradient sum of data-parallel training alone: nmfdsl::mpi::world::sum over float vectors of the given lengths
// (e.g. the parameter counts of the paper's models), each timed after a barrier, so that waiting for a slower rank
// is not counted. Run under mpirun (benchmarks/mpi_scaling.sh):
//   mpirun -np 2 nmfdsl_mpi_allreduce 151686 166286 [repetitions]
// Rank 0 prints one line per length: floats, bytes, the median and the fastest time of a sum.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <string_view>
#include <vector>

#include <nmfdsl/mpi.hpp>

int main(int argc, char** argv)
{
    nmfdsl::mpi::world world(argc, argv, 60);
    std::vector<std::size_t> lengths;
    std::size_t repetitions = 50;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg(argv[i]);
        unsigned long long v = 0;
        const auto [end, err] = std::from_chars(arg.data(), arg.data() + arg.size(), v);
        if (err != std::errc() || end != arg.data() + arg.size() || v == 0) {  // "12abc", "-3", "0" are refused
            std::fprintf(stderr, "nmfdsl_mpi_allreduce: lengths must be positive whole numbers, got '%s'\n", argv[i]);
            return 2;
        }
        lengths.push_back(std::size_t(v));
    }
    if (lengths.size() > 1 && lengths.back() < 1000) {  // a last small number is the repetition count
        repetitions = lengths.back();
        lengths.pop_back();
    }
    if (lengths.empty()) {
        std::fprintf(stderr, "usage: mpirun -np N nmfdsl_mpi_allreduce LENGTH... [REPETITIONS < 1000]\n");
        return 2;
    }
    if (world.rank() == 0)
        std::printf("ranks,floats,bytes,median_ms,fastest_ms\n");
    for (const std::size_t n : lengths) {
        std::vector<float> v(n, 1.0f);
        std::vector<double> ms;
        for (std::size_t r = 0; r < repetitions + 5; ++r) {
            world.barrier();
            const auto t0 = std::chrono::steady_clock::now();
            world.sum(std::span<float>(v));
            const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            if (r >= 5)  // 5 warm-up rounds
                ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        if (world.rank() == 0)
            std::printf("%zu,%zu,%zu,%.4f,%.4f\n", world.size(), n, n * sizeof(float), ms[ms.size() / 2], ms.front());
    }
    return 0;
}
