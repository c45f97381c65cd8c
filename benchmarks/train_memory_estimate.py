"""Peak tensor memory of one ICH-HPINet training step per preset, estimated without a GPU.

Runs :func:`ichseg.training.memory.estimate_training_memory` (fake tensors + PyTorch's
MemTracker; nothing is computed) for the ``paper`` preset at 16x512x512 with and without mixed
precision and activation checkpointing, and for ``lite``. ``--validate`` also runs the lite
step for real on CPU and reports both, to show the fake-tensor peak equals the real one.
Writes ``benchmarks/results/train_memory_estimate.{json,md}``.

    python benchmarks/train_memory_estimate.py --validate

Issue target: the paper preset fits 512x512 slices in <= 8 GB of GPU memory with mixed precision
and checkpointing. This is an estimate of ``torch.cuda.max_memory_allocated``, not a
measurement on a GPU: CPU autocast (bfloat16) stands in for CUDA float16 autocast, and cuDNN
workspaces and allocator fragmentation are not counted. ``benchmarks/train_step.py --device
cuda`` measures the real number when a GPU is available.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from rich.progress import track

from ichseg.training.memory import estimate_training_memory

RESULTS = Path(__file__).resolve().parent / "results"

CONFIGS = [
    ("paper", True, True, True),
    ("paper", True, False, True),
    ("paper", False, True, True),
    ("paper", False, False, True),
    ("lite", True, True, True),
    ("lite", False, False, True),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--validate", action="store_true", help="also run lite for real on CPU")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "train_memory_estimate"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configs = CONFIGS + ([("lite", False, False, False)] if args.validate else [])
    rows = []
    for preset, amp, ckpt, fake in track(configs, description="estimating"):
        est = estimate_training_memory(preset, amp=amp, checkpointing=ckpt, fake=fake)
        rows.append(est.to_dict())
        print(rows[-1], flush=True)
    command = "python " + " ".join(["benchmarks/train_memory_estimate.py", *sys.argv[1:]])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"command": command, "torch": torch.__version__, "results": rows}, indent=1)
    )
    lines = [
        "# ICH-HPINet training-step memory, estimated without a GPU",
        "",
        f"Command: `{command}` (torch {torch.__version__})",
        "",
        "Batch 1 volume, 2 target slices per step, Adam; peak of live tensors over a full step "
        "(forward, Dice+CE composite loss, backward, optimizer update). `fake`: shapes only, "
        "nothing computed (FakeTensorMode + torch MemTracker); `real`: the same step run on CPU. "
        "Mixed precision here is CPU bfloat16 autocast standing in for CUDA float16 (both 2-byte "
        "activations). Not counted: cuDNN workspaces and CUDA caching-allocator fragmentation "
        "(plan 10-30 % more reserved memory). Not a GPU measurement.",
        "",
        "| preset | input (Z,Y,X) | amp | checkpointing | tensors | params | grads | Adam | "
        "activations | temporaries | **peak (GiB)** |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {list(r['input_zyx'])} | {r['amp']} | {r['checkpointing']} | "
            f"{'fake' if r['fake'] else 'real'} | {r['parameters_gib']:.2f} | "
            f"{r['gradients_gib']:.2f} | {r['optimizer_gib']:.2f} | {r['activations_gib']:.2f} | "
            f"{r['temporaries_gib']:.2f} | **{r['peak_gib']:.2f}** |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
