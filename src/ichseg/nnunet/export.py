"""Write an ichseg dataset and its folds as an nnU-Net v2 raw dataset.

Layout (``<raw_dir>/DatasetNNN_Name/``)::

    imagesTr/<case>_0000.nii.gz   CT in HU, reoriented (axis permutation/flip only) to ichseg's
                                  canonical LPS voxel order, so every case has the same layout
    labelsTr/<case>.nii.gz        binary hemorrhage label (0/1) on exactly the image's grid
    imagesTs/<case>_0000.nii.gz   the test cases of ``fold`` (when exporting one fold)
    dataset.json                  channel_names {"0": "CT"} (nnU-Net's CT normalisation),
                                  labels {background: 0, hemorrhage: 1}, numTraining, file_ending
    splits_final.json             ichseg's patient-grouped folds: train -> "train", val -> "val"
    ichseg_export.json            ichseg case id <-> nnU-Net identifier, the ichseg splits, fold

nnU-Net's fold ``f`` (``splits_final.json[f]``) is ichseg's fold ``f``: nnU-Net trains on its
``train`` cases and monitors its ``val`` cases; ichseg's ``test`` cases are never in either.
With ``fold=None`` every case goes to ``imagesTr`` (one raw dataset for all folds; nnU-Net's
fingerprint, used for CT normalisation, then sees every case's intensities). With ``fold=f``
only fold ``f``'s train+val cases go to ``imagesTr`` and its test cases to ``imagesTs``;
``splits_final.json`` still lists every fold, each restricted to the cases in ``imagesTr``
(entry ``f`` is ichseg's fold exactly).

:func:`verify_export` runs nnU-Net's own ``verify_dataset_integrity`` on the result.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.data.dataset import Case, Dataset
from ichseg.data.splits import Splits
from ichseg.errors import DatasetLayoutError, GeometryError, InputFileError
from ichseg.io.nifti import write_nifti
from ichseg.io.volume import Intensity, IntensityKind, Volume, to_canonical
from ichseg.nnunet.compat import dataset_folder_name

FILE_ENDING = ".nii.gz"
LABELS = {"background": 0, "hemorrhage": 1}
EXPORT_INFO = "ichseg_export.json"


@dataclass
class ExportResult:
    """Where an export went and what it holds."""

    folder: Path  #: ``.../DatasetNNN_Name``
    dataset_id: int
    train_ids: list[str]  #: nnU-Net identifiers in imagesTr
    test_ids: list[str]  #: nnU-Net identifiers in imagesTs
    case_map: dict[str, str]  #: ichseg case id -> nnU-Net identifier


def nnunet_identifier(case_id: str) -> str:
    """A file-name-safe nnU-Net case identifier for an ichseg case id."""
    ident = re.sub(r"[^A-Za-z0-9_-]+", "-", str(case_id)).strip("-")
    return ident or "case"


def ct_for_nnunet(volume: Volume) -> tuple[Volume, Any]:
    """``volume`` in HU (int16 when it already is integer HU, else float32), reoriented to LPS;
    returns the volume and the :class:`~ichseg.io.volume.Reorientation` to undo it."""
    canon, reo = to_canonical(volume)
    a = canon.array
    if (
        canon.intensity.kind == IntensityKind.HU
        and a.dtype.kind in "iu"
        and a.size
        and int(a.min()) >= -32768
        and int(a.max()) <= 32767
    ):
        hu = a.astype(np.int16, copy=False)
    else:
        hu = canon.hu().astype(np.float32, copy=False)
    return Volume(hu, canon.affine, Intensity.hu(), dict(canon.meta)), reo


def _write_case(case: Case, images: Path, labels: Path | None, ident: str) -> None:
    image = case.load_image()
    ct, _ = ct_for_nnunet(image)
    write_nifti(ct, images / f"{ident}_0000{FILE_ENDING}")
    if labels is None:
        return
    mask = case.load_mask(reference=image)
    if mask is None:
        raise DatasetLayoutError(
            f"case {case.case_id}: no hemorrhage mask; nnU-Net needs a label for every training case"
        )
    mask_canon, _ = to_canonical(mask)
    if not mask_canon.same_geometry(ct):
        raise GeometryError(f"case {case.case_id}: label grid differs from the image grid")
    label = mask_canon.as_label((mask_canon.array > 0).astype(np.uint8))
    write_nifti(label, labels / f"{ident}{FILE_ENDING}")


def export_dataset(
    dataset: Dataset,
    splits: Splits,
    raw_dir: str | Path,
    *,
    dataset_id: int,
    name: str,
    fold: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ExportResult:
    """Write ``dataset`` with ``splits`` as ``raw_dir/DatasetNNN_name`` (see the module docstring).

    Raises :class:`DatasetLayoutError` when the splits do not cover the dataset's cases, a
    training case has no mask, or case ids collide after making them file-name safe;
    :class:`InputFileError` when the folder exists and ``overwrite`` is false.
    """
    folder = Path(raw_dir) / dataset_folder_name(dataset_id, name)
    ids = set(dataset.case_ids)
    if set(splits.case_ids) != ids:
        extra = sorted(set(splits.case_ids) - ids)[:5]
        missing = sorted(ids - set(splits.case_ids))[:5]
        raise DatasetLayoutError(
            f"splits do not match dataset {dataset.name!r}: cases only in the splits {extra}, "
            f"only in the dataset {missing}"
        )
    case_map = {c: nnunet_identifier(c) for c in dataset.case_ids}
    if len(set(case_map.values())) != len(case_map):
        raise DatasetLayoutError("case ids collide once made file-name safe for nnU-Net")
    if fold is None:
        train_cases, test_cases = list(dataset.case_ids), []
    else:
        f = splits.fold(fold)
        train_cases = [c for c in dataset.case_ids if c in set(f.train_val)]
        test_cases = [c for c in dataset.case_ids if c in set(f.test)]
    if folder.exists():
        if not overwrite:
            raise InputFileError(f"{folder}: exists; pass overwrite to replace it")
        shutil.rmtree(folder)
    images_tr, labels_tr = folder / "imagesTr", folder / "labelsTr"
    images_ts = folder / "imagesTs"
    for d in (images_tr, labels_tr, images_ts):
        d.mkdir(parents=True, exist_ok=True)

    jobs = [(c, True) for c in train_cases] + [(c, False) for c in test_cases]
    iterator: Any = jobs
    if progress and len(jobs) > 1:
        from rich.progress import track

        iterator = track(jobs, description=f"exporting {folder.name}", transient=True)
    for cid, is_train in iterator:
        case = dataset.get(cid)
        if is_train:
            _write_case(case, images_tr, labels_tr, case_map[cid])
        else:
            _write_case(case, images_ts, None, case_map[cid])

    dataset_json = {
        "name": name,
        "description": f"ichseg export of {dataset.name} ({dataset.layout} layout)",
        "channel_names": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": len(train_cases),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "SimpleITKIO",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n")
    in_tr = set(train_cases)
    nn_splits = [
        {
            "train": [case_map[c] for c in f.train if c in in_tr],
            "val": [case_map[c] for c in f.val if c in in_tr],
        }
        for f in splits.folds
    ]
    (folder / "splits_final.json").write_text(json.dumps(nn_splits, indent=2) + "\n")
    info = {
        "source": str(dataset.root),
        "layout": dataset.layout,
        "fold": fold,
        "case_map": case_map,
        "train": [case_map[c] for c in train_cases],
        "test": [case_map[c] for c in test_cases],
        "orientation": "LPS (ichseg canonical; permutation/flip of the stored axes)",
        "splits": splits.to_dict(),
    }
    (folder / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return ExportResult(
        folder,
        int(dataset_id),
        [case_map[c] for c in train_cases],
        [case_map[c] for c in test_cases],
        case_map,
    )


def verify_export(folder: str | Path, num_processes: int = 1) -> None:
    """Run nnU-Net's own ``verify_dataset_integrity`` on an exported folder; its failures
    (assertions, RuntimeErrors) become one-line :class:`DatasetLayoutError`."""
    from ichseg.nnunet.compat import require_nnunet

    require_nnunet()
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    try:
        verify_dataset_integrity(str(folder), num_processes=num_processes)
    except (AssertionError, RuntimeError, ValueError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise DatasetLayoutError(f"{folder}: nnU-Net's dataset check failed: {text}") from exc
