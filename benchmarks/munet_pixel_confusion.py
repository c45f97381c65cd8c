"""Voxel-level confusion of a MUNet checkpoint: which label each true subtype's voxels receive.

Per-subtype Dice says *that* a subtype fails; this says *how* (missed as background, or labelled
as another subtype). Counts are pooled over every scan of ``--test`` on the scans' own grids
(``ichseg.quantify.subtypes.predict_subtypes``, the same path as ``ichseg predict``); rows are
the true labels of ``masks_subtype/``, columns the predicted ones.

    python benchmarks/munet_pixel_confusion.py --weights benchmarks/checkpoints/munet/dice_bg_cw/best.pt \
        --test /work/data/synth_test_subtypes --out benchmarks/results/munet/class_weighted_60min_subtype_enriched
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

from ichseg.data.dataset import open_dataset
from ichseg.data.subtypes import SUBTYPE_NAMES
from ichseg.models.registry import load_model
from ichseg.quantify.subtypes import predict_subtypes

NAMES = ("background", *SUBTYPE_NAMES)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, _ = load_model(a.weights)
    model.eval()
    cases = [c for c in open_dataset(a.test).cases if c.subtype_mask_path is not None]
    n = len(NAMES)
    conf = np.zeros((n, n), np.int64)
    t0 = time.perf_counter()
    for case in track(cases, description="predicting"):
        image = case.load_image()
        truth = case.load_subtype_mask(image)
        pred = predict_subtypes(model, image).labels
        t = np.asarray(truth.array, np.int64).ravel()
        p = np.asarray(pred.array, np.int64).ravel()
        np.add.at(conf, (np.clip(t, 0, n - 1), np.clip(p, 0, n - 1)), 1)
    seconds = time.perf_counter() - t0
    a.out.mkdir(parents=True, exist_ok=True)
    with (a.out / "pixel_confusion.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["true", *(f"pred_{x}" for x in NAMES)])
        for name, row in zip(NAMES, conf, strict=True):
            w.writerow([name, *row.tolist()])
    L = [
        f"# MUNet voxel-level confusion on `{a.test}` ({len(cases)} scans)",
        "",
        f"Weights `{a.weights}`; {seconds:.0f} s on {a.threads} thread(s). Rows: true label, "
        "columns: predicted label; each row as a share of its true voxels.",
        "",
        "| true \\ predicted | " + " | ".join(NAMES) + " | true voxels |",
        "|---|" + "---|" * (n + 1),
    ]
    for name, row in zip(NAMES, conf, strict=True):
        total = int(row.sum())
        cells = [f"{v / total:.3f}" if total else "-" for v in row]
        L.append(f"| {name} | " + " | ".join(cells) + f" | {total} |")
    L += [
        "",
        "```bash",
        "python benchmarks/munet_pixel_confusion.py " + " ".join(sys.argv[1:]),
        "```",
    ]
    (a.out / "pixel_confusion.md").write_text("\n".join(L) + "\n")
    print(f"-> {a.out / 'pixel_confusion.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
