#!/usr/bin/env bash
# The data-parallel nmfdsl-train under mpirun (docs/scaling.md). One case per call:
#   mpi_test.sh <case> <nmfdsl-train> <compare_checkpoints> <work dir>
# Cases: equal (20 steps of CNMF+1x1, global batch 50: with SGD -np 2 and -np 3 give one process's parameters to
# 1e-5 relative; with Adam two -np 2 runs are bit-identical, -np 1 under mpirun is the plain program, the losses
# agree), resume (a checkpoint of -np 2 continued on -np 2 and, with SGD, on -np 1), killed (a rank that exits stops the job, the last checkpoint stays intact and
# resumes to the uninterrupted run's numbers), hung (a rank that stops answering is named within the timeout),
# bad_np, bad_split, mismatch (bad input: one line, exit code 2, no hang).
set -uo pipefail
case_name=$1 train=$2 compare=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # CI runs as root
export OMPI_MCA_rmaps_base_oversubscribe=1                        # 3 ranks on 2 cores
# the short CNMF+1x1 run every case starts from: 10 batches of 50 per epoch, 100 test images
common=(--model cnmf1x1 --batch 50 --max-batches 10 --max-test 100 --threads 1 --quiet --seed 5)
short=(--max-batches 5)  # resume and killed: 5 batches per epoch

fail() { echo "FAIL: $*"; exit 1; }
run() {  # run <ranks> <out dir> <extra args...>: nmfdsl-train under mpirun, output in <out dir>.log
  local n=$1 out=$2
  shift 2
  timeout 600 mpirun -np "$n" "$train" "${common[@]}" --out "$out" "$@" > "$out.log" 2>&1
}
same() {  # same <a> <b> --exact | --rel R
  "$compare" "$1" "$2" "${@:3}" || fail "checkpoints $1 and $2 differ (${*:3})"
}

case $case_name in
equal)
  # Adam (the default): -np 1 under mpirun is the plain program, bit for bit; -np 2 repeats bit for bit; the training
  # losses of 1, 2 and 3 ranks agree to 1e-4
  "$train" "${common[@]}" --epochs 2 --out "$work/plain" > "$work/plain.log" 2>&1 || fail "plain run: $(cat "$work/plain.log")"
  for n in 1 2 3; do
    run "$n" "$work/np$n" --epochs 2 || fail "-np $n: $(cat "$work/np$n.log")"
  done
  run 2 "$work/np2-again" --epochs 2 || fail "-np 2 again: $(cat "$work/np2-again.log")"
  grep -q "2 ranks x 1 threads" "$work/np2.log" || fail "-np 2 does not print ranks x threads: $(cat "$work/np2.log")"
  grep -q "MPI: 2 ranks; per training step" "$work/np2.log" || fail "-np 2 does not report the gradient sum"
  same "$work/plain/checkpoint.nmfd" "$work/np1/checkpoint.nmfd" --exact
  same "$work/np2/checkpoint.nmfd" "$work/np2-again/checkpoint.nmfd" --exact
  for n in 2 3; do  # column 8 of metrics.csv: the epoch's summed training loss
    paste -d, <(cut -d, -f8 "$work/np1/metrics.csv") <(cut -d, -f8 "$work/np$n/metrics.csv") | tail -n +2 |
      awk -F, '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-4 * $1) exit 1 }' ||
      fail "training losses of -np 1 and -np $n differ by more than 1e-4: $(cat "$work/np1/metrics.csv" "$work/np$n/metrics.csv")"
  done
  # SGD: the parameters of 2 and 3 ranks are those of one process to 1e-5 relative. Not with Adam: it amplifies
  # rounding-sized differences, in one process as well (a one-ulp nudge of the initial parameters moves thousands of
  # values beyond 1e-5 in 20 steps; docs/scaling.md "How close to one process")
  for n in 1 2 3; do
    run "$n" "$work/sgd$n" --epochs 2 --optimizer sgd || fail "SGD -np $n: $(cat "$work/sgd$n.log")"
  done
  same "$work/sgd1/checkpoint.nmfd" "$work/sgd2/checkpoint.nmfd" --rel 1e-5
  same "$work/sgd1/checkpoint.nmfd" "$work/sgd3/checkpoint.nmfd" --rel 1e-5
  # rank 0 alone writes: the outputs exist once
  [ -f "$work/np2/metrics.csv" ] && [ -f "$work/np2/curves.png" ] || fail "-np 2 wrote no metrics or curves"
  ;;
