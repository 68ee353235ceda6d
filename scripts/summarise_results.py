#!/usr/bin/env python3
"""Writes the results table (Markdown) from the metrics.csv files under a results directory.

usage: summarise_results.py RESULTS_DIR EPOCHS
"""
import csv
import os
import platform
import statistics
import subprocess
import sys

NAMES = {
    "cnn": "CNN (conv of L1-normalised patches)",
    "cnmf": "CNMF",
    "cnn1x1": "CNN+1×1 (conv of L1-normalised patches)",
    "cnmf1x1": "CNMF+1×1",
    "cnn-plain": "CNN, standard conv",
    "cnn1x1-plain": "CNN+1×1, standard conv",
}
PAPER = {"cnn": "81.0 %", "cnmf": "81.5 %", "cnn1x1": "82.8 %", "cnmf1x1": "83.7 %"}
PARAMS = {"cnn": "151,658", "cnmf": "151,456", "cnn1x1": "166,488", "cnmf1x1": "166,286",
          "cnn-plain": "151,658", "cnn1x1-plain": "166,488"}
ORDER = ["cnn", "cnmf", "cnn1x1", "cnmf1x1", "cnn-plain", "cnn1x1-plain"]


def main():
    root, epochs = sys.argv[1], int(sys.argv[2])
    runs = {}
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry, "metrics.csv")
        if not os.path.exists(path) or "-seed" not in entry:
            continue
        model, seed = entry.rsplit("-seed", 1)
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        runs.setdefault(model, []).append((int(seed), rows))
    commit_file = os.path.join(root, "commit")  # written by results.sh when it builds the trainer
    if os.path.exists(commit_file):
        commit = open(commit_file).read().strip()
    else:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print("# Results: the paper's networks on Fashion-MNIST\n")
    print("Produced by `bash scripts/results.sh` (defaults: `EPOCHS=%d`, seeds 21 and 22), which trains every model "
          "with `nmfdsl-train --data fashion-mnist --epochs %d --seed S` and then runs "
          "`python3 scripts/summarise_results.py runs/results %d > docs/results.md`. Trainer built from commit %s; %s, 2 "
          "threads; other work shared the machine during the runs, so the seconds are only indicative.\n"
          % (epochs, epochs, epochs, commit or "unknown", platform.machine()))
    print("Protocol: the paper's (docs/method.md §4): batch 50, the loss (0.5·MSE + 1.0·KL)/1.5 on the softmax "
          "output, Adam with learning rates 0.01 for the NMF weights and the CNNs' first-stage convolutions, 0.001 "
          "for the 1×1 mixing and BatchNorm, ReduceLROnPlateau on the epoch's training loss (it does not trigger "
          "within this budget), BatchNorm with batch statistics in training and evaluation, test batches of 50 in "
          "order, no augmentation (28×28 inputs, one channel). Accuracy is the final epoch's test accuracy, mean ± "
          "sample standard deviation over the seeds.\n")
    print("| model | parameters (1×28×28) | Fashion-MNIST test accuracy, %d epochs | seeds | per seed | s / epoch | "
          "paper, CIFAR-10 |" % epochs)
    print("|---|---|---|---|---|---|---|")
    means = {}
    for model in ORDER:
        if model not in runs:
            continue
        finals = [float(rows[-1]["test_accuracy"]) * 100 for _, rows in runs[model]]
        done = [len(rows) for _, rows in runs[model]]
        secs = [float(r["seconds"]) for _, rows in runs[model] for r in rows]
        mean = statistics.mean(finals)
        std = statistics.stdev(finals) if len(finals) > 1 else 0.0
        means[model] = mean
        per_seed = ", ".join("%.2f" % a for a in finals)
        note = "" if all(d == epochs for d in done) else " (epochs run: %s)" % done
        print("| %s | %s | **%.2f ± %.2f %%**%s | %d | %s | %.0f | %s |"
              % (NAMES.get(model, model), PARAMS.get(model, "?"), mean, std, note, len(finals), per_seed,
                 statistics.median(secs), PAPER.get(model, "–")))
    print()
    if "cnmf1x1" in means:
        lines = []
        for other in ["cnn1x1", "cnn", "cnn1x1-plain", "cnn-plain", "cnmf"]:
            if other in means:
                lines.append("- CNMF+1×1 − %s: **%+.2f** percentage points" % (NAMES[other], means["cnmf1x1"] - means[other]))
        print("Differences of the means:\n")
        print("\n".join(lines))
        print()
    stuck = [m for m in ("cnn", "cnn1x1", "cnn1x1-plain") if m in means and means[m] < 50]
    finals_of = {m: [float(rows[-1]["test_accuracy"]) * 100 for _, rows in runs[m]] for m in runs}
    if stuck:
        print("## Reading the table\n")
        print("- **CNMF+1×1 is the best model here, and CNMF alone is close behind.** Both pass 87 % within the first "
              "epoch (see each run's `metrics.csv`).")
        print("- **The CNN baselines as the paper defines them (a convolution of L1-normalised patches, docs/method.md §3 and "
              "§6 A3) do not train reliably within this budget**, and neither does CNN+1×1 with standard convolutions "
              "(final accuracies: %s). Convolutions themselves train: the plain CNN with standard "
              "convolutions (`cnn-plain`, identical parameter count) does. Two mechanisms are likely, neither yet "
              "verified: (1) after the whole-map convolution of L1-normalised 1,024-value patches the sample-"
              "dependent part of the output is about 1/1,000 of the bias, so the next layers see almost the same "
              "input for every image; (2) in the +1×1 variants the final Mix1x1 starts with a ReLU on the 10 "
              "class scores, which are negative for many images at initialisation, so those images pass no "
              "gradient (an NMF output is never negative, so the CNMF models do not have this problem). The paper "
              "trained for hundreds of epochs on CIFAR-10; these baselines may simply need far longer, or other "
              "learning rates (`--lr-conv`, `--lr-mix`)."
              % "; ".join("%s %s %%" % (NAMES[m], ", ".join("%.1f" % a for a in finals_of[m])) for m in stuck))
        print("- So on Fashion-MNIST, with this budget, CNMF+1×1 beats the paper's CNN and CNN+1×1 by a wide margin, "
              "but that margin says more about how hard those baselines are to optimise than about NMF; against a "
              "standard CNN of the same size the difference is the one printed above.")
        print()


if __name__ == "__main__":
    main()
