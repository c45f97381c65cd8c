"""``ichseg info``: parameters and FLOPs of a registered model, per module."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info(
        model: str = typer.Option("hpinet", "--model", help="Registered model name."),
        preset: str = typer.Option("lite", "--preset", help="Model preset (hpinet: paper|lite)."),
        input_size: str | None = typer.Option(
            None,
            "--input",
            help="Input DxHxW at slice resolution (default: the preset's, e.g. 32x256x256).",
        ),
        weights: Path | None = typer.Option(
            None, "--weights", help="Checkpoint to describe instead of a preset."
        ),
        train_memory: bool = typer.Option(
            False,
            "--train-memory",
            help="Also estimate the peak memory of one training step by running two training "
            "steps on fake tensors (shapes only, no arithmetic). Slow: minutes for the paper "
            "preset (about 6.5 min on 2 CPU cores); progress is shown.",
        ),
        amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision (--train-memory)."),
        checkpointing: bool = typer.Option(
            True,
            "--checkpointing/--no-checkpointing",
            help="Activation checkpointing (--train-memory).",
        ),
    ) -> None:
        """Print per-module parameters and GFLOPs (counted on the meta device, in seconds).

        With --train-memory, also the peak tensor memory of a training step (takes minutes)."""
        import torch
        from rich.console import Console
        from rich.table import Table

        from ichseg.errors import ConfigError
        from ichseg.models.flops import model_cost, parse_input_size
        from ichseg.models.registry import build_model, load_model, model_config_dict

        if weights is not None:
            net, _ = load_model(weights)
            source = f"checkpoint {weights}"
            model_name = str(getattr(net, "registry_name", model))
        else:
            try:
                with torch.device("meta"):
                    net = build_model(model, preset)
            except RuntimeError:  # a constructor reading tensor values (MONAI's SwinUNETR)
                net = build_model(model, preset)
            source = f"preset {preset}"
            model_name = model
        cfg = model_config_dict(net)
        own_shape = callable(getattr(net, "example_input_shape", None))
        if input_size is not None:
            dhw = parse_input_size(input_size)
        elif "default_depth" in cfg and "slice_size" in cfg:
            dhw = (int(cfg["default_depth"]), int(cfg["slice_size"]), int(cfg["slice_size"]))
        elif own_shape:
            dhw = None  # the model's example_input_shape() (e.g. its training patch)
        else:
            dhw = parse_input_size("32x256x256")
        if train_memory and (model_name != "hpinet" or weights is not None):
            raise ConfigError("--train-memory is available for hpinet presets (not --weights)")
        if train_memory and dhw is not None and dhw[1] != dhw[2]:
            raise ConfigError(f"--train-memory needs square slices, got {dhw[1]}x{dhw[2]}")
        report = model_cost(net, dhw, model_name)

        def fmt_m(n: float | None) -> str:
            return "-" if n is None else f"{n / 1e6:.2f}"

        def fmt_g(f: float | None) -> str:
            return "-" if f is None else f"{f / 1e9:.2f}"

        def fmt_ref(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        if report.input_shape is not None:
            shown = "x".join(map(str, report.input_shape)) + " (tensor)"
        else:
            shown = f"{report.input_dhw[0]}x{report.input_dhw[1]}x{report.input_dhw[2]}"
        table = Table(
            title=f"{model_name} ({source}), input {shown}",
            show_lines=False,
        )
        for col, just in (
            ("module", "left"),
            ("FLOPs counted", "left"),
            ("params (M)", "right"),
            ("GFLOPs", "right"),
            ("ref. params (M)", "right"),
            ("ref. GFLOPs", "right"),
        ):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for row in report.rows:
            table.add_row(
                row.name,
                row.unit,
                fmt_m(row.params),
                fmt_g(row.flops),
                fmt_ref(row.ref_params_m),
                fmt_ref(row.ref_gflops),
            )
        t = report.total
        table.add_section()
        table.add_row(
            f"[bold]{t.name}[/bold]",
            t.unit,
            f"[bold]{fmt_m(t.params)}[/bold]",
            f"[bold]{fmt_g(t.flops)}[/bold]",
            fmt_ref(t.ref_params_m),
            fmt_ref(t.ref_gflops),
        )
        console = Console(width=max(120, Console().width))
        console.print(table)
        switches = [
            f"{k}={cfg[k]}"
            for k in ("propagation", "use_memory", "use_affinity", "use_fusion", "top_k", "norm")
            if k in cfg
        ]
        if switches:
            console.print("config: " + ", ".join(switches))
        for note in report.notes:
            console.print(f"- {note}")
        if train_memory and dhw is not None:
            _print_train_memory(console, preset, dhw, amp, checkpointing)


def _print_train_memory(
    console: object,
    preset: str,
    dhw: tuple[int, int, int],
    amp: bool,
    checkpointing: bool,
) -> None:
    import sys
    import time

    from ichseg.training.memory import estimate_training_memory

    t0 = time.perf_counter()
    intro = (
        f"estimating training-step memory of {preset} at {dhw[0]}x{dhw[1]}x{dhw[2]} "
        "(two training steps on fake tensors; minutes for the paper preset)"
    )

    def estimate(show):  # type: ignore[no-untyped-def]
        return estimate_training_memory(
            preset,
            amp=amp,
            checkpointing=checkpointing,
            depth=dhw[0],
            slice_size=dhw[1],
            progress=show,
        )

    if sys.stdout.isatty():  # a spinner with the current stage and the elapsed time
        with console.status(intro) as status:  # type: ignore[attr-defined]
            est = estimate(
                lambda m: status.update(f"{intro}: {m} ({time.perf_counter() - t0:.0f} s)")
            )
    else:  # logs and pipes: one line per stage
        console.print(intro, soft_wrap=True)  # type: ignore[attr-defined]
        est = estimate(
            lambda m: console.print(  # type: ignore[attr-defined]
                f"  {time.perf_counter() - t0:6.1f} s  {m}", soft_wrap=True
            )
        )
    parts = ", ".join(
        f"{name} {value:.2f}"
        for name, value in (
            ("parameters", est.parameters_gib),
            ("gradients", est.gradients_gib),
            ("Adam state", est.optimizer_gib),
            ("activations", est.activations_gib),
            ("temporaries", est.temporaries_gib),
        )
    )
    console.print(  # type: ignore[attr-defined]
        f"training step memory (batch 1, {est.targets} targets, amp={amp}, "
        f"checkpointing={checkpointing}): peak {est.peak_gib:.2f} GiB of tensors ({parts} GiB); "
        "an estimate without the device: add 10-30 % for the CUDA allocator and cuDNN workspaces "
        f"(estimated in {time.perf_counter() - t0:.0f} s)"
    )
