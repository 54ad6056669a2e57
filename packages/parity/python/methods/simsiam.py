"""SimSiam (Chen & He 2021, Algorithm 1): one encoder f (backbone + projector), a predictor h.

z1, z2 = f(x1), f(x2); p1, p2 = h(z1), h(z2); L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 with
D(p, z) = -cos(p, z) averaged over the batch. No negatives, no momentum encoder; the
predictor's lr stays at the base lr (`--fix-pred-lr`, the manifest's fixedLr group).
"""

import torch.nn.functional as F

from common import encoder, sgd


def negative_cosine(p, z):
    """D(p, z) = -mean_i cos(p_i, z_i) as the paper's pseudocode; z.detach() is the stop-gradient."""
    z = z.detach()
    return -(F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1).mean()


def build(ctx, inputs):
    net = encoder(ctx, inputs.path("weights"))  # base (backbone + projector) + predictor
    return {"query": net, "opt": sgd(ctx, net)}


def step(ctx, st, b, i):
    net = st["query"]
    z1 = net.project(b["query"])  # both projections first, then the predictor: BN sees this order
    z2 = net.project(b["key"])
    p1, p2 = net.predictor(z1), net.predictor(z2)
    loss = negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2
    return loss, None
