"""``ichseg nnunet export|train|predict``: nnU-Net v2 (the optional ``nnunet`` extra) on ichseg data.

Thin wrappers over :mod:`ichseg.nnunet`; see docs/nnunet.md for the CPU and GPU paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ichseg.errors import ConfigError

nnunet_app = typer.Typer(
    name="nnunet",
    help="nnU-Net v2 baseline: export a dataset, train a fold, predict scans.",
    no_args_is_help=True,
)

WorkDirOpt = Annotated[
    Path,
    typer.Option(
        "--work-dir",
        help="Folder holding nnUNet_raw/, nnUNet_preprocessed/ and nnUNet_results/.",
    ),
]
IdOpt = Annotated[int, typer.Option("--id", help="nnU-Net dataset id (1..999).")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="CPU threads / processes.")]


def _parse_fold(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        fold = int(text)
    except ValueError:
        raise ConfigError(f"--fold must be a fold number or 'all', got {text!r}") from None
    if fold < 0:
        raise ConfigError(f"--fold must be >= 0, got {fold}")
    return fold


def _scan_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; a folder with image files -> those files; another folder -> one DICOM
    series."""
    from ichseg.data.dataset import list_image_files
    from ichseg.errors import InputFileError

    scans: list[Path] = []
    for p in inputs:
        if not p.exists():
            raise InputFileError(f"{p}: no such file or folder")
        files = list_image_files(p) if p.is_dir() else []
        scans.extend(files or [p])
    return scans


@nnunet_app.command("export")
def export(
    dataset: Annotated[Path, typer.Argument(help="An ichseg dataset (folder or CSV manifest).")],
    work_dir: WorkDirOpt,
    dataset_id: IdOpt = 501,
    name: Annotated[
        str, typer.Option("--name", help="nnU-Net dataset name (letters, digits, '-').")
    ] = "ICH",
    fold: Annotated[
        str,
        typer.Option(
            "--fold",
            help="Export one fold (its test cases go to imagesTs) or 'all' (every case in "
            "imagesTr).",
        ),
    ] = "0",
    splits: Annotated[
        Path | None,
        typer.Option("--splits", help="ichseg splits JSON (default: make_splits --k/--seed)."),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=2, help="Folds when making splits.")] = 5,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed when making splits.")] = 0,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Run nnU-Net's dataset check after.")
    ] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the folder.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Write DATASET and its patient-grouped folds as an nnU-Net raw dataset."""
    from ichseg.data.dataset import open_dataset
    from ichseg.data.splits import Splits, make_splits
    from ichseg.nnunet.compat import dataset_folder_name, require_nnunet
    from ichseg.nnunet.export import export_dataset, verify_export

    if verify:
        require_nnunet()
    dataset_folder_name(dataset_id, name)
    fold_index = _parse_fold(fold)
    ds = open_dataset(dataset)
    sp = Splits.from_json(splits) if splits is not None else make_splits(ds, k=k, seed=seed)
    if fold_index is not None:
        sp.fold(fold_index)
    res = export_dataset(
        ds,
        sp,
        Path(work_dir) / "nnUNet_raw",
        dataset_id=dataset_id,
        name=name,
        fold=fold_index,
        overwrite=overwrite,
        progress=progress,
    )
    typer.echo(
        f"wrote {res.folder} ({len(res.train_ids)} cases in imagesTr, {len(res.test_ids)} in "
        "imagesTs)"
    )
    if verify:
        verify_export(res.folder)
        typer.echo("nnU-Net's verify_dataset_integrity: passed")


@nnunet_app.command("train")
def train(
    work_dir: WorkDirOpt,
    dataset_id: IdOpt = 501,
    fold: Annotated[int, typer.Option("--fold", min=0, help="nnU-Net fold (= ichseg fold).")] = 0,
    configuration: Annotated[
        str, typer.Option("--configuration", help="3d_fullres, 2d or 3d_lowres.")
    ] = "3d_fullres",
    trainer: Annotated[
        str,
        typer.Option(
            "--trainer",
            help="nnU-Net trainer class; the default takes --epochs/--iters (others ignore them).",
        ),
    ] = "nnUNetTrainerIchsegBudget",
    budget: Annotated[
        str,
        typer.Option(
            "--budget",
            help="'cpu' (1 epoch x 20 iterations, no final validation) or 'full' (nnU-Net's "
            "1000 x 250); --epochs/--iters/--val-iters override.",
        ),
    ] = "cpu",
    epochs: Annotated[int | None, typer.Option("--epochs", min=1)] = None,
    iters: Annotated[int | None, typer.Option("--iters", min=1, help="Per epoch.")] = None,
    val_iters: Annotated[int | None, typer.Option("--val-iters", min=1)] = None,
    final_validation: Annotated[
        bool | None,
        typer.Option(
            "--final-validation/--no-final-validation",
            help="nnU-Net's full-case validation after training (default: off for cpu).",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or mps.")] = "cpu",
    num_gpus: Annotated[
        int, typer.Option("--num-gpus", min=1, help="nnU-Net's own DDP (cuda).")
    ] = 1,
    threads: ThreadsOpt = 2,
    da_workers: Annotated[
        int, typer.Option("--da-workers", min=0, help="Augmentation worker processes.")
    ] = 0,
    replan: Annotated[bool, typer.Option("--replan", help="Plan + preprocess again.")] = False,
    gpu_memory_gb: Annotated[
        float | None, typer.Option("--gpu-memory-gb", help="Planner's GPU memory target.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last save.")] = False,
    nice: Annotated[int, typer.Option("--nice", min=0, max=19, help="Niceness of nnU-Net.")] = 0,
) -> None:
    """Plan, preprocess and train one fold with nnU-Net's own pipeline."""
    from ichseg.nnunet.compat import require_nnunet
    from ichseg.nnunet.runner import Budget
    from ichseg.nnunet.runner import train as run_train

    require_nnunet()
    presets = {"cpu": Budget.cpu(), "full": Budget()}
    if budget not in presets:
        raise ConfigError(f"--budget must be cpu or full, got {budget!r}")
    b = presets[budget]
    b = Budget(
        epochs if epochs is not None else b.epochs,
        iters if iters is not None else b.iters_per_epoch,
        val_iters if val_iters is not None else b.val_iters,
        final_validation if final_validation is not None else b.final_validation,
    )
    typer.echo(
        f"nnU-Net {configuration} fold {fold} on {device}: trainer {trainer}, "
        f"{b.epochs} epoch(s) x {b.iters_per_epoch} iterations"
    )
    res = run_train(
        work_dir,
        dataset_id,
        fold=fold,
        configuration=configuration,
        trainer=trainer,
        budget=b,
        device=device,
        num_gpus=num_gpus,
        threads=threads,
        da_workers=da_workers,
        replan=replan,
        gpu_memory_gb=gpu_memory_gb,
        resume=resume,
        nice=nice,
    )
    typer.echo(
        f"model: {res.model_dir} (plan+preprocess {res.plan_seconds:.0f} s, training "
        f"{res.train_seconds:.0f} s)"
    )


