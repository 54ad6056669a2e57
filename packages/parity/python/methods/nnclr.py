"""NNCLR (Dwibedi et al. 2021, Algorithm 1): the nearest neighbour in a support set as the positive.

z1, z2 = f(x1), f(x2); p1, p2 = g(z1), g(z2) (the predictor);
nn = NN(z, Q) = Q[argmax_j cos(z, Q_j)], a row of the support set: no gradient reaches z or Q;
L(nn, p) = cross_entropy(normalize(nn) normalize(p)^T / t, arange(N)) (the paper's pseudocode);
loss = L(nn1, p2) / 2 + L(nn2, p1) / 2 (or L(nn1, p2) alone when not symmetric);
after the optimizer step Q <- enqueue(Q, normalize(z1)), FIFO, as MoCo's queue.
"""

import torch
import torch.nn.functional as F

from common import encoder, sgd
from methods.momentum_queue import enqueue


def nearest_neighbour(z, queue):
    """The support row of largest cosine similarity to each row of z (ties: the first), detached."""
    with torch.no_grad():
        sim = F.normalize(z, dim=1) @ F.normalize(queue, dim=1).t()  # [N, K]
        return queue[sim.argmax(dim=1)]


def neighbour_loss(nn, p, tau):
    """The paper's L(nn, p): each neighbour against every prediction of the batch, its own the target."""
    logits = F.normalize(nn, dim=1) @ F.normalize(p, dim=1).t() / tau
    return F.cross_entropy(logits, torch.arange(nn.shape[0]))


def build(ctx, inputs):
    net = encoder(ctx, inputs.path("weights"))  # base (backbone + projector) + predictor
    queue = torch.from_numpy(inputs.load("queue"))
    return {"query": net, "opt": sgd(ctx, net), "queue": queue, "ptr": 0}


def step(ctx, st, b, i):
    net, queue, tau = st["query"], st["queue"], ctx["temperature"]
    z1 = net.project(b["query"])  # both projections first, then the predictor: BN sees this order
    z2 = net.project(b["key"])
    p1, p2 = net.predictor(z1), net.predictor(z2)
    nn1 = nearest_neighbour(z1, queue)
    if ctx["loss"].get("symmetric", True):
        nn2 = nearest_neighbour(z2, queue)
        loss = neighbour_loss(nn1, p2, tau) / 2 + neighbour_loss(nn2, p1, tau) / 2
    else:
        loss = neighbour_loss(nn1, p2, tau)
    support = F.normalize(z1.detach(), dim=1)
    return loss, lambda: enqueue(st, support)
