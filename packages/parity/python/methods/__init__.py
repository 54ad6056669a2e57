"""One module per Contrast method: `build(ctx, inputs) -> state`, `step(ctx, state, batch, i)`.

`step` returns the loss (with gradient to the query network in state["query"]) and a
function run after the optimizer step (enqueue, bank write, EMA), or None.
"""