@nnunet_app.command("predict")
def predict(
    model_dir: Annotated[
        Path, typer.Argument(help="nnU-Net results folder (dataset.json, plans.json, fold_N/).")
    ],
    inputs: Annotated[
        list[Path], typer.Argument(help="Scans (files, DICOM folders) or folders of image files.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the masks.")],
    fold: Annotated[int, typer.Option("--fold", min=0)] = 0,
    checkpoint: Annotated[str, typer.Option("--checkpoint")] = "checkpoint_final.pth",
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or mps.")] = "cpu",
    mirroring: Annotated[
        bool, typer.Option("--mirroring/--no-mirroring", help="nnU-Net's TTA (8x slower).")
    ] = False,
    step_size: Annotated[
        float, typer.Option("--step-size", help="Sliding-window step (fraction of the patch).")
    ] = 0.5,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace masks.")] = False,
) -> None:
    """Segment scans with a trained nnU-Net; masks on each scan's own grid (NIfTI)."""
    from ichseg.nnunet.compat import require_nnunet
    from ichseg.nnunet.runner import predict_files

    require_nnunet()
    if device not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device must be cpu, cuda or mps, got {device!r}")
    scans = _scan_inputs(inputs)
    typer.echo(f"nnU-Net predicting {len(scans)} scan(s) with {model_dir}")
    written = predict_files(
        model_dir,
        scans,
        out,
        fold=fold,
        checkpoint=checkpoint,
        device=device,
        use_mirroring=mirroring,
        tile_step_size=step_size,
        threads=threads,
        overwrite=overwrite,
    )
    typer.echo(f"wrote {len(written)} mask(s) to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(nnunet_app, name="nnunet")