resume)
  # Adam: a checkpoint of epoch 1 on 2 ranks, resumed on 2 ranks, is the uninterrupted 2-rank run bit for bit
  run 2 "$work/first" "${short[@]}" --epochs 1 || fail "first epoch: $(cat "$work/first.log")"
  cp "$work/first/checkpoint.nmfd" "$work/epoch1.nmfd"
  run 2 "$work/on2" "${short[@]}" --epochs 2 --resume "$work/epoch1.nmfd" || fail "resumed on 2 ranks: $(cat "$work/on2.log")"
  run 2 "$work/whole2" "${short[@]}" --epochs 2 || fail "uninterrupted -np 2: $(cat "$work/whole2.log")"
  same "$work/whole2/checkpoint.nmfd" "$work/on2/checkpoint.nmfd" --exact
  # SGD: resumed on 1 rank it continues the same run (to 1e-5, the sums being re-associated)
  run 2 "$work/sgd-first" "${short[@]}" --epochs 1 --optimizer sgd || fail "SGD first epoch: $(cat "$work/sgd-first.log")"
  cp "$work/sgd-first/checkpoint.nmfd" "$work/sgd-epoch1.nmfd"
  run 1 "$work/sgd-on1" "${short[@]}" --epochs 2 --optimizer sgd --resume "$work/sgd-epoch1.nmfd" ||
    fail "resumed on 1 rank: $(cat "$work/sgd-on1.log")"
  run 1 "$work/sgd-whole1" "${short[@]}" --epochs 2 --optimizer sgd || fail "uninterrupted -np 1: $(cat "$work/sgd-whole1.log")"
  same "$work/sgd-whole1/checkpoint.nmfd" "$work/sgd-on1/checkpoint.nmfd" --rel 1e-5
  ;;
killed)
  # rank 1 exits just before its 8th gradient sum: in epoch 2, after epoch 1's checkpoint
  start=$(date +%s)
  NMFDSL_MPI_FAULT=exit:1:8 run 2 "$work/killed" "${short[@]}" --epochs 3
  rc=$?
  [ "$rc" -ne 0 ] || fail "the job with a dead rank exited with 0"
  [ $(( $(date +%s) - start )) -lt 300 ] || fail "the job with a dead rank took more than 300 s to stop"
  # mpirun stops the job and names the process: [[<job>,1],1] is rank 1 of the job
  grep -Eq "Process name: \[\[[0-9]+,1\],1\]" "$work/killed.log" ||
    fail "mpirun's message does not name rank 1: $(cat "$work/killed.log")"
  run 2 "$work/epoch1" "${short[@]}" --epochs 1 || fail "reference epoch: $(cat "$work/epoch1.log")"
  same "$work/epoch1/checkpoint.nmfd" "$work/killed/checkpoint.nmfd" --exact  # the last good checkpoint, intact
  cp "$work/killed/checkpoint.nmfd" "$work/last-good.nmfd"
  run 2 "$work/resumed" "${short[@]}" --epochs 3 --resume "$work/last-good.nmfd" || fail "resume: $(cat "$work/resumed.log")"
  run 2 "$work/whole" "${short[@]}" --epochs 3 || fail "uninterrupted run: $(cat "$work/whole.log")"
  same "$work/whole/checkpoint.nmfd" "$work/resumed/checkpoint.nmfd" --exact
  ;;
hung)
  start=$(date +%s)
  NMFDSL_MPI_FAULT=hang:1:5 run 2 "$work/hung" --epochs 1 --mpi-timeout 5
  rc=$?
  took=$(( $(date +%s) - start ))
  [ "$rc" -ne 0 ] || fail "the job with a hung rank exited with 0"
  [ "$took" -lt 120 ] || fail "the job with a hung rank took $took s to stop (timeout 5 s)"
  grep -q "MPI rank 1 did not reach a gradient sum" "$work/hung.log" ||
    fail "the message does not name the hung rank: $(cat "$work/hung.log")"
  ;;
bad_np)
  run 3 "$work/bad" --epochs 1 --batch 2
  rc=$?
  [ "$rc" -eq 2 ] || fail "exit code $rc, expected 2: $(cat "$work/bad.log")"
  [ "$(grep -c 'nmfdsl-train: 3 ranks but the global batch (--batch 2) has fewer images' "$work/bad.log")" -eq 1 ] ||
    fail "expected the message once: $(cat "$work/bad.log")"
  ;;
bad_split)
  # 101 test images in batches of 50 leave one image for the last batch: too few for 2 ranks
  run 2 "$work/bad" --epochs 1 --max-test 101
  rc=$?
  [ "$rc" -eq 2 ] || fail "exit code $rc, expected 2: $(cat "$work/bad.log")"
  [ "$(grep -c 'the last test batch holds 1 images, fewer than the 2 ranks' "$work/bad.log")" -eq 1 ] ||
    fail "expected the message once: $(cat "$work/bad.log")"
  ;;
mismatch)
  timeout 300 mpirun -np 1 "$train" "${common[@]}" --epochs 1 --out "$work/a" : \
    -np 1 "$train" "${common[@]}" --epochs 1 --out "$work/a" --lr-nmf 0.5 > "$work/mismatch.log" 2>&1
  rc=$?
  [ "$rc" -eq 2 ] || fail "exit code $rc, expected 2: $(cat "$work/mismatch.log")"
  grep -q "rank 1 has --lr-nmf 0.5, rank 0 has --lr-nmf" "$work/mismatch.log" ||
    fail "the message does not name the difference: $(cat "$work/mismatch.log")"
  ;;
*)
  fail "unknown case '$case_name'"
  ;;
esac
echo "PASS: $case_name"
