// Compares the model state of two nmfdsl checkpoints of one network (parameters, buffers, optimiser state):
//   compare_checkpoints A B --exact       every value bit-identical
//   compare_checkpoints A B --rel 1e-5    |a − b| ≤ rel · max(|a|, |b|, floor) for every parameter and buffer, where
//                                         floor is 1e-3 of the largest |a| of the same section (so values that are
//                                         tiny next to the rest of their section are compared to that scale, not to
//                                         zero); the optimiser state (running sums of gradients) is only reported
// Prints per section the largest relative difference and how many values exceed 1e-6, 1e-5, 1e-4 and 1e-2;
// exit code 0 when they agree, 1 when not, 2 on bad input.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <nmfdsl/io/checkpoint.hpp>
#include <nmfdsl/testing/compare.hpp>

namespace {

template <class T>
std::vector<T> as_values(const std::vector<std::uint8_t>& bytes)
{
    std::vector<T> v(bytes.size() / sizeof(T));
    if (!v.empty())
        std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
    return v;
}

/// Prints how far a section's values are apart (testing::compare_values); exact: whether every value is
/// bit-identical, else whether the largest relative difference is at most rel.
template <class T>
bool compare(const char* section, const std::vector<T>& a, const std::vector<T>& b, bool exact, double rel)
{
    if (a.size() != b.size()) {
        std::printf("%s: %zu values against %zu\n", section, a.size(), b.size());
        return false;
    }
    const auto d = nmfdsl::testing::compare_values<T>(a, b);
    std::printf("%-10s %8zu values, %8zu differ in some bit, largest relative difference %.3g (value %zu: %.9g against "
                "%.9g)\n",
                section, a.size(), d.differing, d.largest, d.largest_at,
                a.empty() ? 0.0 : double(a[d.largest_at]), b.empty() ? 0.0 : double(b[d.largest_at]));
    if (d.differing > 0)
        std::printf("%-10s relative difference above 1e-6: %zu, 1e-5: %zu, 1e-4: %zu, 1e-2: %zu values\n", "",
                    d.above[0], d.above[1], d.above[2], d.above[3]);
    return exact ? d.differing == 0 : d.largest <= rel;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 4 && argc != 5) {
        std::fprintf(stderr, "usage: compare_checkpoints A B --exact | --rel R\n");
        return 2;
    }
    const bool exact = std::strcmp(argv[3], "--exact") == 0;
    double rel = 0;
    if (!exact) {
        if (std::strcmp(argv[3], "--rel") != 0 || argc != 5) {
            std::fprintf(stderr, "compare_checkpoints: expected --exact or --rel R\n");
            return 2;
        }
        char* end = nullptr;
        rel = std::strtod(argv[4], &end);
        if (end == argv[4] || *end != '\0' || !(rel > 0)) {
            std::fprintf(stderr, "compare_checkpoints: --rel needs a positive number, got '%s'\n", argv[4]);
            return 2;
        }
    }
    try {
        const auto a = nmfdsl::io::read_checkpoint(argv[1]);
        const auto b = nmfdsl::io::read_checkpoint(argv[2], a.signature);
        bool same = compare("parameters", as_values<float>(a.params), as_values<float>(b.params), exact, rel);
        same = compare("buffers", as_values<float>(a.buffers), as_values<float>(b.buffers), exact, rel) && same;
        const bool optimizer_same = compare("optimizer", a.optimizer, b.optimizer, exact, rel);
        if (exact)
            same = same && optimizer_same;
        std::printf("%s\n", same ? "agree" : "DIFFER");
        return same ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "compare_checkpoints: %s\n", e.what());
        return 2;
    }
}
