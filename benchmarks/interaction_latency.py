"""Interactive latency of each method on the same 512x512x32 scans, in the same run.

Rounds are driven by the simulated clinician (scribbles) through the one
:class:`~ichseg.interaction.session.InteractiveSession`, so each round does the method's real work
(ICH-HPINet: VIM on the whole scan, SIM on the new slice, batched propagation; random walker: the
ROI solve). The methods alternate scan by scan so machine load hits them alike; timings on these
shared machines vary about 2x between runs, so the report gives each method's round time as a
ratio to the random walker's measured in the same run, beside the absolute seconds. Writes
``benchmarks/results/interaction_latency.json`` and ``.md``.

    python benchmarks/interaction_latency.py --threads 2 --scans 3 --rounds 8 \
        --method hpinet --method hpinet_refined --method random_walker

Target (issue #10): a ``hpinet`` round at most 1.5x a ``random_walker`` round.
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
REFERENCE = "random_walker"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--method", action="append", help="method spec (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scans", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=4242, help="synthetic test-set seed")
    ap.add_argument("--out", default=str(RESULTS / "interaction_latency"))
    args = ap.parse_args()
    methods = args.method or ["hpinet", "hpinet_refined", REFERENCE]

    import torch

    from ichseg.data.synthetic import PhantomConfig, generate_case
    from ichseg.interaction.engine import EngineFactory
    from ichseg.interaction.session import InteractiveSession
    from ichseg.interaction.simulated_user import SimulatedClinician
    from ichseg.io.volume import to_canonical

    torch.set_num_threads(args.threads)
    factories = {m: EngineFactory(m, device=args.device) for m in methods}
    precision = {m: factories[m]().config_dict().get("precision", "-") for m in methods}
    labels = {m: f.spec.label for m, f in factories.items()}
    set_volume_s: dict[str, list[float]] = {m: [] for m in methods}
    round_s: dict[str, list[float]] = {m: [] for m in methods}
    parts: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    index, done = 0, 0
    while done < args.scans:
        case = generate_case(PhantomConfig(), args.seed, index)
        index += 1
        if not case.mask.array.any():
            continue
        gt = to_canonical(case.mask)[0].zyx()
        order = methods if done % 2 == 0 else methods[::-1]
        for m in order:
            session = InteractiveSession(factories[m]())
            session.set_volume(case.image)
            set_volume_s[m].append(session.set_volume_seconds)
            pred = np.zeros_like(gt)
            clinician = SimulatedClinician(mode="scribble", start="largest", seed=index)
            for _ in range(args.rounds):
                turn = clinician.step(pred, gt)
                if turn.stop or not turn.prompts:
                    break
                session.add_prompts(turn.prompts)
                t0 = time.perf_counter()
                r = session.run_round()
                round_s[m].append(time.perf_counter() - t0)
                for k, v in r.timings.items():
                    if not k.startswith("rw_"):  # the random walker's counts, not seconds
                        parts[m].setdefault(k, []).append(v)
                pred = to_canonical(session.mask())[0].zyx()
        done += 1
        summary = ", ".join(f"{labels[m]} {statistics.median(round_s[m]):.2f} s" for m in methods)
        print(f"scan {done}/{args.scans}: median round so far: {summary}", file=sys.stderr)

    def p95(x: list[float]) -> float:
        return float(np.percentile(x, 95))

    ref = statistics.median(round_s[REFERENCE]) if REFERENCE in round_s else None
    command = "python " + " ".join(["benchmarks/interaction_latency.py", *sys.argv[1:]])
    record = {
        "command": command,
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, torch threads {args.threads}",
        "device": args.device,
        "scan_shape_ijk": [512, 512, 32],
        "scans": done,
        "methods": {},
    }
    for m in methods:
        med = statistics.median(round_s[m])
        record["methods"][labels[m]] = {
            "spec": m,
            "precision": precision[m],
            "weights": str(factories[m].weights_path) if factories[m].weights_path else None,
            "rounds_timed": len(round_s[m]),
            "set_volume_median_s": statistics.median(set_volume_s[m]),
            "round_median_s": med,
            "round_p95_s": p95(round_s[m]),
            "round_vs_random_walker": (med / ref) if ref else None,
            "round_parts_median_s": {k: statistics.median(v) for k, v in parts[m].items()},
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    lines = [
        "# Interaction latency (512 x 512 x 32 synthetic scans, same scans for every method)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {record['machine']}; device {args.device}; {done} scans, up to {args.rounds} "
        "scribble rounds each; methods alternate scan by scan.",
        "",
        "| method | precision | set_volume median s | round median s | round p95 s "
        "| round / random walker |",
        "|---|---|---|---|---|---|",
    ]
    for label, rec in record["methods"].items():
        ratio = rec["round_vs_random_walker"]
        lines.append(
            f"| {label} | {rec.get('precision', '-')} | {rec['set_volume_median_s']:.3f} | "
            f"{rec['round_median_s']:.3f} | "
            f"{rec['round_p95_s']:.3f} | {'' if ratio is None else f'{ratio:.2f}x'} |"
        )
    lines += ["", "Median seconds per part of a round:", ""]
    for label, rec in record["methods"].items():
        bits = ", ".join(f"`{k}` {v:.3f}" for k, v in rec["round_parts_median_s"].items())
        lines.append(f"- {label}: {bits}")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
