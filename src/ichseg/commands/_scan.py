"""The scan-loading options every command that reads a CT scan takes, and the one loader.

``segment``, ``replay``, ``montage``, ``inspect`` and ``evaluate`` declare the same three options
with the aliases below (typer has no option groups), build a :class:`ScanOptions` and read every
scan through :meth:`ScanOptions.load`, i.e. :func:`ichseg.io.reader.load_volume`. The readers'
error messages name these flags (``--correct-tilt``, ``--series-uid``, ``--allow-non-ct``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ichseg.io.volume import Volume, Window

CorrectTiltOpt = Annotated[
    bool,
    typer.Option(
        "--correct-tilt",
        help="DICOM: resample a gantry-tilted (sheared) series onto an orthogonal grid "
        "(refused without this flag).",
    ),
]
SeriesUidOpt = Annotated[
    str | None,
    typer.Option(
        "--series-uid",
        help="DICOM: the SeriesInstanceUID to read from a folder holding several series "
        "(the error message lists them).",
    ),
]
AllowNonCtOpt = Annotated[
    bool,
    typer.Option(
        "--allow-non-ct",
        help="Load a scan whose modality or intensities do not look like CT (intensity "
        "'unknown'; results on such data are not meaningful).",
    ),
]


@dataclass(frozen=True)
class ScanOptions:
    """How to read scans: the three shared options plus an already-windowed input's window."""

    correct_tilt: bool = False
    series_uid: str | None = None
    allow_non_ct: bool = False
    input_window: str | None = None  #: ``"L,W"`` or a preset name (``--input-window``)

    def window(self) -> Window | None:
        """The parsed ``input_window`` (raises :class:`~ichseg.errors.ConfigError`)."""
        if not self.input_window:
            return None
        from ichseg.preprocess.windowing import parse_window

        return parse_window(self.input_window)

    def load(self, path: str | Path, *, input_window: Window | None = None) -> Volume:
        """Read one scan; ``input_window`` (parsed) replaces the option's window."""
        from ichseg.io.reader import load_volume

        window = input_window if input_window is not None else self.window()
        return load_volume(
            path,
            input_window=window,
            allow_non_ct=self.allow_non_ct,
            series_uid=self.series_uid,
            correct_tilt=self.correct_tilt,
        )

    def load_case(self, case: Any, input_window: Window | None = None) -> Volume:
        """The image of a dataset :class:`~ichseg.data.dataset.Case`, read with these options.

        As ``Case.load_image``: ``input_window`` defaults to the dataset's
        ``meta["input_window"]``, and the case id is recorded in the volume's meta.
        """
        window = input_window if input_window is not None else self.window()
        if window is None:
            window = case.meta.get("input_window")
        vol = self.load(case.image_path, input_window=window)
        vol.meta.setdefault("case_id", case.case_id)
        return vol
