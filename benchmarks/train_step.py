"""Seconds per ICH-HPINet training step and peak memory, per preset and device.

Each configuration runs in its own subprocess so its peak memory (CPU: max RSS; GPU: torch's peak
allocated) is its own. Writes ``benchmarks/results/train_step.json`` and ``.md``.

    python benchmarks/train_step.py                      # lite on CPU (2 threads)
    python benchmarks/train_step.py --preset paper --device cuda --amp --checkpointing

Targets (issue "ICH-HPINet"): lite < 2 s/step and < 4 GB on 2 CPU cores; paper fits 512x512
slices in <= 8 GB of GPU memory with mixed precision and checkpointing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def one_config(args: argparse.Namespace) -> dict:
    import torch

    from ichseg.models.registry import build_model
    from ichseg.training.data import PreparedCase, SamplerConfig, build_sample, sample_rng
    from ichseg.training.losses import hpinet_loss

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("hpinet", args.preset).to(device)
    if args.checkpointing:
        model.set_checkpointing(True)
    size = model.config.slice_size
    depth = args.depth or model.config.default_depth
    rng = sample_rng(0, 0)
    img = rng.random((depth, size, size), dtype="float32") * 0.3 + 0.3
    mask = (rng.random((depth, size, size)) > 2).astype("uint8")
    c = size // 2
    mask[depth // 2 - 2 : depth // 2 + 3, c - size // 8 : c + size // 8, c - size // 8 : c] = 1
    case = PreparedCase("bench", img, mask, (5.0, 0.9, 0.9))
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=1e-7)
    use_amp = args.amp
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and device.type == "cuda")
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(args.warmup + args.steps):
        s = build_sample(case, SamplerConfig(), sample_rng(1, step), 10**6)
        while not s["k_indices"]:
            s = build_sample(case, SamplerConfig(), sample_rng(2, step), 10**6)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        vol, hints, prev, gt = (s[k].to(device) for k in ("volume", "hints", "prev_mask", "gt"))
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            out = model(vol, hints, prev, s["r_index"], s["k_indices"])
        loss = hpinet_loss(out, gt, s["r_index"], s["k_indices"]).total
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    peak_gb = (
        torch.cuda.max_memory_allocated() / 2**30
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "preset": args.preset,
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": args.threads,
        "amp": use_amp,
        "checkpointing": args.checkpointing,
        "input_zyx": [depth, size, size],
        "targets_per_step": 2,
        "steps_timed": len(times),
        "median_s": statistics.median(times),
        "max_s": max(times),
        "peak_memory_gb": round(peak_gb, 3),
        "peak_memory_kind": "torch max allocated (GPU)" if device.type == "cuda" else "max RSS",
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", action="append", help="lite and/or paper (default: lite)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "train_step"))
    args = ap.parse_args()
    if args.child:
        args.preset = args.preset[0]
        print(json.dumps(one_config(args)))
        return
    rows = []
    for preset in args.preset or ["lite"]:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--preset",
            preset,
            "--device",
            args.device,
            "--threads",
            str(args.threads),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
        ]
        cmd += ["--depth", str(args.depth)] if args.depth else []
        cmd += ["--amp"] if args.amp else []
        cmd += ["--checkpointing"] if args.checkpointing else []
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"benchmark for preset {preset} failed")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1])
    command = "python " + " ".join(["benchmarks/train_step.py", *sys.argv[1:]])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "machine": f"{platform.node()} {os.cpu_count()} CPUs",
        "torch_threads": args.threads,
        "results": rows,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    lines = [
        "# ICH-HPINet training step benchmark",
        "",
        f"Command: `{command}`",
        "",
        "| preset | device | threads | amp | ckpt | input (Z,Y,X) | params (M) | median s/step | "
        "max s/step | peak memory (GB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['device']} ({r['device_name']}) | {r['threads']} | {r['amp']} | "
            f"{r['checkpointing']} | {r['input_zyx']} | {r['parameters_m']} | "
            f"{r['median_s']:.2f} | {r['max_s']:.2f} | {r['peak_memory_gb']:.2f} "
            f"({r['peak_memory_kind']}) |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
