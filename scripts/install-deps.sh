#!/usr/bin/env bash
# Installs whatever nmfdsl needs that this Debian 12 machine lacks (Debian packages only). Safe to re-run: it does
# nothing when everything is present. Needs root, or sudo, only when something must be installed.
set -euo pipefail

packages=(
  g++ make cmake             # g++ 12, make, CMake 3.25
  libboost-dev               # Boost.Hana (header-only)
  libxtensor-dev libxsimd-dev
  catch2                     # Catch2 v2
  libbenchmark-dev           # Google Benchmark
  zlib1g-dev libpng-dev      # gzip data files and checkpoint checksums; PNG pictures
  libcairo2-dev pkgconf      # plots with titles, axes and legends (PNG and SVG)
  dataset-fashion-mnist      # the default data set (/usr/share/datasets/fashion-mnist)
  qemu-user                  # tests: emulated CPUs for the start-up instruction-set check
  libopenmpi-dev openmpi-bin # data-parallel nmfdsl-train under mpirun (docs/scaling.md) and its tests
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all dependencies present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
"${as_root[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
