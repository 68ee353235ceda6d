#!/usr/bin/env bash
# Prints the wall time and peak memory of compiling the translation units a user's edit-compile loop meets:
#   one_network   one paper network's forward and backward (benchmarks/compile_time/one_network.cpp)
#   train         examples/train.cpp (four models, trainer, I/O)
# Usage: bash benchmarks/compile_time.sh [extra compiler flags...]   (default flags: -O2 -march=native)
# Each unit is compiled alone (one process), so the numbers do not depend on the other core's load more than usual.
set -euo pipefail
cd "$(dirname "$0")/.."
flags=("$@")
[ ${#flags[@]} -eq 0 ] && flags=(-O2 -march=native)
cxx=${CXX:-g++}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(-std=c++20 -DXTENSOR_USE_XSIMD -Iinclude -I/usr/include -c -o "$out/unit.o")
printf '%-14s %8s %10s   %s\n' unit seconds peak_MB flags
for unit in one_network:benchmarks/compile_time/one_network.cpp train:examples/train.cpp; do
  name=${unit%%:*}
  src=${unit#*:}
  /usr/bin/time -f '%e %M' -o "$out/time" "$cxx" "${common[@]}" "${flags[@]}" "$src"
  read -r secs kb < "$out/time"
  printf '%-14s %8.1f %10.0f   %s\n' "$name" "$secs" "$((kb / 1024))" "${flags[*]}"
done
