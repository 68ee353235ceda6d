"""The paper's NMF inference and its approximate backward in PyTorch, written independently of nmfdsl: shared by
tests/pytorch/crosscheck.py (numerics) and benchmarks/compare_pytorch.py (speed)."""
import torch


def nmf_updates(x, w, iterations):
    """h = NMF(x, W) for rows x [R, I] and basis W [H, I]: `iterations` multiplicative updates from h0 = 1/H, each
    h <- h * ((x / (h W + 1e-20)) W^T), h <- h / (sum h + 1e-19). Differentiable: autograd goes through every update."""
    h = torch.full((x.shape[0], w.shape[0]), 1.0 / w.shape[0], dtype=x.dtype)
    for _ in range(iterations):
        h = h * ((x / (h @ w + 1e-20)) @ w.t())
        h = h / (h.sum(1, keepdim=True) + 1e-19)
    return h


class ApproximateNMF(torch.autograd.Function):
    """nmf_updates with the paper's approximate backward, from the final state h alone:
    gx = ((h * g) W) / (h W + eps),  gW = (h * g)^T qx - h^T (qx * gx),  qx = x / (h W + eps)."""

    @staticmethod
    def forward(ctx, x, w, iterations):
        with torch.no_grad():
            h = nmf_updates(x, w, iterations)
        ctx.save_for_backward(x, w, h)
        return h

    @staticmethod
    def backward(ctx, g):
        x, w, h = ctx.saved_tensors
        p = 1.0 / (h @ w + 1e-20)
        hg = h * g
        gx = (hg @ w) * p
        qx = x * p
        return gx, hg.t() @ qx - h.t() @ (qx * gx), None
