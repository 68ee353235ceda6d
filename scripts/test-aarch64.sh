#!/usr/bin/env bash
# Builds the core library's unit tests for aarch64 (xsimd's NEON path) with Debian's cross compiler and runs them
# under qemu-user. Speed cannot be measured this way; correctness can. The I/O tests (zlib, libpng) are left out:
# they would need the arm64 builds of those libraries, and they exercise no SIMD code.
#   bash scripts/test-aarch64.sh          (installs g++-aarch64-linux-gnu and qemu-user if missing; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  sudo_=(); [ "$(id -u)" -ne 0 ] && sudo_=(sudo)
  "${sudo_[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_[@]}" apt-get install -y -q "${need[@]}"
fi
bash scripts/install-deps.sh >/dev/null  # the headers (xtensor, xsimd, Boost, Catch2) are architecture-independent
out=build/aarch64
mkdir -p "$out"
cxx=(aarch64-linux-gnu-g++ -std=c++20 -O2 -DNMFDSL_CHECKED=1 -Iinclude -idirafter /usr/include -pthread)  # /usr/include last: xtensor, xsimd, Boost, Catch2
units=(tests/main.cpp tests/unit/test_kernels.cpp tests/unit/test_layers.cpp tests/unit/test_contract.cpp
       tests/unit/test_model.cpp tests/unit/test_cnmf.cpp tests/static/test_static.cpp)
export OUT="$out"
printf '%s\n' "${units[@]}" | xargs -P 2 -I{} sh -c \
  'o="$OUT/$(basename {} .cpp).o"; '"${cxx[*]}"' -c {} -o "$o"'
"${cxx[@]}" "$out"/*.o -o "$out/nmfdsl_unit_tests"
qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/nmfdsl_unit_tests" --order rand --rng-seed 1
