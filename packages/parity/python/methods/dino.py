"""DINO (Caron et al. 2021, Algorithm 1; facebookresearch/dino main_dino.py: DINOHead, DINOLoss,
train_one_epoch).

student = backbone + DINOHead; teacher = their EMA (no gradient, BN in training mode).
The teacher sees the global crops (the first `count` of the first view group), the student
every crop; each network is MultiCropWrapper: the backbone by resolution, the head on every
crop at once. DINOLoss: q_iq = softmax((t_iq - c) / tau_t) (detached), p_v = log_softmax(s_v / tau_s),
loss = mean over the pairs (iq, v != iq) of mean_n -sum_k q log p; then
c <- m_c c + (1 - m_c) mean(t) over every global crop's batch. The last layer's gradient is
cancelled for the first `freezeLastLayerEpochs` (cancel_gradients_last_layer); the teacher's
momentum rises from m0 to 1 on a cosine over the run (momentum_schedule).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import by_resolution, cosine_momentum, ema, load_weights, optimizer
from nets import DinoVitEncoder, Encoder, load_state


class WeightNormLinear(nn.Module):
    """nn.utils.weight_norm(nn.Linear(in, out, bias=False)) with weight_g fixed to 1
    (norm_last_layer): w = v / ||v|| row by row (the norm over every dim but the output's)."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(dim_out, dim_in))

    def forward(self, x):
        return F.linear(x, self.weight_v / self.weight_v.norm(dim=1, keepdim=True))


class DINOHead(nn.Module):
    """main_dino.py's DINOHead(use_bn=False, norm_last_layer=True): Linear-GELU x (layers - 1),
    Linear to the bottleneck, l2-normalise, the weight-normalised last layer."""

    def __init__(self, dim_in, s):
        super().__init__()
        widths = [dim_in] + [s["hiddenDim"]] * (s["headLayers"] - 1) + [s["bottleneckDim"]]
        layers = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.last_layer = WeightNormLinear(s["bottleneckDim"], s["outDim"])

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


def network(ctx, weights_dir, trainable=True):
    """Backbone (no projection head: DINO's head replaces it) + DINOHead, Contrast's weights.
    A ViT takes crops of any size (DinoVitEncoder: DINO's interpolate_pos_encoding)."""
    model = ctx["model"]
    if model["encoder"].startswith("vit"):
        net = DinoVitEncoder(model, ctx["channels"], ctx.get("imageSize", 28))
    else:
        net = Encoder(model, ctx["channels"])
    net.fc = nn.Identity()
    net.dino_head = DINOHead(net.feature_dim, ctx["strategy"])
    load_state(net, load_weights(weights_dir))
    net.train()
    net.requires_grad_(trainable)
    return net


def build(ctx, inputs):
    student = network(ctx, inputs.path("weights"))
    teacher = network(ctx, inputs.path("key"), trainable=False)
    center = torch.from_numpy(inputs.load("center")).clone()
    return {"query": student, "key": teacher, "opt": optimizer(ctx, student), "center": center}


def steps_per_epoch(ctx):
    return max(1, ctx["datasetSize"] // ctx["optim"]["batchSize"])


def teacher_temperature(ctx, epoch):
    """DINOLoss.teacher_temp_schedule: np.linspace(warmup, final, W) for W epochs, then final."""
    o = ctx["loss"]
    w, start, end = o["warmupTeacherEpochs"], o["warmupTeacherTemperature"], o["teacherTemperature"]
    if epoch >= w:
        return end
    return start if w == 1 else start + (end - start) * epoch / (w - 1)


def dino_loss(student, teacher, center, tau_s, tau_t):
    """DINOLoss.forward's loss over lists of [N, K] outputs (the teacher's global crops first)."""
    q = [F.softmax((t - center) / tau_t, dim=-1).detach() for t in teacher]
    logp = [F.log_softmax(s / tau_s, dim=-1) for s in student]
    total, terms = 0, 0
    for iq, qi in enumerate(q):
        for v, lp in enumerate(logp):
            if v == iq:
                continue
            total = total + torch.sum(-qi * lp, dim=-1).mean()
            terms += 1
    return total / terms


def crops(b):
    """The batch's crops in group order: query, key (the first two global crops), crop2, ..."""
    rest = sorted((k for k in b if k.startswith("crop")), key=lambda k: int(k[len("crop") :]))
    return [b["query"], b["key"]] + [b[k] for k in rest]


def multi_crop(net, crops):
    """MultiCropWrapper.forward, its output split back into one [B, K] per crop."""
    return list(net.dino_head(by_resolution(net.features, crops)).chunk(len(crops)))


def step(ctx, st, b, i):
    student, teacher = st["query"], st["key"]
    views = crops(b)
    n_global = ctx["views"][0]["count"]
    with torch.no_grad():
        t_out = multi_crop(teacher, views[:n_global])
    s_out = multi_crop(student, views)
    epoch = i // steps_per_epoch(ctx)
    o = ctx["loss"]
    loss = dino_loss(s_out, t_out, st["center"], o["studentTemperature"], teacher_temperature(ctx, epoch))
    return loss, lambda: (follow(ctx, st, i), update_center(ctx, st, t_out))


def before_update(ctx, st, i):
    """cancel_gradients_last_layer: no update of the last layer for its first epochs."""
    frozen = math.floor(ctx["strategy"]["freezeLastLayerEpochs"] * steps_per_epoch(ctx) + 0.5)
    if i < frozen:
        st["query"].dino_head.last_layer.weight_v.grad = None


def update_center(ctx, st, t_out):
    """DINOLoss.update_center: c <- m c + (1 - m) batch mean of the teacher's outputs."""
    m = ctx["loss"]["centerMomentum"]
    batch_center = torch.cat(t_out).mean(dim=0, keepdim=True)
    st["center"].mul_(m).add_(batch_center, alpha=1 - m)


def follow(ctx, st, i):
    """The teacher's EMA of the student (backbone and head) after step i, m on the cosine."""
    m = cosine_momentum(ctx["strategy"]["momentum"], i, ctx["totalSteps"])
    ema(st["key"], st["query"], m)
