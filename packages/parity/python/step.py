"""Step parity, the PyTorch side: N training steps from Contrast's exported inputs.

Usage: python step.py DIR [float32|float64] [free|synced]

DIR holds what Contrast exported (see packages/parity/src/step.ts):
manifest.json (method, model, optimiser, temperature, the schedule's sizes (the port
computes each step's lr itself, `scheduled_lr`; Contrast's are listed as `lrs`),
parameter groups and `fixedLr`, the parameters kept at the unscheduled lr, the
BN buffers to report), weights/ and key/ (one `<torch
name>.npy` per tensor, torchvision layouts), queue.npy or bank.npy, and per step
batch-NNN-{query,key}.npy (NCHW float32; multi-crop: the further crops
as -crop2.npy, -crop3.npy, ...), -indices.npy, -negatives.npy (memory
bank), -perm0/1.npy (shuffle BN). Writes torch/steps.json (loss and gradient norm
per parameter group, per step) and torch/bn-NNN.npy, torch/state-NNN.npy (BN
running statistics in the manifest's order; the queue or bank after the step).
With float64 the same steps run in double precision from the same float32
inputs and go to torch64/: the reference that shows how far float32 rounding
alone moves a trajectory.

With `synced`, every step starts from Contrast's own state before that step
(DIR/state-NNN/: weights/, key/, opt/ (SGD momentum buffers) or adam/ (AdamW's
moments and step counts), queue.npy or bank.npy, written by `runContrastSide` with
`sync`), so each step is compared
alone, without the drift a trajectory accumulates; the records go to
torch-synced/ or torch64-synced/. They also hold `updates`: Contrast's optimizer
step and EMA checked op by op. PyTorch's torch.optim.SGD (AdamW) applies Contrast's own
gradient of the step (DIR/grad-NNN/) to Contrast's state, and the method's EMA
(`follow`) moves Contrast's key / target towards Contrast's updated online
network; each result is compared with Contrast's state after the step, as a
relative difference of the update (state-(N+1) - state-N), and for float64 also
with PyTorch float32's (torch-synced/update-NNN.npz).
"""

import importlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    exported_name,
    load_encoder_state,
    load_weights,
    optimizer,
    scheduled_lr,
    set_lr,
)


class Inputs:
    def __init__(self, directory):
        self.dir = directory

    def path(self, name):
        return os.path.join(self.dir, name)

    def load(self, name):
        return np.load(self.path(f"{name}.npy"))

    def batch(self, i):
        out = {}
        crops = [f"crop{v}" for v in range(2, 100)]  # multi-crop: the crops after query and key
        for part in ["query", "key", "indices", "negatives", "perm0", "perm1", *crops]:
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
    st["opt"] = optimizer(st["ctx"], st["query"])


def load_encoder_state_from(module, directory):
    """Contrast's exported weights (`<torch name>.npy` in `directory`) into `module`, in place."""
    load_encoder_state(module, load_weights(directory))


def load_synced(ctx, st, inputs, i):
    """Contrast's whole state before step i: networks, optimizer state, queue or bank."""
    d = inputs.path(f"state-{i:03d}")
    with torch.no_grad():
        load_encoder_state_from(st["query"], os.path.join(d, "weights"))
        if "key" in st:
            load_encoder_state_from(st["key"], os.path.join(d, "key"))
        if ctx["state"]:
            st[ctx["state"]].copy_(torch.from_numpy(np.load(os.path.join(d, f"{ctx['state']}.npy"))))
        if ctx["optim"].get("optimizer", "sgd") == "adamw":
            load_adamw_state(st, d)
            return
        buffers = load_weights(os.path.join(d, "opt"))
        for name, p in st["query"].named_parameters():
            st["opt"].state[p]["momentum_buffer"] = torch.from_numpy(buffers[exported_name(name)]).to(p.dtype)


def load_adamw_state(st, d):
    """torch.optim.AdamW's state of every parameter it updates from Contrast's (adam/: the
    moments exp_avg, exp_avg_sq and the per-parameter step count, a float32 tensor as torch keeps it)."""
    m = load_weights(os.path.join(d, "adam", "exp_avg"))
    v = load_weights(os.path.join(d, "adam", "exp_avg_sq"))
    with open(os.path.join(d, "adam", "step.json")) as f:
        steps = json.load(f)
    for name, p in st["query"].named_parameters():
        if not p.requires_grad:
            continue
        n = exported_name(name)
        st["opt"].state[p] = {
            "step": torch.tensor(float(steps[n]), dtype=torch.float32),
            "exp_avg": torch.from_numpy(m[n]).to(p.dtype),
            "exp_avg_sq": torch.from_numpy(v[n]).to(p.dtype),
        }


def parameters(module):
    """A module's parameters by exported name (buffers excluded)."""
    return {exported_name(n): p for n, p in module.named_parameters()}


def flat(tensors):
    """The tensors of a {name: array} dict as one float64 vector, in name order."""
    return np.concatenate([np.asarray(tensors[k], dtype=np.float64).reshape(-1) for k in sorted(tensors)])


def relative(a, b):
    """max |a - b| / max |b|, as compare.ts's relativeDifference."""
    scale = np.abs(b).max()
    diff = np.abs(a - b).max()
    return float(diff / scale) if scale > 0 else float(diff)


