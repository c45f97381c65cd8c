"""Interactive latency: ``set_volume`` and per-round time on a 512x512x32 scan.

Rounds are driven by the simulated clinician (scribbles), so each round does the real work: VIM on
the whole scan, SIM on the new slice, batched propagation through the scan. Writes
``benchmarks/results/interaction_latency.json`` and ``.md``.

    python benchmarks/interaction_latency.py --threads 2 --scans 3 --rounds 8

Target (issue "Interactive engine"): each round < 1 s (aim 0.5 s) on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--weights", default=None, help="checkpoint (default: shipped lite weights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scans", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=4242, help="synthetic test-set seed")
    ap.add_argument("--out", default=str(RESULTS / "interaction_latency"))
    args = ap.parse_args()

    import torch

    from ichseg.data.synthetic import PhantomConfig, generate_case
    from ichseg.interaction.session import InteractiveSession
    from ichseg.interaction.simulated_user import SimulatedClinician
    from ichseg.io.volume import to_canonical
    from ichseg.models.pretrained import load_weights

    torch.set_num_threads(args.threads)
    model, wpath = load_weights(args.weights)
    set_volume_s, round_s, parts = [], [], {}
    index, done = 0, 0
    while done < args.scans:
        case = generate_case(PhantomConfig(), args.seed, index)
        index += 1
        if not case.mask.array.any():
            continue
        session = InteractiveSession(model, device=args.device, weights_path=wpath)
        session.set_volume(case.image)
        set_volume_s.append(session.set_volume_seconds)
        gt = to_canonical(case.mask)[0].zyx()
        pred = np.zeros_like(gt)
        clinician = SimulatedClinician(mode="scribble", start="largest", seed=index)
        for _ in range(args.rounds):
            turn = clinician.step(pred, gt)
            if turn.stop or not turn.prompts:
                break
            session.add_prompts(turn.prompts)
            t0 = time.perf_counter()
            r = session.run_round()
            round_s.append(time.perf_counter() - t0)
            for k, v in r.timings.items():
                parts.setdefault(k, []).append(v)
            pred = to_canonical(session.mask())[0].zyx()
        done += 1
        print(f"scan {done}: set_volume {set_volume_s[-1]:.2f} s, rounds so far {len(round_s)}")

    def p95(x: list[float]) -> float:
        return float(np.percentile(x, 95))

    command = "python " + " ".join(["benchmarks/interaction_latency.py", *sys.argv[1:]])
    record = {
        "command": command,
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, torch threads {args.threads}",
        "device": args.device,
        "weights": str(wpath.name),
        "scan_shape_ijk": [512, 512, 32],
        "scans": done,
        "rounds_timed": len(round_s),
        "set_volume_median_s": statistics.median(set_volume_s),
        "round_median_s": statistics.median(round_s),
        "round_p95_s": p95(round_s),
        "round_parts_median_s": {k: statistics.median(v) for k, v in parts.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    lines = [
        "# Interaction latency (512 x 512 x 32 synthetic scans)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {record['machine']}; device {args.device}; weights `{record['weights']}`.",
        "",
        "| measure | seconds |",
        "|---|---|",
        f"| set_volume (median of {done} scans) | {record['set_volume_median_s']:.3f} |",
        f"| round, median ({len(round_s)} rounds) | {record['round_median_s']:.3f} |",
        f"| round, p95 | {record['round_p95_s']:.3f} |",
    ]
    lines += [
        f"| round part `{k}`, median | {v:.3f} |" for k, v in record["round_parts_median_s"].items()
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
