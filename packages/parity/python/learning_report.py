"""Learning parity report: mean +- std over seeds per epoch and side, Welch's t-test between sides.

Usage: python learning_report.py DIR   (reads DIR/runs.json, writes DIR/report.{md,json})
"""

import json
import os
import sys

import numpy as np
from scipy import stats


def summary(values):
    v = np.array(values, dtype=np.float64)
    return {"n": len(v), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "values": [float(x) for x in v]}


def main(directory):
    with open(os.path.join(directory, "runs.json")) as f:
        runs = json.load(f)
    epochs = sorted({e["epoch"] for r in runs for e in r["epochs"]})
    rows = []
    for epoch in epochs:
        row = {"epoch": epoch}
        for metric in ["knn", "loss"]:
            sides = {}
            for side in ["contrast", "pytorch"]:
                vals = [e[metric] for r in runs if r["side"] == side for e in r["epochs"] if e["epoch"] == epoch]
                sides[side] = summary([100 * v for v in vals] if metric == "knn" else vals)
            a, b = sides["contrast"]["values"], sides["pytorch"]["values"]
            test = stats.ttest_ind(a, b, equal_var=False) if len(a) > 1 and len(b) > 1 else None
            row[metric] = {
                **sides,
                "difference": sides["contrast"]["mean"] - sides["pytorch"]["mean"],
                "welch_t": None if test is None else float(test.statistic),
                "p": None if test is None else float(test.pvalue),
            }
        rows.append(row)
    lines = [
        "## Learning parity: the recipe over seeds",
        "",
        "| epoch | metric | Contrast (mean ± std, n) | PyTorch (mean ± std, n) | difference | Welch t | p |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for metric, label, fmt in [("knn", "kNN top-1 (%)", "{:.2f}"), ("loss", "loss (last 50 steps)", "{:.3f}")]:
            m = row[metric]
            c, t = m["contrast"], m["pytorch"]
            cell = lambda s: f"{fmt.format(s['mean'])} ± {fmt.format(s['std'])} ({s['n']})"  # noqa: E731
            p = "-" if m["p"] is None else f"{m['p']:.2f}"
            tt = "-" if m["welch_t"] is None else f"{m['welch_t']:.2f}"
            lines.append(f"| {row['epoch']} | {label} | {cell(c)} | {cell(t)} | {fmt.format(m['difference'])} | {tt} | {p} |")
    lines += ["", "Per seed (kNN % / loss):", ""]
    for side in ["contrast", "pytorch"]:
        for r in sorted((r for r in runs if r["side"] == side), key=lambda r: r["seed"]):
            per = ", ".join(f"epoch {e['epoch']}: {100 * e['knn']:.2f} / {e['loss']:.3f}" for e in r["epochs"])
            lines.append(f"- {side} seed {r['seed']}: {per} ({r['seconds'] / 60:.1f} min)")
    with open(os.path.join(directory, "report.json"), "w") as f:
        json.dump({"epochs": rows}, f, indent=1)
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
