"""Choose the ICH-HPINet engine's ``vim_weight`` on *validation* sessions, never on test scans.

The engine's final probability is ``(1 - w) * propagated + w * VIM``: ``w = 0`` is the paper's
hybrid model (slice propagation only), ``w = 1`` the 3D interaction module's own output. The
session-11 ablation found the VIM alone better on the held-out test scans; a default chosen there
would be selected on the test set. This script scores each ``w`` with the trainer's interactive
validation (full simulated scribble sessions of the network alone, previous round fed back, on
the network grid) on the inner-validation cases of a fold of the *training* data, clean and after
one fixed domain-shifted draw per case (the ``val_shifted`` family of a training config), and
applies the rule fixed before the run:

    pick the ``w`` with the highest mean (clean, shifted) ``val_dice`` (mean Dice over rounds
    1..R); a larger ``w`` within 0.005 of the best wins (it is cheaper: w = 1 skips the slice
    propagation).

``--stroke-radius-mm 10`` scores the same with ``hpinet_refined``'s stroke refinement.
Writes ``results.csv``, ``selection.json`` and ``vim_weight.png`` to ``--out``.

    python benchmarks/select_vim_weight.py --data /work/data/synth_train \\
      --splits benchmarks/results/hpinet_lite_splits.json --val-cases 24 --rounds 8 \\
      --threads 1 --out benchmarks/results/vim_weight_selection
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from rich.progress import track

from ichseg.data.dataset import open_dataset
from ichseg.data.splits import Splits
from ichseg.interaction.hpinet_engine import HPINetEngineConfig
from ichseg.models.pretrained import load_weights
from ichseg.training.data import prepare_case, shifted_validation_cases
from ichseg.training.iterative import interactive_validation

TIE = 0.005


def choose(rows: list[dict[str, float]]) -> float:
    """The pre-declared rule (module docstring) on rows with ``w`` and ``score``."""
    best = max(r["score"] for r in rows)
    return max(r["w"] for r in rows if r["score"] >= best - TIE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="training dataset (synth_train)")
    ap.add_argument("--splits", type=Path, required=True, help="splits JSON of the weights")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped weights")
    ap.add_argument("--vim-weights", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--val-cases", type=int, default=24, help="first N inner-validation cases")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument(
        "--shifted-config",
        type=Path,
        default=Path("configs/hpinet_lite_iterative_wide.yaml"),
        help="training config whose val_shifted draws the shifted copies",
    )
    ap.add_argument("--cache", type=Path, default=Path("/work/runs/vim_weight_cache"))
    ap.add_argument(
        "--stroke-radius-mm",
        type=float,
        default=0.0,
        help="0: the network alone (hpinet); 10: with hpinet_refined's stroke refinement",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/vim_weight_selection"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    model, _ = load_weights(args.weights)
    model.eval()
    size = int(model.config.slice_size)
    dataset = open_dataset(args.data)
    fold = Splits.from_json(args.splits).fold(args.fold)
    by_id = {c.case_id: c for c in dataset.cases}
    ids = list(fold.val)[: args.val_cases]
    clean = [
        c
        for c in (
            prepare_case(by_id[i], size, "brain", args.cache, with_hu=True)
            for i in track(ids, description="preparing validation cases")
        )
        if c.positive_slices.size > 0
    ]
    shifted_cfg = yaml.safe_load(args.shifted_config.read_text())["val_shifted"]
    shifted, applied = shifted_validation_cases(clean, shifted_cfg, args.seed, "brain")
    clean = [replace(c, hu=None) for c in clean]  # the HU copy is only for the shifted draws

    rows: list[dict[str, float]] = []
    for w in (float(v) for v in args.vim_weights.split(",")):
        cfg = HPINetEngineConfig(
            feed_previous=True,
            vim_weight=w,
            stroke_radius_mm=args.stroke_radius_mm,
            precision="float32",
        )
        t0 = time.perf_counter()
        a = interactive_validation(model, clean, args.rounds, args.seed, cfg)
        b = interactive_validation(model, shifted, args.rounds, args.seed, cfg)
        row = {
            "w": w,
            "score": (a["val_dice"] + b["val_dice"]) / 2,
            **{f"clean_{k[4:]}": v for k, v in a.items()},
            **{f"shifted_{k[4:]}": v for k, v in b.items()},
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)

    with (args.out / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: round(v, 4) for k, v in r.items()} for r in rows)
    chosen = choose(rows)
    (args.out / "selection.json").write_text(
        json.dumps(
            {
                "chosen_vim_weight": chosen,
                "rule": f"max mean(clean, shifted) val_dice; larger w within {TIE} wins",
                "weights": str(args.weights or "src/ichseg/weights/hpinet_lite.pt"),
                "data": str(args.data),
                "fold": args.fold,
                "clean_cases": [c.case_id for c in clean],
                "shifted_cases": applied,
                "rounds": args.rounds,
                "stroke_radius_mm": args.stroke_radius_mm,
            },
            indent=1,
        )
        + "\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ws = [r["w"] for r in rows]
    for key, label in (("clean_dice", "clean"), ("shifted_dice", "shifted"), ("score", "mean")):
        ax.plot(ws, [r[key] for r in rows], marker="o", label=label)
    ax.axvline(chosen, color="grey", ls="--", lw=1)
    ax.set_xlabel("vim_weight w (final = (1-w) propagated + w VIM)")
    ax.set_ylabel(f"mean Dice over {args.rounds} rounds")
    refined = f", stroke refinement {args.stroke_radius_mm:g} mm" if args.stroke_radius_mm else ""
    ax.set_title(f"validation sessions, fold {args.fold}{refined}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "vim_weight.png", dpi=120)
    print(f"chosen vim_weight: {chosen}")


if __name__ == "__main__":
    main()
