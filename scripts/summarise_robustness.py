#!/usr/bin/env python3
"""Writes the measured section of docs/robustness.md from the runs of scripts/robustness.sh.

usage: summarise_robustness.py RUNS_DIR ROBUSTNESS_MD

RUNS_DIR holds <model>-seed<s>/robustness.csv (nmfdsl-eval's rows; only runs marked `evaluated` count; the APGD rows
of <model>-seed<s>/robustness-apgd.csv replace its own when the run is marked `apgd-full`),
<model>-seed<s>/metrics.csv (nmfdsl-train's), commit and times.csv. The section lies between the markers below; it is replaced (or appended when they are
missing). Every number is a mean over the seeds ± their standard deviation; accuracies in percent.
"""
import csv
import glob
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from summarise_hah import cpu_name  # noqa: E402  (the CPU's name, as the other results scripts print it)

BEGIN, END = "<!-- robustness-table:begin -->", "<!-- robustness-table:end -->"
ORDER = ["cnn-plain", "cnn", "cnn1x1", "cnmf", "cnmf1x1", "hah-baseline", "hah"]
NAMES = {
    "cnn-plain": "standard CNN (`cnn-plain`)",
    "cnn": "CNN, L1-normalised patches (`cnn`)",
    "cnn1x1": "CNN + 1×1 (`cnn1x1`)",
    "cnmf": "CNMF (`cnmf`)",
    "cnmf1x1": "CNMF + 1×1 (`cnmf1x1`)",
    "hah-baseline": "HaH baseline (`hah-baseline`)",
    "hah": "HaH (`hah`)",
}
REFERENCE = "cnn-plain"
NMF_MODELS = {"cnmf", "cnmf1x1"}
CHECKS = ["check-large-eps", "check-more-steps", "check-square", "check-transfer"]


def load(runs):
    """{model: {seed: [rows]}} from every <model>-seed<s>/robustness.csv."""
    found = {}
    for path in sorted(glob.glob(os.path.join(runs, "*-seed*", "robustness.csv"))):
        match = re.fullmatch(r"(.+)-seed(\d+)", os.path.basename(os.path.dirname(path)))
        if not match or not os.path.exists(os.path.join(os.path.dirname(path), "evaluated")):
            continue  # an evaluation still running or cut off (robustness.sh marks finished ones)
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        # APGD on all attacked images, run last for the NMF networks (robustness.sh), replaces the first APGD rows
        full = os.path.join(os.path.dirname(path), "robustness-apgd.csv")
        if os.path.exists(os.path.join(os.path.dirname(path), "apgd-full")) and os.path.exists(full):
            with open(full, newline="") as f:
                apgd = [r for r in csv.DictReader(f) if r["evaluation"] == "apgd-ce+t"]
            rows = [r for r in rows if r["evaluation"] != "apgd-ce+t"] + apgd
        found.setdefault(match.group(1), {})[int(match.group(2))] = rows
    return found


def pick(rows, evaluation, norm="", strength=None):
    for r in rows:
        if r["evaluation"] == evaluation and r["norm"] == norm and (
            strength is None or abs(float(r["strength"]) - strength) < 1e-9
        ):
            return r
    return None


def values(per_seed, evaluation, norm="", strength=None):
    out = []
    for rows in per_seed.values():
        r = pick(rows, evaluation, norm, strength)
        if r is not None:
            out.append(float(r["value"]))
    return out


def cell(vals, scale=100.0, digits=1):
    if not vals:
        return "–"
    m = statistics.mean(vals) * scale
    if len(vals) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(vals) * scale:.{digits}f}"


def mean_or_none(vals):
    return statistics.mean(vals) * 100 if vals else None


def strengths(found, evaluation, norm=""):
    s = set()
    for per_seed in found.values():
        for rows in per_seed.values():
            for r in rows:
                if r["evaluation"] == evaluation and r["norm"] == norm:
                    s.add(float(r["strength"]))
    return sorted(s)


def images(found, evaluation, norm=""):
    n = set()
    for per_seed in found.values():
        for rows in per_seed.values():
            for r in rows:
                if r["evaluation"] == evaluation and r["norm"] == norm:
                    n.add(int(r["images"]))
    return "/".join(str(v) for v in sorted(n)) or "–"


def times(runs):
    path = os.path.join(runs, "times.csv")
    stages = {}
    isas = set()
    if os.path.exists(path):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                stages[r["stage"]] = stages.get(r["stage"], 0) + int(r["seconds"])
                isas.add(r["isa"])
    return stages, isas


