"""The interactive segmentation engine (ICH-HPINet Algorithm 1), with no GUI inside.

Usage (segment-anything-predictor style: heavy work once per volume, each round cheap)::

    session = InteractiveSession(model)
    session.set_volume(volume)                   # windowing + per-slice key encodings, cached
    session.add_scribble(z, [(y0, x0), (y1, x1)], positive=True)
    result = session.run_round()                 # 3D probability + mask, volume in mL
    session.undo(); session.redo()
    session.save_log("log.json")                 # replayable: replay_log() gives the same mask

Coordinates: prompts are voxel indices ``(z, y, x)`` of the **canonical** ``(Z, Y, X)`` grid of
the loaded scan (:attr:`InteractiveSession.grid_ref` holds its shape and affine; the canonical
grid is LPS, see :mod:`ichseg.io.volume`), i.e. what a viewer shows as axial slice ``z``.
Results are returned on the ORIGINAL voxel grid and affine of the scan.

One round (Algorithm 1, with the fixes of the reference notes §8):

1. all prompts so far (they accumulate across rounds) are rasterised into 2-channel hint maps;
2. the VIM segments the whole scan from {image, hints, previous-round probability} (every
   round, round 1 included) and yields the 3D features (the previous round is fed only with
   ``feed_previous=True``, off by default);
3. the SIM segments every slice that received new prompts; by default (``stroke_radius_mm``,
   not in the paper) the pixels within 10 mm of a stroke are then re-decided by a 2D random
   walker seeded by the strokes and the SIM's answer elsewhere, so a correction moves the
   boundary to the nearest image edge instead of fixing only the painted pixels; each slice
   becomes an interaction memory frame (key cached per volume, value from that mask);
4. from every newly interacted slice, propagation runs outward in both directions, slice by
   slice: the memory is all interaction frames plus the adjacent already-predicted slice, the
   FCM supplies that slice's 3D features, the MPFFM decodes the mask. All chains advance in
   lockstep and are batched. A chain stops at the scan's end, at another interacted slice,
   after ``stop_after_empty`` consecutive empty slices, or after ``max_distance`` slices;
5. slices reached by several chains average them; slices not reached keep the previous
   round's probability (explicit stop rules in :class:`SessionConfig`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ichseg.errors import ConfigError, InputFileError, PromptError
from ichseg.interaction.hints import rasterize_prompts
from ichseg.interaction.prompts import (
    Click,
    GridRef,
    Prompt,
    Scribble,
    prompt_from_dict,
    validate,
)
from ichseg.io.volume import Intensity, IntensityKind, Volume
from ichseg.preprocess.model_input import ModelGrid, prepare_image

LOG_FORMAT = "ichseg-interaction-log"
LOG_VERSION = 1


@dataclass(frozen=True)
class SessionConfig:
    """Inference and stop-rule settings of an interactive session."""

    window: str = "brain"  #: HU window applied before the network
    assume_stored_window_ok: bool = False  #: accept already-windowed input with unknown window
    threshold: float = 0.5  #: probability -> mask
    stop_after_empty: int = 1  #: stop a chain after this many consecutive empty slices
    max_distance: int | None = None  #: stop a chain this many slices from its start
    #: in correction rounds (every round after the first) stop chains this many slices from the
    #: corrected slice; slices further away keep the previous round (None: as ``max_distance``)
    correction_max_distance: int | None = None
    stop_at_interacted: bool = True  #: stop a chain at a slice the user prompted
    max_interaction_frames: int | None = 8  #: memory frames kept (most recent interactions)
    vim_weight: float = 0.0  #: final = (1-w)*propagated + w*VIM (0 = paper: propagated only)
    keep_unreached: bool = True  #: unreached slices keep the previous round's probability
    previous_as_mask: bool = False  #: feed the previous round as a 0/1 mask (as in training)
    #: give the networks the previous round's result (the paper's Algorithm 1). Off by default:
    #: the weights grow any previous mask they are given; with the step-2850 weights the mean Dice
    #: on the held-out synthetic scans after 8 rounds was 0.761 without, 0.674 with it
    #: (benchmarks/results/plateau.md). Interaction memory is kept either way.
    feed_previous: bool = False
    #: give only the SIM the previous round on the corrected slices (the VIM gets zeros)
    feed_previous_sim: bool = False
    #: re-decide the prompted slices' pixels within this many mm of a stroke with a 2D random
    #: walker seeded by the strokes and the network's answer elsewhere (0 = off;
    #: :mod:`ichseg.interaction.stroke_refine`). 10 mm was chosen on 23 synthetic validation
    #: scans (seed 777, never used for training or testing): benchmarks/results/plateau.md §7
    stroke_radius_mm: float = 10.0
    stroke_beta: float = 600.0  #: random-walker edge sensitivity of the stroke refinement
    #: prompted voxels are hemorrhage (+) / background (-) in the result
    enforce_prompts: bool = True
    click_radius: float = 2.0  #: click disc radius in canonical pixels
    scribble_width: float = 2.0  #: stroke width in canonical pixels
    key_batch: int = 16  #: slices per key-encoder batch in set_volume

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"SessionConfig: threshold must be in (0, 1), got {self.threshold}")
        if self.stroke_radius_mm < 0:
            raise ConfigError(
                f"SessionConfig: stroke_radius_mm must be >= 0 (0 = off), got {self.stroke_radius_mm}"
            )
        if self.stroke_beta <= 0:
            raise ConfigError(f"SessionConfig: stroke_beta must be > 0, got {self.stroke_beta}")
        for name in ("max_distance", "correction_max_distance"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"SessionConfig: {name} must be >= 1 or None, got {value}")


#: Values of options added after the first release, for logs that do not record them (so an old
#: log replays exactly as it was made).
LEGACY_SESSION_DEFAULTS: dict[str, Any] = {
    "previous_as_mask": False,
    "feed_previous": True,
    "enforce_prompts": False,
    "correction_max_distance": None,
    "feed_previous_sim": False,
    "stroke_radius_mm": 0.0,
    "stroke_beta": 600.0,
}


def session_config_from_log(data: dict[str, Any]) -> SessionConfig:
    """The :class:`SessionConfig` recorded in a log (legacy values for options it predates)."""
    return SessionConfig(**{**LEGACY_SESSION_DEFAULTS, **data})


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


@dataclass
class _State:
    prompts: tuple[Prompt, ...]
    prob: np.ndarray  # (Z, S, S) float32 on the network grid
    memory: dict[int, tuple[torch.Tensor, torch.Tensor]]  # slice -> (key, value)
    interacted: tuple[int, ...]  # in order of interaction
    result: RoundResult | None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class InteractiveSession:
    """Stateful interactive segmentation of one scan at a time (see module docstring)."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: SessionConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        weights_path: str | Path | None = None,
    ) -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.config = config or SessionConfig()
        self.weights_path = Path(weights_path) if weights_path else None
        self._volume: Volume | None = None
        self._events: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ volume
    @torch.no_grad()
    def set_volume(self, volume: Volume) -> None:
        """Load a scan: window, map to the network grid, encode every slice's key once."""
        t0 = time.perf_counter()
        cfg = self.config
        slice_size = int(self.model.config.slice_size)
        image, grid = prepare_image(
            volume, slice_size, cfg.window, assume_stored_window_ok=cfg.assume_stored_window_ok
        )
        self._volume = volume
        self.grid: ModelGrid = grid
        self.grid_ref = GridRef.from_volume(grid.canonical)
        self.image = torch.from_numpy(image)[None, None].to(self.device)  # (1,1,Z,S,S)
        self.keys = None
        if self.model.mpffm is not None:
            z = image.shape[0]
            parts = [
                self.model.encode_key(self.image[0, :, i : i + cfg.key_batch].transpose(0, 1))
                for i in range(0, z, cfg.key_batch)
            ]
            self.keys = _cat_keys(parts)
        empty = np.zeros(grid.model_shape, np.float32)
        self._states: list[_State] = [_State((), empty, {}, (), None)]
        self._pointer = 0
        self._pending: list[Prompt] = []
        self._events = [{"op": "set_volume", "meta": self._volume_meta()}]
        self.set_volume_seconds = time.perf_counter() - t0

    def _volume_meta(self) -> dict[str, Any]:
        v = self._require_volume()
        return {
            "source": v.meta.get("source"),
            "shape_ijk": list(v.shape),
            "affine": np.asarray(v.affine).tolist(),
            "canonical": self.grid_ref.to_dict(),
            "model_shape_zyx": list(self.grid.model_shape),
        }

    def _require_volume(self) -> Volume:
        if self._volume is None:
            raise PromptError("no volume loaded: call set_volume() first")
        return self._volume

    @property
    def state(self) -> _State:
        return self._states[self._pointer]

    @property
    def round_index(self) -> int:
        """Number of rounds in the current (undo-aware) history."""
        return self._pointer

    # ------------------------------------------------------------------ prompts
    def add_prompt(self, prompt: Prompt) -> None:
        """Queue a :class:`Click` or :class:`Scribble` (canonical ``(z, y, x)`` voxel indices)."""
        self._require_volume()
        if not isinstance(prompt, Click | Scribble):
            raise PromptError(f"expected a Click or Scribble, got {type(prompt).__name__}")
        validate(prompt, self.grid_ref)
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

    @property
    def prompts(self) -> tuple[Prompt, ...]:
        """All prompts in effect: those of the rounds so far plus pending ones."""
        return (*self.state.prompts, *self._pending)

    # ------------------------------------------------------------------ the round
    @torch.no_grad()
    def run_round(self) -> RoundResult:
        """Run Algorithm 1 once with all prompts so far; the new prompts define the new slices."""
        self._require_volume()
        if not self._pending:
            raise PromptError("no new prompts since the last round: add a click or scribble first")
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        cfg, model = self.config, self.model
        prev_state = self.state
        new_slices = sorted({p.z for p in self._pending})
        prompts = (*prev_state.prompts, *self._pending)
        zdim, s, _ = self.grid.model_shape

        t = time.perf_counter()
        canon_shape = self.grid.canonical.zyx().shape
        hints_canon = rasterize_prompts(prompts, canon_shape)
        hints = torch.from_numpy(self.grid.canonical_hints_to_model(hints_canon))[None]
        hints = hints.to(self.device)
        prev_np = prev_state.prob
        if cfg.previous_as_mask:
            prev_np = (prev_np >= cfg.threshold).astype(np.float32)
        prev_sim = torch.from_numpy(prev_np)[None, None].to(self.device)
        if not cfg.feed_previous:
            prev_np = np.zeros_like(prev_np)
        prev = torch.from_numpy(prev_np)[None, None].to(self.device)
        if not (cfg.feed_previous or cfg.feed_previous_sim):
            prev_sim = prev
        timings["hints"] = time.perf_counter() - t

        vim_prob = None
        feats = None
        if model.vim is not None:
            t = time.perf_counter()
            vim_small, feats = model.run_vim(self.image, hints, prev)
            vim_prob = model.vim_to_slices(vim_small, (s, s))[0, 0]  # (Z,S,S)
            timings["vim"] = time.perf_counter() - t

        memory = dict(prev_state.memory)
        interacted = list(prev_state.interacted)
        for z in new_slices:
            if z in interacted:
                interacted.remove(z)
            interacted.append(z)

        if model.config.propagation == "volume" or model.mpffm is None:
            new_prob = vim_prob.cpu().numpy().astype(np.float32)
            propagated = list(range(zdim))
        else:
            max_distance = cfg.max_distance
            if prev_state.result is not None and cfg.correction_max_distance is not None:
                max_distance = cfg.correction_max_distance
            new_prob, propagated = self._propagate(
                new_slices,
                interacted,
                memory,
                hints,
                prev_sim,
                feats,
                timings,
                prev_state.prob,
                max_distance,
            )
            if vim_prob is not None and cfg.vim_weight > 0:
                v = vim_prob.cpu().numpy()
                new_prob = (1 - cfg.vim_weight) * new_prob + cfg.vim_weight * v
        new_prob = np.clip(new_prob, 0.0, 1.0).astype(np.float32)

        t = time.perf_counter()
        canon = self.grid.to_canonical_zyx(new_prob, order="linear")  # (Z, Y, X) float32
        if cfg.enforce_prompts:
            # the user's own strokes win over the network, exactly at the voxels they painted
            for z in sorted({p.z for p in prompts}):
                positive, negative = hints_canon[0, z] > 0, hints_canon[1, z] > 0
                canon[z][positive & ~negative] = 1.0
                canon[z][negative & ~positive] = 0.0
        prob_orig = self.grid.canonical_to_original(canon).astype(np.float32, copy=False)
        mask_orig = (prob_orig >= cfg.threshold).astype(np.uint8)
        vol = self._require_volume()
        volume_ml = float(mask_orig.sum()) * vol.voxel_volume_ml
        previous_ml = prev_state.result.volume_ml if prev_state.result else 0.0
        timings["map_back"] = time.perf_counter() - t
        result = RoundResult(
            index=self._pointer + 1,
            probability=prob_orig,
            mask=mask_orig,
            volume_ml=volume_ml,
            delta_ml=volume_ml - previous_ml,
            interacted_slices=new_slices,
            propagated_slices=propagated,
            seconds=time.perf_counter() - t0,
            timings=timings,
        )
        self._states = self._states[: self._pointer + 1]
        self._states.append(_State(prompts, new_prob, memory, tuple(interacted), result))
        self._pointer += 1
        self._pending = []
        self._events.append({"op": "run_round", "volume_ml": round(volume_ml, 4)})
        return result

    def _refine_with_strokes(
        self, prob: torch.Tensor, images: torch.Tensor, hints: torch.Tensor
    ) -> torch.Tensor:
        """:func:`refine_slice` on each prompted slice: ``prob`` (N,1,S,S), ``images`` (N,S,S),
        ``hints`` (2,N,S,S) in the network grid."""
        from ichseg.interaction.stroke_refine import refine_slice

        cfg = self.config
        radius = cfg.stroke_radius_mm / min(self.grid.spacing_zyx[1:])
        p = prob[:, 0].cpu().numpy()
        img = images.cpu().numpy()
        h = hints.cpu().numpy() > 0
        out = np.stack(
            [
                refine_slice(img[n], p[n], h[0, n], h[1, n], radius=radius, beta=cfg.stroke_beta)
                for n in range(p.shape[0])
            ]
        )
        return torch.from_numpy(out)[:, None].to(prob.device)

    def _propagate(
        self,
        new_slices: list[int],
        interacted: list[int],
        memory: dict[int, tuple[torch.Tensor, torch.Tensor]],
        hints: torch.Tensor,
        prev: torch.Tensor,
        feats: Any,
        timings: dict[str, float],
        previous_prob: np.ndarray,
        max_distance: int | None,
    ) -> tuple[np.ndarray, list[int]]:
        cfg, model = self.config, self.model
        zdim, s, _ = self.grid.model_shape
        image = self.image[0, 0]  # (Z,S,S)
        out_sum = np.zeros(self.grid.model_shape, np.float32)
        out_cnt = np.zeros(zdim, np.int32)

        # SIM on every newly prompted slice (batched) -> interaction memory frames.
        t = time.perf_counter()
        idx = torch.tensor(new_slices, device=self.device)
        sim_logits = model.run_sim(
            image[idx][:, None], hints[0][:, idx].transpose(0, 1), prev[0, 0][idx][:, None]
        )
        sim_prob = torch.sigmoid(sim_logits)  # (N,1,S,S)
        if cfg.stroke_radius_mm > 0:
            sim_prob = self._refine_with_strokes(sim_prob, image[idx], hints[0][:, idx])
        keys_new = self.keys.index(new_slices)
        values_new = model.encode_value(image[idx][:, None], sim_prob, keys_new)
        for n, z in enumerate(new_slices):
            memory[z] = (keys_new.key[n], values_new[n])
            out_sum[z] += sim_prob[n, 0].cpu().numpy()
            out_cnt[z] += 1
        timings["sim"] = time.perf_counter() - t

        frames = [z for z in interacted if z in memory]
        if cfg.max_interaction_frames:
            frames = frames[-cfg.max_interaction_frames :]
        mem_k = torch.stack([memory[z][0] for z in frames])  # (F, kd, h, w)
        mem_v = torch.stack([memory[z][1] for z in frames])  # (F, vd, h, w)
        stop_set = set(interacted) if cfg.stop_at_interacted else set()

        # Chains: (start slice, direction, current key/value of the last predicted slice).
        chains = []
        for n, z in enumerate(new_slices):
            for d in (-1, 1):
                chains.append(
                    {
                        "pos": z,
                        "dir": d,
                        "key": keys_new.key[n],
                        "value": values_new[n],
                        "empty": 0,
                        "dist": 0,
                    }
                )
        t = time.perf_counter()
        propagated: set[int] = set()
        while True:
            active = []
            for c in chains:
                nxt = c["pos"] + c["dir"]
                if not 0 <= nxt < zdim or nxt in stop_set:
                    continue
                if c["empty"] >= cfg.stop_after_empty:
                    continue
                if max_distance is not None and c["dist"] >= max_distance:
                    continue
                active.append(c)
            if not active:
                break
            targets = [c["pos"] + c["dir"] for c in active]
            query = self.keys.index(targets)
            if model.config.use_memory:
                keys = torch.stack(
                    [torch.cat([mem_k, c["key"][None]]) for c in active]
                )  # (C, F+1, kd, h, w)
                values = torch.stack([torch.cat([mem_v, c["value"][None]]) for c in active])
            else:
                keys = torch.stack([c["key"][None] for c in active])
                values = torch.stack([c["value"][None] for c in active])
            fcm = None
            if model.fcm is not None and feats is not None and model.fuses_features:
                fcm = model.fcm_features(feats, targets, (s, s))
            readout = model.read_memory(keys, values, query.key)
            logits = model.decode(readout, query, fcm, (s, s))
            prob = torch.sigmoid(logits)  # (C,1,S,S)
            tidx = torch.tensor(targets, device=self.device)
            values_next = model.encode_value(image[tidx][:, None], prob, query)
            prob_np = prob[:, 0].cpu().numpy()
            for n, c in enumerate(active):
                k = targets[n]
                out_sum[k] += prob_np[n]
                out_cnt[k] += 1
                propagated.add(k)
                c["pos"], c["key"], c["value"] = k, query.key[n], values_next[n]
                c["dist"] += 1
                c["empty"] = 0 if (prob_np[n] >= cfg.threshold).any() else c["empty"] + 1
        timings["propagation"] = time.perf_counter() - t

        reached = out_cnt > 0
        new_prob = np.where(
            reached[:, None, None],
            out_sum / np.maximum(out_cnt, 1)[:, None, None],
            previous_prob if cfg.keep_unreached else 0.0,
        ).astype(np.float32)
        return new_prob, sorted(propagated)

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
        return [s.result for s in self._states[1 : self._pointer + 1] if s.result is not None]

    def suggest_next_slice(self) -> int | None:
        """Canonical slice where the model is least sure (sum of p(1-p)), not yet prompted."""
        self._require_volume()
        p = self.state.prob
        unsure = (p * (1.0 - p)).reshape(p.shape[0], -1).sum(axis=1)
        for z in self.state.interacted:
            unsure[z] = -1.0
        if unsure.max() <= 1e-3:
            return None
        return int(np.argmax(unsure))

    # ------------------------------------------------------------------ undo / redo
    def undo(self) -> None:
        """Undo the last round (and drop prompts not yet run)."""
        if self._pending:
            self._pending = []
            self._events.append({"op": "discard_pending"})
            return
        if self._pointer == 0:
            raise PromptError("nothing to undo")
        self._pointer -= 1
        self._events.append({"op": "undo"})

    def redo(self) -> None:
        if self._pointer + 1 >= len(self._states):
            raise PromptError("nothing to redo")
        if self._pending:
            raise PromptError("cannot redo while new prompts are pending; run or undo them")
        self._pointer += 1
        self._events.append({"op": "redo"})

    @property
    def can_undo(self) -> bool:
        return bool(self._pending) or self._pointer > 0

    @property
    def can_redo(self) -> bool:
        return not self._pending and self._pointer + 1 < len(self._states)

    # ------------------------------------------------------------------ log
    def log(self) -> dict[str, Any]:
        """The replayable interaction log (plain JSON types)."""
        model_info: dict[str, Any] = {"name": "hpinet"}
        cfg = getattr(self.model, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            model_info["config"] = cfg.to_dict()
        if self.weights_path is not None:
            model_info["weights"] = str(self.weights_path)
            if self.weights_path.exists():
                model_info["weights_sha256"] = _sha256(self.weights_path)
        return {
            "format": LOG_FORMAT,
            "version": LOG_VERSION,
            "model": model_info,
            "session_config": asdict(self.config),
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
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps(self.log(), indent=1))
        tmp.replace(p)
        return p


def _cat_keys(parts: list[Any]) -> Any:
    from ichseg.models.mpffm import KeyFeatures

    return KeyFeatures(
        *(
            torch.cat([getattr(p, f) for p in parts])
            for f in ("key", "query_value", "f16", "f8", "f4")
        )
    )


def read_log(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{p}: cannot read interaction log ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != LOG_FORMAT:
        raise InputFileError(f"{p}: not an ichseg interaction log")
    if int(data.get("version", 0)) > LOG_VERSION:
        raise InputFileError(f"{p}: log version {data['version']} is newer than supported")
    return data


def replay_events(session: InteractiveSession, log: dict[str, Any], volume: Volume) -> None:
    """Re-apply a log's events to ``session`` on ``volume`` (must match the logged geometry)."""
    session.set_volume(volume)
    logged = next((e for e in log["events"] if e["op"] == "set_volume"), None)
    if logged is not None:
        want = logged["meta"]
        if list(volume.shape) != want["shape_ijk"] or not np.allclose(
            volume.affine, np.asarray(want["affine"]), atol=1e-3
        ):
            raise PromptError(
                "the scan's geometry differs from the one in the log (shape "
                f"{list(volume.shape)} vs {want['shape_ijk']}); replay needs the same scan"
            )
    for ev in log["events"]:
        op = ev["op"]
        if op == "set_volume":
            continue
        if op == "prompt":
            session.add_prompt(prompt_from_dict(ev["prompt"]))
        elif op == "run_round":
            session.run_round()
        elif op == "undo" or op == "discard_pending":
            session.undo()
        elif op == "redo":
            session.redo()
        else:
            raise InputFileError(f"unknown event {op!r} in interaction log")
