// A program compiled for AVX2 + FMA (tests/cpu/run_probe.cmake), run under qemu-user as CPUs with and without AVX:
// with them it runs; without, nmfdsl's start-up check must stop it with one line naming the missing instruction set.
#include <cstdio>

#include <nmfdsl/core/cpu.hpp>

int main()
{
    std::printf("probe started\n");
    return 0;
}
