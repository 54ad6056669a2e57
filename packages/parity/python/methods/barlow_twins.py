"""Barlow Twins (Zbontar et al. 2021, Algorithm 1; facebookresearch/barlowtwins main.py).

z1, z2 = f(x1), f(x2); c = bn(z1).T @ bn(z2) / N with bn = BatchNorm1d(affine=False);
L = sum_i (1 - c_ii)^2 + lambda * sum_{i != j} c_ij^2 (times scaleLoss). No predictor,
no stop-gradient.
"""

import torch
import torch.nn.functional as F

from common import encoder, sgd


def off_diagonal(x):
    """The off-diagonal entries of a square matrix, flattened (the official code's)."""
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_loss(z1, z2, lambd, scale=1.0):
    n, d = z1.shape
    bn = lambda z: F.batch_norm(z, None, None, training=True, eps=1e-5)  # noqa: E731
    c = bn(z1).T @ bn(z2) / n
    on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
    off_diag = off_diagonal(c).pow_(2).sum()
    return scale * (on_diag + lambd * off_diag)


def build(ctx, inputs):
    net = encoder(ctx, inputs.path("weights"))
    return {"query": net, "opt": sgd(ctx, net)}


def step(ctx, st, b, i):
    s = ctx["loss"]  # the 'barlow-twins' loss's options
    net = st["query"]
    project = lambda x: net.fc(net.features(x))  # noqa: E731  (not normalised)
    z1, z2 = project(b["query"]), project(b["key"])
    return barlow_twins_loss(z1, z2, s.get("lambda", 0.0051), s.get("scaleLoss", 1.0)), None
