"""What every method port shares: the losses from the papers, SplitBN, EMA, grad norms, inputs.

A method is a small module with `build(ctx) -> state` and `step(ctx, state, batch, lr) -> loss`
(see methods/); this file holds the parts they compose, once.
"""

import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nets import Encoder, PredictorEncoder, load_state


class SplitBatchNorm(nn.BatchNorm2d):
    """BN over `splits` contiguous sub-batches in training mode (single-device shuffle BN).

    Each split is normalised with its own statistics; the running statistics follow
    the mean over the splits of each split's mean and unbiased variance (as if each
    split updated its own copy and the copies were averaged). Eval mode is plain BN.
    """

    def __init__(self, channels, splits):
        super().__init__(channels)
        self.splits = splits

    def forward(self, x):
        if not self.training or self.splits == 1:
            return super().forward(x)
        parts = x.chunk(self.splits, 0)
        outs = []
        means, variances = [], []
        for p in parts:
            mean = p.mean((0, 2, 3))
            var = p.var((0, 2, 3), unbiased=False)
            n = p.numel() / p.shape[1]
            means.append(mean.detach())
            variances.append(var.detach() * n / (n - 1))
            y = (p - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
            outs.append(y * self.weight[None, :, None, None] + self.bias[None, :, None, None])
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(torch.stack(means).mean(0), alpha=m)
            self.running_var.mul_(1 - m).add_(torch.stack(variances).mean(0), alpha=m)
        return torch.cat(outs, 0)


def use_split_bn(module, splits):
    """Replaces every BatchNorm2d of `module` by a SplitBatchNorm (same parameters and buffers)."""
    if splits <= 1:
        return module
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            setattr(module, name, SplitBatchNorm(child.num_features, splits))
        else:
            use_split_bn(child, splits)
    return module


def info_nce(q, k, negatives, tau):
    """MoCo's Algorithm 1: logits [N, 1+K] = [q.k+, q.negatives^T] / tau, label 0, cross-entropy."""
    l_pos = (q * k).sum(1, keepdim=True)
    l_neg = q @ negatives.t()
    logits = torch.cat([l_pos, l_neg], 1) / tau
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long)), logits


def nt_xent(z1, z2, tau):
    """SimCLR's NT-Xent: 2N embeddings, each row's positive the other view, itself masked out."""
    n = z1.shape[0]
    z = torch.cat([z1, z2], 0)
    sim = z @ z.t() / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, targets)


def nce(logits, z, dataset_size):
    """InstDisc's NCE over logits whose column 0 is the positive: P = exp(logit) / Z, Pn = 1 / N."""
    k = logits.shape[1] - 1
    k_pn = k / dataset_size
    eps = 1e-7
    p = torch.exp(logits) / z
    log_h_pos = torch.log(p[:, :1] / (p[:, :1] + k_pn + eps))
    log_h_neg = torch.log(k_pn / (p[:, 1:] + k_pn + eps))
    return -(log_h_pos.sum() + log_h_neg.sum()) / logits.shape[0]


@torch.no_grad()
def ema(target, source, m):
    """theta_k <- m theta_k + (1 - m) theta_q over parameters only (MoCo)."""
    for pk, pq in zip(target.parameters(), source.parameters()):
        pk.mul_(m).add_(pq.detach(), alpha=1 - m)


def cosine_momentum(m0, step, total):
    """BYOL / MoCo v3: m rises from m0 to 1 along a half cosine."""
    if total <= 0:
        return m0
    return 1 - (1 - m0) * (math.cos(math.pi * min(step, total) / total) + 1) / 2


def load_weights(directory):
    """{torch name: ndarray} from a folder of `<name>.npy` files."""
    return {
        f[: -len(".npy")]: np.load(os.path.join(directory, f))
        for f in sorted(os.listdir(directory))
        if f.endswith(".npy")
    }


def encoder(ctx, weights_dir, trainable=True):
    """An Encoder of the manifest's model with the exported weights, in training mode."""
    enc = use_split_bn(Encoder(ctx["model"], ctx["channels"]), ctx["model"].get("bnSplits", 1))
    state = load_weights(weights_dir)
    if any(k.startswith("predictor.") for k in state):
        enc = PredictorEncoder(enc, ctx["strategy"]["predictorHidden"])
    load_encoder_state(enc, state)
    enc.train()
    enc.requires_grad_(trainable)
    return enc


def load_encoder_state(enc, state):
    """Loads exported weights ({torch name: ndarray}) into an Encoder, or a PredictorEncoder
    whose predictor's entries are named `predictor.*`, in place and in the module's dtype."""
    if isinstance(enc, PredictorEncoder):
        predictor = {k[len("predictor.") :]: v for k, v in state.items() if k.startswith("predictor.")}
        load_state(enc.base, {k: v for k, v in state.items() if not k.startswith("predictor.")})
        load_state(enc.predictor, predictor)
    else:
        load_state(enc, state)


def key_forward(net, x, perm):
    """Keys of the momentum encoder, no gradient; with a shuffle permutation, shuffle BN."""
    with torch.no_grad():
        if perm is None:
            return net(x)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel())
        return net(x[perm])[inverse]


def exported_name(name):
    """A parameter's exported (torchvision) name: a predictor wrapper nests the base under `base.`."""
    return name[len("base.") :] if name.startswith("base.") else name


def set_lr(ctx, opt, lr):
    """Step i's lr on every parameter group of `sgd`'s optimizer; a `fix_lr` group keeps the base lr."""
    for group in opt.param_groups:
        group["lr"] = ctx["optim"]["lr"] if group["fix_lr"] else lr


def sgd(ctx, module):
    """torch.optim.SGD over `module`, the parameters Contrast keeps at the unscheduled lr
    (ctx["fixedLr"]: SimSiam's predictor) in a second group marked `fix_lr`, as SimSiam's
    `--fix-pred-lr` does; `set_lr` sets each group's lr per step."""
    o = ctx["optim"]
    fixed = set(ctx.get("fixedLr", []))
    named = list(module.named_parameters())
    groups = [
        {"params": [p for n, p in named if exported_name(n) not in fixed], "fix_lr": False},
        {"params": [p for n, p in named if exported_name(n) in fixed], "fix_lr": True},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]],
        lr=o["lr"],
        momentum=o["momentum"],
        weight_decay=o["weightDecay"],
    )
