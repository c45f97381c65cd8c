"""Files the app accepts from users: ``--data`` picks, uploaded scans and zipped DICOM series.

Everything here is about *not trusting names*:

* a ``--data`` pick is a relative path that must resolve (symlinks followed) inside the data
  folder: absolute paths, ``..`` and links leading out are refused (:func:`resolve_data_pick`);
* an uploaded file keeps only a sanitised base name with a supported suffix
  (:func:`safe_upload_name`);
* a zip archive is extracted member by member after checking every name (no absolute paths, no
  ``..``, no drive letters, no links), the number of members and the uncompressed size, so an
  archive can neither write outside its folder (zip-slip) nor fill the disk
  (:func:`extract_zip_safely`).

Violations raise :class:`~ichseg.errors.InputFileError` (the server answers 4xx with its message).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ichseg.errors import InputFileError

#: Single-file scan formats an upload may have (detached-header NRRD/MetaImage need two files).
UPLOAD_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".zip")
#: Scan files listed from ``--data`` (a folder of DICOM files is listed as a series too).
DATA_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
MAX_ZIP_MEMBERS = 5000
MAX_DATA_ITEMS = 2000
MAX_DATA_DEPTH = 4
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class UploadTooLargeError(InputFileError):
    """An upload (or an archive's content) is larger than the configured limit (HTTP 413)."""

    status_code = 413


def suffix_of(name: str, suffixes: tuple[str, ...]) -> str | None:
    """The first of ``suffixes`` that ``name`` ends with (case-insensitive), else ``None``."""
    low = name.lower()
    return next((s for s in suffixes if low.endswith(s)), None)


def safe_upload_name(filename: str | None) -> str:
    """A safe local file name for an upload: base name only, odd characters replaced, suffix
    checked. Raises :class:`InputFileError` for names without a supported suffix."""
    raw = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    suffix = suffix_of(raw, UPLOAD_SUFFIXES)
    if not raw or suffix is None:
        low = raw.lower()
        if low.endswith((".nhdr", ".mhd")):
            raise InputFileError(
                f"{raw}: a detached header needs its data file; upload a .nrrd/.mha file or a zip"
            )
        raise InputFileError(
            f"{raw or 'upload'}: unsupported file type; upload a NIfTI (.nii, .nii.gz), "
            "NRRD (.nrrd), MetaImage (.mha) or a zipped DICOM series (.zip)"
        )
    stem = raw[: -len(suffix)]
    stem = _SAFE_CHARS.sub("_", stem).strip("._") or "scan"
    return f"{stem[:80]}{suffix.lower()}"


def _member_parts(name: str) -> tuple[str, ...]:
    """The path parts of a zip member name, refusing anything that could leave the folder."""
    text = name.replace("\\", "/")
    if "\x00" in text:
        raise InputFileError(f"archive member {name!r} has a NUL character in its name")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise InputFileError(
            f"archive member {name!r} has an absolute path; refusing the archive (zip-slip)"
        )
    parts = tuple(p for p in PurePosixPath(text).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        raise InputFileError(
            f"archive member {name!r} escapes the archive folder with '..'; refusing the "
            "archive (zip-slip)"
        )
    return parts


def extract_zip_safely(archive: Path, dest: Path, *, max_total_bytes: int) -> list[Path]:
    """Extract ``archive`` into ``dest`` (created) after checking every member; returns the
    files written. On any refusal nothing is left in ``dest``."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputFileError(f"{archive.name}: not a readable zip archive ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise InputFileError(
                f"{archive.name}: {len(infos)} members, more than the {MAX_ZIP_MEMBERS} allowed"
            )
        total = 0
        plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        for info in infos:
            parts = _member_parts(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise InputFileError(
                    f"archive member {info.filename!r} is a symbolic link; refusing the archive"
                )
            if info.is_dir() or not parts:
                continue
            if info.flag_bits & 0x1:
                raise InputFileError(f"archive member {info.filename!r} is encrypted")
            total += info.file_size
            if total > max_total_bytes:
                raise UploadTooLargeError(
                    f"{archive.name}: unpacks to more than {max_total_bytes / 2**20:.0f} MiB "
                    "(the upload limit)"
                )
            plan.append((info, parts))
        if not plan:
            raise InputFileError(f"{archive.name}: the archive holds no files")
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written: list[Path] = []
        try:
            for info, parts in plan:
                target = root.joinpath(*parts)
                if not target.resolve().is_relative_to(root):  # belt and braces
                    raise InputFileError(f"archive member {info.filename!r} escapes the folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                budget = info.file_size
                with zf.open(info) as src, target.open("wb") as out:
                    while chunk := src.read(1 << 20):
                        budget -= len(chunk)
                        if budget < 0:  # the header lied about the size
                            raise UploadTooLargeError(
                                f"archive member {info.filename!r} is larger than it declares"
                            )
                        out.write(chunk)
                written.append(target)
        except zipfile.BadZipFile as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise InputFileError(f"{archive.name}: corrupt zip archive ({exc})") from None
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return written


# ------------------------------------------------------------------------------ the data folder
@dataclass(frozen=True)
class DataItem:
    """One scan found in the ``--data`` folder."""

    name: str  #: path relative to the data folder, '/'-separated
    kind: str  #: ``nifti``, ``nrrd/mha`` or ``dicom``

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind}


def _looks_dicom(path: Path) -> bool:
    if path.name.lower().endswith(".dcm"):
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _is_dicom_folder(folder: Path) -> bool:
    try:
        files = [p for p in sorted(folder.iterdir())[:50] if p.is_file()]
    except OSError:
        return False
    return any(_looks_dicom(p) for p in files[:10])


def list_data(data_dir: Path) -> list[DataItem]:
    """Scans in ``data_dir`` (NIfTI, NRRD/MetaImage files and folders of DICOM files), at most
    :data:`MAX_DATA_ITEMS`, at most :data:`MAX_DATA_DEPTH` folders deep; links are not followed
    and hidden entries are skipped."""
    root = data_dir.resolve()
    items: list[DataItem] = []

    def walk(folder: Path, depth: int) -> None:
        if len(items) >= MAX_DATA_ITEMS:
            return
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        if depth > 0 and _is_dicom_folder(folder):
            items.append(DataItem(folder.relative_to(root).as_posix(), "dicom"))
            return
        for entry in entries:
            if len(items) >= MAX_DATA_ITEMS or entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                continue
            if entry.is_dir():
                if depth < MAX_DATA_DEPTH:
                    walk(path, depth + 1)
            elif entry.is_file():
                suffix = suffix_of(entry.name, DATA_SUFFIXES)
                if suffix is not None:
                    kind = "nifti" if suffix.startswith(".nii") else "nrrd/mha"
                    items.append(DataItem(path.relative_to(root).as_posix(), kind))

    walk(root, 0)
    return items


def resolve_data_pick(data_dir: Path, name: str) -> Path:
    """The path of the ``--data`` item ``name``; refuses anything that is not inside
    ``data_dir`` once resolved (absolute paths, ``..``, links out, NUL bytes)."""
    if not isinstance(name, str) or not name.strip():
        raise InputFileError("no data item named: pick a scan from the list")
    if "\x00" in name:
        raise InputFileError("invalid data item name")
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise InputFileError(f"{name!r}: absolute paths are not allowed; pick from the list")
    if any(p == ".." for p in PurePosixPath(text).parts):
        raise InputFileError(f"{name!r}: '..' is not allowed in a data item name")
    root = data_dir.resolve()
    target = (root / text).resolve()
    if not target.is_relative_to(root) or target == root:
        raise InputFileError(f"{name!r}: not inside the data folder")
    if not target.exists():
        raise InputFileError(f"{name!r}: no such scan in the data folder")
    return target
