"""End-to-end (SimCLR; MoCo's Figure 2a): both views through the query encoder, NT-Xent."""

from common import encoder, nt_xent, sgd


def build(ctx, inputs):
    q = encoder(ctx, inputs.path("weights"))
    return {"query": q, "opt": sgd(ctx, q)}


def step(ctx, st, b, i):
    q_net = st["query"]
    z1 = q_net(b["query"])  # the query view first, then the key view: BN sees them in this order
    z2 = q_net(b["key"])
    return nt_xent(z1, z2, ctx["temperature"]), None
