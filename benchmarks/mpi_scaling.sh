#!/usr/bin/env bash
# The measurements of docs/scaling.md, on this machine:
#   1. per paper model (and HaH), a short data-parallel nmfdsl-train run with 2 ranks x 1 thread: the time of a
#      training step and of its gradient sum (waiting for the slower rank included), as nmfdsl-train reports them;
#   2. the gradient sum alone (nmfdsl_mpi_allreduce: after a barrier, median of 50) for each model's parameter count;
#   3. with EPOCH=1, one Fashion-MNIST epoch of CNMF+1x1 (with evaluation) with 2 ranks x 1 thread against 1 rank x
#      2 threads, in the same run (the issue's target: at most 1.1x).
#   benchmarks/mpi_scaling.sh [BUILD_DIR]    (default build/native; it must hold nmfdsl-train built with MPI and
#                                             benchmarks/nmfdsl_mpi_allreduce)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/native}
train=$build/examples/nmfdsl-train
allreduce=$build/benchmarks/nmfdsl_mpi_allreduce
for f in "$train" "$allreduce"; do
  [[ -x $f ]] || { echo "mpi_scaling: $f not found (cmake --build $build --target nmfdsl-train nmfdsl_mpi_allreduce)" >&2; exit 2; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "isa: $(grep -o -m1 'avx512f' /proc/cpuinfo || grep -o -m1 'avx2' /proc/cpuinfo || uname -m); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "model,parameters,step_ms,gradient_sum_ms,gradient_sum_share,other_sums_ms"
counts=()
for model in cnn cnmf cnn1x1 cnmf1x1 hah; do
  batch=50
  [ "$model" = hah ] && batch=128
  mpirun -np 2 "$train" --model "$model" --batch "$batch" --epochs 1 --max-batches 40 --max-test "$batch" \
    --threads 1 --quiet --out "$out/$model" > "$out/$model.log" 2>&1
  params=$(grep -o '[0-9]* parameters' "$out/$model.log" | cut -d' ' -f1)
  counts+=("$params")
  sed -n 's/^MPI: 2 ranks; per training step \([0-9.]*\) ms, of which the gradient sum ([0-9]* floats, [0-9.]* KB) \([0-9.]*\) ms (\([0-9.]*\) %); other sums[^0-9]*\([0-9.]*\) ms per step$/\1,\2,\3 %,\4/p' \
    "$out/$model.log" | sed "s/^/$model,$params,/"
done
echo
echo "gradient sum alone (2 ranks, shared memory):"
mpirun -np 2 "$allreduce" "${counts[@]}" 50
if [ "${EPOCH:-0}" = 1 ]; then
  echo
  echo "one Fashion-MNIST epoch of CNMF+1x1 with evaluation:"
  # the one-rank run without mpirun: mpirun binds each rank to one core, which would put its two threads on one
  for setting in "1 2" "2 1" "1 2" "2 1"; do
    set -- $setting
    launch=(mpirun -np 2)
    [ "$1" = 1 ] && launch=()
    "${launch[@]}" "$train" --model cnmf1x1 --epochs 1 --threads "$2" --quiet --out "$out/epoch" > "$out/epoch.log" 2>&1
    echo "$1 rank(s) x $2 thread(s): $(grep -o 'after 1 epochs ([0-9]* s)' "$out/epoch.log")"
  done
fi
