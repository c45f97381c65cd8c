"""Tiny on-disk dataset fixtures for the data-layer tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ichseg.io.volume import make_affine

SHAPE = (32, 32, 16)  # (i, j, k)
SPACING = (0.5, 0.5, 5.0)


def head(
    blob_slices: tuple[int, int] | None = (4, 8),
    second_blob: bool = False,
    shape: tuple[int, int, int] = SHAPE,
) -> tuple[np.ndarray, np.ndarray]:
    """A small head-like HU volume (air, skull, brain, blood) and its 0/1 hemorrhage mask."""
    i, j = np.indices(shape[:2])
    r = np.hypot(i - shape[0] / 2 + 0.5, j - shape[1] / 2 + 0.5)
    slab = np.where(r < 12, 30.0, np.where(r < 14, 1000.0, -1000.0)).astype(np.float32)
    hu = np.repeat(slab[:, :, None], shape[2], axis=2)
    mask = np.zeros(shape, dtype=np.uint8)
    if blob_slices is not None:
        k0, k1 = blob_slices
        mask[10:16, 12:20, k0 : k1 + 1] = 1
    if second_blob:
        mask[20:23, 8:11, 2:4] = 1
    hu[mask > 0] = 65.0
    return hu.astype(np.int16), mask


def write(path: Path, array: np.ndarray, axcodes: str = "LPS", spacing=SPACING) -> Path:
    """Write ``array`` (given in LPS voxel order) as NIfTI stored with ``axcodes``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array)
    aff = make_affine(spacing, "LPS", (10.0, 20.0, -30.0))
    if axcodes == "RAS":  # same physical image, stored with i (L->R) and j (P->A) flipped
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:2, 3] = [arr.shape[0] - 1, arr.shape[1] - 1]
        arr, aff = arr[::-1, ::-1, :], aff @ flip
    elif axcodes != "LPS":
        raise ValueError(axcodes)
    img = nib.Nifti1Image(np.ascontiguousarray(arr), aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    nib.save(img, str(path))
    return path


CSV_HEADER = (
    "PatientNumber,SliceNumber,Intraventricular,Intraparenchymal,Subarachnoid,"
    "Epidural,Subdural,No_Hemorrhage,Fracture_Yes_No"
)


def csv_rows(
    patient: int, hem: tuple[int, int] | None, column: str, n: int = SHAPE[2]
) -> list[str]:
    cols = CSV_HEADER.split(",")
    rows = []
    for k in range(n):
        flags = dict.fromkeys(cols[2:], 0)
        if hem is not None and hem[0] <= k <= hem[1]:
            flags[column] = 1
        else:
            flags["No_Hemorrhage"] = 1
        rows.append(",".join([str(patient), str(k + 1), *(str(flags[c]) for c in cols[2:])]))
    return rows


def make_physionet(root: Path, *, csv: bool = True, masks: bool = True) -> Path:
    """Four patients: 049 (IPH, k 4-8, 0/255 mask, subtype mask), 050 (SDH, k 7-8),
    051 (no bleed), 052 (049's anatomy stored RAS, IVH + IPH on k 4-8)."""
    hu49, m49 = head((4, 8), second_blob=True)
    hu50, m50 = head((7, 8))
    hu51, m51 = head(None)
    write(root / "ct_scans" / "049.nii", hu49)
    write(root / "ct_scans" / "050.nii", hu50)
    write(root / "ct_scans" / "051.nii.gz", hu51)
    write(root / "ct_scans" / "052.nii", hu49, axcodes="RAS")
    if masks:
        write(root / "masks" / "049.nii", (m49 * 255).astype(np.uint8))
        write(root / "masks" / "050.nii", m50)
        write(root / "masks" / "051.nii.gz", m51)
        write(root / "masks" / "052.nii", m49, axcodes="RAS")
        write(root / "masks_subtype" / "049.nii", (m49 * 2).astype(np.uint8))
    if csv:
        lines = [CSV_HEADER]
        lines += csv_rows(49, (2, 8), "Intraparenchymal")  # k 2-3 come from the second blob
        lines += csv_rows(50, (7, 8), "Subdural")
        lines += csv_rows(51, None, "Subdural")
        rows52 = csv_rows(52, (2, 8), "Intraparenchymal")
        rows52[5] = "52,6,1,1,0,0,0,0,1"  # k=5: IVH + IPH, fracture
        lines += rows52
        (root / "hemorrhage_diagnosis_raw_ct.csv").write_text("\n".join(lines) + "\n")
        (root / "Patient_demographics.csv").write_text(
            'Patient demographics (CT-ICH)\nPatient Number,"Age\n(years)",Gender,Note\n,,,\n'
            "49,71,Male,x\n50,35.5,Female,\n 51 ,60, Male ,\n52,71,Male,\nTotal,,,\n"
        )
    return root
