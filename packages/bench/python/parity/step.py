"""Step parity, the PyTorch side: N training steps from Contrast's exported inputs.

Usage: python step.py DIR [float32|float64]

DIR holds what Contrast exported (see packages/bench/src/parity/step.ts):
manifest.json (method, model, optimiser, temperature, per-step learning rates,
parameter groups and `fixedLr`, the parameters kept at the unscheduled lr, the
BN buffers to report), weights/ and key/ (one `<torch
name>.npy` per tensor, torchvision layouts), queue.npy or bank.npy, and per step
batch-NNN-{query,key}.npy (NCHW float32), -indices.npy, -negatives.npy (memory
bank), -perm0/1.npy (shuffle BN). Writes torch/steps.json (loss and gradient norm
per parameter group, per step) and torch/bn-NNN.npy, torch/state-NNN.npy (BN
running statistics in the manifest's order; the queue or bank after the step).
With float64 the same steps run in double precision from the same float32
inputs and go to torch64/: the reference that shows how far float32 rounding
alone moves a trajectory.
"""

import importlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import exported_name, sgd  # noqa: E402


class Inputs:
    def __init__(self, directory):
        self.dir = directory

    def path(self, name):
        return os.path.join(self.dir, name)

    def load(self, name):
        return np.load(self.path(f"{name}.npy"))

    def batch(self, i):
        out = {}
        for part in ["query", "key", "indices", "negatives", "perm0", "perm1"]:
            p = self.path(f"batch-{i:03d}-{part}.npy")
            if os.path.exists(p):
                a = np.load(p)
                out[part] = torch.from_numpy(a.astype(np.int64) if a.dtype.kind == "i" else a)
        return out


def named(module, name):
    """A parameter or buffer by its exported name (a predictor wrapper nests the base under `base.`)."""
    sd = module.state_dict(keep_vars=True)
    return sd[name] if name in sd else sd[f"base.{name}"]


def grad_norms(module, groups):
    sums = {}
    for name, p in module.named_parameters():
        g = groups[exported_name(name)]
        sums[g] = sums.get(g, 0.0) + (0.0 if p.grad is None else float((p.grad.double() ** 2).sum()))
    return {g: s**0.5 for g, s in sums.items()}


def to_double(st):
    """The whole state in float64: the reference that measures float32's own rounding noise."""
    for k, v in st.items():
        if isinstance(v, torch.nn.Module):
            v.double()
        elif isinstance(v, torch.Tensor) and v.is_floating_point():
            st[k] = v.double()
    st["opt"] = sgd(st["ctx"], st["query"])


def main(directory, dtype="float32"):
    torch.set_num_threads(int(os.environ.get("CONTRAST_TORCH_THREADS", "2")))
    inputs = Inputs(directory)
    with open(inputs.path("manifest.json")) as f:
        ctx = json.load(f)
    method = importlib.import_module(f"methods.{ctx['method'].replace('-', '_')}")
    st = method.build(ctx, inputs)
    st["ctx"] = ctx
    if dtype == "float64":
        to_double(st)
    out_dir = inputs.path("torch" if dtype == "float32" else "torch64")
    os.makedirs(out_dir, exist_ok=True)
    records = []
    for i, lr in enumerate(ctx["lrs"]):
        b = inputs.batch(i)
        if dtype == "float64":
            b = {k: v.double() if v.is_floating_point() else v for k, v in b.items()}
        st["opt"].zero_grad(set_to_none=True)
        loss, after = method.step(ctx, st, b, i)
        loss.backward()
        norms = grad_norms(st["query"], ctx["groups"])
        for group in st["opt"].param_groups:  # SimSiam's fixed-lr predictor keeps the base lr
            group["lr"] = ctx["optim"]["lr"] if group["fix_lr"] else lr
        st["opt"].step()
        with torch.no_grad():
            if after is not None:
                after()
            bn = [named(st[which], name).detach().reshape(-1) for which, name in ctx["bnOrder"]]
            np.save(os.path.join(out_dir, f"bn-{i:03d}.npy"), torch.cat(bn).float().numpy())
            if ctx["state"]:
                np.save(os.path.join(out_dir, f"state-{i:03d}.npy"), st[ctx["state"]].float().numpy())
        records.append({"loss": loss.item(), "gradNorms": norms})
    with open(os.path.join(out_dir, "steps.json"), "w") as f:
        json.dump({"framework": f"pytorch {torch.__version__}", "steps": records}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
