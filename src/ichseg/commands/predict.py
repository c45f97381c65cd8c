"""``ichseg predict``: automatic segmentation of one scan or a folder of scans.

The model decides how a scan is segmented (:func:`resolve_model`):

* a checkpoint written by ``ichseg train`` of one of the MONAI baselines (``unet``, ``vnet``,
  ``segresnet``, ``attention_unet``, ``unetr``, ``swin_unetr``) or any other automatic registry
  model: :class:`ichseg.inference.automatic.AutomaticPredictor` (preprocessing, sliding window,
  back to the scan's grid), a binary mask;
* a ``munet`` checkpoint: :func:`ichseg.quantify.subtypes.predict_subtypes`, a label mask 0..5
  (one label per subtype) plus a JSON summary (``NAME.subtypes.json``) with mL per subtype;
* an nnU-Net v2 trained-model folder (``--weights`` naming a folder, ``--fold``):
  :func:`ichseg.nnunet.predict_volumes`, a binary mask.

Masks are written in the scan's own geometry, as NIfTI/NRRD/MHA or as a DICOM-SEG with algorithm
type ``AUTOMATIC`` (the scan must then be a DICOM series). A folder of scans (NIfTI/NRRD/MHA
files and DICOM series in sub-folders) is processed by ``--workers`` processes (one torch thread
each unless ``--threads`` says otherwise) and summarised in ``predictions.csv``.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from ichseg.commands._paths import Output, check_output_paths, volume_suffixes
from ichseg.commands._scan import AllowNonCtOpt, CorrectTiltOpt, ScanOptions, SeriesUidOpt
from ichseg.errors import ConfigError, IchsegError, InputFileError, OutputPathError

if TYPE_CHECKING:
    from ichseg.io.volume import Volume

FORMATS = ("nifti", "dicom-seg")  #: values of ``--format``
SUMMARY_CSV = "predictions.csv"  #: the summary of a folder run
SUMMARY_COLUMNS = (
    "scan",
    "mask",
    "model",
    "volume_ml",
    "subtype_ml",
    "shape",
    "spacing_mm",
    "seconds",
    "cpu_seconds",
    "error",
)
_SCAN_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_INTERACTIVE = ("hpinet",)


# ------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelSpec:
    """Which automatic model to run (plain data: sent to worker processes)."""

    kind: Literal["automatic", "munet", "nnunet"]
    path: str  #: checkpoint file, or nnU-Net trained-model folder
    name: str  #: registry name, or ``"nnunet"``
    fold: str = "0"  #: nnU-Net fold (``0``..``4`` or ``all``)
    device: str = "cpu"

    @property
    def label(self) -> str:
        """Short name for tables and DICOM-SEG algorithm names."""
        return self.name if self.kind != "nnunet" else f"nnunet(fold {self.fold})"


def resolve_model(weights: str | Path, *, fold: str = "0", device: str = "cpu") -> ModelSpec:
    """The :class:`ModelSpec` of ``weights``: a registry checkpoint file (its stored model name
    decides) or an nnU-Net trained-model folder. Raises :class:`InputFileError` /
    :class:`ConfigError` (one line) for anything else."""
    p = Path(weights).expanduser()
    if not p.exists():
        raise InputFileError(f"--weights {p}: no such file or folder")
    if p.is_dir():
        return ModelSpec("nnunet", str(p), "nnunet", str(fold), device)
    from ichseg.models.registry import read_state

    name = str(read_state(p)["model"])
    if name in _INTERACTIVE:
        raise ConfigError(
            f"--weights {p}: {name} is an interactive model; segment with it through "
            "`ichseg segment` / `ichseg app`, or start from an automatic mask with "
            "`ichseg segment --initial-mask`"
        )
    kind: Literal["automatic", "munet"] = "munet" if name == "munet" else "automatic"
    return ModelSpec(kind, str(p), name, str(fold), device)


@dataclass
class Prediction:
    """One scan's automatic result."""

    mask: Volume  #: uint8 on the scan's grid: 0/1, or subtype labels 0..5 (munet)
    volume_ml: float  #: hemorrhage volume (all labels > 0)
    subtypes: dict[str, Any] | None = None  #: munet: ``SubtypePrediction.to_dict()``
    subtype_ml: dict[str, float] = field(default_factory=dict)  #: munet: mL per subtype


