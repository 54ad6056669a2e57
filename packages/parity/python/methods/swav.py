"""SwAV (Caron et al. 2020, Algorithm 1; facebookresearch/swav main_swav.py, distributed_sinkhorn).

Every crop through the encoder, the crops of one resolution as one batch (the model's forward),
then the projection head and L2 normalisation; prototypes C, a Linear without bias, normalised
before each step; codes q_a = sinkhorn(scores of global crop a) without gradient;
L = mean_a mean_{v != a} -mean_b sum_k q_a log softmax(s_v / tau). No queue here.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import by_resolution, load_weights, sgd, use_split_bn
from nets import Encoder, load_state

CROPS_FOR_ASSIGN = (0, 1)


@torch.no_grad()
def sinkhorn(out, epsilon, iterations):
    """distributed_sinkhorn on one process: Q [K, B] = exp(out / epsilon)^T over its total,
    rows to 1/K and columns to 1/B `iterations` times, times B; returned [B, K]."""
    q = torch.exp(out / epsilon).t()
    b, k = q.shape[1], q.shape[0]
    q /= torch.sum(q)
    for _ in range(iterations):
        q /= torch.sum(q, dim=1, keepdim=True)
        q /= k
        q /= torch.sum(q, dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


def build(ctx, inputs):
    state = load_weights(inputs.path("weights"))
    net = use_split_bn(Encoder(ctx["model"], ctx["channels"]), ctx["model"].get("bnSplits", 1))
    k, d = state["prototypes.weight"].shape
    net.prototypes = nn.Linear(d, k, bias=False)
    load_state(net, state)
    net.train()
    return {"query": net, "opt": sgd(ctx, net)}


def forward(net, crops):
    """main_swav.py's model(inputs): the backbone by resolution, the head and normalisation on
    every crop at once, then the prototypes: [V * B, K]."""
    z = F.normalize(net.fc(by_resolution(net.features, crops)), dim=1, p=2)
    return net.prototypes(z)


@torch.no_grad()
def prepare(ctx, st):
    """Each prototype to unit length before the step, outside the graph (main_swav.py)."""
    w = F.normalize(st["query"].prototypes.weight.data.clone(), dim=1, p=2)
    st["query"].prototypes.weight.copy_(w)


def step(ctx, st, b, i):
    net, loss_options, tau = st["query"], ctx["loss"], ctx["temperature"]
    prepare(ctx, st)
    crops = [b["query"], b["key"]] + [b[f"crop{v}"] for v in range(2, len(b)) if f"crop{v}" in b]
    output = forward(net, crops)
    bs, n = crops[0].shape[0], len(crops)
    loss = 0
    for crop_id in CROPS_FOR_ASSIGN:
        with torch.no_grad():
            out = output[bs * crop_id : bs * (crop_id + 1)].detach()
            q = sinkhorn(out, loss_options["epsilon"], loss_options["sinkhornIterations"])[-bs:]
        subloss = 0
        for v in (v for v in range(n) if v != crop_id):
            x = output[bs * v : bs * (v + 1)] / tau
            subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
        loss += subloss / (n - 1)
    return loss / len(CROPS_FOR_ASSIGN), None
