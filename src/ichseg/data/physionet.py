"""PhysioNet CT-ICH layout (Hssayeni et al., 2020), as released and as written by ``ichseg synth``::

    root/
      ct_scans/049.nii[.gz]               CT volume (HU)
      masks/049.nii[.gz]                  binary hemorrhage mask (0/1 or 0/255; binarised > 0)
      masks_subtype/049.nii[.gz]          optional multi-class mask (Subtype labels; synthetic only)
      hemorrhage_diagnosis_raw_ct.csv     optional per-slice labels (one row per patient and slice)
      patient_demographics.csv            optional (Patient Number, Age (years), Gender, ...)

The per-slice CSV has the columns of :data:`ichseg.data.subtypes.PHYSIONET_CSV_COLUMNS`;
``SliceNumber`` is 1-based along the scan's ``k`` axis. Extra columns and whitespace are tolerated,
``No_Hemorrhage`` / ``Fracture_Yes_No`` are optional, and a malformed row raises
:class:`DatasetLayoutError` naming its line. Case ids are the zero-padded patient numbers
(``"049"``); one scan per patient, so ``patient_id == case_id``.
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
    warn_layout,
)
from ichseg.data.subtypes import PHYSIONET_SUBTYPE_COLUMNS, Subtype
from ichseg.errors import DatasetLayoutError

CT_DIR = "ct_scans"
MASK_DIR = "masks"
SUBTYPE_MASK_DIR = "masks_subtype"
DIAGNOSIS_CSV = "hemorrhage_diagnosis_raw_ct.csv"
DEMOGRAPHICS_CSV = "patient_demographics.csv"

SliceLabels = dict[int, dict[int, frozenset[Subtype]]]


def case_id_for(number: int) -> str:
    """Patient number -> case id (``49 -> "049"``)."""
    return f"{int(number):03d}"


def is_physionet(root: Path) -> bool:
    return (Path(root) / CT_DIR).is_dir()


def _find_file(root: Path, name: str) -> Path | None:
    """``root/name`` matched case-insensitively (the released file is ``Patient_demographics``)."""
    exact = root / name
    if exact.is_file():
        return exact
    for p in root.iterdir():
        if p.is_file() and p.name.lower() == name.lower():
            return p
    return None


def _int_cell(value: str, path: Path, line: int, column: str, *, minimum: int | None = None) -> int:
    try:
        f = float(value)
        if not f.is_integer():
            raise ValueError
        out = int(f)
    except ValueError:
        raise DatasetLayoutError(
            f"{path.name}: line {line}: {column} is {value!r}, expected an integer"
        ) from None
    if minimum is not None and out < minimum:
        raise DatasetLayoutError(
            f"{path.name}: line {line}: {column} is {out}, expected >= {minimum}"
        )
    return out


def parse_diagnosis_csv(path: str | Path) -> tuple[SliceLabels, dict[int, dict[str, list[int]]]]:
    """Parse ``hemorrhage_diagnosis_raw_ct.csv``.

    Returns ``(labels, extras)``: ``labels[patient][k]`` is the frozenset of subtypes on 0-based
    slice ``k``; ``extras[patient]`` holds ``"fracture_slices"`` and ``"no_hemorrhage_slices"``
    (0-based) when those columns exist.
    """
    p = Path(path)
    rows = read_csv_rows(p)
    if not rows:
        raise DatasetLayoutError(f"{p.name}: the file is empty")
    _, header = rows[0]
    col = {name: i for i, name in enumerate(header) if name}
    required = ["PatientNumber", "SliceNumber", *PHYSIONET_SUBTYPE_COLUMNS.values()]
    missing = [c for c in required if c not in col]
    if missing:
        raise DatasetLayoutError(
            f"{p.name}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})"
        )
    optional = [c for c in ("No_Hemorrhage", "Fracture_Yes_No") if c in col]
    labels: SliceLabels = {}
    extras: dict[int, dict[str, list[int]]] = {}
    for line, cells in rows[1:]:
        if len(cells) < len(header):
            cells = cells + [""] * (len(header) - len(cells))

        def cell(name: str, line: int = line, cells: list[str] = cells) -> str:
            value = cells[col[name]]
            if value == "":
                raise DatasetLayoutError(f"{p.name}: line {line}: {name} is empty")
            return value

        patient = _int_cell(cell("PatientNumber"), p, line, "PatientNumber", minimum=0)
        k = _int_cell(cell("SliceNumber"), p, line, "SliceNumber", minimum=1) - 1
        flags: dict[str, int] = {}
        for name in [*PHYSIONET_SUBTYPE_COLUMNS.values(), *optional]:
            v = _int_cell(cell(name), p, line, name)
            if v not in (0, 1):
                raise DatasetLayoutError(f"{p.name}: line {line}: {name} is {v}, expected 0 or 1")
            flags[name] = v
        per_patient = labels.setdefault(patient, {})
        if k in per_patient:
            raise DatasetLayoutError(
                f"{p.name}: line {line}: duplicate row for patient {patient}, slice {k + 1}"
            )
        per_patient[k] = frozenset(s for s, c in PHYSIONET_SUBTYPE_COLUMNS.items() if flags[c])
        ex = extras.setdefault(patient, {})
        if flags.get("Fracture_Yes_No") == 1:
            ex.setdefault("fracture_slices", []).append(k)
        if flags.get("No_Hemorrhage") == 1:
            ex.setdefault("no_hemorrhage_slices", []).append(k)
    return labels, extras


def parse_demographics_csv(path: str | Path) -> dict[int, dict[str, Any]]:
    """Parse the demographics CSV: ``{patient: {"age": ..., "gender": ..., "demographics": {...}}}``.

    The header is the first row mentioning "patient"; rows whose first cell is not an integer
    (extra header lines such as ``(years)``) are skipped; extra columns are kept under
    ``"demographics"``.
    """
    p = Path(path)
    rows = read_csv_rows(p)
    header_idx = next(
        (
            i
            for i, (_, cells) in enumerate(rows)
            if any("patient" in c.lower() for c in cells) and sum(1 for c in cells if c) >= 2
        ),
        None,
    )
    if header_idx is None:
        raise DatasetLayoutError(f"{p.name}: no header row with a 'Patient Number' column")
    header = rows[header_idx][1]
    pcol = next(i for i, c in enumerate(header) if "patient" in c.lower())
    age_col = next((i for i, c in enumerate(header) if re.search(r"\bage\b", c.lower())), None)
    sex_col = next(
        (i for i, c in enumerate(header) if re.search(r"gender|\bsex\b", c.lower())), None
    )
    out: dict[int, dict[str, Any]] = {}
    for line, cells in rows[header_idx + 1 :]:
        raw = cells[pcol] if pcol < len(cells) else ""
        try:
            patient = int(float(raw))
        except ValueError:
            continue  # continuation of the header, notes, totals
        info: dict[str, Any] = {
            "demographics": {
                (header[i] if i < len(header) and header[i] else f"column{i}"): v
                for i, v in enumerate(cells)
                if i != pcol and v != ""
            }
        }
        if age_col is not None and age_col < len(cells) and cells[age_col]:
            try:
                age = float(cells[age_col])
                info["age"] = int(age) if age.is_integer() else age
            except ValueError:
                raise DatasetLayoutError(
                    f"{p.name}: line {line}: age {cells[age_col]!r} is not a number"
                ) from None
        if sex_col is not None and sex_col < len(cells) and cells[sex_col]:
            info["gender"] = cells[sex_col]
        out[patient] = info
    return out


def _numbered_files(folder: Path) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for f in list_image_files(folder):
        stem = strip_image_suffix(f.name) or ""
        if not stem.isdigit():
            raise DatasetLayoutError(
                f"{folder}: {f.name} is not named by patient number (expected e.g. 049.nii)"
            )
        n = int(stem)
        if n in out:
            raise DatasetLayoutError(
                f"{folder}: two files for patient {n}: {out[n].name}, {f.name}"
            )
        out[n] = f
    return out


def open_physionet(root: str | Path) -> Dataset:
    """Open a PhysioNet CT-ICH folder (see module docstring)."""
    r = Path(root)
    if not is_physionet(r):
        raise DatasetLayoutError(f"{r}: not a PhysioNet CT-ICH folder (no {CT_DIR}/ inside)")
    scans = _numbered_files(r / CT_DIR)
    masks = _numbered_files(r / MASK_DIR) if (r / MASK_DIR).is_dir() else {}
    subs = _numbered_files(r / SUBTYPE_MASK_DIR) if (r / SUBTYPE_MASK_DIR).is_dir() else {}
    for what, files in (("masks", masks), ("subtype masks", subs)):
        orphans = sorted(set(files) - set(scans))
        if orphans:
            raise DatasetLayoutError(
                f"{r}: {what} without a CT scan in {CT_DIR}/ for patient(s) "
                f"{', '.join(case_id_for(n) for n in orphans)}"
            )
    csv_path = _find_file(r, DIAGNOSIS_CSV)
    labels, extras = parse_diagnosis_csv(csv_path) if csv_path else ({}, {})
    unknown = sorted(set(labels) - set(scans))
    if unknown:
        warn_layout(
            f"{DIAGNOSIS_CSV}: rows for patient(s) without a CT scan ignored: "
            f"{', '.join(case_id_for(n) for n in unknown[:10])}"
        )
    demo_path = _find_file(r, DEMOGRAPHICS_CSV)
    demographics = parse_demographics_csv(demo_path) if demo_path else {}
    cases = []
    for n, image in sorted(scans.items()):
        meta: dict[str, Any] = {"patient_number": n, **extras.get(n, {})}
        meta.update(demographics.get(n, {}))
        cid = case_id_for(n)
        cases.append(
            Case(
                case_id=cid,
                image_path=image,
                mask_path=masks.get(n),
                subtype_mask_path=subs.get(n),
                slice_subtypes=labels.get(n) if csv_path else None,
                patient_id=cid,
                meta=meta,
            )
        )
    info = {"diagnosis_csv": str(csv_path) if csv_path else None}
    return Dataset("physionet", r, cases, layout="physionet", meta=info)
