#!/usr/bin/env python3
"""How the approximate gradient of a whole network compares with the exact (unrolled) one: for two directories that
nmfdsl_pytorch_dump wrote from the same model and images, one per gradient mode, prints per tensor the cosine
between the two gradients and the ratio of their norms (approximate / exact).

    nmfdsl_pytorch_dump A approximate [CHECKPOINT]; nmfdsl_pytorch_dump U unrolled [CHECKPOINT]
    /usr/bin/python3 tests/pytorch/compare_modes.py A U
"""
import os
import sys

import numpy as np


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    approx, exact = sys.argv[1], sys.argv[2]
    for d, mode in ((approx, "approximate"), (exact, "unrolled")):
        try:
            found = open(os.path.join(d, "mode.txt")).read().strip()
        except OSError:
            sys.exit(f"compare_modes: '{d}' is not a directory nmfdsl_pytorch_dump wrote: mode.txt is missing")
        if found != mode:
            sys.exit(f"compare_modes: '{d}' holds {found} gradients; expected {mode} ones there")
    manifest = [line.split(maxsplit=1) for line in open(f"{approx}/manifest.txt").read().splitlines()]
    # a bias in front of a batch norm has the exact gradient 0 in both modes (rounding noise): left out
    names = ["input_grad.npy"] + ["grads/" + name for k, (name, layer) in enumerate(manifest)
                                  if not (name.endswith(".bias.npy") and k + 1 < len(manifest)
                                          and manifest[k + 1][1].startswith("BatchNorm"))]
    print(f"{'tensor':28s} {'cosine':>7s} {'norm ratio':>11s}")
    for name in names:
        a = np.load(f"{approx}/{name}").ravel().astype(np.float64)
        u = np.load(f"{exact}/{name}").ravel().astype(np.float64)
        cosine = a @ u / (np.linalg.norm(a) * np.linalg.norm(u))
        print(f"{name:28s} {cosine:+7.3f} {np.linalg.norm(a) / np.linalg.norm(u):11.2e}")


if __name__ == "__main__":
    main()
