#!/usr/bin/env python3
"""Checks nmfdsl's CNMF+1x1 network against an independent PyTorch implementation of the same method.

Reads what nmfdsl_pytorch_dump wrote into DIR (the parameters and BatchNorm running statistics, a batch of images, a
weighting R, nmfdsl's output and its gradients of L = sum(output * R), the running statistics that batch left and
the output in evaluation mode), rebuilds the network in PyTorch in float64 from the parameter files, and compares the
output, every parameter gradient, the input gradient, the updated running statistics (PyTorch's BatchNorm rule:
momentum 0.1, unbiased batch variance) and the output in evaluation mode with them. The NMF layers' backward is
the paper's approximation (a torch.autograd.Function of its own) or, for DIR/mode.txt = unrolled, autograd through
all 20 multiplicative updates. Prints one line per tensor with the largest difference relative to the tensor's largest
magnitude, and exits with 1 when one exceeds TOLERANCE.

    /usr/bin/python3 tests/pytorch/crosscheck.py DIR     (Debian's python3-torch and python3-numpy)
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from nmf_torch import ApproximateNMF, nmf_updates

TOLERANCE = 1e-4  # float32 against float64 through four NMF layers of 20 updates, batch norms and the softmax
ITERATIONS = 20


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    d = sys.argv[1]
    missing = [f for f in ("mode.txt", "manifest.txt", "output.npy") if not os.path.isfile(os.path.join(d, f))]
    if missing:
        sys.exit(f"crosscheck: '{d}' is not a directory nmfdsl_pytorch_dump wrote: {missing[0]} is missing")
    mode = open(f"{d}/mode.txt").read().strip()
    manifest = [line.split(maxsplit=1) for line in open(f"{d}/manifest.txt").read().splitlines()]
    params = [(name, layer, torch.tensor(np.load(f"{d}/params/{name}"), dtype=torch.float64, requires_grad=True))
              for name, layer in manifest]
    queue = []
    running = {}  # BatchNorm file prefix ("6.") -> [running mean, running variance], updated by PyTorch

    def take(layer_prefix):
        name, layer, t = queue.pop(0)
        if not layer.startswith(layer_prefix):
            sys.exit(f"crosscheck: expected a {layer_prefix} tensor next, found {name} of {layer}")
        return name, t

    def next_is(layer_prefix):
        return bool(queue) and queue[0][1].startswith(layer_prefix)

    def running_stats(prefix):
        return [torch.tensor(np.load(f"{d}/params/{prefix}{which}.npy"), dtype=torch.float64)
                for which in ("running_mean", "running_var")]

    def batch_norm(h):  # training: batch statistics (biased variance), updating the running ones; eps 1e-5
        (name, gamma), (_, beta) = take("BatchNorm"), take("BatchNorm")
        prefix = name[:-len("gamma.npy")]
        stats = running.setdefault(prefix, running_stats(prefix))
        return F.batch_norm(h, stats[0], stats[1], gamma, beta, training=training, momentum=0.1, eps=1e-5)

    def cnmf(x):  # ReLU -> K x K patches -> L1 over each patch -> NMF -> BatchNorm (maps larger than 1 x 1)
        v = take("CNMF")[1]                                    # [Out, K, K, C], patch order (ky, kx, c)
        out, k = v.shape[0], v.shape[1]
        v = v.permute(0, 3, 1, 2).reshape(out, -1)              # PyTorch's unfold order (c, ky, kx)
        n, side = x.shape[0], x.shape[2] - k + 1
        cols = F.unfold(F.relu(x), k)
        cols = cols / (cols.sum(1, keepdim=True) + 1e-19)
        rows = cols.transpose(1, 2).reshape(n * side * side, -1)
        a = v.abs()
        w = a / (a.sum(1, keepdim=True) + 1e-19)
        h = nmf_updates(rows, w, ITERATIONS) if mode == "unrolled" else ApproximateNMF.apply(rows, w, ITERATIONS)
        h = h.reshape(n, side, side, out).permute(0, 3, 1, 2)
        return batch_norm(h) if next_is("BatchNorm") else h

    def mix(x):  # ReLU -> L1 over the channels -> 1x1 convolution -> BatchNorm (maps larger than 1 x 1)
        x = F.relu(x)
        x = x / (x.sum(1, keepdim=True) + 1e-19)
        weight, bias = take("Pointwise")[1], take("Pointwise")[1]
        x = F.conv2d(x, weight[:, :, None, None], bias)
        return batch_norm(x) if next_is("BatchNorm") else x

    def network(images):
        queue[:] = params
        x = F.avg_pool2d(mix(cnmf(images)), 2)
        x = F.avg_pool2d(mix(cnmf(x)), 2)
        x = mix(cnmf(x))
        x = mix(cnmf(x))
        if queue:
            sys.exit(f"crosscheck: {len(queue)} tensors of the manifest were not used, the first {queue[0][0]}")
        return F.softmax(x, 1).flatten(1)

    images = torch.tensor(np.load(f"{d}/images.npy"), dtype=torch.float64, requires_grad=True)
    r = torch.tensor(np.load(f"{d}/r.npy"), dtype=torch.float64)
    training = True
    output = network(images)
    (output * r).sum().backward()
    training = False
    with torch.no_grad():
        output_eval = network(images)

    worst = 0.0
    # A bias followed by a batch norm has the exact gradient 0 (the norm subtracts the batch mean): PyTorch finds
    # about 1e-15, float32 the rounding of thousands of cancelling terms. Such tensors are measured against the
    # largest parameter gradient of the network instead of their own.
    largest_gradient = max(float(t.grad.abs().max()) for _, _, t in params)
    print(f"mode {mode}; largest |nmfdsl - PyTorch| / largest |PyTorch| per tensor (tolerance {TOLERANCE:g})")

    def compare(what, ours, ref):
        nonlocal worst
        ref = ref.detach().numpy()
        if ours.shape != ref.shape:
            sys.exit(f"crosscheck: {what}: nmfdsl's shape {ours.shape}, PyTorch's {ref.shape}")
        scale, note = float(np.abs(ref).max()), ""
        if scale < 1e-9 * largest_gradient:
            scale, note = largest_gradient, ", exactly 0: against the largest gradient"
        err = float(np.abs(ours.astype(np.float64) - ref).max() / max(scale, 1e-30))
        worst = max(worst, err)
        print(f"  {what:34s} {err:.2e}  (scale {scale:.3g}{note})")

    compare("output", np.load(f"{d}/output.npy"), output)
    compare("input gradient", np.load(f"{d}/input_grad.npy"), images.grad)
    for name, layer, t in params:
        compare(f"grad {name} ({layer})", np.load(f"{d}/grads/{name}"), t.grad)
    for prefix, stats in running.items():
        for which, t in zip(("running_mean", "running_var"), stats):
            compare(f"{prefix}{which} after the batch", np.load(f"{d}/running/{prefix}{which}.npy"), t)
    compare("output in evaluation mode", np.load(f"{d}/output_eval.npy"), output_eval)
    print(f"worst {worst:.2e}: {'agrees' if worst <= TOLERANCE else 'DISAGREES'}")
    sys.exit(0 if worst <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
