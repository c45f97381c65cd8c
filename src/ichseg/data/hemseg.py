"""HemSeg-200 / HemSeg-500 layouts (Song et al., 2024; RSNA 2019 scans with IPH/IVH voxel labels).

Supported variants (case id = file name without ``.nii[.gz]``, e.g. the 10-hex RSNA scan id):

1. **Flat**: ``images/<id>.nii.gz`` + ``labels/<id>.nii.gz`` (a label is optional per image).
2. **Split folders** as in the HemSeg repository (``IPH_IVH_label.zip``) and its training
   scripts: ``train|val|test/label/<id>.nii.gz`` with images in ``train|val|test/image/`` (the
   singular/plural ``image(s)``/``label(s)`` are both accepted) or, failing that, in a top-level
   ``images/`` folder. The split is recorded in ``case.meta["split"]``.
3. Either of the above inside ``IPH/`` and/or ``IVH/`` sub-folders: the folder name is recorded as
   the case's subtype (``case.meta["subtypes"]``).

Labels are binary (IPH and IVH are both 1; any value > 0 counts as hemorrhage). Optional files at
the root:

* ``subtypes.csv`` with an id column (``case_id``, ``id``, ``scan`` or ``filename``) and a
  ``subtype`` column holding Subtype names (``IPH``, ``IVH``, ...; ``;``-separated for several);
* ``annotion_file_info*.jsonl`` / ``annotation_file_info*.jsonl`` (the repository's spelling
  first) with ``{"patient": ..., "scan": ...}`` lines (``scan_`` accepted): sets
  ``patient_id`` so that scans of one patient stay together in splits;
* HemSeg-500's ``train_set.csv`` / ``val_set.csv`` / ``test_set.csv`` (``filename,label``): the
  split is recorded and the ``label`` column is kept as ``meta["hemseg500_label"]`` without
  interpretation (its meaning is not documented by the dataset authors).

Images (RSNA DICOM converted to NIfTI) are not redistributable and must be supplied by the user.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ichseg.data.dataset import (
    Case,
    Dataset,
    list_image_files,
    read_csv_rows,
    strip_image_suffix,
)
from ichseg.data.subtypes import Subtype
from ichseg.errors import DatasetLayoutError

SPLITS: tuple[str, ...] = ("train", "val", "test")
SUBTYPE_FOLDERS: tuple[str, ...] = ("IPH", "IVH")
_IMAGE_DIRS = ("image", "images")
_LABEL_DIRS = ("label", "labels")


def _child(folder: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (folder / n).is_dir():
            return folder / n
    return None


def _is_variant(folder: Path) -> bool:
    if (folder / "images").is_dir() and (folder / "labels").is_dir():
        return True
    return any(_child(folder / s, _LABEL_DIRS) is not None for s in SPLITS)


def _subtype_dirs(root: Path) -> list[Path]:
    return [p for p in sorted(root.iterdir()) if p.is_dir() and p.name.upper() in SUBTYPE_FOLDERS]


def is_hemseg(root: Path) -> bool:
    r = Path(root)
    return _is_variant(r) or any(_is_variant(d) for d in _subtype_dirs(r))


def _stem_map(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in list_image_files(folder):
        stem = strip_image_suffix(f.name) or f.name
        if stem in out:
            raise DatasetLayoutError(
                f"{folder}: two files for case {stem}: {out[stem].name}, {f.name}"
            )
        out[stem] = f
    return out


def _collect(folder: Path) -> list[Case]:
    """Cases of one variant-1/2 folder."""
    cases: list[Case] = []
    top_images = _stem_map(folder / "images") if (folder / "images").is_dir() else {}
    split_found = False
    for split in SPLITS:
        label_dir = _child(folder / split, _LABEL_DIRS)
        image_dir = _child(folder / split, _IMAGE_DIRS)
        if label_dir is None and image_dir is None:
            continue
        split_found = True
        labels = _stem_map(label_dir) if label_dir else {}
        images = _stem_map(image_dir) if image_dir else {}
        for cid in sorted(set(labels) | set(images)):
            image = images.get(cid) or top_images.get(cid)
            if image is None:
                looked = [str(d) for d in (image_dir, folder / "images") if d is not None]
                raise DatasetLayoutError(
                    f"{folder}: label {labels[cid].name} ({split}) has no image; looked for "
                    f"{cid}.nii[.gz] in {' and '.join(looked) or f'{split}/image/'}"
                )
            cases.append(Case(cid, image, labels.get(cid), meta={"split": split}))
    if not split_found:
        labels = _stem_map(folder / "labels") if (folder / "labels").is_dir() else {}
        orphans = sorted(set(labels) - set(top_images))
        if orphans:
            raise DatasetLayoutError(
                f"{folder}: label(s) without an image in images/: {', '.join(orphans[:10])}"
            )
        cases = [Case(cid, img, labels.get(cid)) for cid, img in sorted(top_images.items())]
    return cases


def _read_subtype_csv(path: Path) -> dict[str, frozenset[Subtype]]:
    rows = read_csv_rows(path)
    if not rows:
        return {}
    header = [h.lower() for h in rows[0][1]]
    id_col = next(
        (header.index(c) for c in ("case_id", "id", "scan", "filename") if c in header), None
    )
    if id_col is None or "subtype" not in header:
        raise DatasetLayoutError(
            f"{path.name}: needs an id column (case_id, id, scan or filename) and a subtype column"
        )
    st_col = header.index("subtype")
    out: dict[str, frozenset[Subtype]] = {}
    for line, cells in rows[1:]:
        cid = cells[id_col] if id_col < len(cells) else ""
        cid = strip_image_suffix(cid) or cid
        raw = cells[st_col] if st_col < len(cells) else ""
        names = [n.strip().upper() for n in raw.replace(",", ";").split(";") if n.strip()]
        try:
            out[cid] = frozenset(Subtype[n] for n in names)
        except KeyError:
            valid = ", ".join(s.name for s in Subtype)
            raise DatasetLayoutError(
                f"{path.name}: line {line}: unknown subtype {raw!r} (use {valid})"
            ) from None
    return out


def _read_patients(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    files = sorted(root.glob("annotion_file_info*.jsonl")) + sorted(
        root.glob("annotation_file_info*.jsonl")
    )
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                scan = item.get("scan", item.get("scan_"))
                patient = item["patient"]
            except (json.JSONDecodeError, KeyError, AttributeError):
                raise DatasetLayoutError(
                    f"{path.name}: line {n}: expected a JSON object with 'patient' and 'scan'"
                ) from None
            if scan is not None:
                out[str(scan)] = str(patient)
    return out


def _read_hemseg500_sets(root: Path) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for split in SPLITS:
        path = root / f"{split}_set.csv"
        if not path.is_file():
            continue
        rows = read_csv_rows(path)
        header = [h.lower() for h in rows[0][1]] if rows else []
        if "filename" not in header:
            raise DatasetLayoutError(f"{path.name}: expected a 'filename' column")
        fcol = header.index("filename")
        lcol = header.index("label") if "label" in header else None
        for _, cells in rows[1:]:
            name = cells[fcol] if fcol < len(cells) else ""
            name = strip_image_suffix(name) or name
            label = cells[lcol] if lcol is not None and lcol < len(cells) else ""
            out[name] = (split, label)
    return out


def open_hemseg(root: str | Path) -> Dataset:
    """Open a HemSeg folder (see module docstring for the supported variants)."""
    r = Path(root)
    groups: list[tuple[Path, frozenset[Subtype]]] = []
    if _is_variant(r):
        groups.append((r, frozenset()))
    for d in _subtype_dirs(r):
        if _is_variant(d):
            groups.append((d, frozenset({Subtype[d.name.upper()]})))
    if not groups:
        raise DatasetLayoutError(
            f"{r}: not a HemSeg folder (looked for images/ + labels/, train|val|test/label/, "
            "optionally inside IPH/ or IVH/)"
        )
    cases: list[Case] = []
    seen: dict[str, Path] = {}
    for folder, subtypes in groups:
        for case in _collect(folder):
            if case.case_id in seen:
                raise DatasetLayoutError(
                    f"{r}: case {case.case_id} appears twice ({seen[case.case_id]} and {case.image_path})"
                )
            seen[case.case_id] = case.image_path
            if subtypes:
                case.meta["subtypes"] = subtypes
            cases.append(case)
    csv_path = r / "subtypes.csv"
    if csv_path.is_file():
        for cid, subs in _read_subtype_csv(csv_path).items():
            if cid in seen:
                case = next(c for c in cases if c.case_id == cid)
                case.meta["subtypes"] = frozenset(case.meta.get("subtypes", frozenset()) | subs)
    patients = _read_patients(r)
    sets = _read_hemseg500_sets(r)
    for case in cases:
        case.patient_id = patients.get(case.case_id, case.case_id)
        if case.case_id in sets:
            split, label = sets[case.case_id]
            case.meta.setdefault("split", split)
            if label != "":
                case.meta["hemseg500_label"] = label
    meta: dict[str, Any] = {"patients_from_jsonl": bool(patients)}
    return Dataset("hemseg", r, cases, layout="hemseg", meta=meta)
