"""PyTorch's side of the optimizer comparison (src/optim.test.ts, `pnpm parity optim`).

Reads a JSON problem from the file named by its argument: float32 parameters, a fixed gradient sequence,
and per step and parameter the lr and weight decay (or null: frozen); runs
torch.optim.AdamW (one parameter group per parameter, so each has its own lr
and weight decay, set before every step) or torch.optim.SGD, with gradient
clipping by torch.nn.utils.clip_grad_norm_ ('global') or DINO's
utils.clip_gradients ('per-parameter') over the parameters updated at the step.
A frozen parameter gets .grad = None, so the optimizer skips it and leaves its
state alone (DINO's cancel_gradients_last_layer). Writes the parameters after
every step as JSON on stdout.
"""
import json
import sys

import torch


def clip_gradients(params, clip):
    """DINO's utils.clip_gradients (facebookresearch/dino), verbatim but for the return."""
    for p in params:
        if p.grad is not None:
            param_norm = p.grad.data.norm(2)
            clip_coef = clip / (param_norm + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    torch.set_num_threads(1)
    params = [torch.tensor(p, dtype=torch.float32, requires_grad=True) for p in spec["params"]]
    groups = [{"params": [p], "lr": 0.0, "weight_decay": 0.0} for p in params]
    if spec["optimizer"] == "adamw":
        opt = torch.optim.AdamW(groups, betas=tuple(spec["betas"]), eps=spec["eps"])
    else:
        opt = torch.optim.SGD(groups, momentum=spec["momentum"])
    trajectory = []
    for grads, steps in zip(spec["grads"], spec["steps"]):
        active = []
        for p, g, s, group in zip(params, grads, steps, opt.param_groups):
            if s is None:
                p.grad = None
                continue
            p.grad = torch.tensor(g, dtype=torch.float32)
            group["lr"] = s["lr"]
            group["weight_decay"] = s["weightDecay"]
            active.append(p)
        clip = spec.get("clip")
        if clip and clip["maxNorm"] > 0 and active:
            if clip["mode"] == "global":
                torch.nn.utils.clip_grad_norm_(active, clip["maxNorm"])
            else:
                clip_gradients(active, clip["maxNorm"])
        opt.step()
        trajectory.append([p.detach().tolist() for p in params])
    json.dump({"trajectory": trajectory}, sys.stdout)


if __name__ == "__main__":
    main()
