"""``ichseg train``: train a model on one fold (or all folds) of a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ichseg.commands._paths import Output, check_output_paths
from ichseg.errors import ConfigError


def _parse_overrides(items: list[str] | None) -> dict:
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _floats(text: str, n: int) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise ConfigError(f"expected {n} comma-separated numbers, got {text!r}") from exc
    if len(vals) != n:
        raise ConfigError(f"expected {n} comma-separated numbers, got {text!r}")
    return vals


def _config_model(config: Path | None) -> str | None:
    """The ``model:`` of a YAML training config (``None`` if absent or unreadable: the config
    loader reports unreadable files)."""
    if config is None:
        return None
    import yaml

    try:
        data = yaml.safe_load(Path(config).read_text())
    except (OSError, yaml.YAMLError):
        return None
    value = data.get("model") if isinstance(data, dict) else None
    return str(value) if value else None


#: HPINet-only options (CLI spelling) that other trainers refuse.
_HPINET_ONLY = ("--loss-weights", "--dice-ce", "--loss-preset", "--amp", "--grad-checkpointing")


def _train_other(
    task,  # type: ignore[no-untyped-def]
    name: str,
    config: Path | None,
    cli: dict,
    hpinet_only: dict,
    overrides: dict,
    all_folds: bool,
    progress: bool,
) -> None:
    """Train a model whose trainer is not the HPINet one (see :mod:`ichseg.training.tasks`)."""
    for flag in _HPINET_ONLY:
        if hpinet_only.get(flag):
            raise ConfigError(
                f"{flag} is an HPINet training option; model {name!r} does not take it"
            )
    cfg = task.Config.load(config) if config else task.Config(model=name)
    values = cfg.to_dict()
    values["model"] = name
    if cli.get("out") is None and not config:
        cli["out"] = f"runs/{name}-{cli.get('preset') or values.get('preset', 'lite')}"
    for key, value in cli.items():
        if value is None:
            continue
        if key not in values:
            flag = "--" + {"max_steps": "steps", "num_threads": "threads", "init_from": "init"}.get(
                key, key
            ).replace("_", "-")
            raise ConfigError(f"{flag} is not available for model {name!r}")
        values[key] = value
    if overrides:
        values["model_overrides"] = {**(values.get("model_overrides") or {}), **overrides}
    cfg = task.Config.from_dict(values)
    check_output_paths(Output("--out", cfg.out, kind="folder"))
    if all_folds:
        for r in task.cross_validate(cfg):
            typer.echo(
                f"fold {r['fold']}: {r['steps']} steps, best val Dice {r['best_val_dice']:.4f}"
            )
        return
    result = task.train(cfg, progress=progress)
    typer.echo(
        f"{result['steps']} steps in {result['seconds']:.0f} s; best validation Dice "
        f"{result['best_val_dice']:.4f}; checkpoints in {result['out']}"
    )


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        data: Annotated[str, typer.Option(help="Dataset folder (PhysioNet/HemSeg/manifest)")] = "",
        out: Annotated[Path, typer.Option(help="Run directory (checkpoints, log.csv)")] = Path(
            "runs/hpinet-lite"
        ),
        model: Annotated[
            str | None, typer.Option(help="Registered model name [default: hpinet]")
        ] = None,
        preset: Annotated[
            str | None, typer.Option(help="Model preset: lite | paper [default: lite]")
        ] = None,
        fold: Annotated[int | None, typer.Option(help="Test fold (0-based) [default: 0]")] = None,
        all_folds: Annotated[bool, typer.Option("--cv", help="Run all folds")] = False,
        config: Annotated[Path | None, typer.Option(help="YAML training config")] = None,
        steps: Annotated[int | None, typer.Option(help="Maximum training steps")] = None,
        max_minutes: Annotated[
            float | None,
            typer.Option(help="Wall-clock training budget in minutes (automatic baselines)"),
        ] = None,
        lr: Annotated[float | None, typer.Option(help="Learning rate")] = None,
        val_every: Annotated[int | None, typer.Option(help="Validate every N steps")] = None,
        patience: Annotated[int | None, typer.Option(help="Early-stop patience")] = None,
        amp: Annotated[bool, typer.Option(help="Mixed precision (bf16 CPU / fp16 GPU)")] = False,
        grad_checkpointing: Annotated[bool, typer.Option(help="Gradient checkpointing")] = False,
        device: Annotated[
            str | None, typer.Option(help="auto | cpu | cuda [default: auto]")
        ] = None,
        threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
        seed: Annotated[int | None, typer.Option(help="Sampling seed")] = None,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="Model config override KEY=VALUE (repeatable)"),
        ] = None,
        loss_weights: Annotated[
            str | None,
            typer.Option(help="l1,l2,l3 = volume,slice,FCM loss weights (paper 5,1,4)"),
        ] = None,
        dice_ce: Annotated[
            str | None, typer.Option(help="a,b = Dice and CE shares of each sub-loss (0.5,0.5)")
        ] = None,
        loss_preset: Annotated[
            str | None, typer.Option(help="paper | code (the authors' code: 4,5,1 Dice only)")
        ] = None,
        init: Annotated[
            Path | None,
            typer.Option(help="Warm start from a checkpoint/weights file (matching weights only)"),
        ] = None,
        splits_file: Annotated[
            Path | None, typer.Option(help="Reuse this splits JSON (default: RUN/splits.json)")
        ] = None,
        cache_dir: Annotated[
            Path | None, typer.Option(help="Prepared-case cache (default: RUN/cache)")
        ] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
    ) -> None:
        """Train (e.g. `ichseg train --model hpinet --preset lite --data DIR --fold 0 --out RUN`).

        --model picks the trainer (ichseg.training.tasks): hpinet, the MONAI baselines (unet,
        vnet, segresnet, attention_unet, unetr, swin_unetr) or munet."""
        from dataclasses import asdict

        from ichseg.training.tasks import trainer_for

        name = model or _config_model(config) or "hpinet"
        task = trainer_for(name)
        common = {
            "data": data or None,
            "preset": preset,
            "fold": fold,
            "max_steps": steps,
            "lr": lr,
            "val_every": val_every,
            "patience": patience,
            "device": device,
            "num_threads": threads,
            "seed": seed,
            "init_from": str(init) if init else None,
            "splits_file": str(splits_file) if splits_file else None,
            "cache_dir": str(cache_dir) if cache_dir else None,
        }
        if not task.is_hpinet:
            cli_other = {
                **common,
                "out": str(out) if out != Path("runs/hpinet-lite") else None,
                "model": None,
                "max_minutes": max_minutes,
            }
            only = {
                "--loss-weights": loss_weights,
                "--dice-ce": dice_ce,
                "--loss-preset": loss_preset,
                "--amp": amp,
                "--grad-checkpointing": grad_checkpointing,
            }
            _train_other(
                task, name, config, cli_other, only, _parse_overrides(set_), all_folds, progress
            )
            return
        if max_minutes is not None:
            raise ConfigError(f"--max-minutes is not available for model {name!r}")

        from ichseg.training.config import TrainConfig
        from ichseg.training.losses import LossWeights
        from ichseg.training.trainer import cross_validate, train

        cfg = TrainConfig.load(config) if config else TrainConfig()
        values = cfg.to_dict()
        cli = {
            **common,
            "out": str(out) if out != Path("runs/hpinet-lite") or not config else None,
            "model": model,
            "amp": amp or None,
            "grad_checkpointing": grad_checkpointing or None,
        }
        values.update({k: v for k, v in cli.items() if v is not None})
        overrides = _parse_overrides(set_)
        if overrides:
            values["model_overrides"] = {**values.get("model_overrides", {}), **overrides}
        loss = (
            dict(values["loss"]) if loss_preset is None else asdict(LossWeights.preset(loss_preset))
        )
        if loss_weights:
            loss.update(zip(("volume", "slice", "fcm"), _floats(loss_weights, 3), strict=True))
        if dice_ce:
            loss.update(zip(("dice", "ce"), _floats(dice_ce, 2), strict=True))
        values["loss"] = loss
        cfg = TrainConfig.from_dict(values)
        # an existing run folder is resumed, so only "is it a folder we can write" is checked
        check_output_paths(Output("--out", cfg.out, kind="folder"))
        if all_folds:
            results = cross_validate(cfg)
            for r in results:
                typer.echo(
                    f"fold {r['fold']}: {r['steps']} steps, best val Dice {r['best_val_dice']:.4f}"
                )
            return
        result = train(cfg, progress=progress)
        typer.echo(
            f"{result['steps']} steps in {result['seconds']:.0f} s; best validation Dice "
            f"{result['best_val_dice']:.4f}; checkpoints in {result['out']}"
        )

    @app.command("export-weights")
    def export_cmd(
        checkpoint: Annotated[Path, typer.Argument(help="Trainer checkpoint (best.pt/last.pt)")],
        out: Annotated[Path, typer.Option(help="Output weights file (.pt)")],
        half: Annotated[bool, typer.Option(help="Store float16 (half the size)")] = False,
        overwrite: Annotated[
            bool, typer.Option(help="Replace an existing weights file (and its .json)")
        ] = False,
    ) -> None:
        """Strip optimizer state from a checkpoint: a small, inference-only weights file
        (plus OUT with the suffix .json: the training facts)."""
        from ichseg.training.export import export_weights

        check_output_paths(
            Output("--out", out),
            Output("the facts file (--out with .json)", out.with_suffix(".json")),
            overwrite=overwrite,
            inputs=[("CHECKPOINT", checkpoint)],
        )

        facts = export_weights(checkpoint, out, half=half)
        size_mb = out.stat().st_size / 2**20
        typer.echo(
            f"{out}: {size_mb:.1f} MB, step {facts['step']}, best val Dice {facts['best_val_dice']}"
        )

    @app.command("training-curves")
    def curves_cmd(
        logs: Annotated[
            list[str], typer.Argument(help="log.csv files in order, optionally LABEL=PATH")
        ],
        out: Annotated[Path, typer.Option(help="Output image (.png, .pdf or .svg)")],
        overwrite: Annotated[bool, typer.Option(help="Replace an existing image")] = False,
    ) -> None:
        """Plot training loss and validation Dice of one run or consecutive stages."""
        from ichseg.evaluation.plots import plot_training_log

        check_output_paths(
            Output("--out", out, suffixes=(".png", ".pdf", ".svg")),
            overwrite=overwrite,
            inputs=[(f"LOGS[{n}]", item.partition("=")[2] or item) for n, item in enumerate(logs)],
        )

        stages = []
        for n, item in enumerate(logs):
            label, sep, path = item.partition("=")
            stages.append((label, path) if sep else (f"stage {n + 1}", item))
        typer.echo(str(plot_training_log(stages, out)))
