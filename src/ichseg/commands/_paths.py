"""Output-path checks shared by every command, run before any computation.

A command lists its outputs (:class:`Output`: the option that named it, the path, whether it is a
file or a folder) and calls :func:`check_output_paths` right after parsing its options, so a bad
``--out`` is reported in a second instead of after a long run. Each problem raises
:class:`~ichseg.errors.OutputPathError` (one line on the CLI, exit code 2):

* a file output whose parent folder does not exist, or is a file;
* a file output that names an existing folder, or a folder output that names an existing file;
* a location where nothing can be written (tested by creating and deleting a hidden file there,
  which also catches read-only mounts and ``/proc`` for root);
* an existing file (or, for a folder, one of the files the command writes into it) without
  ``--overwrite``;
* a file name with the wrong ending (e.g. a mask ``--out mask.png``);
* two outputs naming the same file, or an output naming one of the command's inputs (refused
  even with ``--overwrite``: it would replace the input).

Output folders may not exist yet (the command creates them, with their parents); the nearest
existing ancestor must then be a writable folder.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ichseg.errors import OutputPathError

__all__ = ["Output", "check_output_paths", "volume_suffixes"]


@dataclass(frozen=True)
class Output:
    """One output of a command. ``path=None`` (an optional output not asked for) is skipped."""

    option: str  #: the option that names it, e.g. ``"--prob-out"`` (used in messages)
    path: str | Path | None
    kind: Literal["file", "folder"] = "file"
    #: allowed file-name endings (lower case, e.g. ``(".png",)``); empty: any name
    suffixes: tuple[str, ...] = ()
    #: for a folder: names of the files the command writes into it (checked against overwrite)
    products: tuple[str, ...] = ()


def volume_suffixes() -> tuple[str, ...]:
    """File endings :func:`ichseg.io.reader.save_volume` / ``save_mask`` can write."""
    from ichseg.io.sitk_io import SITK_SUFFIXES

    return (".nii", ".nii.gz", *SITK_SUFFIXES)


def _probe_writable(folder: Path) -> str | None:
    """``None`` if a file can be created in ``folder``, else the reason."""
    try:
        fd, name = tempfile.mkstemp(prefix=".ichseg-write-check-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_file(out: Output, p: Path, overwrite: bool) -> None:
    name = p.name.lower()
    if out.suffixes and not name.endswith(out.suffixes):
        raise OutputPathError(
            f"{out.option} {p}: the file name must end with {' or '.join(out.suffixes)}"
        )
    if p.is_dir():
        raise OutputPathError(f"{out.option} {p}: is a folder, expected a file name")
    parent = p.parent
    if not parent.exists():
        raise OutputPathError(f"{out.option} {p}: folder {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise OutputPathError(f"{out.option} {p}: {parent} is a file, not a folder")
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputPathError(f"{out.option} {p}: file exists; pass --overwrite to replace it")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputPathError(f"{out.option} {p}: file exists and is not writable")
    why = _probe_writable(parent)
    if why is not None:
        raise OutputPathError(f"{out.option} {p}: cannot create files in {parent} ({why})")


def _check_folder(out: Output, p: Path, overwrite: bool) -> None:
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{out.option} {p}: is a file, expected a folder")
    if p.is_dir():
        present = [name for name in out.products if (p / name).exists()]
        if present and not overwrite:
            shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
            raise OutputPathError(
                f"{out.option} {p}: the folder already holds results ({shown}); pass --overwrite "
                "to replace them or choose another folder"
            )
        target = p
    else:
        target = _nearest_existing(p)
        if not target.is_dir():
            raise OutputPathError(f"{out.option} {p}: {target} is a file, not a folder")
    why = _probe_writable(target)
    if why is not None:
        raise OutputPathError(f"{out.option} {p}: cannot create files in {target} ({why})")


def _key(p: Path) -> str:
    return os.path.normcase(str(p.resolve(strict=False)))


def check_output_paths(
    *outputs: Output,
    overwrite: bool = False,
    inputs: Iterable[tuple[str, str | Path | None]] = (),
) -> list[Path]:
    """Check ``outputs`` (see the module docstring); return their paths (``None`` skipped).

    ``inputs`` are ``(option, path)`` pairs of files the command reads; an output file naming one
    of them is refused. Nothing is created (apart from a probe file that is deleted at once).
    """
    seen: dict[str, str] = {}
    in_keys = {_key(Path(path)): opt for opt, path in inputs if path is not None}
    paths: list[Path] = []
    for out in outputs:
        if out.path is None:
            continue
        if str(out.path).strip() == "":
            raise OutputPathError(f"{out.option}: empty path")
        p = Path(out.path).expanduser()
        if out.kind == "file":
            _check_file(out, p, overwrite)
        elif out.kind == "folder":
            _check_folder(out, p, overwrite)
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown output kind {out.kind!r}")
        key = _key(p)
        if key in seen:
            raise OutputPathError(f"{seen[key]} and {out.option} name the same path {p}")
        if out.kind == "file" and key in in_keys:
            raise OutputPathError(
                f"{out.option} {p}: is the input given as {in_keys[key]}; choose another name"
            )
        seen[key] = out.option
        paths.append(p)
    return paths
