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

from nets import PredictorEncoder, load_state, make_encoder


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


def by_resolution(backbone, crops):
    """The multi-crop forward of SwAV's and DINO's official code (resnet50.forward,
    MultiCropWrapper): the backbone on each run of same-size crops concatenated; returns
    every crop's features, concatenated in crop order [V * B, F]."""
    features, start = [], 0
    while start < len(crops):
        end = start + 1
        while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
            end += 1
        features.append(backbone(torch.cat(crops[start:end])))
        start = end
    return torch.cat(features)


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
    model = make_encoder(ctx["model"], ctx["channels"], ctx.get("imageSize", 28))
    enc = use_split_bn(model, ctx["model"].get("bnSplits", 1))
    state = load_weights(weights_dir)
    if any(k.startswith("predictor.") for k in state):
        enc = PredictorEncoder(enc, ctx["strategy"]["predictorHidden"])
    load_encoder_state(enc, state)
    enc.train()
    if not trainable:
        enc.requires_grad_(False)
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


def scheduled_lr(ctx, i):
    """Step i's lr, written from the documented schedule (not read from Contrast): a linear
    warm-up (i + 1) / W x lr over the first W = round(warmupEpochs x steps per epoch) steps,
    then 'cosine' (half-cycle from lr to 0 over the remaining steps, MoCo v2), 'constant' or
    'step' (x0.1 at each milestone epoch, MoCo v1)."""
    o, total = ctx["optim"], ctx["totalSteps"]
    per_epoch = ctx["stepsPerEpoch"]
    warmup = min(total, round(o.get("warmupEpochs", 0) * per_epoch))
    if i < warmup:
        return o["lr"] * (i + 1) / warmup
    schedule = o.get("schedule", "cosine")
    if schedule == "step":
        return o["lr"] * 0.1 ** sum(1 for m in o.get("milestones", []) if i / per_epoch >= m)
    if schedule == "constant" or total - warmup <= 0:
        return o["lr"]
    return o["lr"] * 0.5 * (1 + math.cos(math.pi * min(i - warmup, total - warmup) / (total - warmup)))


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


def no_decay(name, p):
    """DINO's get_params_groups rule (timm's param_groups_weight_decay alike): biases and
    every rank-1 tensor (norms' weight and bias) are not regularised."""
    return name.endswith(".bias") or p.ndim <= 1


def adamw(ctx, module):
    """torch.optim.AdamW (betas, eps of the manifest) over the parameters of `module` that
    require a gradient (MoCo v3's frozen patch projection and fixed position embedding
    are left out, so never updated), with weight decay on every one (`decay: all`, as
    MoCo v3's main_moco.py) or, with `decay: no-norm-bias`, a second group at weight decay 0
    for biases and norms (`no_decay`); Contrast's fixed-lr parameters in groups marked `fix_lr`."""
    o = ctx["optim"]
    fixed = set(ctx.get("fixedLr", []))
    named = [(exported_name(n), p) for n, p in module.named_parameters() if p.requires_grad]
    groups = []
    for fix in (False, True):
        for decayed in (True, False):
            params = [
                p
                for n, p in named
                if (n in fixed) == fix and (o["decay"] == "all" or not no_decay(n, p)) == decayed
            ]
            wd = o["weightDecay"] if decayed else 0.0
            groups.append({"params": params, "fix_lr": fix, "weight_decay": wd})
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"]
    )


def optimizer(ctx, module):
    """The manifest's optimizer over `module`: `sgd` (SGD and the step parity's use of it) or `adamw`."""
    name = ctx["optim"].get("optimizer", "sgd")
    if name == "sgd":
        return sgd(ctx, module)
    if name == "adamw":
        return adamw(ctx, module)
    raise SystemExit(f"step parity: no PyTorch port of optimizer '{name}' (ports: sgd, adamw)")
