"""Does bfloat16 change what ICH-HPINet segments? The same simulated sessions in float32 and
bfloat16 on held-out synthetic scans; Dice per round for both and their difference, and the
round time of each (same run). Writes ``benchmarks/results/precision_check.md`` and ``.json``.

    python benchmarks/precision_check.py --data /work/data/synth_test --cases 5 --rounds 6

The engine's default precision is ``auto``: bfloat16 on CPUs (and GPUs) that compute it
natively, float32 elsewhere (``ichseg.interaction.hpinet_engine.resolve_precision``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
PRECISIONS = ("float32", "bfloat16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="PhysioNet-layout folder (ichseg synth)")
    ap.add_argument("--cases", type=int, default=5, help="first N scans with hemorrhage")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--method", default="hpinet", help="hpinet or hpinet_refined")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "precision_check"))
    args = ap.parse_args()

    import torch

    from ichseg.data.dataset import open_dataset
    from ichseg.interaction.engine import EngineFactory
    from ichseg.interaction.session import InteractiveSession
    from ichseg.interaction.simulated_user import SimulatedClinician
    from ichseg.io.volume import to_canonical

    torch.set_num_threads(args.threads)
    factories = {p: EngineFactory(f"{args.method}:precision={p}") for p in PRECISIONS}
    dice: dict[str, list[list[float]]] = {p: [] for p in PRECISIONS}
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    used = []
    for case in open_dataset(args.data):
        if len(used) >= args.cases:
            break
        image = case.load_image()
        mask = case.load_mask(reference=image)
        gt = to_canonical(mask)[0].zyx() > 0
        if not gt.any():
            continue
        used.append(case.case_id)
        for p in PRECISIONS:
            session = InteractiveSession(factories[p]())
            session.set_volume(image)
            clinician = SimulatedClinician(mode="scribble", start="random_band", seed=0)
            pred = np.zeros_like(gt)
            curve = []
            for _ in range(args.rounds):
                turn = clinician.step(pred, gt)
                if turn.stop or not turn.prompts:
                    break
                session.add_prompts(turn.prompts)
                t0 = time.perf_counter()
                session.run_round()
                seconds[p].append(time.perf_counter() - t0)
                pred = to_canonical(session.mask())[0].zyx() > 0
                curve.append(float(2 * (pred & gt).sum() / (pred.sum() + gt.sum())))
            dice[p].append(curve)
        print(
            f"case {case.case_id}: "
            + "; ".join(f"{p} " + " ".join(f"{d:.3f}" for d in dice[p][-1]) for p in PRECISIONS),
            file=sys.stderr,
        )

    diffs = [
        abs(a - b)
        for ca, cb in zip(dice["float32"], dice["bfloat16"], strict=True)
        for a, b in zip(ca, cb, strict=False)
    ]
    record = {
        "command": "python " + " ".join(["benchmarks/precision_check.py", *sys.argv[1:]]),
        "machine": f"{platform.node()}, torch threads {args.threads}",
        "method": args.method,
        "cases": used,
        "dice": dice,
        "max_abs_dice_difference": max(diffs) if diffs else None,
        "mean_abs_dice_difference": float(np.mean(diffs)) if diffs else None,
        "round_median_s": {p: statistics.median(seconds[p]) for p in PRECISIONS},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    med = record["round_median_s"]
    lines = [
        f"# `{args.method}` in float32 and bfloat16: same sessions, same scans",
        "",
        f"Command: `{record['command']}`",
        "",
        f"Machine: {record['machine']}; {len(used)} held-out synthetic scans with hemorrhage "
        f"({', '.join(used)}), up to {args.rounds} scribble rounds (simulated clinician, "
        "`random_band` start, seed 0).",
        "",
        "| case | " + " | ".join(f"round {r + 1}" for r in range(args.rounds)) + " |",
        "|---|" + "---|" * args.rounds,
    ]
    for i, cid in enumerate(used):
        cells = []
        for r in range(args.rounds):
            a = dice["float32"][i][r] if r < len(dice["float32"][i]) else None
            b = dice["bfloat16"][i][r] if r < len(dice["bfloat16"][i]) else None
            cells.append("" if a is None or b is None else f"{a:.3f} / {b:.3f}")
        lines.append(f"| {cid} (float32 / bfloat16) | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Largest |Dice difference| over all rounds: {record['max_abs_dice_difference']:.4f}; "
        f"mean {record['mean_abs_dice_difference']:.4f}.",
        f"Round median: float32 {med['float32']:.3f} s, bfloat16 {med['bfloat16']:.3f} s "
        f"({med['float32'] / med['bfloat16']:.2f}x).",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
