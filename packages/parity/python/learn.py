"""Learning parity, the PyTorch side: MoCo on Fashion-MNIST with torchvision's transforms.

Usage: python learn.py '{"seed": 0, "out": "runs/parity/learning/pytorch-seed0.json", ...recipe}'

The recipe (packages/parity/src/learning.ts): ResNet-18 with the CIFAR stem
at width 0.5 (torchvision's initialisation), fc -> 128, plain BN; MoCo (He et
al. 2020, Algorithm 1) with K = 4096, m = 0.99, tau = 0.1; SGD lr 0.03, momentum
0.9, weight decay 5e-4, a half-cycle cosine per step over `epochs` epochs,
stopping after `stopAfter`; batch 256; two views per image from torchvision's
RandomResizedCrop(28, scale 0.2-1), RandomHorizontalFlip, RandomApply(
ColorJitter(0.4, 0.4), p 0.8) on float tensors, normalised. After each epoch:
weighted kNN (k 200, t 0.1, cosine; InstDisc's monitor) of the pooled backbone
features (BN in eval mode), the 60k training images as the bank, the 10k test
images evaluated; "loss" = the mean of the epoch's last 50 steps.
"""

import gzip
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ema, info_nce  # noqa: E402
from nets import Encoder  # noqa: E402


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(root):
    f = lambda name: read_idx(os.path.join(root, name))  # noqa: E731
    return (
        f("train-images-idx3-ubyte.gz"),
        f("train-labels-idx1-ubyte.gz"),
        f("t10k-images-idx3-ubyte.gz"),
        f("t10k-labels-idx1-ubyte.gz"),
    )


@torch.no_grad()
def features(net, images, mean, std, batch=500):
    net.eval()
    out = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s : s + batch].astype(np.float32) / 255).unsqueeze(1)
        out.append(F.normalize(net.features((x - mean) / std), dim=1))
    net.train()
    return torch.cat(out)


@torch.no_grad()
def knn(net, data, r, mean, std):
    """Weighted kNN (Wu et al. 2018): the k most similar bank features vote with exp(sim / t)."""
    train_x, train_y, test_x, test_y = data
    bank = features(net, train_x, mean, std)
    labels = torch.from_numpy(train_y.astype(np.int64))
    correct = 0
    for s in range(0, len(test_x), 250):
        q = features(net, test_x[s : s + 250], mean, std)
        sim, idx = (q @ bank.t()).topk(r["knn"]["k"], dim=1)
        votes = torch.zeros(q.shape[0], 10).scatter_add_(1, labels[idx], torch.exp(sim / r["knn"]["t"]))
        correct += (votes.argmax(1).numpy() == test_y[s : s + 250]).sum()
    return correct / len(test_x)


def main(r):
    torch.set_num_threads(int(os.environ.get("CONTRAST_TORCH_THREADS", "2")))
    torch.manual_seed(r["seed"])
    random.seed(r["seed"])
    np.random.seed(r["seed"])
    data = fashion_mnist(r["root"])
    mean, std = r["mean"], r["std"]
    a = r["augmentation"]
    view = T.Compose(
        [
            T.RandomResizedCrop(28, scale=tuple(a["scale"]), antialias=True),
            T.RandomApply([T.ColorJitter(a["brightness"], a["contrast"])], p=a["p"]),
            T.RandomHorizontalFlip(a["flip"]),
            T.Normalize([mean], [std]),
        ]
    )
    model = {"encoder": "resnet18", "width": r["width"], "stem": "cifar", "dim": r["dim"]}
    f_q = Encoder(model, 1)
    f_k = Encoder(model, 1)
    f_k.load_state_dict(f_q.state_dict())
    f_k.requires_grad_(False)
    queue = F.normalize(torch.randn(r["queue"], r["dim"]), dim=1)
    ptr = 0
    opt = torch.optim.SGD(f_q.parameters(), lr=r["lr"], momentum=0.9, weight_decay=r["weightDecay"])
    train_x = data[0]
    n, b = len(train_x), r["batch"]
    steps_per_epoch = n // b
    total = steps_per_epoch * r["epochs"]
    mean_t, std_t = mean, std
    result = {"seed": r["seed"], "framework": f"pytorch {torch.__version__}", "epochs": []}
    step = 0
    t0 = time.time()
    for epoch in range(r["stopAfter"]):
        order = torch.randperm(n).numpy()
        losses = []
        for i in range(steps_per_epoch):
            idx = order[i * b : (i + 1) * b]
            x = torch.from_numpy(train_x[idx].astype(np.float32) / 255).unsqueeze(1)
            x_q = torch.stack([view(img) for img in x])
            x_k = torch.stack([view(img) for img in x])
            lr = r["lr"] * 0.5 * (1 + math.cos(math.pi * step / total))
            for g in opt.param_groups:
                g["lr"] = lr
            q = f_q(x_q)
            with torch.no_grad():
                k = f_k(x_k)
            loss = info_nce(q, k, queue, r["temperature"])[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                ema(f_k, f_q, r["momentum"])
                queue[(ptr + torch.arange(b)) % r["queue"]] = k
                ptr = (ptr + b) % r["queue"]
            losses.append(loss.item())
            step += 1
            if step % 20 == 0:
                print(f"epoch {epoch + 1} step {i + 1}/{steps_per_epoch} loss {loss.item():.3f} "
                      f"{step * b / (time.time() - t0):.0f} img/s", file=sys.stderr)
        acc = knn(f_q, data, r, mean_t, std_t)
        result["epochs"].append({"epoch": epoch + 1, "knn": float(acc), "loss": float(np.mean(losses[-50:]))})
        print(f"epoch {epoch + 1}: kNN {100 * acc:.2f}%", file=sys.stderr)
    result["seconds"] = time.time() - t0
    os.makedirs(os.path.dirname(r["out"]), exist_ok=True)
    with open(r["out"], "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