class Segmenter:
    """A loaded model that segments volumes (build once per process)."""

    def __init__(self, spec: ModelSpec, *, threads: int | None = None, progress: bool = False):
        self.spec = spec
        self.progress = progress
        self.threads = threads
        self._predictor: Any = None
        self._model: Any = None
        if spec.kind == "automatic":
            from ichseg.inference.automatic import AutomaticPredictor
            from ichseg.models.registry import load_model

            self._model = load_model(spec.path)[0]
            self._predictor = AutomaticPredictor(self._model, threads=threads, progress=progress)
        elif spec.kind == "munet":
            from ichseg.models.registry import load_model

            self._model = load_model(spec.path)[0]
        elif threads is not None:
            import torch

            torch.set_num_threads(threads)

    def __call__(self, volume: Volume) -> Prediction:
        import numpy as np

        spec = self.spec
        if spec.kind == "automatic":
            mask = self._predictor.segment(volume)
        elif spec.kind == "munet":
            from ichseg.quantify.subtypes import predict_subtypes

            pred = predict_subtypes(self._model, volume, progress=self.progress)
            arr = np.asarray(pred.labels.array).astype(np.uint8)
            mask = volume.as_label(arr)
            ml = {str(k): float(v) for k, v in dict(pred.volumes_ml).items()}
            total = float((arr > 0).sum()) * volume.voxel_volume_ml
            return Prediction(mask, total, pred.to_dict(), ml)
        else:
            try:
                from ichseg.nnunet import predict_volumes
            except ImportError as exc:
                raise ConfigError(
                    f"nnU-Net prediction is not available ({exc}); install the extra: "
                    "pip install 'ichseg[nnunet]'"
                ) from None
            mask = predict_volumes(spec.path, [volume], fold=spec.fold, device=spec.device)[0]
        arr = (np.asarray(mask.array) > 0).astype(np.uint8)
        mask = volume.as_label(arr)
        return Prediction(mask, float(arr.sum()) * volume.voxel_volume_ml)

    def mask_of(self, volume: Volume) -> Volume:
        """The binary hemorrhage mask (any label) of ``volume``."""
        import numpy as np

        pred = self(volume)
        return volume.as_label((np.asarray(pred.mask.array) > 0).astype(np.uint8))


# ------------------------------------------------------------------------------------ scans
def _is_dicom_folder(folder: Path) -> bool:
    from ichseg.io.dicom import read_dicom_file_header

    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and read_dicom_file_header(f) is not None:
            return True
    return False


def scan_stem(path: Path) -> str:
    """``a/b/case7.nii.gz`` -> ``case7``; a DICOM folder's own name."""
    name = path.name
    for suffix in _SCAN_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def find_scans(folder: Path) -> list[Path]:
    """Scans of a folder: NIfTI/NRRD/MHA files in it and sub-folders holding a DICOM series,
    sorted by name. No scan at all is an :class:`InputFileError`."""
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        is_file_scan = entry.is_file() and entry.name.lower().endswith(_SCAN_SUFFIXES)
        if is_file_scan or (entry.is_dir() and _is_dicom_folder(entry)):
            found.append(entry)
    if not found:
        raise InputFileError(
            f"{folder}: no scans found (NIfTI/NRRD/MHA files or DICOM series in sub-folders)"
        )
    stems: dict[str, Path] = {}
    for p in found:
        other = stems.setdefault(scan_stem(p), p)
        if other != p:
            raise InputFileError(
                f"{folder}: {other.name} and {p.name} would both write {scan_stem(p)}.*; rename one"
            )
    return found


