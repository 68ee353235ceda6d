#!/usr/bin/env python3
"""Side-by-side timing of nmfdsl and an independent PyTorch CPU implementation of the same computations.

What is compared (T = 20, float32, the same shapes and thread counts):
  cnmf_forward/L1/32, cnmf_forward/L2/32      the NMF layer's forward (unfold, patch L1, 20 updates)
  cnmf_backward/L1/32, cnmf_backward/L2/32    its approximate backward (docs/method.md §2, eq. (1), (2))
  train_step/cnmf1x1/3/50                     one CNMF+1x1 training step on 3x28x28 input, batch 50
  attack_step/cnmf1x1:unrolled/1/50           one PGD step on CNMF+1x1, 1x28x28 input, batch 50: forward, the
                                              cross-entropy's exact input gradient (PyTorch: autograd through all
                                              20 updates of every NMF layer; nmfdsl: the unrolled gradient mode)
  train_step/hah/1/128                        one training step of nmfdsl-train's Fashion-MNIST HaH network
                                              (HaHSmall: two HaH blocks, a weight-normalised block, linear head;
                                              cross-entropy, the HaH costs routed to their own layer's weights
                                              with the layer input detached, Adam), 1x28x28 input, batch 128

Requirements: PyTorch from Debian with OpenBLAS behind it (`apt-get install python3-torch libopenblas0-pthread`;
without libopenblas0-pthread, Debian's PyTorch runs on the reference BLAS and is some 10x slower still; CI does not
run this script) and a native build of nmfdsl_bench:
  cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release -DNMFDSL_NATIVE=ON && cmake --build build/native -j2
  /usr/bin/python3 benchmarks/compare_pytorch.py --threads 1 2   # Debian's Python, where python3-torch lives

PyTorch's CPU speed on this machine depends several-fold on OpenBLAS's core type, so every PyTorch measurement is
repeated in subprocesses with OPENBLAS_CORETYPE unset and set to each of CORETYPES (and, with several threads,
with OPENBLAS_NUM_THREADS unset and 1), and the fastest is reported with the setting that gave it. With one thread
OpenBLAS is held to one thread too (OPENBLAS_NUM_THREADS=1): left unset it starts one thread per core whatever
torch.set_num_threads says, so PyTorch's "one thread" would use every core in its matrix products. A second table
compares nmfdsl with PyTorch's fastest over all thread counts tried.

--isa avx2 compares on AVX2 + FMA alone, as on a machine without AVX-512: PyTorch's own kernels are limited to AVX2
(ATEN_CPU_CAPABILITY=avx2) and OpenBLAS to its AVX2 core types (Haswell, Zen); pass an nmfdsl_bench built with
-DNMFDSL_ARCH=haswell (the default bench for this option is build/avx2/benchmarks/nmfdsl_bench). The first line
printed names the instruction set nmfdsl_bench was built for and its peak_fma in the same run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CORETYPES = ["", "Haswell", "SkylakeX", "Zen", "Sandybridge"]
AVX2_CORETYPES = ["Haswell", "Zen"]
LAYERS = {"L1": (3, 28, 32, 5), "L2": (32, 12, 64, 5)}  # channels, map size, outputs, kernel


def torch_worker(threads, repeats):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    # the paper's NMF in PyTorch, written independently of nmfdsl (also checked against it: tests/pytorch/)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "pytorch"))
    from nmf_torch import ApproximateNMF, nmf_updates

    def nmf_layer(x, v, k, iterations=20, exact=False):
        n, c, s, _ = x.shape
        cols = F.unfold(F.relu(x), k)                         # [N, C·k·k, P]
        cols = cols / (cols.sum(1, keepdim=True) + 1e-19)
        p = cols.shape[2]
        rows = cols.transpose(1, 2).reshape(n * p, -1)
        a = v.abs()
        w = a / (a.sum(1, keepdim=True) + 1e-19)
        h = nmf_updates(rows, w, iterations) if exact else ApproximateNMF.apply(rows, w, iterations)
        side = s - k + 1
        return h.reshape(n, side, side, -1).permute(0, 3, 1, 2)

    def timed(fn):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    out = {}
    for name, (c, s, outputs, k) in LAYERS.items():
        x = torch.rand(32, c, s, s)
        v = torch.rand(outputs, c * k * k, requires_grad=True)
        out["cnmf_forward/%s/32" % name] = timed(lambda: nmf_layer(x, v, k))
        y = nmf_layer(x, v, k)
        g = torch.randn_like(y)
        out["cnmf_backward/%s/32" % name] = timed(lambda: torch.autograd.grad(y, v, g, retain_graph=True))

    class Block(torch.nn.Module):
        def __init__(self, c_in, c_out, k, bn):
            super().__init__()
            self.k, self.bn = k, bn
            self.v = torch.nn.Parameter(torch.rand(c_out, c_in * k * k))
            self.mix = torch.nn.Conv2d(c_out, c_out, 1)
            self.bn_a = torch.nn.BatchNorm2d(c_out, track_running_stats=False) if bn else None
            self.bn_b = torch.nn.BatchNorm2d(c_out, track_running_stats=False) if bn else None
            self.exact = False

        def forward(self, x):
            h = nmf_layer(x, self.v, self.k, exact=self.exact)  # block 3's kernel 4 is the whole 4×4 map
            if self.bn:
                h = self.bn_a(h)
            h = F.relu(h)
            h = h / (h.sum(1, keepdim=True) + 1e-19)
            h = self.mix(h)
            return self.bn_b(h) if self.bn else h

    net = torch.nn.ModuleList([Block(3, 32, 5, True), Block(32, 64, 5, True), Block(64, 96, 4, False),
                               Block(96, 10, 1, False)])

    def model(x):
        x = F.avg_pool2d(net[0](x), 2)
        x = F.avg_pool2d(net[1](x), 2)
        x = net[3](net[2](x))
        return F.softmax(x, 1).flatten(1)

    nmf = [b.v for b in net]
    mix = [p for b in net for p in b.mix.parameters()]
    norm = [p for b in net for m in (b.bn_a, b.bn_b) if m is not None for p in m.parameters()]
    opts = [torch.optim.Adam(nmf, lr=0.01), torch.optim.Adam(mix, lr=0.001), torch.optim.Adam(norm, lr=0.001)]
    xb = torch.rand(50, 3, 28, 28)
    t = F.one_hot(torch.randint(0, 10, (50,)), 10).float()

    def train_step():
        for o in opts:
            o.zero_grad()
        p = model(xb)
        loss = (0.5 * ((p - t) ** 2).sum() / 10 + (t * torch.log((t + 1e-20) / (p + 1e-20))).sum() / 10) / 1.5
        loss.backward()
        for o in opts:
            o.step()

    out["train_step/cnmf1x1/3/50"] = timed(train_step)

    # one PGD step on CNMF+1×1 for 1×28×28 images, batch 50: forward, cross-entropy, the exact input gradient by
    # autograd through all 20 updates of every NMF layer, and the signed step
    attacked = torch.nn.ModuleList([Block(1, 32, 5, True), Block(32, 64, 5, True), Block(64, 96, 4, False),
                                    Block(96, 10, 1, False)])
    for b in attacked:
        b.exact = True
        b.requires_grad_(False)
    xa = torch.rand(50, 1, 28, 28)
    ya = torch.randint(0, 10, (50,))

    def pgd_step():
        x = xa.clone().requires_grad_(True)
        h = F.avg_pool2d(attacked[0](x), 2)
        h = F.avg_pool2d(attacked[1](h), 2)
        p = F.softmax(attacked[3](attacked[2](h)), 1).flatten(1)
        loss = -torch.log(p[torch.arange(50), ya] + 1e-30).sum()
        (g,) = torch.autograd.grad(loss, x)
        return (x.detach() + 0.001 * g.sign()).clamp(0, 1)

    out["attack_step/cnmf1x1:unrolled/1/50"] = timed(pgd_step)
    out["train_step/hah/1/128"] = timed(hah_train_step(threads))
    json.dump(out, sys.stdout)


def hah_train_step(threads):
    """An independent PyTorch version of HaHSmall's training step (docs/method.md §6), returned as a callable."""
    import torch
    import torch.nn.functional as F

    def wn_conv(x, w):
        norm = w.flatten(1).norm(dim=1) + 1e-6
        return F.conv2d(x, w / norm[:, None, None, None], padding=1)

    def divisive_norm(a, sigma=0.1):
        s = F.max_pool2d(a.abs(), 3, stride=1, padding=1).mean(1, keepdim=True)
        d = sigma * s.amax((2, 3), keepdim=True) + (1 - sigma) * s + 1e-7
        return a / d

    def threshold(a, rho=0.2):
        n, c, h, w = a.shape
        k = int((1 - rho) * h * w + 1e-9)
        thr = torch.kthvalue(a.reshape(n, c, h * w), k, dim=2).values[:, :, None, None]
        return a * (a > thr)

    def hah_cost(u, k_ratio=0.1, lam=1.0):
        v = F.relu(u)
        n = v.shape[1]
        k = min(n - 1, max(1, int(-(-k_ratio * n // 1))))
        top = torch.topk(v, k, dim=1).values.sum(1)
        rest = v.sum(1) - top
        return (top / k - lam * rest / (n - k)).mean()

    w1 = torch.nn.Parameter(torch.rand(32, 1, 3, 3) - 0.5)
    w2 = torch.nn.Parameter(torch.rand(64, 32, 3, 3) - 0.5)
    w3 = torch.nn.Parameter(torch.rand(128, 64, 3, 3) - 0.5)
    bn = torch.nn.BatchNorm2d(128)
    head = torch.nn.Linear(128 * 3 * 3, 10)
    alphas = (0.0045, 0.0025)
    opt = torch.optim.Adam([w1, w2, w3, *bn.parameters(), *head.parameters()], lr=1e-3)
    xb = torch.rand(128, 1, 28, 28)
    labels = torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad()
        x = (xb - 0.2860) / 0.3530
        local = 0.0
        for w, alpha in zip((w1, w2), alphas):
            u = wn_conv(x, w)
            local = local - alpha * hah_cost(wn_conv(x.detach(), w))  # the cost sees its input held fixed
            x = F.max_pool2d(threshold(divisive_norm(F.relu(u))), 2)
        x = F.max_pool2d(bn(F.relu(wn_conv(x, w3))), 2)
        loss = F.cross_entropy(head(x.flatten(1)), labels) + local
        loss.backward()
        opt.step()

    return step


def pytorch_best(threads, repeats, isa):
    """Fastest time per benchmark over OPENBLAS_CORETYPE (unset or each of CORETYPES) and, with several threads,
    OPENBLAS_NUM_THREADS unset or 1 (OpenBLAS's own threads can fight PyTorch's; with one thread it is always 1, so
    that one thread is one core); returns name -> (ms, setting).
    isa == "avx2": PyTorch's kernels and OpenBLAS's core types limited to AVX2."""
    best = {}
    blas_threads = ["1"] if threads == 1 else ["", "1"]
    for core in AVX2_CORETYPES if isa == "avx2" else CORETYPES:
        for blas in blas_threads:
            env = dict(os.environ)
            env.pop("OPENBLAS_CORETYPE", None)
            env.pop("OPENBLAS_NUM_THREADS", None)
            env.pop("ATEN_CPU_CAPABILITY", None)
            if isa == "avx2":
                env["ATEN_CPU_CAPABILITY"] = "avx2"
            setting = "CORETYPE=" + (core or "unset")
            if core:
                env["OPENBLAS_CORETYPE"] = core
            if blas:
                env["OPENBLAS_NUM_THREADS"] = blas
                setting += ", OPENBLAS_NUM_THREADS=" + blas
            run = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads), "--repeats",
                                  str(repeats)], env=env, capture_output=True, text=True)
            if run.returncode != 0:
                print("pytorch (%s) failed: %s" % (setting, run.stderr.strip()[-300:]), file=sys.stderr)
                continue
            for name, ms in json.loads(run.stdout).items():
                if name not in best or ms < best[name][0]:
                    best[name] = (ms, setting)
    return best


def nmfdsl_times(bench, threads):
    env = dict(os.environ, NMFDSL_THREADS=str(threads))
    run = subprocess.run([bench, "--benchmark_filter=^(peak_fma|cnmf_(forward|backward)/L[12]/32|train_step/(cnmf1x1/3/50|"
                          "hah/1/128)|attack_step/cnmf1x1:unrolled/1/50)$",
                          "--benchmark_repetitions=5", "--benchmark_report_aggregates_only=true",
                          "--benchmark_format=json", "--benchmark_min_time=0.2"], env=env, capture_output=True,
                         text=True, check=True)
    out = {}
    for b in json.loads(run.stdout)["benchmarks"]:
        if b.get("aggregate_name") == "median" and b["run_name"] == "peak_fma":
            out["peak_fma"] = (b["GFLOPS"], b.get("label", ""))
        elif b.get("aggregate_name") == "median":
            scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6}[b["time_unit"]]
            out[b["run_name"]] = b["real_time"] * scale
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--bench", default=None, help="nmfdsl_bench (default build/native/…, build/avx2/… with --isa avx2)")
    ap.add_argument("--isa", choices=["best", "avx2"], default="best")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        torch_worker(a.threads[0], a.repeats)
        return
    if a.bench is None:
        a.bench = "build/%s/benchmarks/nmfdsl_bench" % ("avx2" if a.isa == "avx2" else "native")
    print("| benchmark | threads | nmfdsl ms | PyTorch ms (its fastest setting) | PyTorch / nmfdsl |")
    print("|---|---|---|---|---|")
    ours_all, theirs_all = {}, {}
    for threads in a.threads:
        ours = ours_all[threads] = nmfdsl_times(a.bench, threads)
        peak, label = ours.pop("peak_fma")
        print("| nmfdsl_bench: %s, peak_fma %.1f GFLOP/s per core (median, this run) | %d | | | |" % (label, peak, threads))
        theirs = theirs_all[threads] = pytorch_best(threads, a.repeats, a.isa)
        for name in sorted(ours):
            if name in theirs:
                ms, setting = theirs[name]
                print("| %s | %d | %.2f | %.2f (%s) | %.2f× |" % (name, threads, ours[name], ms, setting,
                                                                  ms / ours[name]))
    # PyTorch's best over every thread count tried, against nmfdsl at each thread count
    print()
    print("| benchmark | PyTorch's fastest (threads, setting) | nmfdsl threads | nmfdsl ms | ratio |")
    print("|---|---|---|---|---|")
    names = sorted(set.intersection(*(set(t) for t in theirs_all.values())))
    for name in names:
        th, (ms, setting) = min(((t, theirs_all[t][name]) for t in theirs_all), key=lambda x: x[1][0])
        for threads in a.threads:
            if name in ours_all[threads]:
                print("| %s | %.2f ms (%d, %s) | %d | %.2f | %.2f× |" % (name, ms, th, setting, threads,
                                                                         ours_all[threads][name],
                                                                         ms / ours_all[threads][name]))


if __name__ == "__main__":
    main()
