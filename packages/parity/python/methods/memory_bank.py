"""InstDisc's memory bank (Wu et al. 2018): bank rows as positives and negatives, InfoNCE or NCE."""

import torch
import torch.nn.functional as F

from common import encoder, info_nce, nce, sgd


def build(ctx, inputs):
    q = encoder(ctx, inputs.path("weights"))
    return {"query": q, "opt": sgd(ctx, q), "bank": torch.from_numpy(inputs.load("bank")), "z": None}


def step(ctx, st, b, i):
    bank, idx = st["bank"], b["indices"]
    f = st["query"](b["query"])  # only the query view is encoded: no key encoder
    loss, logits = info_nce(f, bank[idx], bank[b["negatives"]], ctx["temperature"])
    if ctx["loss"].get("name") == "nce":
        if st["z"] is None:  # Z estimated once, on the first batch (InstDisc)
            st["z"] = torch.exp(logits.detach()).mean().item() * ctx["datasetSize"]
        loss = nce(logits, st["z"], ctx["datasetSize"])

    def after():
        m = ctx["strategy"]["momentum"]
        bank[idx] = F.normalize(m * bank[idx] + (1 - m) * f.detach(), dim=1)

    return loss, after
