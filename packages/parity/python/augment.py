"""Augmentation parity, the PyTorch side: torchvision's transforms on the same images.

Usage: python augment.py DIR

DIR (written by packages/parity/src/augment.ts) holds the images
(images-<set>.npy, uint8 NHWC), manifest.json (the cases: Contrast augmentation
configs), Contrast's per-view statistics (case<k>-<stat>.npy), for the loss cases
two Contrast views per image (case<k>-views-{a,b}.npy, NCHW in [0, 1]) and a
frozen encoder (encoder/<torch name>.npy). For each case the same augmentation is
built from torchvision: RandomResizedCrop (bilinear, antialias), RandomApply(
ColorJitter, p), RandomGrayscale, RandomApply(GaussianBlur, p) with MoCo v2's
PIL blur (ImageFilter.GaussianBlur(radius = sigma), sigma ~ U[sigma]), and
RandomHorizontalFlip, in MoCo v2's order, on float tensors in [0, 1] (the blur
goes through an 8-bit PIL image, as MoCo v2's pipeline is PIL throughout).
Compares each statistic with scipy's two-sample Kolmogorov-Smirnov test, and
the frozen encoder's loss on both pipelines' views (Welch's t-test on per-batch
NT-Xent losses, KS on the positive pairs' cosines). Writes DIR/result.json.
"""

import json
import os
import random
import sys

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import load_weights, nt_xent  # noqa: E402
from nets import Encoder, load_state  # noqa: E402


