#!/usr/bin/env bash
# Installs what is missing, builds nmfdsl-train for this CPU (build/native) and writes the commit it was built from
# to <out>/commit, for the results scripts.   bash scripts/build-trainer.sh <out>
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release -DNMFDSL_NATIVE=ON -DNMFDSL_BUILD_TESTS=OFF > /dev/null
cmake --build build/native -j2 --target nmfdsl-train
mkdir -p "$1"
git rev-parse --short HEAD > "$1/commit" 2>/dev/null || true