def epochs_of(runs, model, seed):
    path = os.path.join(runs, f"{model}-seed{seed}", "metrics.csv")
    try:
        with open(path, newline="") as f:
            return len(list(csv.DictReader(f)))
    except OSError:
        return None


def section(runs):
    found = load(runs)
    models = [m for m in ORDER if m in found] + sorted(m for m in found if m not in ORDER)
    if not models:
        sys.exit(f"summarise_robustness: no <model>-seed<s>/robustness.csv under {runs}")
    seeds = sorted({s for per_seed in found.values() for s in per_seed})
    commit = open(os.path.join(runs, "commit")).read().strip() if os.path.exists(os.path.join(runs, "commit")) else "?"
    stages, isas = times(runs)
    epochs = sorted({e for m in models for s in found[m] if (e := epochs_of(runs, m, s))})
    out = []
    total = sum(stages.values())
    out.append(
        f"Measured with `bash scripts/robustness.sh` (commit {commit}, {cpu_name()}, "
        f"{'/'.join(sorted(isas)) or '?'}, 2 threads): {len(models)} models × seeds {', '.join(map(str, seeds))}, "
        f"{'/'.join(map(str, epochs)) or '?'} epochs of Fashion-MNIST each. Run time: training "
        f"{stages.get('train', 0) / 60:.0f} min, evaluation {stages.get('eval', 0) / 60:.0f} min, "
        f"{total / 3600:.1f} h in all. Mean ± standard deviation over the seeds, accuracy in %."
    )
    out.append("")
    sigmas = strengths(found, "noise-gaussian")
    out.append(f"**Clean and Gaussian noise** (all {images(found, 'clean')} test images; each seed's noise accuracy "
               "is the mean of 3 draws):")
    out.append("")
    head = ["model", "clean, as trained (batch statistics)", "clean"] + [f"σ = {s:g}" for s in sigmas]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for m in models:
        row = [NAMES.get(m, m), cell(values(found[m], "clean-batch-statistics")), cell(values(found[m], "clean"))]
        row += [cell(values(found[m], "noise-gaussian", "", s)) for s in sigmas]
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    linf, l2 = strengths(found, "pgd", "linf"), strengths(found, "pgd", "l2")
    alinf, al2 = strengths(found, "apgd-ce+t", "linf"), strengths(found, "apgd-ce+t", "l2")
    out.append(
        f"**Attacks** (the first {images(found, 'pgd', 'linf')} test images; PGD 40 steps with a random start, "
        "APGD-CE then APGD-T with 9 target classes, 100 iterations each, on the survivors; NMF layers attacked "
        "through the exact unrolled gradient, and in the rows marked *approx.* through the approximate training "
        "gradient):"
    )
    out.append("")
    head = [f"PGD ℓ∞ {e:g}" for e in linf] + [f"PGD ℓ2 {e:g}" for e in l2]
    head += [f"APGD ℓ∞ {e:g}" for e in alinf] + [f"APGD ℓ2 {e:g}" for e in al2]
    out.append("| model | " + " | ".join(head) + " |")
    out.append("|---|" + "---|" * len(head))
    for m in models:
        row = [cell(values(found[m], "pgd", "linf", e)) for e in linf]
        row += [cell(values(found[m], "pgd", "l2", e)) for e in l2]
        row += [cell(values(found[m], "apgd-ce+t", "linf", e)) for e in alinf]
        row += [cell(values(found[m], "apgd-ce+t", "l2", e)) for e in al2]
        out.append(f"| {NAMES.get(m, m)} | " + " | ".join(row) + " |")
        if values(found[m], "pgd-approximate", "linf"):
            row = [cell(values(found[m], "pgd-approximate", "linf", e)) for e in linf]
            row += [cell(values(found[m], "pgd-approximate", "l2", e)) for e in l2]
            row += ["–"] * (len(alinf) + len(al2))
            out.append(f"| {NAMES.get(m, m)}, *approx.* | " + " | ".join(row) + " |")
    apgd_counts = {m: images({m: found[m]}, "apgd-ce+t", "linf") for m in models}
    fewer = {m: n for m, n in apgd_counts.items() if n not in ("–", images(found, "pgd", "linf"))}
    if fewer:
        out.append("")
        out.append("APGD on fewer images (the exact gradient through 20 NMF updates per layer makes its 1,000 "
                   "iterations per surviving image too slow for 2 cores): " +
                   ", ".join(f"{NAMES.get(m, m)} {n}" for m, n in fewer.items()) + ".")
    out.append("")
    non_finite = {m: sum(int(r["non_finite"]) for rows in found[m].values() for r in rows) for m in models}
    if any(non_finite.values()):
        out.append("Non-finite losses or gradients met by the attacks (images stopped, counted as not robust): " +
                   ", ".join(f"{m} {n}" for m, n in non_finite.items() if n) + ".")
    else:
        out.append("No attack met a non-finite loss or gradient.")
    out.append("")
    out.append(f"**Gradient-masking checks** (the first {images(found, 'check-large-eps', 'linf')} test images, ℓ∞ "
               f"{', '.join(f'{e:g}' for e in strengths(found, 'check-more-steps', 'linf'))}; accuracy per seed; "
               "the cosine between the approximate and the exact input gradients for the NMF models):")
    out.append("")
    out.append("| model | PGD ℓ∞ 0.5 (≤ 1 %) | PGD 10 / 40 / 100 steps (never rising) | Square, 1000 queries "
               "(≤ 2 points below PGD) | transfer from the standard CNN (not below PGD) | gradient cosine | verdict |")
    out.append("|---|---|---|---|---|---|---|")
    masking = {}
    for m in models:
        cells_ = {c: [] for c in ["large", "steps", "square", "transfer", "cos"]}
        failed = []
        for seed, rows in sorted(found[m].items()):
            def acc(evaluation, norm="linf"):
                r = pick(rows, evaluation, norm)
                return f"{float(r['value']) * 100:.1f}" if r else "–"
            cells_["large"].append(acc("check-large-eps"))
            cells_["steps"].append(" / ".join(acc(f"pgd-{k}-steps") for k in (10, 40, 100)))
            cells_["square"].append(acc("check-square"))
            cells_["transfer"].append(acc("check-transfer"))
            cos = pick(rows, "gradient-cosine")
            cells_["cos"].append(f"{float(cos['value']):.2f}" if cos else "–")
            for c in CHECKS:
                r = pick(rows, c, "linf")
                if r is not None and r["verdict"] != "pass":
                    failed.append(f"{c.removeprefix('check-')} (seed {seed})")
        masking[m] = failed
        verdict = "pass" if not failed else "**FAIL**: " + ", ".join(failed) + " — possibly masking its gradients"
        out.append(f"| {NAMES.get(m, m)} | " + " | ".join("; ".join(cells_[c]) for c in
                                                           ["large", "steps", "square", "transfer", "cos"]) +
                   f" | {verdict} |")
    out.append("")
    # plain statements against the standard CNN
    if REFERENCE in found:
        out.append(f"**Against the standard CNN** (difference of the seed means, in points; positive = more "
                   f"accurate than `{REFERENCE}`):")
        out.append("")
        probes = [("clean", "", None, "clean")]
        probes += [("noise-gaussian", "", s, f"noise σ {s:g}") for s in sigmas]
        probes += [("pgd", "linf", e, f"PGD ℓ∞ {e:g}") for e in linf] + [("pgd", "l2", e, f"PGD ℓ2 {e:g}") for e in l2]
        probes += [("apgd-ce+t", "linf", e, f"APGD ℓ∞ {e:g}") for e in alinf]
        probes += [("apgd-ce+t", "l2", e, f"APGD ℓ2 {e:g}") for e in al2]
        for m in models:
            if m == REFERENCE:
                continue
            parts = []
            for evaluation, norm, s, label in probes:
                a = mean_or_none(values(found[m], evaluation, norm, s))
                b = mean_or_none(values(found[REFERENCE], evaluation, norm, s))
                if a is not None and b is not None:
                    parts.append(f"{label} {a - b:+.1f}")
            checks = "its checks pass" if not masking[m] else "a masking check fails, so a gain may not be real"
            out.append(f"- {NAMES.get(m, m)}: " + ", ".join(parts) + f"; {checks}.")
        out.append("")
    out.append("![accuracy against noise and attack radius, every model, first seed](robustness.png)")
    return "\n".join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    runs, md = sys.argv[1], sys.argv[2]
    body = section(runs)
    text = open(md).read() if os.path.exists(md) else ""
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Measured on Fashion-MNIST\n\n" + block + "\n"
    open(md, "w").write(text)


if __name__ == "__main__":
    main()