class PilGaussianBlur:
    """MoCo v2's GaussianBlur: PIL's ImageFilter.GaussianBlur with radius ~ U[sigma]."""

    def __init__(self, sigma):
        self.sigma = sigma

    def __call__(self, x):
        radius = random.uniform(self.sigma[0], self.sigma[1])
        a = (x * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        img = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
        out = np.asarray(img.filter(ImageFilter.GaussianBlur(radius=radius)), dtype=np.float32) / 255
        return torch.from_numpy(out.reshape(a.shape)).permute(2, 0, 1).contiguous()


class Pipeline:
    """torchvision's transforms for one Contrast augmentation config (MoCo v2's order)."""

    def __init__(self, cfg, out_size, rgb):
        crop = cfg["crop"]
        self.crop = T.RandomResizedCrop(
            out_size, scale=tuple(crop["scale"]), ratio=tuple(crop["ratio"]), antialias=True
        )
        self.last_crop = None
        get_params = T.RandomResizedCrop.get_params

        def recording(img, scale, ratio):
            self.last_crop = get_params(img, scale, ratio)
            return self.last_crop

        self.crop.get_params = recording  # the transform's own forward, with its draw recorded
        j = cfg["jitter"]
        steps = [self.crop]
        factors = [j["brightness"], j["contrast"]] + ([j["saturation"], j["hue"]] if rgb else [0, 0])
        if j["p"] > 0 and any(f > 0 for f in factors):
            jitter = T.ColorJitter(*factors)
            steps.append(T.RandomApply([jitter], p=j["p"]))
        if rgb and cfg["grayscale"] > 0:
            steps.append(T.RandomGrayscale(p=cfg["grayscale"]))
        if cfg["blur"]["p"] > 0:
            steps.append(T.RandomApply([PilGaussianBlur(cfg["blur"]["sigma"])], p=cfg["blur"]["p"]))
        steps.append(T.RandomHorizontalFlip(p=cfg["flip"]))
        self.transform = T.Compose(steps)

    def __call__(self, x):
        y = self.transform(x)
        return y, self.last_crop


def view_stats(views, crops, h, w):
    """The statistics augment.ts computes: crop area and aspect, pixel mean / std, left - right, chroma."""
    crops = np.array(crops, dtype=np.float64)
    half = views.shape[3] // 2
    # Crop area and aspect take few distinct values (whole-pixel crops). Contrast stores them
    # as float32, so they are rounded the same way here: an atom held at two slightly different
    # values on the two sides would count its whole mass in the KS distance.
    return {
        "area": (crops[:, 2] * crops[:, 3] / (h * w)).astype(np.float32),
        "aspect": (crops[:, 3] / crops[:, 2]).astype(np.float32),
        "mean": views.mean((1, 2, 3)).numpy(),
        "std": views.std((1, 2, 3), unbiased=False).numpy(),
        "leftMinusRight": (views[:, :, :, :half].mean((1, 2, 3)) - views[:, :, :, -half:].mean((1, 2, 3))).numpy(),
        "chroma": (views.max(1).values - views.min(1).values).mean((1, 2)).numpy(),
    }


def describe(a):
    return {"mean": float(np.mean(a)), "std": float(np.std(a))}


def ks(stat, ours, theirs):
    r = stats.ks_2samp(ours, theirs)
    return {
        "stat": stat,
        "contrast": describe(ours),
        "torch": describe(theirs),
        "ks": float(r.statistic),
        "p": float(r.pvalue),
    }


def views_of(pipeline, images, count):
    out, crops = [], []
    for i in range(count):
        x = torch.from_numpy(images[i].astype(np.float32) / 255).permute(2, 0, 1)
        y, crop = pipeline(x)
        out.append(y)
        crops.append(crop)
    return torch.stack(out), crops


def loss_tests(encoder, case, ours_a, ours_b, theirs_a, theirs_b):
    """NT-Xent (tau 0.1) per batch of 256 image pairs, and each pair's cosine, for both pipelines."""
    mean = torch.tensor(case["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(case["std"]).view(1, -1, 1, 1)

    def measure(a, b):
        losses, cosines = [], []
        with torch.no_grad():
            for s in range(0, a.shape[0] - 255, 256):
                za = encoder((a[s : s + 256] - mean) / std)
                zb = encoder((b[s : s + 256] - mean) / std)
                losses.append(nt_xent(za, zb, 0.1).item())
                cosines.append((za * zb).sum(1))
        return np.array(losses), torch.cat(cosines).numpy()

    lo, co = measure(ours_a, ours_b)
    lt, ct = measure(theirs_a, theirs_b)
    t = stats.ttest_ind(lo, lt, equal_var=False)
    return [
        {"stat": "frozen-encoder NT-Xent per batch (Welch t)", "contrast": describe(lo), "torch": describe(lt),
         "ks": float(t.statistic), "p": float(t.pvalue)},
        ks("frozen-encoder positive-pair cosine", co, ct),
    ]


def main(directory):
    torch.set_num_threads(int(os.environ.get("CONTRAST_TORCH_THREADS", "2")))
    with open(os.path.join(directory, "manifest.json")) as f:
        m = json.load(f)
    images = {s: np.load(os.path.join(directory, f"images-{s}.npy")) for s in ["fashion-mnist", "rgb"]}
    encoder = Encoder(m["model"], 1)
    load_state(encoder, load_weights(os.path.join(directory, "encoder")))
    encoder.eval()
    results = []
    for k, case in enumerate(m["cases"]):
        torch.manual_seed(m["seed"] * 1000 + k)
        random.seed(m["seed"] * 1000 + k)
        pipeline = Pipeline(case["config"], case["outSize"], case["channels"] == 3)
        imgs = images[case["images"]]
        views, crops = views_of(pipeline, imgs, m["views"])
        theirs = view_stats(views, crops, 28, 28)
        tests = []
        for stat in m["stats"]:
            if stat == "chroma" and case["channels"] != 3:
                continue
            ours = np.load(os.path.join(directory, f"case{k}-{stat}.npy")).astype(np.float64)
            tests.append(ks(stat, ours, theirs[stat]))
        if case.get("loss"):
            ta = views_of(pipeline, imgs, m["lossImages"])[0]
            tb = views_of(pipeline, imgs, m["lossImages"])[0]
            oa = torch.from_numpy(np.load(os.path.join(directory, f"case{k}-views-a.npy")))
            ob = torch.from_numpy(np.load(os.path.join(directory, f"case{k}-views-b.npy")))
            tests += loss_tests(encoder, case, oa, ob, ta, tb)
        results.append({"name": case["name"], "transform": case["transform"], "tests": tests})
        print(f"  {case['name']}: min p {min(t['p'] for t in tests):.3g}", file=sys.stderr)
    count = sum(len(r["tests"]) for r in results)
    with open(os.path.join(directory, "result.json"), "w") as f:
        json.dump({"alpha": 0.05 / count, "tests": count, "cases": results}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
