"""Typed exceptions. Every user-facing failure raises a subclass of :class:`IchsegError`.

The CLI turns these into a one-line message and a non-zero exit code; the API lets callers
catch exactly the problem they care about.
"""

from __future__ import annotations


class IchsegError(Exception):
    """Base class of all errors ichseg raises on purpose."""


class InputFileError(IchsegError):
    """A file is missing, unreadable, truncated or not in a supported format."""


class DimensionalityError(IchsegError):
    """An image does not have the dimensionality we need (e.g. 2D or 4D where 3D is required)."""


class IntensityError(IchsegError):
    """Intensities are non-finite or do not look like CT (HU or a known windowed range)."""


class GeometryError(IchsegError):
    """Geometry is invalid or inconsistent (bad affine, image/mask mismatch, gantry tilt...)."""


class DicomSeriesError(InputFileError):
    """A DICOM folder cannot be turned into one consistent 3D series."""


class EmptyMaskError(IchsegError):
    """A mask that must contain foreground is empty."""


class DatasetLayoutError(IchsegError):
    """A dataset folder does not follow the layout its adapter expects."""


class ConfigError(IchsegError):
    """A configuration value or file is invalid."""


class PromptError(IchsegError):
    """A prompt (click/scribble) is invalid: outside the volume, wrong label, wrong shape."""


class IchsegWarning(UserWarning):
    """Base class of the warnings ichseg emits on purpose (the CLI prints each as one line)."""


class InputWarning(IchsegWarning):
    """An input was loaded, but something about it was assumed, skipped or looks implausible."""


class OutputPathError(InputFileError):
    """An output path cannot be used: not writable, parent folder missing, exists (no
    ``--overwrite``), a folder where a file is expected, or the same path as another input/output."""


class ModelOutputError(IchsegError):
    """A model or engine produced an unusable answer (non-finite values, wrong shape)."""
