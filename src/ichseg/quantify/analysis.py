"""One mask's full quantification (subtypes, components, QA flags) and two masks' comparison.

:func:`quantify_mask` is what ``ichseg quantify``, ``ichseg report`` and the app show for one
hemorrhage mask; :func:`compare_masks` is ``ichseg compare``. Both return frozen dataclasses with
``as_dict()`` (plain JSON types, non-finite numbers as ``None``) and have a text formatter.

**Geometry.** Every volume is computed from the mask's own affine (|det| of its 3x3 part), never
from an assumed spacing, so a baseline and a follow-up scan on different grids are each measured
in their own geometry. Edge checks and ABC/2 run on the canonical LPS reorientation, so the same
mask stored as LPS, RAS or any permutation gives the same numbers and names the same sides.

**Labels.** A mask's non-zero integer values are its labels. Their names come, in this order,
from ``label_names`` (e.g. ``{2: "IPH", 3: "IVH"}``), from the segment labels of a DICOM-SEG
(``mask.meta["label_names"]``), from ichseg's subtype convention (:class:`ichseg.data.subtypes.
Subtype`: 1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH) when the values lie in 1..5 and are not just ``{1}``,
and otherwise ``"hemorrhage"`` for a binary mask or ``"label N"``. A binary mask has no subtypes:
whether a component is intraventricular cannot be told from it and the check says so.

**QA checks** (:class:`QACheck`, status ``flagged`` / ``ok`` / ``unknown``):

* ``empty`` – the mask has no foreground.
* ``edge`` – the mask touches a face of the scanned volume (named anatomically: right, left,
  anterior, posterior, inferior, superior). At the first/last slice the hemorrhage may continue
  outside the scan, so the volume is a lower bound; at an in-plane border the field of view may
  cut it (or the mask leaks outside the head).
* ``calcification`` – components smaller than ``calcification_max_ml`` (0.1 mL) whose mean
  density exceeds ``calcification_min_hu`` (100 HU): typical of calcification (choroid plexus,
  pineal, vessel walls), not of acute blood (about 50-90 HU). Needs the scan in HU; a windowed
  scan clipped below the threshold cannot show it (``unknown``).
* ``intraventricular`` – voxels carrying a label named IVH / intraventricular (ABC/2 is not
  meant for IVH); ``unknown`` for a mask without subtype labels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ichseg.data.subtypes import Subtype
from ichseg.errors import ConfigError, IntensityError
from ichseg.io.volume import IntensityKind, Volume, to_canonical
from ichseg.quantify.volume import (
    DEFAULT_EXPANSION_CRITERION,
    EXPANSION_CRITERIA,
    ABC2Result,
    ComponentInfo,
    ExpansionResult,
    Weighting,
    abc2,
    axial_axis,
    expansion,
    label_components,
)

Status = Literal["flagged", "ok", "unknown"]

CALCIFICATION_MAX_ML = 0.1  #: components below this volume are candidates for calcification
CALCIFICATION_MIN_HU = 100.0  #: ... when their mean density is above this (acute blood ~50-90)
#: Canonical (LPS) faces: (axis, end, name). Index 0 of i is the patient's right (i runs to L).
_FACES: tuple[tuple[int, int, str], ...] = (
    (0, 0, "right"),
    (0, -1, "left"),
    (1, 0, "anterior"),
    (1, -1, "posterior"),
    (2, 0, "inferior"),
    (2, -1, "superior"),
)
_SLICE_FACES = ("inferior", "superior")


# --- JSON ---------------------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, tuples and dataclass dicts turned into JSON types;
    NaN and infinities become ``None`` (strict JSON has no such numbers)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, list | tuple | set | frozenset | range):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer | int):
        return int(obj)
    if isinstance(obj, np.floating | float):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


# --- label names --------------------------------------------------------------------------------
def parse_label_names(specs: str | Sequence[str] | None) -> dict[int, str]:
    """``"2=IPH,3=IVH"`` (or a list of such strings) -> ``{2: "IPH", 3: "IVH"}``.

    Values must be integers 1..255, names non-empty and each value named once; anything else
    raises :class:`~ichseg.errors.ConfigError`.
    """
    if specs is None:
        return {}
    items = [specs] if isinstance(specs, str) else list(specs)
    out: dict[int, str] = {}
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            value, sep, name = part.partition("=")
            name = name.strip()
            try:
                v = int(value.strip())
            except ValueError:
                v = -1
            if not sep or not name or not 1 <= v <= 255:
                raise ConfigError(
                    f"label name {part!r}: expected VALUE=NAME with VALUE an integer 1..255, "
                    "e.g. 2=IPH,3=IVH"
                )
            if v in out and out[v] != name:
                raise ConfigError(f"label {v} is named twice ({out[v]!r} and {name!r})")
            out[v] = name
    return out


def is_intraventricular(name: str) -> bool:
    """True for a label name meaning intraventricular hemorrhage ("IVH", "Hemorrhage IVH",
    "intraventricular ...")."""
    return bool(re.search(r"\bIVH\b", name, re.IGNORECASE)) or "intraventric" in name.lower()


def label_names_for(
    values: Iterable[int],
    given: Mapping[int, str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> tuple[dict[int, str], str]:
    """Names of the label ``values`` and where they came from (see the module docstring):
    ``"given"``, ``"dicom-seg"``, ``"subtypes"``, ``"binary"`` or ``"unnamed"``.

    Given names may name values the mask lacks (they are kept, e.g. for a 0 mL IVH row); present
    values a source does not name are called ``"label N"``."""
    present = sorted({int(v) for v in values})
    if given:
        names = {**{v: f"label {v}" for v in present}, **{int(k): str(n) for k, n in given.items()}}
        return dict(sorted(names.items())), "given"
    seg_names = (meta or {}).get("label_names")
    if isinstance(seg_names, Mapping) and seg_names:
        names = {v: str(seg_names.get(v, seg_names.get(str(v), f"label {v}"))) for v in present}
        return names, "dicom-seg"
    if present == [1]:
        return {1: "hemorrhage"}, "binary"
    if present and set(present) <= {int(s) for s in Subtype}:
        return {int(s): s.name for s in Subtype}, "subtypes"
    return {v: f"label {v}" for v in present}, "unnamed"


# --- results --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelVolume:
    """Planimetric volume of one label (e.g. one hemorrhage subtype)."""

    value: int
    name: str
    n_voxels: int
    volume_ml: float
    n_components: int  #: components (of the whole mask) holding voxels of this label

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class ComponentSummary:
    """One connected component with its label make-up, density and the faces it touches."""

    info: ComponentInfo
    labels: dict[str, float]  #: label name -> mL inside this component
    mean_hu: float | None  #: mean scan density (HU) over the component; None without a HU scan
    touches: tuple[str, ...]  #: faces of the scanned volume it touches (right, ..., superior)

    def as_dict(self) -> dict[str, Any]:
        out = self.info.as_dict()
        out.update(labels=dict(self.labels), mean_hu=self.mean_hu, touches=list(self.touches))
        return out


@dataclass(frozen=True)
class QACheck:
    """One quality check: ``flagged`` (look at it), ``ok`` or ``unknown`` (cannot be told)."""

    code: str
    status: Status
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "status": self.status, "message": self.message, **self.details}


@dataclass(frozen=True)
class GeometrySummary:
    """Where a volume lies: its source, grid and orientation."""

    source: str | None
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    orientation: str
    voxel_volume_ml: float

    @classmethod
    def of(cls, volume: Volume) -> GeometrySummary:
        src = volume.meta.get("source")
        return cls(
            None if src is None else str(src),
            volume.shape,
            volume.spacing,
            "".join(volume.axcodes),
            volume.voxel_volume_ml,
        )

    def describe(self) -> str:
        sp = " x ".join(f"{s:.3g}" for s in self.spacing_mm)
        shape = " x ".join(str(s) for s in self.shape)
        return f"{shape} voxels of {sp} mm, {self.orientation}"

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class QuantifyReport:
    """Everything measured on one mask (see the module docstring)."""

    mask: GeometrySummary
    scan: GeometrySummary | None
    n_voxels: int
    planimetric_ml: float
    abc2: ABC2Result
    labels: list[LabelVolume]
    label_names_source: str
    components: list[ComponentSummary]
    qa: list[QACheck]
    connectivity: int = 3
    abc2_component: int | None = None  #: component ABC/2 was measured on (None: whole mask)

    @property
    def flags(self) -> list[str]:
        """Codes of the flagged checks."""
        return [q.code for q in self.qa if q.status == "flagged"]

    @property
    def has_subtypes(self) -> bool:
        """True when the labels carry subtype meaning (several labels, or named ones)."""
        present = [lab for lab in self.labels if lab.n_voxels > 0]
        return len(present) > 1 or self.label_names_source in ("given", "dicom-seg", "subtypes")

    @property
    def abc2_ratio(self) -> float:
        """ABC/2 over planimetric volume (NaN for an empty mask)."""
        return self.abc2.volume_ml / self.planimetric_ml if self.planimetric_ml > 0 else math.nan

    def check(self, code: str) -> QACheck:
        return next(q for q in self.qa if q.code == code)

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "mask": self.mask.as_dict(),
                "scan": None if self.scan is None else self.scan.as_dict(),
                "n_voxels": self.n_voxels,
                "planimetric_ml": self.planimetric_ml,
                "abc2": self.abc2.as_dict(),
                "abc2_to_planimetric": self.abc2_ratio,
                "abc2_component": self.abc2_component,
                "labels": [lab.as_dict() for lab in self.labels],
                "label_names_source": self.label_names_source,
                "connectivity": self.connectivity,
                "components": [c.as_dict() for c in self.components],
                "qa": [q.as_dict() for q in self.qa],
                "flags": self.flags,
            }
        )


# --- quantify -----------------------------------------------------------------------------------
def integer_labels(mask: Volume) -> Volume:
    """``mask`` with its values checked to be finite non-negative integers, as ``int32``."""
    a = np.asarray(mask.array)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise IntensityError("mask contains NaN or infinite values")
        if not np.all(a == np.round(a)):
            raise IntensityError(
                "mask has non-integer values (a probability map?); threshold it into labels first"
            )
    elif a.dtype.kind not in "iu":
        raise IntensityError(f"mask has unsupported voxel type {a.dtype}")
    if a.size and float(a.min()) < 0:
        raise IntensityError(f"mask labels must be >= 0, got {a.min()}")
    return mask.with_array(a.astype(np.int32))


def _scan_hu(scan: Volume) -> tuple[np.ndarray | None, str]:
    """The scan in HU, or ``None`` and why not."""
    kind = scan.intensity.kind
    if kind == IntensityKind.LABEL:
        return None, "the scan is a label image, not CT"
    try:
        hu = scan.hu()
    except IntensityError as exc:
        return None, f"the scan's intensities cannot be mapped to HU ({exc})"
    return hu, ""


def _edge_check(components: list[ComponentSummary], empty: bool) -> QACheck:
    if empty:
        return QACheck("edge", "ok", "empty mask: nothing touches the edge of the scan")
    touching = [c for c in components if c.touches]
    if not touching:
        return QACheck("edge", "ok", "the mask does not touch the edge of the scanned volume")
    faces = sorted({f for c in touching for f in c.touches}, key=[f[2] for f in _FACES].index)
    parts = []
    if any(f in _SLICE_FACES for f in faces):
        parts.append(
            "at the first/last slice the hemorrhage may continue outside the scan, so the volume "
            "is a lower bound"
        )
    if any(f not in _SLICE_FACES for f in faces):
        parts.append("at an in-plane border the field of view may cut it or the mask leaks out")
    which = ", ".join(f"#{c.info.index}" for c in touching)
    return QACheck(
        "edge",
        "flagged",
        f"the mask touches the {'/'.join(faces)} edge of the scanned volume (component "
        f"{which}): {'; '.join(parts)}",
        {"faces": faces, "components": [c.info.index for c in touching]},
    )


def _calcification_check(
    components: list[ComponentSummary],
    scan: Volume | None,
    hu_reason: str,
    max_ml: float,
    min_hu: float,
) -> QACheck:
    limits = {"max_ml": max_ml, "min_hu": min_hu}
    if scan is None:
        return QACheck(
            "calcification",
            "unknown",
            "small dense foci (calcification) cannot be told without the scan (--scan)",
            limits,
        )
    if hu_reason:
        return QACheck("calcification", "unknown", f"cannot be told: {hu_reason}", limits)
    win = scan.intensity.window
    if scan.intensity.kind == IntensityKind.WINDOWED and win is not None and win.hi <= min_hu:
        return QACheck(
            "calcification",
            "unknown",
            f"cannot be told: the scan is windowed (L{win.level:g}/W{win.width:g}) and clipped "
            f"at {win.hi:g} HU, below the {min_hu:g} HU of calcification",
            limits,
        )
    hits = [
        c
        for c in components
        if c.info.volume_ml < max_ml and c.mean_hu is not None and c.mean_hu > min_hu
    ]
    if not hits:
        return QACheck(
            "calcification",
            "ok",
            f"no component under {max_ml:g} mL is denser than {min_hu:g} HU on average",
            limits,
        )
    listed = ", ".join(
        f"#{c.info.index} ({c.info.volume_ml:.3f} mL, mean {c.mean_hu:.0f} HU)" for c in hits
    )
    what = "focus" if len(hits) == 1 else "foci"
    return QACheck(
        "calcification",
        "flagged",
        f"{len(hits)} small dense {what} typical of calcification, not acute blood (about "
        f"50-90 HU): {listed}; check and remove them",
        {**limits, "components": [c.info.index for c in hits]},
    )


def _ivh_check(
    labels: list[LabelVolume], components: list[ComponentSummary], source: str, empty: bool
) -> QACheck:
    if empty:
        return QACheck("intraventricular", "ok", "empty mask")
    if source in ("binary", "unnamed"):
        return QACheck(
            "intraventricular",
            "unknown",
            "the mask has no subtype labels: whether a component is intraventricular cannot be "
            "told (label it, e.g. --label-names 2=IPH,3=IVH)",
        )
    ivh = [lab for lab in labels if is_intraventricular(lab.name) and lab.n_voxels > 0]
    if not ivh:
        named = any(is_intraventricular(lab.name) for lab in labels)
        why = "no voxel carries the IVH label" if named else "no label is named IVH"
        return QACheck("intraventricular", "ok", f"no intraventricular component ({why})")
    names = {lab.name for lab in ivh}
    comps = [c.info.index for c in components if any(n in names for n in c.labels)]
    ml = sum(lab.volume_ml for lab in ivh)
    return QACheck(
        "intraventricular",
        "flagged",
        f"{ml:.2f} mL labelled {'/'.join(sorted(names))} (component "
        f"{', '.join(f'#{n}' for n in comps)}): intraventricular hemorrhage; ABC/2 is not valid "
        "for IVH, use the planimetric volume",
        {"volume_ml": ml, "components": comps},
    )


def quantify_mask(
    mask: Volume,
    scan: Volume | None = None,
    *,
    label_names: Mapping[int, str] | None = None,
    weighting: Weighting = "kothari",
    connectivity: int = 3,
    calcification_max_ml: float = CALCIFICATION_MAX_ML,
    calcification_min_hu: float = CALCIFICATION_MIN_HU,
    abc2_on: Literal["largest", "all"] = "largest",
) -> QuantifyReport:
    """Planimetric volume, ABC/2, per-label and per-component volumes and QA checks of ``mask``.

    ``scan`` (optional) must share the mask's voxel grid (a mask stored with permuted/flipped
    axes of it is reoriented exactly; otherwise :class:`~ichseg.errors.GeometryError`); it gives
    the components' mean HU for the calcification check. ABC/2 is a bedside estimate of *one*
    hematoma: with ``abc2_on="largest"`` (default) it is measured on the largest connected
    component, so a distant speck cannot stretch the A caliper; ``"all"`` measures the whole
    mask. See the module docstring.
    """
    if abc2_on not in ("largest", "all"):
        raise ConfigError(f"abc2_on must be 'largest' or 'all', got {abc2_on!r}")
    from ichseg.io.reader import align_mask_to

    if not (math.isfinite(calcification_max_ml) and calcification_max_ml > 0):
        raise ConfigError(f"calcification_max_ml must be > 0, got {calcification_max_ml}")
    if not math.isfinite(calcification_min_hu):
        raise ConfigError(f"calcification_min_hu must be finite, got {calcification_min_hu}")
    labels_vol = integer_labels(mask)
    if scan is not None:
        labels_vol = align_mask_to(labels_vol, scan)
    lab = labels_vol.array
    fg = lab > 0
    n_vox = int(fg.sum())
    voxel_ml = labels_vol.voxel_volume_ml
    ranks, infos = label_components(labels_vol.with_array(fg.astype(np.uint8)), connectivity)
    values, counts = np.unique(lab[fg], return_counts=True)
    names, source = label_names_for(values.tolist(), label_names, mask.meta)

    hu, hu_reason = (None, "") if scan is None else _scan_hu(scan)
    n_comp = len(infos)
    # per component: voxels of each label, mean HU, faces touched (on the canonical grid)
    per_label = {}
    if n_comp:
        idx = ranks[fg].astype(np.int64)
        for v in values.tolist():
            per_label[int(v)] = np.bincount(idx[lab[fg] == v], minlength=n_comp + 1)[1:]
    mean_hu = None
    if hu is not None and n_comp:
        sums = np.bincount(ranks[fg], weights=hu[fg].astype(np.float64), minlength=n_comp + 1)
        mean_hu = sums[1:] / np.array([c.n_voxels for c in infos], dtype=np.float64)
    canon = to_canonical(labels_vol.with_array(ranks))[0].array
    touches: dict[int, list[str]] = {}
    for axis, end, face in _FACES:
        plane = np.take(canon, end, axis=axis)
        for r in np.unique(plane[plane > 0]).tolist():
            touches.setdefault(int(r), []).append(face)
    components = [
        ComponentSummary(
            info=c,
            labels={
                names.get(v, f"label {v}"): int(per_label[v][c.index - 1]) * voxel_ml
                for v in per_label
                if per_label[v][c.index - 1] > 0
            },
            mean_hu=None if mean_hu is None else float(mean_hu[c.index - 1]),
            touches=tuple(touches.get(c.index, ())),
        )
        for c in infos
    ]
    count_of = {int(v): int(n) for v, n in zip(values, counts, strict=True)}
    label_rows = [
        LabelVolume(
            value=v,
            name=name,
            n_voxels=count_of.get(v, 0),
            volume_ml=count_of.get(v, 0) * voxel_ml,
            n_components=int((per_label[v] > 0).sum()) if v in per_label else 0,
        )
        for v, name in sorted({**{v: f"label {v}" for v in count_of}, **names}.items())
    ]
    empty = n_vox == 0
    abc2_component = 1 if abc2_on == "largest" and n_comp > 1 else None
    abc2_fg = ranks == 1 if abc2_component else fg
    qa = [
        QACheck(
            "empty",
            "flagged" if empty else "ok",
            "the mask is empty (0 mL)" if empty else f"{n_comp} component(s)",
        ),
        _edge_check(components, empty),
        _calcification_check(
            components, scan, hu_reason, calcification_max_ml, calcification_min_hu
        ),
        _ivh_check(label_rows, components, source, empty),
    ]
    return QuantifyReport(
        mask=GeometrySummary.of(mask),
        scan=None if scan is None else GeometrySummary.of(scan),
        n_voxels=n_vox,
        planimetric_ml=n_vox * voxel_ml,
        abc2=abc2(labels_vol.with_array(abc2_fg.astype(np.uint8)), weighting),
        labels=label_rows,
        label_names_source=source,
        components=components,
        qa=qa,
        connectivity=connectivity,
        abc2_component=abc2_component,
    )


_STATUS_MARK = {"flagged": "FLAG", "ok": "ok", "unknown": "?"}


def _ml(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 0.1 else f"{x:.2f}"


def _slice_range(slices: Sequence[int]) -> str:
    return f"{slices[0]}" if len(slices) == 1 else f"{slices[0]}-{slices[-1]}"


def format_quantify_text(report: QuantifyReport, max_components: int = 20) -> str:
    """The human-readable form of ``report`` (what ``ichseg quantify`` prints)."""
    r, a = report, report.abc2
    lines = [f"mask: {r.mask.source or '(in memory)'} ({r.mask.describe()})"]
    if r.scan is not None:
        lines.append(f"scan: {r.scan.source or '(in memory)'}")
    lines.append(
        f"planimetric volume: {r.planimetric_ml:.2f} mL ({r.n_voxels} voxels of "
        f"{r.mask.voxel_volume_ml * 1000:.4g} mm³)"
    )
    if a.n_slices:
        ratio = f", {r.abc2_ratio:.2f}x planimetric" if math.isfinite(r.abc2_ratio) else ""
        lines.append(
            f"ABC/2 ({a.weighting}): {a.volume_ml:.2f} mL{ratio}; A {a.a_mm:.1f} mm, "
            f"B {a.b_mm:.1f} mm, C {a.c_mm:.1f} mm ({a.weighted_slices:g} weighted of "
            f"{a.n_slices} slices x {a.slice_thickness_mm:.3g} mm); largest slice "
            f"{a.slice_index} on axis {a.slice_axis}"
        )
        if r.abc2_component is not None:
            lines.append(f"  (ABC/2 measured on the largest component, #{r.abc2_component})")
    else:
        lines.append("ABC/2: 0 mL (empty mask)")
    if r.has_subtypes:
        lines.append(f"labels (names: {r.label_names_source}):")
        for lab in r.labels:
            lines.append(
                f"  {lab.value:>3} {lab.name:<14} {lab.volume_ml:8.2f} mL  "
                f"({lab.n_components} component(s))"
            )
    lines.append(f"components ({len(r.components)}, {[6, 18, 26][r.connectivity - 1]}-connected):")
    for c in r.components[:max_components]:
        info = c.info
        extra = []
        if len(c.labels) > 1 or (r.has_subtypes and c.labels):
            extra.append(", ".join(f"{n} {_ml(ml)}" for n, ml in c.labels.items()))
        if c.mean_hu is not None:
            extra.append(f"mean {c.mean_hu:.0f} HU")
        if c.touches:
            extra.append(f"touches {'/'.join(c.touches)}")
        ras = ", ".join(f"{v:.1f}" for v in info.centroid_ras)
        lines.append(
            f"  #{info.index} {info.volume_ml:8.3f} mL, slices {_slice_range(info.slices)}, "
            f"centroid RAS ({ras}) mm" + (f"; {'; '.join(extra)}" if extra else "")
        )
    if len(r.components) > max_components:
        lines.append(f"  ... {len(r.components) - max_components} more (see --json)")
    lines.append("QA:")
    for q in r.qa:
        lines.append(f"  [{_STATUS_MARK[q.status]}] {q.code}: {q.message}")
    return "\n".join(lines)


# --- compare ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskVolume:
    """One mask's planimetric volume with the grid it was measured on."""

    geometry: GeometrySummary
    n_voxels: int
    volume_ml: float

    @classmethod
    def of(cls, mask: Volume) -> MaskVolume:
        fg = integer_labels(mask).array > 0
        n = int(fg.sum())
        return cls(GeometrySummary.of(mask), n, n * mask.voxel_volume_ml)

    def as_dict(self) -> dict[str, Any]:
        return {**self.geometry.as_dict(), "n_voxels": self.n_voxels, "volume_ml": self.volume_ml}


