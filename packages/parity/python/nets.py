"""Encoders for the parity harness, written from the papers and torchvision's conventions.

ResNet (He et al. 2016) with torchvision's module names (conv1, bn1, layer1..4 of
BasicBlock / Bottleneck with `downsample` = Sequential(conv, BN), fc), a width
multiplier (64 * width * [1, 2, 4, 8]) and the CIFAR stem (3x3 stride 1, no
max-pool) of the MoCo CIFAR demo; the small ConvNet (conv1..3, bn1..3) of
Contrast's tests and demo; the projection head as `fc`: Linear (MoCo v1),
Sequential(Linear, ReLU, ..., Linear) (MoCo v2) or Sequential(Linear,
BatchNorm1d, ReLU, ..., Linear[, BatchNorm1d(affine=False)]) (BYOL's projector;
SimSiam's with 3 layers and the affine-free output BN); the predictor of MoCo
v3, BYOL and SimSiam as Sequential(Linear, BatchNorm1d, ReLU, Linear).
Initialisation as torchvision's ResNet: kaiming_normal_(fan_out, relu) convs,
BN weight 1 / bias 0, nn.Linear's default. The ViT is timm's VisionTransformer
itself (`VitEncoder`), with the projection head `fc` beside it; DINO's takes crops
of any size (`DinoVitEncoder`).
"""

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer


def conv(cin, cout, k, stride, pad):
    return nn.Conv2d(cin, cout, k, stride, pad, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = conv(cin, planes, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(conv(cin, planes, 1, stride, 0), nn.BatchNorm2d(planes))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """torchvision's v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = planes * 4
        self.conv1 = conv(cin, planes, 1, 1, 0)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, stride, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv(planes, cout, 1, 1, 0)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(conv(cin, cout, 1, stride, 0), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


DEPTHS = {
    "resnet18": ([2, 2, 2, 2], BasicBlock),
    "resnet34": ([3, 4, 6, 3], BasicBlock),
    "resnet50": ([3, 4, 6, 3], Bottleneck),
}


class Encoder(nn.Module):
    """Backbone + projection head; `features` = pooled backbone, `forward` = L2-normalised embedding."""

    def __init__(self, model, channels):
        super().__init__()
        self.kind = model["encoder"]
        if self.kind == "convnet":
            w = max(1, round(32 * model["width"]))
            widths = [channels, w, 2 * w, 4 * w]
            for i in range(3):
                setattr(self, f"conv{i + 1}", conv(widths[i], widths[i + 1], 3, 1, 1))
                setattr(self, f"bn{i + 1}", nn.BatchNorm2d(widths[i + 1]))
            feature_dim = widths[-1]
        else:
            depths, block = DEPTHS[self.kind]
            w0 = max(1, round(64 * model["width"]))
            cifar = model.get("stem", "cifar") == "cifar"
            self.conv1 = conv(channels, w0, 3, 1, 1) if cifar else conv(channels, w0, 7, 2, 3)
            self.bn1 = nn.BatchNorm2d(w0)
            self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
            cin = w0
            for stage, count in enumerate(depths):
                blocks = []
                for i in range(count):
                    stride = 2 if i == 0 and stage > 0 else 1
                    blocks.append(block(cin, w0 * 2**stage, stride))
                    cin = w0 * 2**stage * block.expansion
                setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
            feature_dim = cin
        self.feature_dim = feature_dim
        self.fc = head(model, feature_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x):
        if self.kind == "convnet":
            y = x
            for i in range(3):
                y = F.relu(getattr(self, f"bn{i + 1}")(getattr(self, f"conv{i + 1}")(y)))
                if i < 2:
                    y = F.max_pool2d(y, 2, 2)
            return y.mean((2, 3))
        y = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for stage in range(4):
            y = getattr(self, f"layer{stage + 1}")(y)
        return y.mean((2, 3))

    def forward(self, x):
        return F.normalize(self.fc(self.features(x)), dim=1)


VIT_PRESETS = {"vit": (192, 12, 3), "vit-tiny": (192, 12, 3), "vit-small": (384, 12, 6)}


class VitEncoder(VisionTransformer):
    """timm's VisionTransformer (class-token pooling, no classifier: `features` is the
    normalised class token) with the projection head `fc`, so its state_dict names are
    timm's plus `fc.*`. MoCo v3's init keeps the sin-cos position embedding fixed
    (vits.py: pos_embed.requires_grad = False); its values come from Contrast's export."""

    def __init__(self, model, channels, image_size, **vit_options):
        dim, depth, heads = VIT_PRESETS[model["encoder"]]
        super().__init__(
            img_size=image_size,
            patch_size=model.get("patchSize", 16),
            in_chans=channels,
            num_classes=0,
            global_pool="token",
            embed_dim=model.get("embedDim", dim),
            depth=model.get("depth", depth),
            num_heads=model.get("heads", heads),
            mlp_ratio=model.get("mlpRatio", 4.0),
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            **vit_options,
        )
        self.kind = model["encoder"]
        self.feature_dim = self.embed_dim
        self.fc = head(model, self.embed_dim)
        if model.get("init") == "moco-v3":
            self.pos_embed.requires_grad = False

    def features(self, x):
        return super().forward(x)

    def forward(self, x):
        return F.normalize(self.fc(self.features(x)), dim=1)


class DinoVitEncoder(VitEncoder):
    """VitEncoder for crops of any size, as DINO's vision_transformer.py: the patch grid of
    the input, and interpolate_pos_encoding's position embedding for it (the patch part
    resampled bicubically with scale factor (grid + 0.1) / stored grid; the class token's
    kept) where the grid is not the stored one. Overrides timm's private `_pos_embed`
    (timm >= 0.9: dynamic_img_size gives the patch embedding as [B, H, W, C]); one class
    token, no register tokens."""

    def __init__(self, model, channels, image_size):
        super().__init__(model, channels, image_size, dynamic_img_size=True)

    def _pos_embed(self, x):
        b, h, w, c = x.shape  # the dynamic patch embedding's [B, H, W, C]
        pos = self.pos_embed
        g = int(math.sqrt(pos.shape[1] - 1))
        if (h, w) != (g, g):
            grid = pos[:, 1:].reshape(1, g, g, c).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, scale_factor=((h + 0.1) / g, (w + 0.1) / g), mode="bicubic")
            pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, c)], dim=1)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.reshape(b, -1, c)], dim=1)
        return self.pos_drop(x + pos)


