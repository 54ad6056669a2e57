"""Runs Contrast's torch exports in PyTorch (the export test and `pnpm export-parity`).

Each folder holds an export (model.safetensors and the generated load.py) and,
beside them, x.npy (the input, NCHW float32), output.npy (Contrast's eval-mode
output of the exported model: the projection when the head was exported, else
the pooled features) and features.npy (Contrast's eval-mode pooled features).
For each folder this prints one JSON line:
  main        what `python load.py` printed (run as a user runs it)
  missing, unexpected
              state_dict keys the generated model lacks or does not know
              (load.py itself loads with strict=True)
  output      the largest |diff| between the loaded model's output and output.npy
  features    the same with the head (fc; a ViT's head) replaced by nn.Identity,
              against features.npy
  error       instead of the above when anything raised (the traceback's end)

Usage: python torch_parity.py DIR [DIR ...]
"""

import contextlib
import importlib.util
import io
import json
import os
import runpy
import sys
import traceback

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file


def run_as_script(path):
    """`python load.py` (loads model.safetensors beside it): its printed output."""
    printed = io.StringIO()
    argv = sys.argv
    sys.argv = [path]
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = argv
    return printed.getvalue().strip()


def check(folder, index):
    path = os.path.join(folder, "load.py")
    main = run_as_script(path)
    spec = importlib.util.spec_from_file_location(f"contrast_load_{index}", path)
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    keys = loader.build().load_state_dict(
        load_file(os.path.join(folder, "model.safetensors")), strict=False
    )
    model = loader.load(os.path.join(folder, "model.safetensors"))
    x = torch.from_numpy(np.load(os.path.join(folder, "x.npy")))
    with torch.no_grad():
        output = model(x).numpy()
        # the projection head: torchvision's fc, timm's head (ViT)
        setattr(model, "head" if hasattr(model, "cls_token") else "fc", nn.Identity())
        features = model(x).numpy()
    ref = {n: np.load(os.path.join(folder, f"{n}.npy")) for n in ("output", "features")}
    return {
        "main": main,
        "missing": list(keys.missing_keys),
        "unexpected": list(keys.unexpected_keys),
        "output": float(np.abs(output - ref["output"]).max()),
        "features": float(np.abs(features - ref["features"]).max()),
    }


def main(folders):
    for i, folder in enumerate(folders):
        try:
            result = check(folder, i)
        except Exception:  # one broken export must not hide the others' results
            result = {"error": "".join(traceback.format_exc().splitlines(True)[-6:])}
        print(json.dumps({"folder": folder, **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
