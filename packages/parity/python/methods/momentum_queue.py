"""MoCo (He et al. 2020, Algorithm 1): momentum key encoder, FIFO queue, InfoNCE; symmetric option."""

import torch

from common import cosine_momentum, ema, encoder, info_nce, key_forward, sgd


def build(ctx, inputs):
    q = encoder(ctx, inputs.path("weights"))
    k = encoder(ctx, inputs.path("key"), trainable=False)
    queue = torch.from_numpy(inputs.load("queue"))
    return {"query": q, "key": k, "opt": sgd(ctx, q), "queue": queue, "ptr": 0}


def step(ctx, st, b, i):
    tau = ctx["temperature"]
    q_net, k_net, queue = st["query"], st["key"], st["queue"]
    if ctx["loss"]["symmetric"]:
        k1 = key_forward(k_net, b["query"], b.get("perm0"))
        k2 = key_forward(k_net, b["key"], b.get("perm1"))
        q1, q2 = q_net(b["query"]), q_net(b["key"])
        loss = info_nce(q1, k2, queue, tau)[0] + info_nce(q2, k1, queue, tau)[0]
        keys = torch.cat([k1, k2])
    else:
        keys = key_forward(k_net, b["key"], b.get("perm0"))
        loss = info_nce(q_net(b["query"]), keys, queue, tau)[0]

    def after():
        enqueue(st, keys)
        follow(ctx, st, i)

    return loss, after


def follow(ctx, st, i):
    """The key encoder's EMA after step i: theta_k <- m theta_k + (1 - m) theta_q (MoCo eq. 2)."""
    s = ctx["strategy"]
    m = s["momentum"]
    if s.get("momentumSchedule") == "cosine":
        m = cosine_momentum(m, i, ctx["totalSteps"])
    ema(st["key"], st["query"], m)


def enqueue(st, keys):
    """Rows ptr, ptr+1, ... (mod K) get the newest keys; a batch larger than K leaves its last K."""
    queue = st["queue"]
    size, b = queue.shape[0], keys.shape[0]
    n = min(b, size)
    rows = (st["ptr"] + (b - n) + torch.arange(n)) % size
    queue[rows] = keys[b - n :]
    st["ptr"] = (st["ptr"] + b) % size
