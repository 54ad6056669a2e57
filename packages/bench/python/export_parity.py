"""The PyTorch side of `pnpm export-parity`.

Loads a Contrast torch export (model.safetensors through the generated load.py,
strict load into torchvision's ResNet or the ConvNet module), runs it on x.npy
(NCHW) in eval mode, and prints the largest absolute differences from
Contrast's features.npy (pooled backbone, fc replaced by nn.Identity) and
embedding.npy (the projection, L2-normalised) as one JSON line.

Usage: python export_parity.py DIR
"""

import importlib.util
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def main(folder):
    spec = importlib.util.spec_from_file_location("load", os.path.join(folder, "load.py"))
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    model = loader.load(os.path.join(folder, "model.safetensors"))  # strict=True inside
    x = torch.from_numpy(np.load(os.path.join(folder, "x.npy")))
    with torch.no_grad():
        embedding = F.normalize(model(x), dim=1).numpy()
        model.fc = nn.Identity()
        features = model(x).numpy()
    ref_f = np.load(os.path.join(folder, "features.npy"))
    ref_z = np.load(os.path.join(folder, "embedding.npy"))
    print(
        json.dumps(
            {
                "features": float(np.abs(features - ref_f).max()),
                "embedding": float(np.abs(embedding - ref_z).max()),
                "strict": True,
            }
        )
    )


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(sys.argv[1])