def isolated_updates(ctx, st, inputs, method, i, lr):
    """PyTorch's optimizer step and EMA on Contrast's inputs, per part ('update': the online network's, 'ema'):
    (PyTorch's update, Contrast's update), each one flat float64 vector over the part's
    parameters; Contrast's update is its state-(i+1) - state-i."""
    before = load_weights(inputs.path(f"state-{i:03d}/weights"))
    after = load_weights(inputs.path(f"state-{i + 1:03d}/weights"))
    grads = load_weights(inputs.path(f"grad-{i:03d}"))
    load_synced(ctx, st, inputs, i)
    if hasattr(method, "prepare"):  # what the step does to the weights before its update (SwAV's normalisation)
        method.prepare(ctx, st)
    params = parameters(st["query"])
    for name, p in params.items():  # a parameter without a gradient is not updated (frozen, fixed)
        p.grad = torch.from_numpy(grads[name]).to(p.dtype) if p.requires_grad and name in grads else None
    if hasattr(method, "before_update"):
        method.before_update(ctx, st, i)
    set_lr(ctx, st["opt"], lr)
    st["opt"].step()
    torch_update = {"update": {n: p.detach().double().numpy() - before[n] for n, p in params.items()}}
    contrast_update = {"update": {n: after[n].astype(np.float64) - before[n] for n in params}}
    if hasattr(method, "follow"):  # the EMA of the key / target, towards Contrast's updated network
        key_before = load_weights(inputs.path(f"state-{i:03d}/key"))
        key_after = load_weights(inputs.path(f"state-{i + 1:03d}/key"))
        with torch.no_grad():
            load_encoder_state_from(st["query"], inputs.path(f"state-{i + 1:03d}/weights"))
            method.follow(ctx, st, i)
        key = parameters(st["key"])
        torch_update["ema"] = {n: p.detach().double().numpy() - key_before[n] for n, p in key.items()}
        contrast_update["ema"] = {n: key_after[n].astype(np.float64) - key_before[n] for n in key}
    return {part: (flat(u), flat(contrast_update[part])) for part, u in torch_update.items()}


def compare_updates(inputs, i, updates, dtype):
    """Relative differences of the isolated updates: Contrast's from this side's and, in
    float64, PyTorch float32's from float64's (float32 keeps its updates for that)."""
    out = {part: {"contrast": relative(contrast, torch_u)} for part, (torch_u, contrast) in updates.items()}
    path = os.path.join(inputs.path("torch-synced"), f"update-{i:03d}.npz")
    if dtype == "float32":
        np.savez(path, **{part: torch_u.astype(np.float32) for part, (torch_u, _) in updates.items()})
    else:
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: run `step.py DIR float32 synced` before float64 synced")
        with np.load(path) as f32:
            for part, (torch_u, _) in updates.items():
                out[part]["float32"] = relative(f32[part].astype(np.float64), torch_u)
    return out


def main(directory, dtype="float32", mode="free"):
    if dtype not in ("float32", "float64") or mode not in ("free", "synced"):
        raise SystemExit(f"usage: step.py DIR [float32|float64] [free|synced], got {dtype} {mode}")
    torch.set_num_threads(int(os.environ.get("CONTRAST_TORCH_THREADS", "2")))
    inputs = Inputs(directory)
    with open(inputs.path("manifest.json")) as f:
        ctx = json.load(f)
    method = importlib.import_module(f"methods.{ctx['method'].replace('-', '_')}")
    st = method.build(ctx, inputs)
    st["ctx"] = ctx
    if dtype == "float64":
        to_double(st)
    synced = mode == "synced"
    out_dir = inputs.path(("torch" if dtype == "float32" else "torch64") + ("-synced" if synced else ""))
    os.makedirs(out_dir, exist_ok=True)
    records = []
    # the port's own schedule; Contrast's lrs (ctx["lrs"]) are not read
    for i, lr in enumerate(scheduled_lr(ctx, i) for i in range(ctx["totalSteps"])):
        b = inputs.batch(i)
        if dtype == "float64":
            b = {k: v.double() if v.is_floating_point() else v for k, v in b.items()}
        if synced:
            load_synced(ctx, st, inputs, i)
        st["opt"].zero_grad(set_to_none=True)
        loss, after = method.step(ctx, st, b, i)
        loss.backward()
        if hasattr(method, "before_update"):  # DINO's cancelled last-layer gradient
            method.before_update(ctx, st, i)
        # after the cancelled gradients: a parameter not updated at this step has none,
        # as Contrast reports a group's norm without its frozen parameters
        norms = grad_norms(st["query"], ctx["groups"])
        set_lr(ctx, st["opt"], lr)  # SimSiam's fixed-lr predictor keeps the base lr
        st["opt"].step()
        with torch.no_grad():
            if after is not None:
                after()
            bn = [named(st[which], name).detach().reshape(-1) for which, name in ctx["bnOrder"]]
            bn = torch.cat(bn).float().numpy() if bn else np.zeros(0, np.float32)  # a ViT has none
            np.save(os.path.join(out_dir, f"bn-{i:03d}.npy"), bn)
            if ctx["state"]:
                np.save(os.path.join(out_dir, f"state-{i:03d}.npy"), st[ctx["state"]].float().numpy())
        record = {"loss": loss.item(), "gradNorms": norms}
        if synced:
            updates = isolated_updates(ctx, st, inputs, method, i, lr)
            record["updates"] = compare_updates(inputs, i, updates, dtype)
        records.append(record)
    with open(os.path.join(out_dir, "steps.json"), "w") as f:
        json.dump({"framework": f"pytorch {torch.__version__}", "steps": records}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
