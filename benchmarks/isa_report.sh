#!/usr/bin/env bash
# Every per-instruction-set figure of docs/performance.md in one run, for the CPU this runs on: builds the native
# benchmarks and trainer (Release, -march=native) if BUILD_DIR lacks them, then runs, one after the other,
#   1. benchmarks/peak_fractions.sh   kernels as fractions of peak_fma, one thread       (ROUNDS rounds)
#   2. benchmarks/backward_ratios.sh  approximate backward / forward per layer and batch  (ROUNDS rounds)
#   3. benchmarks/compare_pytorch.py  against PyTorch, 1 and 2 threads                    (only if PyTorch is there;
#                                     held to AVX2 when BUILD_DIR is an AVX2 build on an AVX-512 CPU)
#   4. benchmarks/epoch_vs_peak.sh    one Fashion-MNIST epoch against its arithmetic at the 2-core peak
# and prints their tables with a header naming the CPU, its instruction sets and the commit. The whole output is
# also kept in LOG. About 25 minutes on a 2-core machine (the epoch alone 2-4 minutes, PyTorch about 10).
#
#   benchmarks/isa_report.sh [BUILD_DIR] [ROUNDS] [LOG]     (defaults: build/native, 3, BUILD_DIR/isa_report.log)
#
# Nothing else should run meanwhile: every figure is a time. The targets each script prints are those of the
# issue that asked for it (#11 kernels, epoch and PyTorch; #3 the backward ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/native}
rounds=${2:-3}
log=${3:-$build/isa_report.log}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "isa_report: ROUNDS must be a positive integer, got '$rounds'" >&2; exit 2; }
if [[ ! -x $build/benchmarks/nmfdsl_bench || ! -x $build/examples/nmfdsl-train ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNMFDSL_NATIVE=ON -DNMFDSL_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j2 --target nmfdsl_bench nmfdsl-train >/dev/null
fi
{
  echo "# isa_report: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git describe --always --dirty 2>/dev/null || echo '?')"
  echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores;" \
    "AVX-512F: $(grep -q avx512f /proc/cpuinfo && echo yes || echo no)," \
    "AVX2: $(grep -q avx2 /proc/cpuinfo && echo yes || echo no), FMA: $(grep -q ' fma' /proc/cpuinfo && echo yes || echo no)"
  # the -march the build was compiled for (and what native means here: GCC's tuning for it changes the code)
  arch=$(sed -n 's/^NMFDSL_ARCH:STRING=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
  native=$(sed -n 's/^NMFDSL_NATIVE:BOOL=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
  cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
  [[ -z $arch && $native == ON ]] && arch=native
  echo "# build: $build, -march=${arch:-(compiler default)}; -march=native here is" \
    "$("${cxx:-g++}" -march=native -Q --help=target 2>/dev/null | awk '$1 == "-march=" { print $2; exit }')"
  echo
  echo "## 1. kernels against peak_fma (benchmarks/peak_fractions.sh $build $rounds)"
  bash benchmarks/peak_fractions.sh "$build" "$rounds"
  echo
  echo "## 2. approximate backward / forward (benchmarks/backward_ratios.sh $build $rounds)"
  bash benchmarks/backward_ratios.sh "$build" "$rounds"
  echo
  # a build without AVX-512 on a CPU with it (an AVX2 build, -DNMFDSL_ARCH=haswell) is compared with PyTorch held
  # to AVX2 as well: what a machine without AVX-512 would see
  isa=best
  if grep -q avx512f /proc/cpuinfo &&
     ! "$build/benchmarks/nmfdsl_bench" --benchmark_filter='^peak_fma$' --benchmark_min_time=0.01 2>/dev/null |
       grep -q avx512; then
    isa=avx2
  fi
  echo "## 3. against PyTorch (benchmarks/compare_pytorch.py --bench $build/benchmarks/nmfdsl_bench --isa $isa" \
    "--threads 1 2 --repeats 3)"
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    /usr/bin/python3 benchmarks/compare_pytorch.py --bench "$build/benchmarks/nmfdsl_bench" --isa "$isa" \
      --threads 1 2 --repeats 3
    echo "(target, issue #11: train_step/cnmf1x1/3/50 on 2 threads >= 4x PyTorch's fastest)"
  else
    echo "skipped: no PyTorch for /usr/bin/python3 (apt-get install python3-torch libopenblas0-pthread)"
  fi
  echo
  echo "## 4. one Fashion-MNIST epoch (benchmarks/epoch_vs_peak.sh $build 2; target, issue #11: <= 1.6x)"
  bash benchmarks/epoch_vs_peak.sh "$build" 2
} 2>&1 | tee "$log"
