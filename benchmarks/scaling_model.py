#!/usr/bin/env python3
"""The alpha-beta model of docs/scaling.md: reads the per-model lines of benchmarks/mpi_scaling.sh
(model,parameters,step_ms,gradient_sum_ms,gradient_sum_share,other_sums_ms) and prints, for 8, 64 and 512 machines,
the modelled gradient sum (ring and tree), the short sums and b*, the per-machine batch below which communication
takes longer than compute.
    bash benchmarks/mpi_scaling.sh build/native | python3 benchmarks/scaling_model.py
Assumptions (a model, not a measurement): one rank per machine; compute per step proportional to the per-rank batch;
sending m bytes costs alpha + m / beta."""
import math
import sys

NETWORKS = {"10 GbE": (20e-6, 1.2e9), "InfiniBand": (2e-6, 12e9)}  # alpha (s), beta (bytes/s)
MACHINES = (8, 64, 512)
# short sums per step (4 per BatchNorm layer, 1 for the loss, 1 per HaH layer, 1 for the local costs) and the mean
# channel count c of their c + 1 doubles
SHORT_SUMS = {"cnn": (9, 48), "cnmf": (9, 48), "cnn1x1": (17, 48), "cnmf1x1": (17, 48), "hah": (8, 128)}
RANKS_MEASURED = 2
BATCH = {"hah": 128}  # global batch of the measurement; others 50


def ring(r, size, alpha, beta):
    return 2 * (r - 1) * alpha + 2 * (r - 1) / r * size / beta


def tree(r, size, alpha, beta):
    return 2 * math.ceil(math.log2(r)) * (alpha + size / beta)


def short_sums(r, model, alpha, beta):
    count, channels = SHORT_SUMS[model]
    return count * (math.ceil(math.log2(r)) * alpha + r * 8 * (channels + 1) / beta)


def main():
    rows = []
    for line in sys.stdin:
        fields = line.strip().split(",")
        if len(fields) == 6 and fields[0] in SHORT_SUMS:
            model, params, step, grad, _, other = fields
            per_rank = BATCH.get(model, 50) / RANKS_MEASURED
            rows.append((model, int(params), (float(step) - float(grad) - float(other)) / per_rank))
    if not rows:
        sys.exit("scaling_model: no lines model,parameters,step_ms,... on standard input (pipe mpi_scaling.sh into it)")
    print("| model | compute per image (ms) | machines | gradient sum, ring (ms) | gradient sum, tree (ms) | "
          "short sums (ms) | b* (images per machine) |")
    print("|---|---|---|---|---|---|---|")
    for model, params, per_image in rows:
        size = 4 * params
        for r in MACHINES:
            cells = {"ring": [], "tree": [], "short": [], "b": []}
            for alpha, beta in NETWORKS.values():
                t_ring, t_tree = ring(r, size, alpha, beta), tree(r, size, alpha, beta)
                t_short = short_sums(r, model, alpha, beta)
                cells["ring"].append(t_ring * 1e3)
                cells["tree"].append(t_tree * 1e3)
                cells["short"].append(t_short * 1e3)
                cells["b"].append((t_ring + t_short) * 1e3 / per_image)
            pair = lambda v, d=2: " / ".join(f"{x:.{d}f}" for x in v)
            print(f"| {model} | {per_image:.2f} | {r} | {pair(cells['ring'])} | {pair(cells['tree'])} | "
                  f"{pair(cells['short'])} | {pair(cells['b'], 1)} |")


if __name__ == "__main__":
    main()