def output_names(stem: str, fmt: str, spec: ModelSpec) -> tuple[str, str | None]:
    """File names of a scan's mask and (munet) JSON summary in an output folder."""
    mask = f"{stem}.seg.dcm" if fmt == "dicom-seg" else f"{stem}.nii.gz"
    return mask, (f"{stem}.subtypes.json" if spec.kind == "munet" else None)


def subtypes_json_path(out: Path) -> Path:
    """``mask.nii.gz`` -> ``mask.subtypes.json`` next to it."""
    return out.with_name(f"{scan_stem(out).removesuffix('.seg')}.subtypes.json")


# ------------------------------------------------------------------------------------ one job
@dataclass(frozen=True)
class Job:
    scan: str
    out: str
    json_out: str | None
    fmt: str
    overwrite: bool


_SEGMENTER: Segmenter | None = None
_OPTIONS: ScanOptions | None = None


def _init_worker(spec: ModelSpec, threads: int, options: ScanOptions) -> None:
    """Process-pool initializer: one torch thread pool of ``threads``, the model loaded once."""
    import torch

    global _SEGMENTER, _OPTIONS
    torch.set_num_threads(threads)
    _SEGMENTER = Segmenter(spec, threads=threads)
    _OPTIONS = options


def _run_in_worker(job: Job) -> dict[str, Any]:
    assert _SEGMENTER is not None and _OPTIONS is not None
    return run_job(job, _SEGMENTER, _OPTIONS)