@dataclass(frozen=True)
class Comparison:
    """Baseline vs follow-up: both volumes, the change and the expansion flags."""

    baseline: MaskVolume
    followup: MaskVolume
    expansion: ExpansionResult
    same_grid: bool
    notes: tuple[str, ...] = ()
    interval_hours: float | None = None  #: time between the scans, if given
    onset_hours: float | None = None  #: symptom onset to the baseline scan, if given

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "baseline": self.baseline.as_dict(),
                "followup": self.followup.as_dict(),
                "interval_hours": self.interval_hours,
                "onset_hours": self.onset_hours,
                **self.expansion.as_dict(),
                "criteria": dict(EXPANSION_CRITERIA),
                "same_grid": self.same_grid,
                "notes": list(self.notes),
            }
        )


def compare_masks(
    baseline: Volume,
    followup: Volume,
    *,
    interval_hours: float | None = None,
    onset_hours: float | None = None,
    criterion: str = DEFAULT_EXPANSION_CRITERION,
) -> Comparison:
    """Hematoma change from ``baseline`` to ``followup``, each measured on its own grid.

    ``interval_hours`` (time between the scans) gives the growth rate in mL/h; ``onset_hours``
    (symptom onset to the baseline scan) the ultra-early growth (baseline mL / h). Flags for
    every criterion in :data:`~ichseg.quantify.volume.EXPANSION_CRITERIA`.
    """
    b, f = MaskVolume.of(baseline), MaskVolume.of(followup)
    result = expansion(
        b.volume_ml,
        f.volume_ml,
        onset_hours,
        interval_hours=interval_hours,
        criterion=criterion,
    )
    same = baseline.same_geometry(followup)
    notes: list[str] = []
    if not same:
        notes.append(
            "the masks lie on different grids; each volume is computed in its own geometry"
        )
    tb, tf = baseline.spacing, followup.spacing
    thick_b = tb[axial_axis(baseline)]
    thick_f = tf[axial_axis(followup)]
    if abs(thick_b - thick_f) > 0.1 * max(thick_b, thick_f):
        notes.append(
            f"slice spacing differs ({thick_b:.3g} mm vs {thick_f:.3g} mm): partial-volume "
            "effects differ, so small changes are within measurement error"
        )
    if b.volume_ml == 0:
        notes.append("the baseline is empty: the relative change is undefined (reported as null)")
    return Comparison(
        b,
        f,
        result,
        same,
        tuple(notes),
        None if interval_hours is None else float(interval_hours),
        None if onset_hours is None else float(onset_hours),
    )