def make_encoder(model, channels, image_size):
    """The manifest's encoder: timm's ViT for `vit*`, else the ResNet / ConvNet `Encoder`."""
    if model["encoder"].startswith("vit"):
        return VitEncoder(model, channels, image_size)
    return Encoder(model, channels)


def mlp(widths, bn, output_bn=False):
    """Linear layers through `widths` with ReLU between them, BatchNorm1d before each ReLU when
    `bn` (BYOL / SimSiam), and an affine-free BatchNorm1d on the output when `output_bn` (SimSiam)."""
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers += [nn.BatchNorm1d(widths[i + 1])] if bn else []
            layers.append(nn.ReLU())
    if output_bn:
        layers.append(nn.BatchNorm1d(widths[-1], affine=False))
    return nn.Sequential(*layers)


def head(model, feature_dim):
    """The projection head `fc` of the manifest's model (head, hiddenDim, headLayers, headOutputBn, dim)."""
    dim = model.get("dim", 128)
    kind = model.get("head", "linear")
    if kind == "linear":
        return nn.Linear(feature_dim, dim)
    hidden = model.get("hiddenDim", 0) or feature_dim
    widths = [feature_dim] + [hidden] * (model.get("headLayers", 2) - 1) + [dim]
    return mlp(widths, kind == "mlp-bn", kind == "mlp-bn" and model.get("headOutputBn", False))


class PredictorEncoder(nn.Module):
    """The online network with a predictor (MoCo v3, BYOL, SimSiam): `project` = fc(features(x)),
    `predict` = predictor(z); `forward` = normalise(predictor(fc(features(x)))) for MoCo v3
    (`self.predictor(self.base_encoder(x))`, normalised in its contrastive loss)."""

    def __init__(self, base, hidden):
        super().__init__()
        self.base = base
        dim = _out_features(base.fc)
        self.predictor = mlp([dim, hidden, dim], bn=True)

    def project(self, x):
        return self.base.fc(self.base.features(x))

    def forward(self, x):
        return F.normalize(self.predictor(self.project(x)), dim=1)


def _out_features(fc):
    linears = [m for m in fc.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features


def load_state(module, state):
    """Loads a {torch name: ndarray} dict (exported from Contrast) into `module`, strictly."""
    tensors = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"state mismatch: missing {missing}, unexpected {unexpected}")
