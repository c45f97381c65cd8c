"""Generic paired image/mask data.

* **CSV manifest** — columns ``case_id,image[,mask][,patient_id][,subtype_mask]`` (``mask`` may be
  empty for unlabelled cases); relative paths are resolved against the CSV's folder; other columns
  are kept in ``case.meta``. Any image format the reader supports may be referenced.
* **Paired folder** — an images folder and a labels folder matched by file stem; nnU-Net's
  ``_0000`` channel suffix on images is stripped (other channels are rejected: CT is
  single-channel). ``imagesTr/`` + ``labelsTr/`` (+ ``imagesTs/``, ``labelsTs/``) is detected
  automatically; any pair of folders works through :func:`open_paired_dirs`.
* **Case folder** — a folder holding ``image.*`` and optionally ``mask.*`` / ``label.*``
  (case id = folder name); a folder of such folders gives one case each.
* **Image folder** — image files directly in a folder; ``<id>_mask`` / ``_seg`` / ``_label``
  files next to them are taken as their masks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ichseg.data.dataset import (
    Case,
    Dataset,
    list_image_files,
    read_csv_rows,
    strip_image_suffix,
)
from ichseg.errors import DatasetLayoutError

MANIFEST_NAME = "manifest.csv"
_CHANNEL = re.compile(r"^(?P<id>.+)_(?P<ch>\d{4})$")
_MASK_SUFFIXES = ("_mask", "_seg", "_label", "_labels")
_CASE_IMAGE = "image"
_CASE_MASKS = ("mask", "label", "seg")
_NNUNET_PAIRS = (("imagesTr", "labelsTr", "train"), ("imagesTs", "labelsTs", "test"))


# --------------------------------------------------------------------------------------------
# CSV manifest
# --------------------------------------------------------------------------------------------
def has_manifest(root: Path) -> bool:
    return (Path(root) / MANIFEST_NAME).is_file()


def _resolve(value: str, base: Path, where: str) -> Path | None:
    if not value:
        return None
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise DatasetLayoutError(f"{where} {value!r} not found (relative to {base})")
    return p


def open_manifest(csv_path: str | Path, *, name: str = "manifest") -> Dataset:
    """Open a CSV manifest (see module docstring)."""
    path = Path(csv_path)
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: manifest not found")
    rows = read_csv_rows(path)
    if not rows:
        raise DatasetLayoutError(f"{path.name}: the manifest is empty")
    header = [h.lower() for h in rows[0][1]]
    missing = [c for c in ("case_id", "image") if c not in header]
    if missing:
        raise DatasetLayoutError(
            f"{path.name}: missing column(s) {', '.join(missing)}; expected "
            "case_id,image,mask[,patient_id] (header: " + ", ".join(rows[0][1]) + ")"
        )
    base = path.parent
    known = {"case_id", "image", "mask", "patient_id", "subtype_mask"}
    cases: list[Case] = []
    seen: set[str] = set()
    for line, cells in rows[1:]:
        cells = cells + [""] * (len(header) - len(cells))
        values = {h: cells[i] for i, h in enumerate(header)}
        cid = values["case_id"]
        if not cid:
            raise DatasetLayoutError(f"{path.name}: line {line}: case_id is empty")
        if cid in seen:
            raise DatasetLayoutError(f"{path.name}: line {line}: duplicate case_id {cid!r}")
        seen.add(cid)
        paths = {
            k: _resolve(values.get(k, ""), base, f"{path.name}: line {line}: {k}")
            for k in ("image", "mask", "subtype_mask")
        }
        if paths["image"] is None:
            raise DatasetLayoutError(f"{path.name}: line {line}: image is empty")
        extra: dict[str, Any] = {
            rows[0][1][i]: v for i, v in enumerate(cells) if header[i] not in known and v != ""
        }
        cases.append(
            Case(
                cid,
                paths["image"],
                paths["mask"],
                paths["subtype_mask"],
                patient_id=values.get("patient_id", ""),
                meta=extra,
            )
        )
    return Dataset(name, base, cases, layout="manifest", meta={"manifest": str(path)})


# --------------------------------------------------------------------------------------------
# paired folders (nnU-Net style)
# --------------------------------------------------------------------------------------------
def _image_id(stem: str, folder: Path, filename: str) -> str:
    m = _CHANNEL.match(stem)
    if m is None:
        return stem
    if m.group("ch") != "0000":
        raise DatasetLayoutError(
            f"{folder}: {filename} is channel {m.group('ch')}; only single-channel CT "
            "(the _0000 channel) is supported"
        )
    return m.group("id")


def _pairs(images_dir: Path, labels_dir: Path | None, split: str | None) -> list[Case]:
    images: dict[str, Path] = {}
    for f in list_image_files(images_dir):
        cid = _image_id(strip_image_suffix(f.name) or f.name, images_dir, f.name)
        if cid in images:
            raise DatasetLayoutError(f"{images_dir}: two images for case {cid}")
        images[cid] = f
    labels: dict[str, Path] = {}
    if labels_dir is not None and labels_dir.is_dir():
        labels = {strip_image_suffix(f.name) or f.name: f for f in list_image_files(labels_dir)}
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise DatasetLayoutError(
            f"{labels_dir}: label(s) without a matching image in {images_dir.name}/: "
            + ", ".join(orphans[:10])
        )
    meta = {"split": split} if split else {}
    return [Case(cid, img, labels.get(cid), meta=dict(meta)) for cid, img in sorted(images.items())]


def open_paired_dirs(
    images_dir: str | Path, labels_dir: str | Path | None, *, name: str = "paired"
) -> Dataset:
    """Images matched to labels by stem (``case_0000.nii.gz`` <-> ``case.nii.gz``)."""
    img = Path(images_dir)
    if not img.is_dir():
        raise DatasetLayoutError(f"{img}: images folder not found")
    lab = None if labels_dir is None else Path(labels_dir)
    if lab is not None and not lab.is_dir():
        raise DatasetLayoutError(f"{lab}: labels folder not found")
    return Dataset(name, img.parent, _pairs(img, lab, None), layout="paired")


def is_paired_folder(root: Path) -> bool:
    return (Path(root) / "imagesTr").is_dir()


def open_paired_folder(root: str | Path) -> Dataset:
    """An nnU-Net-style folder: ``imagesTr/`` + ``labelsTr/`` and optionally ``imagesTs/``."""
    r = Path(root)
    cases: list[Case] = []
    for images, labels, split in _NNUNET_PAIRS:
        if (r / images).is_dir():
            cases += _pairs(r / images, r / labels, split)
    if not cases and not is_paired_folder(r):
        raise DatasetLayoutError(f"{r}: no imagesTr/ folder")
    return Dataset(r.name or "paired", r, cases, layout="paired")


# --------------------------------------------------------------------------------------------
# case folders and plain image folders
# --------------------------------------------------------------------------------------------
def _named(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for f in list_image_files(folder):
        if (strip_image_suffix(f.name) or "").lower() in stems:
            return f
    return None


def is_case_folder(root: Path) -> bool:
    return Path(root).is_dir() and _named(Path(root), (_CASE_IMAGE,)) is not None


def _case_from_folder(folder: Path) -> Case:
    image = _named(folder, (_CASE_IMAGE,))
    if image is None:
        raise DatasetLayoutError(f"{folder}: no image.nii[.gz] (or .nrrd/.mha) inside")
    return Case(folder.name, image, _named(folder, _CASE_MASKS))


def open_case_folder(root: str | Path) -> Dataset:
    """One case: ``image.*`` plus optional ``mask.*`` / ``label.*`` / ``seg.*``."""
    r = Path(root).resolve()
    return Dataset(r.name, r, [_case_from_folder(r)], layout="case-folder")


def is_case_folders(root: Path) -> bool:
    return any(is_case_folder(d) for d in Path(root).iterdir() if d.is_dir())


def open_case_folders(root: str | Path) -> Dataset:
    """One case per sub-folder holding ``image.*`` (other sub-folders are ignored)."""
    r = Path(root).resolve()
    cases = [_case_from_folder(d) for d in sorted(r.iterdir()) if d.is_dir() and is_case_folder(d)]
    return Dataset(r.name, r, cases, layout="case-folders")


def is_image_folder(root: Path) -> bool:
    return bool(list_image_files(Path(root)))


def open_image_folder(root: str | Path) -> Dataset:
    """Image files in a folder; ``<id>_mask.*`` (``_seg``, ``_label``) files are their masks."""
    r = Path(root).resolve()
    files = {strip_image_suffix(f.name) or f.name: f for f in list_image_files(r)}
    masks: dict[str, Path] = {}
    for stem, f in files.items():
        for suf in _MASK_SUFFIXES:
            if stem.lower().endswith(suf) and stem[: -len(suf)] in files:
                masks[stem[: -len(suf)]] = f
    mask_files = set(masks.values())
    cases = [
        Case(stem, f, masks.get(stem)) for stem, f in sorted(files.items()) if f not in mask_files
    ]
    return Dataset(r.name, r, cases, layout="image-folder")
