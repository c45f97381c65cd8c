"""Datasets of CT cases: the :class:`Case` record, the :class:`Dataset` container and layout detection.

A case points at files (nothing is loaded until asked). Slice indices (``slice_subtypes`` keys and
hemorrhage slice lists) are 0-based along the file's ``k`` (slice) axis. Adapters:

* PhysioNet CT-ICH — :mod:`ichseg.data.physionet`
* HemSeg-200/500 — :mod:`ichseg.data.hemseg`
* CSV manifests, nnU-Net-style paired folders, case folders, plain image folders —
  :mod:`ichseg.data.manifest`

:func:`open_dataset` picks the adapter from the folder layout.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.data.subtypes import Subtype
from ichseg.errors import DatasetLayoutError, InputFileError
from ichseg.io.volume import Intensity, Volume, Window, validate_affine

IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def strip_image_suffix(name: str) -> str | None:
    """``"049.nii.gz" -> "049"``; ``None`` when the name has no supported image suffix."""
    low = name.lower()
    for suf in IMAGE_SUFFIXES:
        if low.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)]
    return None


def list_image_files(folder: Path) -> list[Path]:
    """Supported image files directly inside ``folder`` (sorted, hidden files skipped)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and strip_image_suffix(p.name) is not None
    )


def read_csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Non-empty CSV rows with the line number each ends on; cells stripped, BOM removed.

    Raises :class:`DatasetLayoutError` when the file cannot be read or parsed.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetLayoutError(f"{path}: cannot read CSV ({exc})") from exc
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            if any(cells):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise DatasetLayoutError(f"{Path(path).name}: line {reader.line_num}: {exc}") from exc
    return rows


# --------------------------------------------------------------------------------------------
# loading (through ichseg.io.reader)
# --------------------------------------------------------------------------------------------
def load_image_file(path: Path, input_window: Window | None = None) -> Volume:
    """Load a CT image with :func:`ichseg.io.reader.load_volume` (HU or windowed, detected)."""
    from ichseg.io.reader import load_volume

    return load_volume(path, input_window=input_window)


def load_label_file(path: Path, reference: Volume, *, binarize: bool) -> Volume:
    """Load a label volume on ``reference``'s grid (binarised ``> 0`` when ``binarize``).

    Masks stored with permuted/flipped axes of the image grid are reoriented exactly; any other
    mismatch raises :class:`GeometryError`.
    """
    from ichseg.io.reader import load_mask

    return load_mask(path, reference, allow_empty=True, binarize=binarize)


def header_reference(path: Path) -> Volume | None:
    """A voxel-free stand-in for the image (right shape and affine, zero-stride data) read from
    a NIfTI header, for checking masks without loading the image; ``None`` if not NIfTI."""
    from ichseg.io.nifti import is_nifti

    if not is_nifti(path):
        return None
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several unrelated types
        raise InputFileError(f"{path}: not a readable NIfTI file ({exc})") from exc
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputFileError(f"{path}: expected a 3D image, got shape {shape}")
    affine = validate_affine(img.affine if img.affine is not None else np.eye(4))
    return Volume(np.broadcast_to(np.zeros((), np.uint8), shape), affine, Intensity.label())


