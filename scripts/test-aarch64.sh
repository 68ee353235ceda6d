#!/usr/bin/env bash
# Builds the unit tests for aarch64 (xsimd's NEON path) with Debian's cross compiler and runs them under qemu-user.
# Speed cannot be measured this way; correctness can.
#   bash scripts/test-aarch64.sh        the core's tests (kernels, layers, models, CNMF); installs
#                                       g++-aarch64-linux-gnu and qemu-user if missing (needs root)
#   bash scripts/test-aarch64.sh --io   every unit test, the I/O ones too (data readers, checkpoints, .npy, pictures,
#                                       the Trainer): also enables Debian's arm64 architecture and installs the arm64
#                                       zlib, libpng and cairo they link. Already installed, they are used without --io.
# The I/O tests matter on ARM for more than SIMD: there `char` is unsigned, so byte-level readers are checked too.
set -euo pipefail
cd "$(dirname "$0")/.."
with_io=0
case "${1:-}" in
  "") ;;
  --io) with_io=1 ;;
  *) echo "test-aarch64.sh: unknown argument '$1' (expected nothing or --io)" >&2; exit 2 ;;
esac
sudo_=(); [ "$(id -u)" -ne 0 ] && sudo_=(sudo)
apt_install() {
  "${sudo_[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_[@]}" apt-get install -y -q --no-install-recommends "$@"
}
need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
[ ${#need[@]} -gt 0 ] && apt_install "${need[@]}"
bash scripts/install-deps.sh >/dev/null  # the headers (xtensor, xsimd, Boost, Catch2) are architecture-independent

arm_pc=(env PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig pkg-config)
if [ "$with_io" = 1 ] && ! "${arm_pc[@]}" --exists zlib libpng cairo; then
  dpkg --print-foreign-architectures | grep -qx arm64 || "${sudo_[@]}" dpkg --add-architecture arm64
  apt_install zlib1g-dev:arm64 libpng-dev:arm64 libcairo2-dev:arm64
fi

out=build/aarch64
mkdir -p "$out"
rm -f "$out"/*.o
# /usr/include last: xtensor, xsimd, Boost and Catch2 are found there, the C and C++ runtime headers are the cross's
cxx=(aarch64-linux-gnu-g++ -std=c++20 -O2 -DNMFDSL_CHECKED=1 -Iinclude -idirafter /usr/include -pthread)
units=(tests/main.cpp tests/unit/test_kernels.cpp tests/unit/test_layers.cpp tests/unit/test_contract.cpp
       tests/unit/test_model.cpp tests/unit/test_cnmf.cpp tests/static/test_static.cpp)
libs=()
if "${arm_pc[@]}" --exists zlib libpng cairo; then
  units+=(tests/unit/test_training.cpp tests/unit/test_attack.cpp tests/unit/test_npy.cpp)
  read -r -a io_cflags <<<"$("${arm_pc[@]}" --cflags zlib libpng cairo)"
  read -r -a libs <<<"$("${arm_pc[@]}" --libs zlib libpng cairo)"
  cxx+=("${io_cflags[@]}")
  echo "test-aarch64: every unit test, the I/O ones included (${#units[@]} files)"
else
  echo "test-aarch64: the core's unit tests only; \`bash scripts/test-aarch64.sh --io\` adds the I/O ones"
fi
export OUT="$out"
printf '%s\n' "${units[@]}" | xargs -P 2 -I{} sh -c \
  'o="$OUT/$(basename {} .cpp).o"; '"${cxx[*]}"' -c {} -o "$o"'
"${cxx[@]}" "$out"/*.o "${libs[@]}" -o "$out/nmfdsl_unit_tests"
# The C and C++ runtime come from the cross toolchain's directory, whose ld.so they match; with Debian's arm64
# architecture enabled, ld.so's cache would otherwise pick the arm64 libc6 (another build), and threads hang.
qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib \
  "$out/nmfdsl_unit_tests" --order rand --rng-seed 1
