"""MUNet report: per-subtype segmentation and classification on a held-out set, ablations side by
side, case166 (IPH segmentation only). Writes ``report.md``, ``table.csv`` and ROC / confusion-
matrix PNGs into ``--out``.

Usage::

    python benchmarks/munet_report.py --run full=RUN_A --run no_fpn=RUN_B --run no_smote=RUN_C \
        --test /work/data/synth_test --case166 ../shared/data/real/case166 \
        --out benchmarks/results/munet

Each ``RUN`` is a training folder (``best.pt``, ``log.csv``, ``config.yaml``). Segmentation is
scored on the SOURCE grid of every scan (labels from :func:`ichseg.quantify.subtypes.
predict_subtypes`, pooled over all scans per subtype); classification per slice (the classification
head's sigmoid per subtype vs the subtypes present on that slice of the subtype mask) and per scan
(maximum over slices). case166 has a binary mask (its hemorrhage is an IPH): Dice of the predicted
IPH label and of any predicted hemorrhage; its pixels are never written.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ichseg.data.dataset import open_dataset
from ichseg.data.slices import axial_axis
from ichseg.data.subtypes import SUBTYPE_NAMES
from ichseg.evaluation.classification import (
    CLASS_NAMES,
    SegCounts,
    classification_metrics,
    plot_confusion_matrices,
    plot_roc_curves,
)
from ichseg.io.volume import Window
from ichseg.models.registry import load_model
from ichseg.quantify.subtypes import predict_subtypes

PAPER_TABLE8 = {  # Dice of the paper's Table 8 (PhysioNet, 256x256, 60 epochs on a P100)
    "MUNet + FPN + SMOTE (proposed)": {
        "IVH": 0.77,
        "IPH": 0.80,
        "SAH": 0.92,
        "SDH": 0.64,
        "EDH": 0.84,
    },
    "MUNet + SMOTE (no FPN)": {"IVH": 0.59, "IPH": 0.64, "SAH": 0.70, "SDH": 0.50, "EDH": 0.69},
    "MUNet + FPN (no SMOTE)": {"IVH": 0.45, "IPH": 0.57, "SAH": 0.52, "SDH": 0.49, "EDH": 0.68},
}


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def run_budget(run: Path) -> dict:
    rows = list(csv.DictReader((run / "log.csv").open()))
    train_rows = [r for r in rows if r["kind"] == "train"]
    val_rows = [r for r in rows if r["kind"] == "val" and r["val_dice"] not in ("", "nan")]
    best = max(val_rows, key=lambda r: float(r["val_dice"])) if val_rows else None
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    return {
        "steps": int(train_rows[-1]["step"]) if train_rows else 0,
        "seconds": float(train_rows[-1]["seconds"]) if train_rows else 0.0,
        "best_step": int(best["step"]) if best else None,
        "best_val_dice": float(best["val_dice"]) if best else float("nan"),
        "batch_size": cfg.get("batch_size"),
        "fpn": cfg.get("fpn"),
        "smote": cfg.get("smote"),
        "sampling": cfg.get("sampling"),
        "max_minutes": cfg.get("max_minutes"),
        "max_steps": cfg.get("max_steps"),
    }


def evaluate_run(model: torch.nn.Module, test: list) -> dict:
    counts = SegCounts()
    y_true, y_prob, scan_true, scan_prob, ml_err = [], [], [], [], []
    for case in test:
        vol = case.load_image()
        gt = case.load_subtype_mask(vol)
        pred = predict_subtypes(model, vol)
        counts.update(pred.labels.array, gt.array)
        axis, _ = axial_axis(vol)
        g = np.moveaxis(np.asarray(gt.array), axis, 0)
        for row in pred.slices:
            sl = g[row["k"]]
            truth = [int((sl == i + 1).any()) for i in range(len(SUBTYPE_NAMES))]
            y_true.append([*truth, int(not any(truth))])
            y_prob.append([*row["probabilities"].values(), row["none_probability"]])
        present = [int((g == i + 1).any()) for i in range(len(SUBTYPE_NAMES))]
        scan_true.append(present)
        scan_prob.append(list(pred.probabilities.values()))
        gt_ml = float((g > 0).sum() * vol.voxel_volume_ml)
        ml_err.append(abs(pred.total_ml - gt_ml))
    return {
        "seg": counts.scores(),
        "cls": classification_metrics(np.array(y_true), np.array(y_prob)),
        "scan": classification_metrics(np.array(scan_true), np.array(scan_prob), SUBTYPE_NAMES),
        "y_true": np.array(y_true),
        "y_prob": np.array(y_prob),
        "abs_ml_error": float(np.mean(ml_err)),
    }


def evaluate_case166(model: torch.nn.Module, root: Path) -> dict:
    ds = open_dataset(root, input_window=Window(50.5, 85.0))
    case = ds.cases[0]
    vol = case.load_image()
    mask = np.asarray(case.load_mask(vol).array) > 0
    lab = predict_subtypes(model, vol).labels.array

    def dice(p: np.ndarray) -> float:
        d = int(p.sum()) + int(mask.sum())
        return 2.0 * int((p & mask).sum()) / d if d else 1.0

    return {
        "dice_iph": dice(lab == 2),
        "dice_any": dice(lab > 0),
        "gt_ml": float(mask.sum() * vol.voxel_volume_ml),
        "pred_iph_ml": float((lab == 2).sum() * vol.voxel_volume_ml),
        "pred_any_ml": float((lab > 0).sum() * vol.voxel_volume_ml),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (repeatable)")
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--case166", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/munet"))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    test = list(open_dataset(a.test).cases)
    runs = dict(item.split("=", 1) for item in a.run)
    results, budgets, c166 = {}, {}, {}
    t0 = time.perf_counter()
    for name, folder in runs.items():
        run = Path(folder)
        model, _ = load_model(run / "best.pt")
        budgets[name] = run_budget(run)
        print(f"[{name}] evaluating {len(test)} scans ...", flush=True)
        results[name] = evaluate_run(model, test)
        r = results[name]
        plot_roc_curves(
            r["y_true"],
            r["y_prob"],
            a.out / f"roc_{name}.png",
            title=f"MUNet {name}: slice-level one-vs-rest ROC ({a.test.name})",
        )
        plot_confusion_matrices(
            r["y_true"],
            r["y_prob"],
            a.out / f"confusion_{name}.png",
            title=f"MUNet {name}: slice-level, threshold 0.5",
        )
        if a.case166 is not None:
            c166[name] = evaluate_case166(model, a.case166)
    seconds = time.perf_counter() - t0

    with (a.out / "table.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "run",
                "class",
                "dice",
                "iou",
                "precision",
                "recall",
                "f1",
                "auc",
                "accuracy",
                "seg_precision",
                "seg_recall",
                "support_slices",
                "support_pixels",
            ]
        )
        for name, r in results.items():
            for cname in CLASS_NAMES:
                c = r["cls"]["per_class"][cname]
                s = r["seg"].get(cname, {})
                w.writerow(
                    [
                        name,
                        cname,
                        s.get("dice", ""),
                        s.get("iou", ""),
                        c["precision"],
                        c["recall"],
                        c["f1"],
                        c["auc"],
                        c["accuracy"],
                        s.get("precision", ""),
                        s.get("recall", ""),
                        c["support"],
                        s.get("support_pixels", ""),
                    ]
                )

    names = list(results)
    L = ["# MUNet (IHSNet) on synthetic scans: per-subtype segmentation and classification", ""]
    steps = [b["steps"] for b in budgets.values()]
    minutes = sorted({b["max_minutes"] for b in budgets.values()}, key=str)
    per_step = np.mean([b["seconds"] / max(b["steps"], 1) for b in budgets.values()])
    max_steps = {b.get("max_steps") for b in budgets.values()}
    if len(max_steps) == 1 and all(b["steps"] == b.get("max_steps") for b in budgets.values()):
        budget = (
            f"each had the same budget of {steps[0]} steps (config `max_steps`, reached before "
            f"the {minutes[0]}-minute limit)"
        )
        compare = "the ablation differences are within what such short runs vary."
    elif len(minutes) == 1:
        budget = (
            "each had the same wall-clock budget "
            f"({minutes[0]} min of training, config `max_minutes`)"
        )
        compare = "the ablation differences are within what such short runs vary."
    else:
        per_run = ", ".join(f"{n} {b['max_minutes']} min" for n, b in budgets.items())
        budget = f"the runs had DIFFERENT wall-clock budgets ({per_run}, config `max_minutes`)"
        compare = (
            "runs with different budgets are NOT an ablation: compare only rows with the same "
            "budget."
        )
    L += [
        f"**These models are badly under-trained for lack of compute**: {budget}",
        "on one CPU thread of a shared 2-core machine, which gave only",
        f"{min(steps)}-{max(steps)} steps of batch 8 (~{per_step:.1f} s per step under the load of",
        "other jobs), where the paper trained 60 epochs on a GPU. The numbers show that the",
        "pipeline trains, predicts and evaluates end to end; they say little about what MUNet",
        f"can reach, and {compare}",
        "",
        f"Held-out set: `{a.test}` ({len(test)} synthetic scans, a seed never used for training).",
        "Segmentation: Dice / IoU per subtype label, pooled over all voxels of all scans on the",
        "scans' own grids. Classification: per slice (sigmoid >= 0.5 per subtype, `none` = no",
        "hemorrhage), AUC one-vs-rest; precision / recall / F1 below are the classification's.",
        "",
        "## Training budget",
        "",
        "| run | FPN | SMOTE | sampling | steps | training s | best val Dice (step) |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in names:
        b = budgets[n]
        L.append(
            f"| {n} | {b['fpn']} | {b['smote']} | {b['sampling']} | {b['steps']} | "
            f"{b['seconds']:.0f} | {_fmt(b['best_val_dice'])} ({b['best_step']}) |"
        )
    L += ["", "## Per subtype, ablations side by side", ""]
    hdr = "| subtype | " + " | ".join(f"Dice {n} | IoU {n}" for n in names) + " |"
    L += [hdr, "|---|" + "---|---|" * len(names)]
    for st in SUBTYPE_NAMES:
        cells = " | ".join(
            f"{_fmt(results[n]['seg'][st]['dice'])} | {_fmt(results[n]['seg'][st]['iou'])}"
            for n in names
        )
        L.append(f"| {st} | {cells} |")
    for n in names:
        r = results[n]
        L += [
            "",
            f"### `{n}`: all metrics per subtype",
            "",
            "| subtype | Dice | IoU | precision | recall | F1 | AUC | accuracy | slices with it |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for cname in CLASS_NAMES:
            c = r["cls"]["per_class"][cname]
            s = r["seg"].get(cname)
            dice = _fmt(s["dice"]) if s else "–"
            iou = _fmt(s["iou"]) if s else "–"
            L.append(
                f"| {cname} | {dice} | {iou} | {_fmt(c['precision'])} | {_fmt(c['recall'])} | "
                f"{_fmt(c['f1'])} | {_fmt(c['auc'])} | {_fmt(c['accuracy'])} | "
                f"{int(c['support'])} |"
            )
        m = r["cls"]["macro"]
        L += [
            "",
            f"Macro: F1 {_fmt(m['f1'])}, AUC {_fmt(m['auc'])}; exact-match slices "
            f"{_fmt(r['cls']['exact_match'])}; mean |total mL error| {r['abs_ml_error']:.2f} mL. "
            f"Scan-level presence (max over slices, {len(test)} scans): macro AUC "
            f"{_fmt(r['scan']['macro']['auc'])}, F1 {_fmt(r['scan']['macro']['f1'])}.",
            "",
            f"![ROC {n}](roc_{n}.png)",
            "",
            f"![confusion {n}](confusion_{n}.png)",
        ]
    if c166:
        L += [
            "",
            "## Real scan case166 (segmentation only; its hemorrhage is an IPH)",
            "",
            "Loaded with `--input-window 50.5,85` (its README: HU ~= value/3 + 8). One case.",
            "",
            "| run | Dice (IPH label) | Dice (any subtype) | GT mL | pred IPH mL | pred any mL |",
            "|---|---|---|---|---|---|",
        ]
        for n, c in c166.items():
            L.append(
                f"| {n} | {c['dice_iph']:.3f} | {c['dice_any']:.3f} | {c['gt_ml']:.1f} | "
                f"{c['pred_iph_ml']:.1f} | {c['pred_any_ml']:.1f} |"
            )
    L += [
        "",
        "## The paper's Table 8 (PhysioNet CT-ICH, for reference; not comparable)",
        "",
        "| row | EDH | IPH | IVH | SAH | SDH |",
        "|---|---|---|---|---|---|",
    ]
    for row, d in PAPER_TABLE8.items():
        L.append(f"| {row} | " + " | ".join(f"{d[s]:.2f}" for s in SUBTYPE_NAMES) + " |")
    L += ["", "## Commands", "", "```bash"]
    for folder in runs.values():
        cfg = yaml.safe_load((Path(folder) / "config.yaml").read_text())
        name, overrides = _config_name(cfg)
        extra = "".join(
            f" --{key.replace('_', '-')} {value}"
            for key, value in (
                *((k, cfg[k]) for k in ("splits_file", "cache_dir") if cfg.get(k)),
                *overrides.items(),
            )
        )
        L.append(
            f"ichseg train --config {name} --data {cfg['data']} --out {folder} "
            f"--threads 1{extra} --no-progress"
        )
    L.append(
        "python "
        + " ".join(
            ["benchmarks/munet_report.py", *sys.argv[1:]]
            if argv is None
            else ["benchmarks/munet_report.py", *argv]
        )
    )
    L += ["```", "", f"Evaluation took {seconds:.0f} s ({a.threads} thread(s))."]
    (a.out / "report.md").write_text("\n".join(L) + "\n")
    print(f"-> {a.out / 'report.md'}")
    return 0


def _config_name(cfg: dict, folder: Path = Path("configs")) -> tuple[str, dict]:
    """The committed MUNet config a run's settings come from and the CLI options the run changed:
    the config whose every setting equals the run's, or else one that differs only in the
    wall-clock budget (a resumed run given a larger ``--max-minutes``); ``?`` when none does."""
    loose = ("max_minutes",)
    for allow in ((), loose):
        for path in sorted(folder.glob("munet*.yaml")):
            committed = yaml.safe_load(path.read_text()) or {}
            if committed and all(cfg.get(k) == v for k, v in committed.items() if k not in allow):
                changed = {k: cfg[k] for k in allow if cfg.get(k) != committed.get(k)}
                return str(path), changed
    return "? (no committed config matches the run's config.yaml)", {}