# --------------------------------------------------------------------------------------------
# Case
# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One CT scan with its optional binary mask, subtype mask and per-slice subtype labels."""

    case_id: str
    image_path: Path
    mask_path: Path | None = None
    subtype_mask_path: Path | None = None
    slice_subtypes: dict[int, frozenset[Subtype]] | None = None
    patient_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.case_id = str(self.case_id)
        self.image_path = Path(self.image_path)
        self.mask_path = None if self.mask_path is None else Path(self.mask_path)
        if self.subtype_mask_path is not None:
            self.subtype_mask_path = Path(self.subtype_mask_path)
        if not self.patient_id:
            self.patient_id = self.case_id

    # --- loading --------------------------------------------------------------------------
    def load_image(self, input_window: Window | None = None) -> Volume:
        """The image as stored (not reoriented). ``input_window`` declares an already-windowed
        input; it defaults to the dataset's ``meta["input_window"]``."""
        win = input_window if input_window is not None else self.meta.get("input_window")
        vol = load_image_file(self.image_path, win)
        vol.meta.setdefault("case_id", self.case_id)
        return vol

    def _reference(self, reference: Volume | None) -> Volume:
        if reference is not None:
            return reference
        return header_reference(self.image_path) or self.load_image()

    def load_mask(self, reference: Volume | None = None) -> Volume | None:
        """The binary hemorrhage mask (uint8 0/1; stored 0/255 masks are binarised) on the image
        grid, or ``None`` if the case has none. ``reference`` is the loaded image, if at hand
        (otherwise the image header is read); a mask on another grid raises GeometryError."""
        if self.mask_path is None:
            return None
        return load_label_file(self.mask_path, self._reference(reference), binarize=True)

    def load_subtype_mask(self, reference: Volume | None = None) -> Volume | None:
        """The multi-class subtype mask (values are :class:`Subtype` labels) or ``None``."""
        if self.subtype_mask_path is None:
            return None
        vol = load_label_file(self.subtype_mask_path, self._reference(reference), binarize=False)
        bad = sorted(set(np.unique(vol.array).tolist()) - {0, *[int(s) for s in Subtype]})
        if bad:
            raise DatasetLayoutError(
                f"case {self.case_id}: subtype mask {self.subtype_mask_path.name} has values "
                f"{bad} that are not Subtype labels (1..5)"
            )
        return vol

    # --- summaries ------------------------------------------------------------------------
    @property
    def subtypes(self) -> frozenset[Subtype]:
        """Subtypes known without loading voxels (per-slice CSV flags and adapter metadata)."""
        out: set[Subtype] = set(self.meta.get("subtypes", ()))
        for s in (self.slice_subtypes or {}).values():
            out |= s
        return frozenset(out)

    @property
    def csv_hemorrhage_slices(self) -> list[int] | None:
        """0-based slices flagged with any hemorrhage in the per-slice CSV, or ``None``."""
        if self.slice_subtypes is None:
            return None
        return sorted(k for k, s in self.slice_subtypes.items() if s)

    def hemorrhage_slices(self, mask: Volume | None = None) -> list[int] | None:
        """0-based indices of the axial slices containing hemorrhage, on the whole scan.

        From the mask when there is one (slices along the stored voxel axis that runs
        inferior-superior, numbered in file order like the CSV's ``SliceNumber``), otherwise from
        the per-slice CSV flags; ``None`` when neither exists.
        """
        m = mask if mask is not None else self.load_mask()
        if m is None:
            return self.csv_hemorrhage_slices
        axis = next(a for a, code in enumerate(m.axcodes) if code in ("S", "I"))
        other = tuple(a for a in range(3) if a != axis)
        per_slice = np.asarray(m.array > 0).any(axis=other)
        return [int(k) for k in np.flatnonzero(per_slice)]


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------
def _progress(items: list[Any], enabled: bool, label: str) -> Iterable[Any]:
    if not enabled or len(items) < 2:
        return items
    from rich.progress import track

    return track(items, description=label, transient=True)


class Dataset:
    """An ordered collection of :class:`Case` records with unique ids."""

    def __init__(
        self,
        name: str,
        root: Path,
        cases: Iterable[Case],
        *,
        layout: str = "",
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.root = Path(root)
        self.cases: list[Case] = list(cases)
        self.layout = layout or name
        self.meta: dict[str, Any] = dict(meta or {})
        seen: set[str] = set()
        for c in self.cases:
            if c.case_id in seen:
                raise DatasetLayoutError(f"{self.root}: duplicate case id {c.case_id!r}")
            seen.add(c.case_id)
        self._index = {c.case_id: i for i, c in enumerate(self.cases)}

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __getitem__(self, key: int | str) -> Case:
        if isinstance(key, str):
            return self.get(key)
        return self.cases[key]

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, root={str(self.root)!r}, cases={len(self)})"

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]

    @property
    def patient_ids(self) -> dict[str, str]:
        """``case_id -> patient_id``."""
        return {c.case_id: c.patient_id for c in self.cases}

    def get(self, case_id: str) -> Case:
        """The case with this id; :class:`DatasetLayoutError` if there is none."""
        try:
            return self.cases[self._index[str(case_id)]]
        except KeyError:
            preview = ", ".join(self.case_ids[:5]) + (" ..." if len(self) > 5 else "")
            raise DatasetLayoutError(
                f"no case {case_id!r} in dataset {self.name!r} (cases: {preview or 'none'})"
            ) from None

    def subset(self, case_ids: Iterable[str], name: str | None = None) -> Dataset:
        """A dataset with the given cases, in this dataset's order."""
        wanted = {str(c) for c in case_ids}
        missing = wanted - set(self._index)
        if missing:
            raise DatasetLayoutError(f"unknown case ids for {self.name!r}: {sorted(missing)}")
        return Dataset(
            name or self.name,
            self.root,
            [c for c in self.cases if c.case_id in wanted],
            layout=self.layout,
            meta=self.meta,
        )

    def filter(self, keep: Callable[[Case], bool], name: str | None = None) -> Dataset:
        return self.subset([c.case_id for c in self.cases if keep(c)], name)

    def hemorrhage_slice_counts(self, *, progress: bool = False) -> dict[str, int]:
        """Number of slices with hemorrhage per case on the whole scan (mask, else CSV flags).

        Raises :class:`DatasetLayoutError` for a case with neither a mask nor CSV flags.
        """
        counts: dict[str, int] = {}
        for case in _progress(self.cases, progress, "counting hemorrhage slices"):
            slices = case.hemorrhage_slices()
            if slices is None:
                raise DatasetLayoutError(
                    f"case {case.case_id}: cannot count hemorrhage slices (no mask and no "
                    "per-slice CSV labels)"
                )
            counts[case.case_id] = len(slices)
        return counts

    def filter_min_hemorrhage_slices(self, n: int, *, progress: bool = False) -> Dataset:
        """Cases with at least ``n`` hemorrhage slices on the whole scan (ICH-HPINet used 3)."""
        if n <= 0:
            return self.subset(self.case_ids)
        counts = self.hemorrhage_slice_counts(progress=progress)
        return self.subset([cid for cid, k in counts.items() if k >= n])