def run_job(job: Job, segmenter: Segmenter, options: ScanOptions) -> dict[str, Any]:
    """Load, segment and write one scan; the summary row (``error`` set on a user error)."""
    import json

    from ichseg.io.reader import save_mask

    row: dict[str, Any] = {"scan": job.scan, "mask": job.out, "model": segmenter.spec.label}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        volume = options.load(job.scan)
        if job.fmt == "dicom-seg":
            from ichseg.io.dicom_seg import require_dicom_source

            require_dicom_source(volume, job.scan)
        pred = segmenter(volume)
        if job.fmt == "dicom-seg":
            from ichseg.io.dicom_seg import write_dicom_seg

            write_dicom_seg(
                pred.mask,
                volume,
                job.out,
                algorithm_type="AUTOMATIC",
                algorithm_name=f"ichseg {segmenter.spec.label}",
                series_description=f"ichseg {segmenter.spec.label} hemorrhage",
                overwrite=job.overwrite,
            )
        else:
            save_mask(pred.mask, job.out, overwrite=job.overwrite)
        if job.json_out is not None and pred.subtypes is not None:
            summary = {"scan": job.scan, "mask": job.out, "model": segmenter.spec.label}
            summary.update(pred.subtypes)
            tmp = Path(job.json_out).with_name(f".{Path(job.json_out).name}.tmp")
            tmp.write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
            os.replace(tmp, job.json_out)
    except IchsegError as exc:
        row.update(error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        row.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
        return row
    row.update(
        volume_ml=round(pred.volume_ml, 4),
        subtype_ml=";".join(f"{k}={v:.3f}" for k, v in pred.subtype_ml.items()),
        shape="x".join(str(n) for n in volume.shape),
        spacing_mm="x".join(f"{s:.4g}" for s in volume.spacing),
        seconds=round(time.perf_counter() - t0, 3),
        cpu_seconds=round(time.process_time() - c0, 3),
        error="",
    )
    return row


def run_jobs(
    jobs: Sequence[Job],
    spec: ModelSpec,
    options: ScanOptions,
    *,
    workers: int = 1,
    threads: int | None = None,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``jobs`` (in order of completion with ``workers > 1``; rows returned in job order).

    ``workers > 1``: a process pool (forkserver with torch preloaded where available, else
    spawn; never a plain fork of a process whose torch threads may be running), each process
    with ``threads`` torch threads (default 1) and its own copy of the model."""
    from ichseg.progress import progress_bar

    rows: dict[int, dict[str, Any]] = {}
    bar = progress_bar(enabled=progress)
    with bar:
        task = bar.add_task(f"predict ({spec.label})", total=len(jobs))

        def done(n: int, row: dict[str, Any]) -> None:
            rows[n] = row
            bar.advance(task)
            if on_row is not None:
                on_row(row)

        if workers <= 1:
            seg = Segmenter(spec, threads=threads, progress=progress and len(jobs) == 1)
            for n, job in enumerate(jobs):
                done(n, run_job(job, seg, options))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            if "forkserver" in mp.get_all_start_methods():  # import torch once, then fork
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload(["torch", "ichseg.commands.predict"])
            else:
                ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=min(workers, len(jobs)),
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(spec, threads or 1, options),
            ) as pool:
                futures = {pool.submit(_run_in_worker, job): n for n, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
    return [rows[n] for n in range(len(jobs))]


def write_summary(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """The folder run's ``predictions.csv`` (:data:`SUMMARY_COLUMNS`), written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(SUMMARY_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: row.get(k, "") for k in SUMMARY_COLUMNS})
    os.replace(tmp, path)
    return path


def _format_from_suffix(out: Path) -> str:
    return "dicom-seg" if out.name.lower().endswith(".dcm") else "nifti"


def plan_jobs(
    input_path: Path, out: Path, fmt: str | None, spec: ModelSpec, overwrite: bool
) -> tuple[list[Job], bool]:
    """The jobs for ``input_path`` and whether it is a folder run; checks every output path
    (:func:`~ichseg.commands._paths.check_output_paths`) before anything is computed."""
    if not input_path.exists():
        raise InputFileError(f"INPUT {input_path}: no such file or folder")
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    folder = input_path.is_dir() and not _is_dicom_folder(input_path)
    if not folder:
        if fmt is not None and fmt != _format_from_suffix(out):
            raise ConfigError(
                f"--format {fmt} does not match --out {out.name}: for one scan the format "
                "follows the file name (.nii.gz/.nrrd/.mha, or .seg.dcm for a DICOM-SEG)"
            )
        json_out = subtypes_json_path(out) if spec.kind == "munet" else None
        check_output_paths(
            Output("--out", out, suffixes=(*volume_suffixes(), ".dcm")),
            Output("subtype summary", json_out, suffixes=(".json",)),
            overwrite=overwrite,
            inputs=[("INPUT", input_path), ("--weights", spec.path)],
        )
        job = Job(
            str(input_path),
            str(out),
            None if json_out is None else str(json_out),
            _format_from_suffix(out),
            overwrite,
        )
        return [job], False
    fmt = fmt or "nifti"
    scans = find_scans(input_path)
    names = [output_names(scan_stem(p), fmt, spec) for p in scans]
    products = [SUMMARY_CSV, *(n for pair in names for n in pair if n)]
    check_output_paths(
        Output("--out", out, kind="folder", products=tuple(products)), overwrite=overwrite
    )
    scan_keys = {os.path.realpath(p) for p in scans}
    for name in products:
        if os.path.realpath(out / name) in scan_keys:
            raise OutputPathError(f"--out {out}: {name} would replace an input scan")
    jobs = [
        Job(str(p), str(out / m), None if j is None else str(out / j), fmt, overwrite)
        for p, (m, j) in zip(scans, names, strict=True)
    ]
    return jobs, True


def iter_lines(row: dict[str, Any]) -> Iterator[str]:
    """What is printed for one finished scan."""
    name = Path(row["scan"]).name
    if row.get("error"):
        yield f"{name}: error: {row['error']}"
        return
    yield f"{name}: {row['volume_ml']:.2f} mL -> {row['mask']} ({row['seconds']:.1f} s)"
    if row.get("subtype_ml"):
        parts = [p.split("=") for p in str(row["subtype_ml"]).split(";") if p]
        yield "  " + ", ".join(f"{k} {float(v):.2f} mL" for k, v in parts)


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict_cmd(
        input_path: Annotated[
            Path,
            typer.Argument(
                metavar="INPUT",
                help="A scan (NIfTI/NRRD/MHA file or DICOM folder), or a folder of scans "
                "(those files and DICOM series in sub-folders)",
            ),
        ],
        weights: Annotated[
            Path,
            typer.Option(
                help="Automatic model: a checkpoint from `ichseg train` (unet, vnet, segresnet, "
                "attention_unet, unetr, swin_unetr, munet) or an nnU-Net v2 trained-model folder"
            ),
        ],
        out: Annotated[
            Path,
            typer.Option(
                help="One scan: the mask file (.nii.gz/.nrrd/.mha, or .seg.dcm for a DICOM-SEG "
                "of a DICOM scan). A folder of scans: the output folder (NAME.nii.gz or "
                "NAME.seg.dcm per scan, predictions.csv)"
            ),
        ],
        fmt: Annotated[
            str | None,
            typer.Option(
                "--format",
                help="Folder runs: nifti | dicom-seg (default nifti); one scan: as --out's name",
                show_default=False,
            ),
        ] = None,
        fold: Annotated[str, typer.Option(help="nnU-Net fold: 0..4 or all")] = "0",
        workers: Annotated[
            int, typer.Option(help="Folder runs: processes, each with its own model copy")
        ] = 1,
        threads: Annotated[
            int | None,
            typer.Option(help="torch CPU threads per process (default: 1 with --workers > 1)"),
        ] = None,
        device: Annotated[str, typer.Option(help="nnU-Net: cpu | cuda")] = "cpu",
        input_window: Annotated[
            str | None, typer.Option(help="Window of already-windowed input, 'L,W' or preset")
        ] = None,
        correct_tilt: CorrectTiltOpt = False,
        series_uid: SeriesUidOpt = None,
        allow_non_ct: AllowNonCtOpt = False,
        progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
        overwrite: Annotated[bool, typer.Option(help="Replace existing outputs")] = False,
    ) -> None:
        """Segment hemorrhage automatically (no prompts) with a trained automatic model; print
        the volume in mL per scan. Output paths, options and the model file are checked before
        any scan is read."""
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        options = ScanOptions(correct_tilt, series_uid, allow_non_ct, input_window)
        options.window()  # a bad --input-window is reported before anything else
        spec = resolve_model(weights, fold=fold, device=device)
        jobs, folder = plan_jobs(input_path, out, fmt, spec, overwrite)
        if any(j.fmt == "dicom-seg" for j in jobs):
            from ichseg.io.dicom_seg import _highdicom

            _highdicom()  # the optional package, before any work

        def echo(row: dict[str, Any]) -> None:
            if row.get("error") and not folder:
                return  # one scan: the error is the command's error message
            for line in iter_lines(row):
                typer.echo(line)

        rows = run_jobs(
            jobs,
            spec,
            options,
            workers=workers if folder else 1,
            threads=threads,
            progress=progress,
            on_row=echo,
        )
        failed = [r for r in rows if r.get("error")]
        if folder:
            path = write_summary(rows, out / SUMMARY_CSV)
            ok = [r for r in rows if not r.get("error")]
            total = sum(float(r["volume_ml"]) for r in ok)
            typer.echo(f"{len(ok)} of {len(rows)} scan(s) segmented ({total:.2f} mL) -> {path}")
        if failed:
            first = failed[0]
            raise InputFileError(
                f"{len(failed)} of {len(rows)} scan(s) failed; first: "
                f"{Path(first['scan']).name}: {first['error']}"
                if folder
                else str(first["error"])
            )


__all__ = [
    "FORMATS",
    "Job",
    "ModelSpec",
    "Prediction",
    "Segmenter",
    "find_scans",
    "plan_jobs",
    "resolve_model",
    "run_jobs",
]
