"""MoCo v3 (Chen, Xie, He 2021): predictor, momentum encoder, in-batch keys. With a ViT,
its ViT recipe (main_moco.py --stop-grad-conv1, vits.py): the random patch projection is
frozen (requires_grad False), and the optimizer is the manifest's (AdamW for ViTs)."""

import torch
import torch.nn.functional as F

from common import cosine_momentum, ema, encoder, key_forward, optimizer


def contrastive(q, k, tau):
    """Cross-entropy of q k^T / tau against the diagonal, scaled by 2 tau (MoCo v3)."""
    logits = q @ k.t() / tau
    return F.cross_entropy(logits, torch.arange(q.shape[0])) * 2 * tau


def build(ctx, inputs):
    q = encoder(ctx, inputs.path("weights"))  # base + predictor
    k = encoder(ctx, inputs.path("key"), trainable=False)  # follows the base only
    if ctx["model"]["encoder"].startswith("vit"):
        q.base.patch_embed.proj.requires_grad_(False)  # MoCo v3's stop_grad_conv1
    return {"query": q, "key": k, "opt": optimizer(ctx, q)}


def step(ctx, st, b, i):
    q_net, k_net, tau = st["query"], st["key"], ctx["temperature"]
    k1 = key_forward(k_net, b["query"], None)
    k2 = key_forward(k_net, b["key"], None)
    q1, q2 = q_net(b["query"]), q_net(b["key"])
    loss = contrastive(q1, k2, tau) + contrastive(q2, k1, tau)

    return loss, lambda: follow(ctx, st, i)


def follow(ctx, st, i):
    """The momentum encoder's EMA of the base encoder after step i, m on a cosine to 1."""
    ema(st["key"], st["query"].base, cosine_momentum(ctx["strategy"]["momentum"], i, ctx["totalSteps"]))
