"""VICReg (Bardes et al. 2022; facebookresearch/vicreg main_vicreg.py, VICReg.forward).

repr = mse(x, y); x, y centred; std = sqrt(var + 1e-4) (unbiased);
std_loss = mean(relu(1 - std_x)) / 2 + mean(relu(1 - std_y)) / 2;
cov = x.T x / (N - 1); cov_loss = off_diag(cov_x)^2.sum() / D + off_diag(cov_y)^2.sum() / D;
L = 25 repr + 25 std_loss + 1 cov_loss (the loss's weights).
"""

import torch
import torch.nn.functional as F

from common import encoder, sgd
from methods.barlow_twins import off_diagonal


def vicreg_loss(x, y, sim, std, cov):
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = off_diagonal(cov_x).pow_(2).sum().div(d) + off_diagonal(cov_y).pow_(2).sum().div(d)
    return sim * repr_loss + std * std_loss + cov * cov_loss


def build(ctx, inputs):
    net = encoder(ctx, inputs.path("weights"))
    return {"query": net, "opt": sgd(ctx, net)}


def step(ctx, st, b, i):
    s = ctx["loss"]  # the 'vicreg' loss's weights
    net = st["query"]
    project = lambda x: net.fc(net.features(x))  # noqa: E731  (not normalised)
    z1, z2 = project(b["query"]), project(b["key"])
    weights = (s.get("invariance", 25.0), s.get("variance", 25.0), s.get("covariance", 1.0))
    return vicreg_loss(z1, z2, *weights), None
