"""One interactive session, whatever the engine (segment-anything predictor / nnInteractive style).

Usage::

    engine = build_engine("hpinet_refined")          # or HPINetEngine(model), RandomWalkerEngine()
    session = InteractiveSession(engine, autosave="case.log.json")
    session.set_volume(volume)                       # engine.encode(): heavy work, once
    session.add_scribble(z, [(y0, x0), (y1, x1)], positive=True)
    result = session.run_round()                     # probability + mask, volume in mL
    session.undo(); session.redo()
    session.save_log("log.json")                     # replay_log() gives the same mask

    session.start_from_mask(auto_mask, "unet")       # or: round 0 = an automatic model's mask,
    session.add_scribble(...); session.run_round()   # round 1 corrects it (undo-able, logged)

The session owns everything that is not the method: the scan and its canonical grid, the
accumulated prompts, the history of rounds with undo/redo, the results on the original grid,
the replayable log and its autosave, the suggested next slice and the volume in mL. Engines
(:mod:`ichseg.interaction.engine`) only encode a scan and answer prompts.

Coordinates: prompts are voxel indices ``(z, y, x)`` of the **canonical** ``(Z, Y, X)`` grid of
the loaded scan (:attr:`InteractiveSession.grid_ref` holds its shape and affine; the canonical
grid is LPS, see :mod:`ichseg.io.volume`), i.e. what a viewer shows as axial slice ``z``.
Results are returned on the ORIGINAL voxel grid and affine of the scan.

Rules applied to every engine's answer:

* non-finite probabilities are an error (:class:`~ichseg.errors.ModelOutputError`), never a mask;
* the user's painted voxels win (``enforce_prompts``): hemorrhage strokes are 1, background 0;
* a round whose prompts so far are all background, on an empty mask, yields an empty mask and
  says so in :attr:`RoundResult.note` (nothing was marked as hemorrhage);
* stroke widths and click radii are bounded in mm (``max_prompt_size_mm``).

**Automatic, then corrected** (:meth:`InteractiveSession.start_from_mask`): an existing mask
(e.g. from ``ichseg predict``) becomes round 0, the session's previous result: its
:class:`RoundResult` has ``index`` 0, the next :meth:`~InteractiveSession.run_round` passes it
to the engine as ``previous`` (plus the engine's ``start_state(previous)`` as ``state`` when the
engine has that optional method) and is round 1. Round 0 is undo-able like any round and is
logged as an ``initial_mask`` event holding the mask itself (bit-packed, zlib, base64), so
:func:`replay_events` and :func:`resume_session` reproduce it; such logs have version 3.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import os
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.errors import ConfigError, InputFileError, ModelOutputError, PromptError
from ichseg.interaction.engine import Engine
from ichseg.interaction.hints import rasterize_prompts, rasterize_slice
from ichseg.interaction.prompts import (
    Box,
    Click,
    GridRef,
    Prompt,
    Scribble,
    prompt_from_dict,
    validate,
)
from ichseg.io.volume import Intensity, IntensityKind, Reorientation, Volume, to_canonical

LOG_FORMAT = "ichseg-interaction-log"
LOG_VERSION = 3  #: newest log version read; written only by logs with an ``initial_mask``
_BASE_LOG_VERSION = 2  #: version of logs without an ``initial_mask`` event
MASK_ENCODING = "packbits-zlib-base64"  #: how an ``initial_mask`` event stores its mask
NOTE_ONLY_BACKGROUND = "only background prompts and no hemorrhage so far: the mask is empty"
#: how close (mm, in 3D) a first hemorrhage stroke must come to a starting mask to count as
#: correcting it rather than marking a bleed the starting mask missed
INITIAL_MASK_NEAR_MM = 5.0


def strokes_miss_mask(
    mask: np.ndarray,
    strokes: np.ndarray,
    spacing_zyx: Sequence[float],
    radius_mm: float = INITIAL_MASK_NEAR_MM,
) -> bool:
    """True when ``mask`` (bool ``(Z, Y, X)``) has voxels but none of the ``strokes`` voxels
    (bool, same grid) lies within ``radius_mm`` of it (3D, slice spacing included)."""
    from scipy.ndimage import distance_transform_edt

    if not mask.any() or not strokes.any():
        return False
    sz, sy, sx = (float(v) for v in spacing_zyx)
    reach = int(np.floor(radius_mm / sz)) if sz > 0 else 0
    distances: dict[int, np.ndarray] = {}  # in-plane distance to the mask, per slice, once
    for z in np.flatnonzero(strokes.reshape(strokes.shape[0], -1).any(axis=1)):
        lo, hi = max(0, z - reach), min(mask.shape[0], z + reach + 1)
        for zz in range(lo, hi):
            if not mask[zz].any():
                continue
            if zz not in distances:
                distances[zz] = distance_transform_edt(~mask[zz], sampling=(sy, sx))
            left = radius_mm**2 - ((zz - z) * sz) ** 2  # in-plane reach left at that slice
            if float(distances[zz][strokes[z]].min()) ** 2 <= left:
                return False
    return True


@dataclass(frozen=True)
class SessionConfig:
    """Settings of the session itself (the engine has its own configuration)."""

    threshold: float = 0.5  #: probability -> mask
    #: prompted voxels are hemorrhage (+) / background (-) in the result
    enforce_prompts: bool = True
    click_radius: float = 2.0  #: default click disc radius in canonical pixels
    scribble_width: float = 2.0  #: default stroke width in canonical pixels
    #: largest stroke width / click diameter accepted, in mm (a brush wider than a hematoma is
    #: almost certainly a unit mistake)
    max_prompt_size_mm: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"SessionConfig: threshold must be in (0, 1), got {self.threshold}")
        for name in ("click_radius", "scribble_width", "max_prompt_size_mm"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ConfigError(f"SessionConfig: {name} must be > 0, got {value}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown session option(s): {', '.join(unknown)}")
        return cls(**dict(data))


@dataclass
class RoundResult:
    """What one round produced (arrays on the original voxel grid)."""

    index: int  #: 1-based round number
    probability: np.ndarray  #: float32 (i, j, k)
    mask: np.ndarray  #: uint8 (i, j, k)
    volume_ml: float
    delta_ml: float  #: change against the previous round
    interacted_slices: list[int]
    propagated_slices: list[int]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    note: str | None = None  #: a message for the user about this round (e.g. why it is empty)


@dataclass
class _State:
    prompts: tuple[Prompt, ...]
    canonical_prob: np.ndarray | None  #: (Z, Y, X) float32, None before the first round
    engine_state: Any
    interacted: tuple[int, ...]  #: canonical slices in order of interaction
    result: RoundResult | None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def volume_sha256(volume: Volume) -> str:
    """sha256 of a scan's voxel values (as float32, C order), shape and affine (rounded to µm):
    the same scan read from NIfTI or DICOM gives the same hash."""
    h = hashlib.sha256()
    h.update(np.asarray(volume.shape, np.int64).tobytes())
    h.update(np.round(np.asarray(volume.affine, np.float64), 3).tobytes())
    h.update(np.ascontiguousarray(volume.array, dtype=np.float32).tobytes())
    return h.hexdigest()


def _as_engine(engine: Any, device: Any, weights_path: str | Path | None) -> Engine:
    import torch

    if isinstance(engine, torch.nn.Module):
        from ichseg.interaction.hpinet_engine import HPINetEngine

        return HPINetEngine(engine, device=device, weights_path=weights_path)
    if not isinstance(engine, Engine):
        raise ConfigError(f"not an interactive engine: {type(engine).__name__}")
    return engine


class InteractiveSession:
    """Stateful interactive segmentation of one scan at a time (see module docstring)."""

    def __init__(
        self,
        engine: Engine | Any,
        config: SessionConfig | None = None,
        *,
        autosave: str | Path | None = None,
        device: str = "cpu",
        weights_path: str | Path | None = None,
    ) -> None:
        """``engine``: an :class:`Engine` (a bare ICH-HPINet model is wrapped in
        :class:`~ichseg.interaction.hpinet_engine.HPINetEngine` with its default settings).
        ``autosave``: write the log atomically to this path after every round and undo/redo."""
        self.engine: Engine = _as_engine(engine, device, weights_path)
        self.config = config or SessionConfig()
        self.autosave = Path(autosave) if autosave is not None else None
        self._volume: Volume | None = None
        self._events: list[dict[str, Any]] = []
        self._scan_sha256: str | None = None

    # ------------------------------------------------------------------ volume
    def set_volume(self, volume: Volume) -> None:
        """Load a scan: reorient to canonical LPS and let the engine encode it once."""
        t0 = time.perf_counter()
        canonical, reo = to_canonical(volume)
        self.engine.encode(canonical)
        self._volume = volume
        self._canonical = canonical
        self._reorientation: Reorientation = reo
        self.grid_ref = GridRef.from_volume(canonical)
        self._states: list[_State] = [_State((), None, None, (), None)]
        self._pointer = 0
        self._pending: list[Prompt] = []
        self._scan_sha256 = None
        self._events = [{"op": "set_volume", "meta": self._volume_meta()}]
        self.set_volume_seconds = time.perf_counter() - t0

    def _volume_meta(self) -> dict[str, Any]:
        v = self._require_volume()
        return {
            "source": v.meta.get("source"),
            "shape_ijk": list(v.shape),
            "affine": np.asarray(v.affine).tolist(),
            "canonical": self.grid_ref.to_dict(),
        }

    def _require_volume(self) -> Volume:
        if self._volume is None:
            raise PromptError("no volume loaded: call set_volume() first")
        return self._volume

    @property
    def volume(self) -> Volume:
        """The loaded scan (original grid)."""
        return self._require_volume()

    @property
    def state(self) -> _State:
        self._require_volume()
        return self._states[self._pointer]

    @property
    def round_index(self) -> int:
        """Index of the current round in the (undo-aware) history: 0 before the first round or
        at an initial mask (:meth:`start_from_mask`), else the number of rounds run."""
        res = self.state.result
        return res.index if res is not None else 0

    @property
    def initial_source(self) -> str | None:
        """What the current history's round-0 mask came from (``None``: no initial mask)."""
        self._require_volume()
        first = self._states[1] if self._pointer >= 1 else None
        if first is None or first.result is None or first.result.index != 0:
            return None
        return first.result.note.removeprefix("initial mask: ") if first.result.note else ""

    # ------------------------------------------------------------------ round 0
    def start_from_mask(self, mask: Volume, source: str = "automatic") -> RoundResult:
        """Make ``mask`` (a label volume on the scan's grid; any value > 0 is hemorrhage) round 0:
        the previous result the next :meth:`run_round` corrects. ``source`` says where it came
        from (e.g. ``"unet:runs/unet/best.pt"``); it is logged and shown in the round's note.

        Only at the start of a history (no round yet, or undone to the start; no pending
        prompts). A mask on a permuted/flipped copy of the scan's grid is reoriented; any other
        geometry is a :class:`~ichseg.errors.GeometryError`."""
        from ichseg.io.reader import align_mask_to

        vol = self._require_volume()
        if self._pending:
            raise PromptError(
                "prompts are pending: run or undo them before setting an initial mask"
            )
        if self._pointer != 0:
            raise PromptError(
                "an initial mask starts a session: undo to the start first (rounds exist)"
            )
        if not isinstance(mask, Volume):
            raise PromptError(f"the initial mask must be a Volume, got {type(mask).__name__}")
        t0 = time.perf_counter()
        aligned = align_mask_to(mask, vol)
        arr = (np.asarray(aligned.array) > 0).astype(np.uint8)
        self._push_initial(arr, str(source), t0)
        self._events.append({"op": "initial_mask", "source": str(source), "mask": encode_mask(arr)})
        self._autosave()
        return self.state.result  # type: ignore[return-value]

    def _push_initial(self, arr: np.ndarray, source: str, t0: float) -> None:
        vol = self._require_volume()
        canon = to_canonical(vol.as_label(arr))[0].zyx().astype(np.float32)
        starter = getattr(self.engine, "start_state", None)
        engine_state = starter(canon) if callable(starter) else None
        volume_ml = float(arr.sum()) * vol.voxel_volume_ml
        result = RoundResult(
            index=0,
            probability=arr.astype(np.float32),
            mask=arr,
            volume_ml=volume_ml,
            delta_ml=volume_ml,
            interacted_slices=[],
            propagated_slices=[],
            seconds=time.perf_counter() - t0,
            note=f"initial mask: {source}",
        )
        self._states = self._states[:1]
        self._states.append(_State((), canon, engine_state, (), result))
        self._pointer = 1

    # ------------------------------------------------------------------ prompts
    def add_prompt(self, prompt: Prompt) -> None:
        """Queue a :class:`Click`, :class:`Scribble` or :class:`Box` (canonical ``(z, y, x)``
        voxel indices). A box's size check applies to its ring width, not to the box."""
        self._require_volume()
        if not isinstance(prompt, Click | Scribble | Box):
            raise PromptError(f"expected a Click, Scribble or Box, got {type(prompt).__name__}")
        validate(prompt, self.grid_ref)
        if isinstance(prompt, Box):
            size_px, what = float(prompt.ring_vox), "box ring width"
        elif isinstance(prompt, Click):
            size_px, what = 2 * prompt.radius_vox, "click diameter"
        else:
            size_px, what = prompt.width_vox, "stroke width"
        size_mm = size_px * self.grid_ref.inplane_spacing
        if size_mm > self.config.max_prompt_size_mm:
            raise PromptError(
                f"{what} {size_px:g} px = {size_mm:.1f} mm is larger than "
                f"{self.config.max_prompt_size_mm:g} mm (max_prompt_size_mm); prompt sizes are "
                "in canonical pixels"
            )
        self._pending.append(prompt)
        self._events.append({"op": "prompt", "prompt": prompt.to_dict()})

    def add_prompts(self, prompts: Iterable[Prompt]) -> None:
        for p in prompts:
            self.add_prompt(p)

    def add_click(
        self, z: int, y: float, x: float, positive: bool = True, radius: float | None = None
    ) -> None:
        self.add_prompt(Click(z, y, x, positive, radius or self.config.click_radius))

    def add_scribble(
        self,
        z: int,
        points: Sequence[tuple[float, float]],
        positive: bool = True,
        width: float | None = None,
    ) -> None:
        self.add_prompt(Scribble(z, points, positive, width or self.config.scribble_width))

    def add_box(
        self, z: int, y0: float, x0: float, y1: float, x1: float, ring: int | None = None
    ) -> None:
        """Queue a :class:`Box` (outer edges ``y0 < y1``, ``x0 < x1``); it adds background hints
        only, so give a positive click or scribble too."""
        self.add_prompt(Box(z, y0, x0, y1, x1, 2 if ring is None else ring))

    @property
    def prompts(self) -> tuple[Prompt, ...]:
        """All prompts in effect: those of the rounds so far plus pending ones."""
        return (*self.state.prompts, *self._pending)

    @property
    def pending(self) -> tuple[Prompt, ...]:
        """Prompts added since the last round."""
        self._require_volume()
        return tuple(self._pending)

    # ------------------------------------------------------------------ the round
    def run_round(self) -> RoundResult:
        """Answer all prompts so far with the engine; the new prompts define the new slices."""
        vol = self._require_volume()
        if not self._pending:
            raise PromptError("no new prompts since the last round: add a click or scribble first")
        t0 = time.perf_counter()
        cfg = self.config
        prev_state = self.state
        new = tuple(self._pending)
        prompts = (*prev_state.prompts, *new)
        new_slices = sorted({p.z for p in new})
        note = None
        previous_empty = prev_state.canonical_prob is None or not bool(
            (prev_state.canonical_prob >= cfg.threshold).any()
        )
        if previous_empty and not any(p.positive for p in prompts):
            canon = np.zeros(self.grid_ref.shape_zyx, np.float32)
            out_state, propagated, timings = prev_state.engine_state, [], {}
            note = NOTE_ONLY_BACKGROUND
        else:
            out = self.engine.predict(
                prompts, new, prev_state.canonical_prob, prev_state.engine_state
            )
            canon = np.asarray(out.probability, dtype=np.float32)
            if canon.shape != tuple(self.grid_ref.shape_zyx):
                raise ModelOutputError(
                    f"engine {self.engine.name!r} returned shape {canon.shape}, expected "
                    f"{tuple(self.grid_ref.shape_zyx)}"
                )
            bad = ~np.isfinite(canon)
            if bad.any():
                raise ModelOutputError(
                    f"engine {self.engine.name!r} returned {int(bad.sum())} non-finite "
                    "probabilities (NaN/Inf): the weights or the input are broken; no mask written"
                )
            canon = np.clip(canon, 0.0, 1.0)
            out_state, propagated, timings = out.state, out.propagated_slices, dict(out.timings)
        t = time.perf_counter()
        if cfg.enforce_prompts and note is None:
            # ``canon`` is np.clip's new array here (never the engine's): edited in place; only
            # the prompted slices are rasterised (a full (2, Z, Y, X) hint volume cost ~0.2 s)
            for z in sorted({p.z for p in prompts}):
                hints = rasterize_slice(prompts, canon.shape[1:], z)
                positive, negative = hints[0] > 0, hints[1] > 0
                canon[z][positive & ~negative] = 1.0
                canon[z][negative & ~positive] = 0.0
        if note is None and prev_state.result is not None and prev_state.result.index == 0:
            note = self._initial_mask_note(prev_state, new)
        prob_orig = self._reorientation.undo(canon.transpose(2, 1, 0))  # undo makes it contiguous
        prob_orig = prob_orig.astype(np.float32, copy=False)
        mask_orig = (prob_orig >= cfg.threshold).astype(np.uint8)
        volume_ml = float(mask_orig.sum()) * vol.voxel_volume_ml
        previous_ml = prev_state.result.volume_ml if prev_state.result else 0.0
        timings["session"] = time.perf_counter() - t
        interacted = [z for z in prev_state.interacted if z not in new_slices] + new_slices
        result = RoundResult(
            index=(prev_state.result.index if prev_state.result else 0) + 1,
            probability=prob_orig,
            mask=mask_orig,
            volume_ml=volume_ml,
            delta_ml=volume_ml - previous_ml,
            interacted_slices=new_slices,
            propagated_slices=list(propagated),
            seconds=time.perf_counter() - t0,
            timings=timings,
            note=note,
        )
        self._states = self._states[: self._pointer + 1]
        self._states.append(_State(prompts, canon, out_state, tuple(interacted), result))
        self._pointer += 1
        self._pending = []
        self._events.append({"op": "run_round", "volume_ml": round(volume_ml, 4)})
        self._autosave()
        return result

    def _initial_mask_note(self, start: _State, new: Sequence[Prompt]) -> str | None:
        """A warning when the first hemorrhage strokes after a starting mask all lie away from
        it: the starting mask missed this bleed, and what it marked is likely wrong too."""
        if start.canonical_prob is None or not any(p.positive for p in new):
            return None
        initial = start.canonical_prob >= self.config.threshold
        positive = rasterize_prompts([p for p in new if p.positive], initial.shape)[0] > 0
        spacing_zyx = np.linalg.norm(self.grid_ref.affine_array[:3, :3], axis=0)[::-1]
        if not strokes_miss_mask(initial, positive, spacing_zyx):
            return None
        from scipy.ndimage import label

        n = int(label(initial)[1])
        source = self.initial_source or "the starting mask"
        return (
            f"no hemorrhage stroke of this round is within {INITIAL_MASK_NEAR_MM:g} mm of the "
            f"starting mask ({source}; {n} component(s), {start.result.volume_ml:.1f} mL, all "
            "elsewhere): it missed this bleed, so check what it marked, or start again without it"
        )

    # ------------------------------------------------------------------ results
    def probability(self) -> Volume:
        """Current probability map on the original grid (float32 volume)."""
        vol = self._require_volume()
        res = self.state.result
        arr = res.probability if res else np.zeros(vol.shape, np.float32)
        return vol.with_array(arr, Intensity(IntensityKind.UNKNOWN), kind="probability")

    def mask(self) -> Volume:
        """Current mask on the original grid and affine (uint8 label volume)."""
        vol = self._require_volume()
        res = self.state.result
        return vol.as_label(res.mask if res else np.zeros(vol.shape, np.uint8))

    @property
    def volume_ml(self) -> float:
        res = self.state.result
        return res.volume_ml if res else 0.0

    def results(self) -> list[RoundResult]:
        """Results of the rounds in the current history (undo-aware)."""
        self._require_volume()
        return [s.result for s in self._states[1 : self._pointer + 1] if s.result is not None]

    def suggest_next_slice(self) -> int | None:
        """Canonical slice where the result is least sure (sum of p(1-p)), not yet prompted."""
        p = self.state.canonical_prob
        if p is None:
            return None
        # sum of p(1-p) per slice as sum(p) - sum(p^2), accumulated in float64 (float32 cancels
        # badly for near-binary slices): no full-size temporaries, about 1.7x faster on a
        # 512x512x32 scan (the app computes this after every round)
        flat = p.reshape(p.shape[0], -1)
        unsure = flat.sum(axis=1, dtype=np.float64) - np.einsum(
            "ij,ij->i", flat, flat, dtype=np.float64, casting="same_kind"
        )
        for z in self.state.interacted:
            unsure[z] = -1.0
        if unsure.max() <= 1e-3:
            return None
        return int(np.argmax(unsure))

    # ------------------------------------------------------------------ undo / redo
    def undo(self) -> None:
        """Undo the last round (and drop prompts not yet run)."""
        self._require_volume()
        if self._pending:
            self._pending = []
            self._events.append({"op": "discard_pending"})
            self._autosave()
            return
        if self._pointer == 0:
            raise PromptError("nothing to undo")
        self._pointer -= 1
        self._events.append({"op": "undo"})
        self._autosave()

    def redo(self) -> None:
        self._require_volume()
        if self._pointer + 1 >= len(self._states):
            raise PromptError("nothing to redo")
        if self._pending:
            raise PromptError("cannot redo while new prompts are pending; run or undo them")
        self._pointer += 1
        self._events.append({"op": "redo"})
        self._autosave()

    @property
    def can_undo(self) -> bool:
        return self._volume is not None and (bool(self._pending) or self._pointer > 0)

    @property
    def can_redo(self) -> bool:
        return (
            self._volume is not None and not self._pending and self._pointer + 1 < len(self._states)
        )

    # ------------------------------------------------------------------ log
    def scan_sha256(self) -> str:
        """:func:`volume_sha256` of the loaded scan (computed once)."""
        vol = self._require_volume()
        if self._scan_sha256 is None:
            self._scan_sha256 = volume_sha256(vol)
        return self._scan_sha256

    def log(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """The replayable interaction log (plain JSON types). ``relative_to``: the folder the
        log will be written to (the scan's path is also stored relative to it)."""
        vol = self._require_volume()
        source = vol.meta.get("source")
        scan: dict[str, Any] = {"source": source, "sha256": self.scan_sha256()}
        if source and relative_to is not None:
            with contextlib.suppress(ValueError):  # another drive (Windows)
                scan["source_relative_to_log"] = os.path.relpath(
                    Path(source).resolve(), Path(relative_to).resolve()
                )
        initial = any(e["op"] == "initial_mask" for e in self._events)
        return {
            "format": LOG_FORMAT,
            "version": LOG_VERSION if initial else _BASE_LOG_VERSION,
            "engine": {
                "name": self.engine.name,
                "config": self.engine.config_dict(),
                "model": self.engine.model_info(),
            },
            "session_config": asdict(self.config),
            "scan": scan,
            "events": copy.deepcopy(self._events),
            "rounds": [
                {
                    "index": r.index,
                    "volume_ml": r.volume_ml,
                    "delta_ml": r.delta_ml,
                    "interacted_slices": r.interacted_slices,
                    "seconds": round(r.seconds, 4),
                }
                for r in self.results()
            ],
        }

    def save_log(self, path: str | Path) -> Path:
        """Write the log atomically (temporary file, fsync, rename); nothing is left behind on
        failure and an existing log is only replaced by a complete one."""
        p = Path(path)
        data = self.log(relative_to=p.parent)
        write_json_atomic(p, data)
        return p

    def _autosave(self) -> None:
        if self.autosave is not None:
            self.save_log(self.autosave)


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """A binary ``(i, j, k)`` mask as plain JSON: C-order bits, ``np.packbits``, zlib, base64."""
    arr = np.ascontiguousarray(np.asarray(mask) > 0)
    data = zlib.compress(np.packbits(arr.ravel()).tobytes(), 6)
    return {
        "encoding": MASK_ENCODING,
        "shape_ijk": [int(n) for n in arr.shape],
        "voxels": int(arr.sum()),
        "data": base64.b64encode(data).decode("ascii"),
    }


def decode_mask(record: Mapping[str, Any]) -> np.ndarray:
    """The uint8 mask of :func:`encode_mask`'s record (:class:`InputFileError` if malformed)."""
    try:
        if record.get("encoding") != MASK_ENCODING:
            raise ValueError(f"encoding {record.get('encoding')!r} is not {MASK_ENCODING!r}")
        shape = tuple(int(n) for n in record["shape_ijk"])
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape_ijk {list(shape)} is not a 3D shape")
        bits = np.frombuffer(
            zlib.decompress(base64.b64decode(record["data"], validate=True)), np.uint8
        )
        n = int(np.prod(shape))
        if bits.size != (n + 7) // 8:
            raise ValueError(f"{bits.size} bytes do not hold {n} voxels")
        arr = np.unpackbits(bits, count=n).reshape(shape)
        if "voxels" in record and int(arr.sum()) != int(record["voxels"]):
            raise ValueError("voxel count does not match")
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise InputFileError(f"malformed initial mask in interaction log: {exc}") from None
    return arr.astype(np.uint8)


def write_json_atomic(path: Path, data: Any) -> None:
    """``json.dump`` to ``path`` via a temporary file in the same folder, fsync and rename."""
    if not path.parent.is_dir():
        raise InputFileError(f"{path}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputFileError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------- reading logs
#: Values of HPINet engine options added after the first release, for v1 logs that do not record
#: them (so an old log replays exactly as it was made).
LEGACY_ENGINE_DEFAULTS: dict[str, Any] = {
    "previous_as_mask": False,
    "feed_previous": True,
    "correction_max_distance": None,
    "feed_previous_sim": False,
    "stroke_radius_mm": 0.0,
    "stroke_beta": 600.0,
}
_LEGACY_SESSION_DEFAULTS: dict[str, Any] = {"enforce_prompts": False}
_LOG_KEYS = {"format", "version", "engine", "model", "session_config", "scan", "events", "rounds"}
_EVENT_OPS = {
    "set_volume",
    "initial_mask",
    "prompt",
    "run_round",
    "undo",
    "discard_pending",
    "redo",
}


def _need(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise InputFileError(f"{path}: malformed interaction log: {msg}")


def read_log(path: str | Path) -> dict[str, Any]:
    """Read and validate a log; v1 logs are converted to the v2 layout (``engine`` + session
    options). Anything malformed is an :class:`InputFileError` naming the problem."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read interaction log ({exc.strerror or exc})") from exc
    except UnicodeDecodeError:
        raise InputFileError(f"{p}: not an ichseg interaction log (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InputFileError(f"{p}: not an ichseg interaction log (invalid JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != LOG_FORMAT:
        raise InputFileError(f"{p}: not an ichseg interaction log")
    version = data.get("version")
    _need(isinstance(version, int) and not isinstance(version, bool), p, "'version' missing")
    if version > LOG_VERSION:
        raise InputFileError(f"{p}: log version {version} is newer than supported ({LOG_VERSION})")
    unknown = sorted(set(data) - _LOG_KEYS)
    _need(not unknown, p, f"unknown key(s) {', '.join(unknown)}")
    _need(isinstance(data.get("events"), list) and data["events"], p, "'events' missing or empty")
    _need(isinstance(data.get("session_config"), dict), p, "'session_config' missing")
    if version < 2:
        _need(isinstance(data.get("model"), dict), p, "'model' missing")
        data = _upgrade_v1(data, p)
    _need(isinstance(data.get("engine"), dict), p, "'engine' missing")
    engine = data["engine"]
    _need(isinstance(engine.get("name"), str), p, "'engine.name' missing")
    _need(isinstance(engine.get("config", {}), dict), p, "'engine.config' is not a mapping")
    _need(isinstance(engine.get("model", {}), dict), p, "'engine.model' is not a mapping")
    _need(isinstance(data.get("scan", {}), dict), p, "'scan' is not a mapping")
    _need(isinstance(data.get("rounds", []), list), p, "'rounds' is not a list")
    for n, ev in enumerate(data["events"]):
        _need(isinstance(ev, dict) and ev.get("op") in _EVENT_OPS, p, f"event {n} is not valid")
        if ev["op"] == "prompt":
            _need(isinstance(ev.get("prompt"), dict), p, f"event {n} has no prompt")
            try:
                prompt_from_dict(ev["prompt"])
            except PromptError as exc:
                raise InputFileError(f"{p}: malformed interaction log: event {n}: {exc}") from None
        if ev["op"] == "initial_mask":
            _need(isinstance(ev.get("source"), str), p, f"event {n} (initial_mask) has no source")
            _need(isinstance(ev.get("mask"), dict), p, f"event {n} (initial_mask) has no mask")
            try:
                decode_mask(ev["mask"])
            except InputFileError as exc:
                raise InputFileError(f"{p}: event {n}: {exc}") from None
        if ev["op"] == "set_volume":
            meta = ev.get("meta")
            _need(isinstance(meta, dict), p, f"event {n} (set_volume) has no meta")
            _need(isinstance(meta.get("shape_ijk"), list), p, "set_volume meta has no shape_ijk")
            _need(isinstance(meta.get("affine"), list), p, "set_volume meta has no affine")
    _need(data["events"][0]["op"] == "set_volume", p, "the first event must be set_volume")
    try:
        SessionConfig.from_dict(data["session_config"])
    except (ConfigError, TypeError) as exc:
        raise InputFileError(f"{p}: malformed interaction log: session_config: {exc}") from None
    return data


def _upgrade_v1(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A v1 log (flat session config mixing engine options) in the v2 layout."""
    from ichseg.interaction.hpinet_engine import HPINetEngineConfig

    flat = {**LEGACY_ENGINE_DEFAULTS, **_LEGACY_SESSION_DEFAULTS, **data["session_config"]}
    engine_fields = {f.name for f in fields(HPINetEngineConfig)}
    session_fields = {f.name for f in fields(SessionConfig)}
    unknown = sorted(set(flat) - engine_fields - session_fields)
    _need(not unknown, path, f"unknown session option(s) {', '.join(unknown)}")
    model = dict(data["model"])
    name = model.pop("name", "hpinet")
    out = {k: v for k, v in data.items() if k not in ("model", "session_config")}
    out["version"] = _BASE_LOG_VERSION
    out["engine"] = {
        "name": name,
        "config": {k: v for k, v in flat.items() if k in engine_fields},
        "model": {"architecture": name, **model},
    }
    out["session_config"] = {k: v for k, v in flat.items() if k in session_fields}
    logged = next((e for e in data["events"] if e.get("op") == "set_volume"), {})
    source = (logged.get("meta") or {}).get("source") if isinstance(logged, dict) else None
    out.setdefault("scan", {"source": source})
    return out


def session_config_from_log(data: Mapping[str, Any]) -> SessionConfig:
    """The :class:`SessionConfig` recorded in a (read, upgraded) log."""
    return SessionConfig.from_dict(data["session_config"])


def replay_events(session: InteractiveSession, log: Mapping[str, Any], volume: Volume) -> None:
    """Re-apply a log's events to ``session`` on ``volume`` (must match the logged geometry)."""
    session.set_volume(volume)
    logged = next((e for e in log["events"] if e["op"] == "set_volume"), None)
    if logged is not None:
        want = logged["meta"]
        if list(volume.shape) != list(want["shape_ijk"]) or not np.allclose(
            volume.affine, np.asarray(want["affine"], dtype=float), atol=1e-3
        ):
            raise PromptError(
                "the scan's geometry differs from the one in the log (shape "
                f"{list(volume.shape)} vs {want['shape_ijk']}); replay needs the same scan"
            )
    for ev in log["events"]:
        op = ev["op"]
        if op == "set_volume":
            continue
        if op == "initial_mask":
            arr = decode_mask(ev["mask"])
            if arr.shape != tuple(volume.shape):
                raise PromptError(
                    f"the log's initial mask has shape {list(arr.shape)}, the scan "
                    f"{list(volume.shape)}; replay needs the same scan"
                )
            session.start_from_mask(volume.as_label(arr), ev["source"])
        elif op == "prompt":
            session.add_prompt(prompt_from_dict(ev["prompt"]))
        elif op == "run_round":
            session.run_round()
        elif op in ("undo", "discard_pending"):
            session.undo()
        elif op == "redo":
            session.redo()
        else:
            raise InputFileError(f"unknown event {op!r} in interaction log")


def resume_session(
    log_path: str | Path,
    volume: Volume,
    *,
    autosave: bool = True,
    weights: str | None = None,
    device: str = "cpu",
) -> InteractiveSession:
    """Rebuild a session from its (auto)saved log on ``volume``: the same engine and options,
    every event replayed; with ``autosave`` it keeps saving to ``log_path``."""
    from ichseg.interaction.engine import engine_from_log

    data = read_log(log_path)
    engine = engine_from_log(data["engine"], weights=weights, device=device)
    session = InteractiveSession(engine, session_config_from_log(data))
    replay_events(session, data, volume)
    if autosave:
        session.autosave = Path(log_path)
        session.save_log(log_path)
    return session