def format_compare_text(cmp: Comparison) -> str:
    """The human-readable form of ``cmp`` (what ``ichseg compare`` prints)."""
    e = cmp.expansion
    lines = [
        f"baseline:  {cmp.baseline.volume_ml:8.2f} mL  {cmp.baseline.geometry.source or ''} "
        f"({cmp.baseline.geometry.describe()})",
        f"follow-up: {cmp.followup.volume_ml:8.2f} mL  {cmp.followup.geometry.source or ''} "
        f"({cmp.followup.geometry.describe()})",
    ]
    rel = f"{e.rel_change * 100:+.1f} %" if math.isfinite(e.rel_change) else "relative: undefined"
    ratio = f"ratio {e.ratio:.2f}" if math.isfinite(e.ratio) else "ratio undefined"
    lines.append(f"change:    {e.abs_change_ml:+8.2f} mL  ({rel}, {ratio})")
    if e.growth_ml_per_h is not None:
        lines.append(f"growth:    {e.growth_ml_per_h:+8.2f} mL/h over {cmp.interval_hours:g} h")
    if e.uhg_ml_per_h is not None:
        lines.append(
            f"ultra-early growth: {e.uhg_ml_per_h:.2f} mL/h "
            f"({'above' if e.uhg_high else 'not above'} 9.3 mL/h)"
        )
    lines.append("expansion:")
    for name, text in EXPANSION_CRITERIA.items():
        mark = "YES" if e.flags[name] else "no"
        primary = "  <- primary" if name == e.criterion else ""
        lines.append(f"  {name:<12} {mark:<4} {text}{primary}")
    lines += [f"note: {n}" for n in cmp.notes]
    return "\n".join(lines)
