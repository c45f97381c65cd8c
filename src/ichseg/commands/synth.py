"""``ichseg synth`` (synthetic head-CT dataset) and ``ichseg montage`` (PNG of axial slices)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ichseg.commands._paths import Output, check_output_paths
from ichseg.commands._scan import AllowNonCtOpt, CorrectTiltOpt, ScanOptions, SeriesUidOpt
from ichseg.errors import ConfigError

DEFAULT_SHAPE = "512x512x32"


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"512x512x32"`` -> ``(512, 512, 32)`` (``i x j x k``)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError as exc:
        raise ConfigError(f"--shape must look like 512x512x32, got {text!r}") from exc
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"--shape must be three positive integers like 512x512x32, got {text!r}")
    return shape  # type: ignore[return-value]


def parse_window(text: str) -> tuple[float, float]:
    """``"40,80"`` -> ``(40.0, 80.0)`` (level, width in HU)."""
    try:
        level, width = (float(p) for p in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"--window must be LEVEL,WIDTH in HU (e.g. 40,80), got {text!r}") from exc
    if width <= 0:
        raise ConfigError(f"--window width must be > 0, got {text!r}")
    return level, width


def parse_slices(text: str) -> int:
    """``"auto"`` -> 12, otherwise a positive slice count."""
    if text.strip().lower() == "auto":
        return 12
    try:
        n = int(text)
    except ValueError as exc:
        raise ConfigError(f"--slices must be 'auto' or a positive integer, got {text!r}") from exc
    if n < 1:
        raise ConfigError(f"--slices must be >= 1, got {n}")
    return n


def _load_config(path: Path | None, shape: tuple[int, int, int]):  # type: ignore[no-untyped-def]
    import json

    import yaml

    from ichseg.data.synthetic import PhantomConfig

    overrides = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                overrides = yaml.safe_load(text) or {}
            else:
                overrides = json.loads(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot parse config ({exc})") from exc
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: config must be a mapping of PhantomConfig fields")
        overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items()}
        overrides.pop("shape", None)
    cfg = PhantomConfig.for_shape(shape)
    if overrides:
        data = cfg.to_dict()
        data.update(overrides)
        cfg = PhantomConfig.from_dict(data)
    return cfg


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        out: Annotated[
            Path, typer.Option("--out", help="Output folder (PhysioNet CT-ICH layout).")
        ],
        cases: Annotated[int, typer.Option("--cases", min=1, help="Number of cases.")] = 10,
        seed: Annotated[int, typer.Option("--seed", min=0, help="Dataset seed.")] = 0,
        shape: Annotated[
            str,
            typer.Option(
                "--shape",
                help="Grid i x j x k; other sizes than 512x512x32 scale the spacing to keep a "
                "real head's size (e.g. 64x64x12 for tests).",
            ),
        ] = DEFAULT_SHAPE,
        config: Annotated[
            Path | None,
            typer.Option("--config", help="YAML/JSON file with PhantomConfig fields to override."),
        ] = None,
        hemorrhage_free: Annotated[
            float | None,
            typer.Option("--hemorrhage-free", help="Fraction of cases without hemorrhage."),
        ] = None,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Write into a folder that holds a dataset.")
        ] = False,
        progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    ) -> None:
        """Generate synthetic head CTs with labelled hemorrhages (deterministic per seed)."""
        from ichseg.data.synthetic import PhantomConfig, write_dataset

        # existing datasets in the folder are refused by write_dataset (before generating)
        check_output_paths(Output("--out", out, kind="folder"), overwrite=overwrite)
        cfg = _load_config(config, parse_shape(shape))
        if hemorrhage_free is not None:
            data = cfg.to_dict()
            data["hemorrhage_free_fraction"] = hemorrhage_free
            cfg = PhantomConfig.from_dict(data)
        path = write_dataset(out, cases, seed, cfg, progress=progress, overwrite=overwrite)
        typer.echo(f"wrote {cases} synthetic case(s) to {path}")

    @app.command("montage")
    def montage(
        image: Annotated[
            Path, typer.Argument(help="CT volume (NIfTI, NRRD, MHA or DICOM folder).")
        ],
        mask: Annotated[
            Path | None, typer.Option("--mask", help="Mask to outline (labels get colours).")
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="PNG to write (default IMAGE_montage.png).")
        ] = None,
        window: Annotated[
            str, typer.Option("--window", help="Display window LEVEL,WIDTH in HU (raw-HU images).")
        ] = "40,80",
        slices: Annotated[
            str, typer.Option("--slices", help="'auto' (12, around the lesion) or a count.")
        ] = "auto",
        title: Annotated[str | None, typer.Option("--title", help="Title line.")] = None,
        input_window: Annotated[
            str | None,
            typer.Option(
                "--input-window",
                help="The image is already windowed with this HU window ('40,80' or a preset).",
            ),
        ] = None,
        correct_tilt: CorrectTiltOpt = False,
        series_uid: SeriesUidOpt = None,
        allow_non_ct: AllowNonCtOpt = False,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace an existing PNG.")
        ] = False,
    ) -> None:
        """Write a PNG grid of axial slices with the mask outlined (radiological convention)."""
        from ichseg.io.reader import load_mask
        from ichseg.visualize.montage import render_montage

        win = parse_window(window)
        n = parse_slices(slices)
        scan_options = ScanOptions(correct_tilt, series_uid, allow_non_ct, input_window)
        scan_options.window()
        if out is None:
            name = image.name
            for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
                if name.lower().endswith(suffix):
                    name = name[: -len(suffix)]
                    break
            out = Path(f"{name}_montage.png")
        check_output_paths(
            Output("--out", out, suffixes=(".png",)),
            overwrite=overwrite,
            inputs=[("IMAGE", image), ("--mask", mask)],
        )
        vol = scan_options.load(image)
        msk = load_mask(mask, reference=vol, binarize=False) if mask is not None else None
        path = render_montage(vol, msk, out, window=win, n_slices=n, title=title or image.name)
        typer.echo(f"wrote {path}")
