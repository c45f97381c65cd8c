"""Time the synthetic phantom generator on full-size 512x512x32 cases, one thread.

Generates one warm-up case, then ``--cases`` timed cases (hemorrhage always present so the lesion
code is exercised), and writes ``benchmarks/results/synth_speed.json`` and ``.md`` with the
machine, the command and seconds per case (median, max).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synth_speed.py --cases 5
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

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, object]:
    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/loadavg") as fh:
            info["load_average_at_start"] = fh.read().split()[:3]
    except OSError:
        pass
    import numpy
    import scipy

    info["numpy"] = numpy.__version__
    info["scipy"] = scipy.__version__
    return info


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "synth_speed")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from ichseg.data.synthetic import GENERATOR_VERSION, PhantomConfig, generate_case

    info = machine()
    cfg = PhantomConfig(hemorrhage_free_fraction=0.0)
    generate_case(cfg, args.seed, 10_000)  # warm-up (imports, caches)
    times: list[float] = []
    cpu: list[float] = []
    lesions: list[list[str]] = []
    for index in range(args.cases):
        t0, c0 = time.perf_counter(), time.process_time()
        case = generate_case(cfg, args.seed, index)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        lesions.append([f"{e['subtype']}:{e['volume_ml']:.1f}mL" for e in case.info["lesions"]])
        print(
            f"  case {index}: {times[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU {lesions[-1]}",
            file=sys.stderr,
            flush=True,
        )
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synth_speed.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    res = {
        "generator_version": GENERATOR_VERSION,
        "command": command.strip(),
        "shape": list(cfg.shape),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "seconds_per_case": times,
        "median_s": statistics.median(times),
        "max_s": max(times),
        "cpu_seconds_per_case": cpu,
        "median_cpu_s": statistics.median(cpu),
        "max_cpu_s": max(cpu),
        "lesions": lesions,
        "machine": info,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    md = [
        "# Synthetic phantom generation speed",
        "",
        f"Generator {GENERATOR_VERSION}; {args.cases} cases of 512x512x32 (int16 HU, with "
        "hemorrhage), after one warm-up case, one thread.",
        "",
        "```",
        res["command"],
        "```",
        "",
        "| | wall seconds per case | CPU seconds per case |",
        "|---|---|---|",
        f"| median | {res['median_s']:.2f} | {res['median_cpu_s']:.2f} |",
        f"| max | {res['max_s']:.2f} | {res['max_cpu_s']:.2f} |",
        "",
        f"Per case (wall): {', '.join(f'{t:.2f}' for t in times)} s; (CPU): "
        f"{', '.join(f'{t:.2f}' for t in cpu)} s. The machine is shared by several processes, "
        "so wall time includes waiting for a core; CPU time is the generator's own work.",
        "",
        f"Machine: {info.get('cpu', info['processor'])}, {info['cpus']} CPUs (shared; load "
        f"average at start {' '.join(info.get('load_average_at_start', []))}), Python "
        f"{info['python']}, numpy {info['numpy']}, scipy {info['scipy']}.",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
