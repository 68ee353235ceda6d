// The one Catch2 main, compiled once and shared by every test executable. It first says which instruction sets the
// tests were compiled for (portable and native builds exercise different kernel paths) and on which CPU they run.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>

#include <nmfdsl/core/cpu.hpp>
#include <xsimd/xsimd.hpp>

namespace {
std::string cpu_model()
{
    std::ifstream info("/proc/cpuinfo");
    for (std::string line; std::getline(info, line);)
        if (line.rfind("model name", 0) == 0)
            return line.substr(line.find(':') + 2);
    return "unknown CPU";
}
} // namespace

int main(int argc, char* argv[])
{
    std::string isas;
    for (std::size_t i = 0; i < nmfdsl::cpu::compiled_isas.size; ++i)
        isas += (isas.empty() ? "" : " ") + std::string(nmfdsl::cpu::isa_name(nmfdsl::cpu::compiled_isas.items[i]));
#if defined(__x86_64__)
    const char* base = "the x86-64 baseline";
#else
    const char* base = "the architecture's baseline";
#endif
    std::printf("nmfdsl tests: SIMD %s (compiled for: %s), running on %s\n", xsimd::default_arch::name(),
                isas.empty() ? base : isas.c_str(), cpu_model().c_str());
    return Catch::Session().run(argc, argv);
}
