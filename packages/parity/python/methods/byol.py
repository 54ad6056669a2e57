"""BYOL (Grill et al. 2020, Algorithm 1): online encoder + projector + predictor, EMA target.

The online network predicts the target's projection of the other view; the target (an
EMA of the online encoder and projector, no predictor) gets no gradient and runs BN in
training mode. loss = L(q(z1), sg(z2')) + L(q(z2), sg(z1')) with L = ||p/|p| - z/|z|||^2
= 2 - 2 cos, averaged over the batch; after the optimizer step xi <- tau xi + (1 - tau)
theta with tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2.
"""

import torch.nn.functional as F

from common import cosine_momentum, ema, encoder, key_forward, sgd


def regression(p, z):
    """BYOL's eq. 2: the squared distance of the L2-normalised vectors, mean over the batch."""
    return (F.normalize(p, dim=1) - F.normalize(z, dim=1)).pow(2).sum(1).mean()


def build(ctx, inputs):
    online = encoder(ctx, inputs.path("weights"))  # base (backbone + projector) + predictor
    target = encoder(ctx, inputs.path("key"), trainable=False)  # follows the base only
    return {"query": online, "key": target, "opt": sgd(ctx, online)}


def step(ctx, st, b, i):
    online, target = st["query"], st["key"]
    t1 = key_forward(target, b["query"], None)  # the target's projections first, as Contrast
    t2 = key_forward(target, b["key"], None)
    p1 = online.predictor(online.project(b["query"]))
    p2 = online.predictor(online.project(b["key"]))
    loss = regression(p1, t2) + regression(p2, t1)

    return loss, lambda: follow(ctx, st, i)


def follow(ctx, st, i):
    """The target's EMA of the online base after step i, tau on BYOL's cosine schedule."""
    s = ctx["strategy"]
    m = s["momentum"]
    if s.get("momentumSchedule", "cosine") == "cosine":
        m = cosine_momentum(m, i, ctx["totalSteps"])
    ema(st["key"], st["query"].base, m)
