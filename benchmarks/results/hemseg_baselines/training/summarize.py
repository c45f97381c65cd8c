"""Summarise the lite budget runs of the six MONAI baselines (summary.csv + training curves).

Usage: .venv/bin/python benchmarks/results/hemseg_baselines/training/summarize.py \
    --runs /work/runs/hemseg --out benchmarks/results/hemseg_baselines/training
Reads each run's log.csv, config.yaml and best.pt (weights-only) and copies the logs beside the
summary as <model>_log.csv.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import yaml

from ichseg.models.registry import read_state

MODELS = ("unet", "vnet", "segresnet", "attention_unet", "unetr", "swin_unetr")
FIELDS = (
    "model",
    "preset",
    "steps",
    "training_seconds",
    "best_val_dice",
    "best_step",
    "validations",
    "val_cases",
    "params_m",
    "patch_size",
    "target_spacing",
    "lr",
    "checkpoint",
)


def summarize(run: Path, name: str) -> dict:
    with (run / "log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val" and r["val_dice"] not in ("", "nan")]
    best = max(val, key=lambda r: float(r["val_dice"])) if val else None
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    state = read_state(run / "best.pt")
    params = sum(v.numel() for v in state["state_dict"].values() if v.is_floating_point())
    mc = state["config"]
    return {
        "model": name,
        "preset": cfg["preset"],
        "steps": max(int(r["step"]) for r in rows),
        "training_seconds": max(float(r["seconds"]) for r in rows),
        "best_val_dice": round(float(best["val_dice"]), 4) if best else "",
        "best_step": best["step"] if best else "",
        "validations": len(val),
        "val_cases": cfg.get("val_cases") or "all",
        "params_m": round(params / 1e6, 3),
        "patch_size": "x".join(str(p) for p in mc["patch_size"]),
        "target_spacing": "x".join(f"{s:g}" for s in mc["target_spacing"]),
        "lr": train[-1]["lr"] if train else "",
        "checkpoint": str(run / "best.pt"),
    }


def plot_curves(stages: list[tuple[str, Path]], out_png: Path) -> Path:
    """Training loss and validation Dice of independent runs against training seconds
    (``ichseg training-curves`` chains its logs as consecutive stages, so it suits one run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, (ax_l, ax_v) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, path in stages:
        log = pd.read_csv(path)
        train = log[log["kind"] == "train"]
        val = log[log["kind"] == "val"]
        (line,) = ax_l.plot(train["seconds"] / 60, train["loss"], label=name)
        ax_v.plot(
            val["seconds"] / 60, val["val_dice"], "o-", ms=4, color=line.get_color(), label=name
        )
    ax_l.set_xlabel("training minutes (incl. validation)")
    ax_l.set_ylabel("Dice loss (mean over the logged steps)")
    ax_v.set_xlabel("training minutes (incl. validation)")
    ax_v.set_ylabel("validation 3D Dice (inner val split)")
    for ax in (ax_l, ax_v):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("HemSeg baselines, lite preset, ~6-minute CPU budget each (under-trained)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=150)
    plt.close(fig)
    return out_png


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=Path, default=Path("/work/runs/hemseg"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, stages = [], []
    for name in MODELS:
        run = args.runs / name
        if not (run / "best.pt").exists():
            print(f"{name}: no best.pt in {run}, skipped")
            continue
        rows.append(summarize(run, name))
        shutil.copyfile(run / "log.csv", args.out / f"{name}_log.csv")
        stages.append((name, args.out / f"{name}_log.csv"))
    with (args.out / "summary.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(r)
    if stages:
        print(plot_curves(stages, args.out / "training_curves.png"))


if __name__ == "__main__":
    main()