# --------------------------------------------------------------------------------------------
# layout detection
# --------------------------------------------------------------------------------------------
def open_dataset(path: str | Path, *, input_window: Window | None = None) -> Dataset:
    """Open a dataset, detecting its layout. Tried in order:

    1. a ``.csv`` file -> CSV manifest (``case_id,image,mask[,patient_id]``);
    2. ``ct_scans/`` -> PhysioNet CT-ICH;
    3. ``train|val|test/label/`` or ``images/`` + ``labels/`` -> HemSeg;
    4. ``imagesTr/`` (+ ``labelsTr/``, ``imagesTs/``) -> nnU-Net-style paired folder;
    5. ``manifest.csv`` in the folder -> CSV manifest;
    6. ``image.*`` (+ ``mask.*``/``label.*``) in the folder -> a single case;
    7. sub-folders that each hold ``image.*`` -> one case per sub-folder;
    8. image files directly in the folder -> image-only cases.

    ``input_window`` declares that the images are already windowed with that HU window.
    Raises :class:`DatasetLayoutError` listing what was looked for when nothing matches.
    """
    from ichseg.data import hemseg, manifest, physionet

    p = Path(path)
    if not p.exists():
        raise DatasetLayoutError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            ds = manifest.open_manifest(p)
        else:
            raise DatasetLayoutError(f"{p}: a dataset is a folder or a CSV manifest, not a file")
    else:
        detectors: list[tuple[Callable[[Path], bool], Callable[[Path], Dataset]]] = [
            (physionet.is_physionet, physionet.open_physionet),
            (hemseg.is_hemseg, hemseg.open_hemseg),
            (manifest.is_paired_folder, manifest.open_paired_folder),
            (manifest.has_manifest, lambda r: manifest.open_manifest(r / manifest.MANIFEST_NAME)),
            (manifest.is_case_folder, manifest.open_case_folder),
            (manifest.is_case_folders, manifest.open_case_folders),
            (manifest.is_image_folder, manifest.open_image_folder),
        ]
        for matches, opener in detectors:
            if matches(p):
                ds = opener(p)
                break
        else:
            raise DatasetLayoutError(
                f"{p}: unrecognised dataset layout. Looked for: a CSV manifest file; ct_scans/ "
                "(PhysioNet CT-ICH); train|val|test/label/ or images/ + labels/ (HemSeg); "
                "imagesTr/ (+ labelsTr/) (nnU-Net); manifest.csv; image.nii[.gz] (+ mask) in the "
                "folder or in each sub-folder; or image files (.nii, .nii.gz, .nrrd, .mha) in it"
            )
    if not len(ds):
        raise DatasetLayoutError(f"{p}: the {ds.layout} layout was found but it holds no cases")
    if input_window is not None:
        for c in ds.cases:
            c.meta["input_window"] = input_window
    return ds


def warn_layout(message: str) -> None:
    """Non-fatal layout oddities (extra files, CSV rows for missing scans)."""
    warnings.warn(message, UserWarning, stacklevel=3)
