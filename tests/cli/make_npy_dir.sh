#!/bin/sh
# Writes a tiny .npy data directory for nmfdsl-train: 10 black 28x28 uint8 training images and 10 test images, all
# of label 0, as np.save would write them (version 1.0 header padded to 128 bytes).
#   make_npy_dir.sh DIR
set -eu
dir=$1
mkdir -p "$dir"
npy_u1() {  # npy_u1 FILE SHAPE BYTES: a uint8 array of that shape, all zeros
  printf '\223NUMPY\001\000v\000%-117s\n' "{'descr': '|u1', 'fortran_order': False, 'shape': ($2), }" >"$1"
  head -c "$3" /dev/zero >>"$1"
}
for split in train test; do
  npy_u1 "$dir/${split}_images.npy" "10, 28, 28" 7840
  npy_u1 "$dir/${split}_labels.npy" "10," 10
done
