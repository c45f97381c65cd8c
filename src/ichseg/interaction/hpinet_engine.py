"""ICH-HPINet as an interactive engine (the paper's Algorithm 1, with the fixes of the notes §8).

One round (:meth:`HPINetEngine.predict`):

1. all prompts so far (they accumulate across rounds) are rasterised into 2-channel hint maps on
   the canonical grid and mapped to the network grid (max-pooled, a stroke always survives);
2. the VIM segments the whole scan from {image, hints, previous-round probability}; the previous
   round is fed (``feed_previous``, the paper's behaviour) unless switched off;
3. the SIM segments every slice that received new prompts; with ``stroke_radius_mm > 0`` (not in
   the paper: the ``hpinet_refined`` method) the pixels within that distance of a stroke are then
   re-decided by a 2D random walker seeded by the strokes and the SIM's answer elsewhere; each
   slice becomes an interaction memory frame (key cached per scan, value from that mask);
4. from every newly interacted slice, propagation runs outward in both directions, slice by
   slice: the memory is the interaction frames plus the adjacent already-predicted slice, the FCM
   supplies that slice's 3D features, the MPFFM decodes the mask. All chains advance in lockstep
   and are batched. A chain stops at the scan's end, at another interacted slice, after
   ``stop_after_empty`` consecutive empty slices, or after ``max_distance`` slices;
5. slices reached by several chains average them; slices not reached keep the previous round's
   probability.

The network works on its own grid (canonical LPS, in-plane padded to a square and resized to the
preset's slice size, :class:`~ichseg.preprocess.model_input.ModelGrid`); the engine returns the
probability on the canonical grid. Scans outside the training geometry are brought to its scale
first (``min_fov_mm``, ``max_fov_mm``, ``min_slice_mm``: a narrow field of view is padded with
air, a wide one cropped towards the training width without cutting into the head, thin slices
are averaged into ~5 mm slabs, prompts go to the slab holding their slice).

A session that starts from an existing mask (round 0, e.g. an automatic model's result) calls
:meth:`HPINetEngine.start_state`: the mask, mapped to the network grid, becomes the state's
previous-round probability, so round 1 is a correction round (the mask is fed to VIM and SIM
like any previous round, and slices no chain reaches keep it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ichseg.errors import ConfigError, PromptError
from ichseg.interaction.engine import EngineOutput
from ichseg.interaction.hints import rasterize_prompt_slices
from ichseg.interaction.prompts import Prompt
from ichseg.io.volume import Volume
from ichseg.options import config_from_options
from ichseg.preprocess.model_input import ModelGrid, PhysicalScale, prepare_image

PRECISIONS = ("auto", "float32", "bfloat16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bfloat16`` where the device computes it natively, else ``float32``."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        try:
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            native = False
        return "bfloat16" if native else "float32"
    return "float32"


@dataclass(frozen=True)
class HPINetEngineConfig:
    """Inference settings and stop rules of the ICH-HPINet engine."""

    window: str = "brain"  #: HU window applied before the network
    assume_stored_window_ok: bool = False  #: accept already-windowed input with unknown window
    threshold: float = 0.5  #: probability -> mask for the chains' "empty slice" rule
    stop_after_empty: int = 1  #: stop a chain after this many consecutive empty slices
    max_distance: int | None = None  #: stop a chain this many slices from its start
    #: in correction rounds (every round after the first) stop chains this many slices from the
    #: corrected slice; slices further away keep the previous round (None: as ``max_distance``)
    correction_max_distance: int | None = None
    stop_at_interacted: bool = True  #: stop a chain at a slice the user prompted
    max_interaction_frames: int | None = 8  #: memory frames kept (most recent interactions)
    #: final = (1-w)*propagated + w*VIM (0 = paper: propagated only; 1 = the VIM's 3D output,
    #: the slice propagation is skipped)
    vim_weight: float = 0.0
    keep_unreached: bool = True  #: unreached slices keep the previous round's probability
    previous_as_mask: bool = False  #: feed the previous round as a 0/1 mask
    #: give the networks the previous round's result (the paper's Algorithm 1)
    feed_previous: bool = True
    #: give only the SIM the previous round on the corrected slices (the VIM gets zeros)
    feed_previous_sim: bool = False
    #: re-decide the prompted slices' pixels within this many mm of a stroke with a 2D random
    #: walker (0 = off, the network alone; :mod:`ichseg.interaction.stroke_refine`)
    stroke_radius_mm: float = 0.0
    stroke_beta: float = 600.0  #: random-walker edge sensitivity of the stroke refinement
    key_batch: int = 16  #: slices per key-encoder batch in encode
    #: physical-scale rules of the network grid (:class:`~ichseg.preprocess.model_input.PhysicalScale`,
    #: not in the paper): fields of view narrower than ``min_fov_mm`` are padded with air to it,
    #: slices thinner than ``min_slice_mm`` are averaged into slabs of about ``target_slice_mm``.
    #: Scans inside those ranges are untouched; ``None`` (the engine's default) switches a rule
    #: off; the ``hpinet`` methods set them from the training geometry
    #: (:data:`ichseg.interaction.engine.TRAINED_GEOMETRY`).
    min_fov_mm: float | None = None
    min_slice_mm: float | None = None
    target_slice_mm: float = 5.0
    #: fields of view wider than this are centre-cropped towards it, never into the head
    max_fov_mm: float | None = None
    #: arithmetic of the network: ``float32``, ``bfloat16`` (autocast; about 1.2x faster rounds
    #: on CPUs with native bf16, see ``benchmarks/interaction_latency.py``) or ``auto``
    #: (bfloat16 where the CPU or GPU supports it natively, else float32; the engine records
    #: which one it used)
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.stroke_radius_mm < 0:
            raise ConfigError(
                f"stroke_radius_mm must be >= 0 (0 = off), got {self.stroke_radius_mm}"
            )
        if self.stroke_beta <= 0:
            raise ConfigError(f"stroke_beta must be > 0, got {self.stroke_beta}")
        if self.stop_after_empty < 1:
            raise ConfigError(f"stop_after_empty must be >= 1, got {self.stop_after_empty}")
        for name in ("max_distance", "correction_max_distance", "max_interaction_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 or None, got {value}")
        if not 0.0 <= self.vim_weight <= 1.0:
            raise ConfigError(f"vim_weight must be in [0, 1], got {self.vim_weight}")
        if self.key_batch < 1:
            raise ConfigError(f"key_batch must be >= 1, got {self.key_batch}")
        try:
            self.physical_scale()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def physical_scale(self) -> PhysicalScale:
        return PhysicalScale(
            min_fov_mm=self.min_fov_mm,
            min_slice_mm=self.min_slice_mm,
            target_slice_mm=self.target_slice_mm,
            max_fov_mm=self.max_fov_mm,
        )

    @classmethod
    def from_options(cls, options: dict[str, Any], what: str = "hpinet") -> HPINetEngineConfig:
        """From a dict, naming unknown options (a typed error, not a TypeError)."""
        return config_from_options(cls, options, what)


@dataclass
class HPINetState:
    """Engine state after a round (kept per round by the session for undo/redo)."""

    prob: np.ndarray  #: (Z, S, S) float32 on the network grid
    memory: dict[int, tuple[torch.Tensor, torch.Tensor]]  #: slice -> (key, value)
    interacted: tuple[int, ...]  #: in order of interaction


class HPINetEngine:
    """ICH-HPINet behind the :class:`~ichseg.interaction.engine.Engine` protocol."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: HPINetEngineConfig | None = None,
        *,
        name: str = "hpinet",
        device: str | torch.device = "cpu",
        weights_path: str | Path | None = None,
        weights_sha256: str | None = None,
    ) -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        config = config or HPINetEngineConfig()
        # the precision actually used goes into the config (and so into every log)
        self.config = replace(config, precision=resolve_precision(config.precision, self.device))
        self.name = name
        self.weights_path = Path(weights_path) if weights_path else None
        self._weights_sha256 = weights_sha256
        self.grid: ModelGrid | None = None

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=torch.bfloat16,
            enabled=self.config.precision == "bfloat16",
        )

    # ------------------------------------------------------------------ protocol
    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def model_info(self) -> dict[str, Any]:
        from ichseg.interaction.session import file_sha256

        info: dict[str, Any] = {"architecture": "hpinet"}
        cfg = getattr(self.model, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            info["config"] = cfg.to_dict()
        if self.weights_path is not None:
            info["weights"] = str(self.weights_path)
            if self._weights_sha256 is None and self.weights_path.exists():
                self._weights_sha256 = file_sha256(self.weights_path)
            if self._weights_sha256 is not None:
                info["weights_sha256"] = self._weights_sha256
        return info

    @torch.no_grad()
    def encode(self, canonical: Volume) -> None:
        """Window, map to the network grid, encode every slice's key once."""
        cfg = self.config
        slice_size = int(self.model.config.slice_size)
        image, grid = prepare_image(
            canonical,
            slice_size,
            cfg.window,
            assume_stored_window_ok=cfg.assume_stored_window_ok,
            scale=cfg.physical_scale(),
        )
        self.encode_prepared(image, grid)

    @torch.no_grad()
    def encode_prepared(self, image: np.ndarray, grid: ModelGrid) -> None:
        """Encode an image already on the network grid (``(Z, S, S)`` in [0, 1]) with its grid
        record (training runs sessions on prepared cases this way)."""
        cfg = self.config
        self.grid = grid
        self.image = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None]
        self.image = self.image.to(self.device)  # (1,1,Z,S,S)
        self.keys = None
        # memory keys for the slice propagation (not needed when the VIM's output is the answer)
        if not self._volume_only:
            z = image.shape[0]
            with self._autocast():
                parts = [
                    self.model.encode_key(self.image[0, :, i : i + cfg.key_batch].transpose(0, 1))
                    for i in range(0, z, cfg.key_batch)
                ]
            self.keys = _cat_keys(parts)

    def start_state(self, previous: np.ndarray) -> HPINetState:
        """State for a session whose round 0 is an existing mask: ``previous`` (canonical
        ``(Z, Y, X)`` probability or 0/1 mask) on the network grid (square padding, area
        resize, as the image), no memory frames, nothing interacted yet."""
        if self.grid is None:
            raise PromptError("no volume encoded: call encode() first")
        prev = np.asarray(previous, dtype=np.float32)
        if prev.shape != self.grid.canonical.zyx().shape:
            raise PromptError(
                f"initial mask of shape {prev.shape} does not fit the scan "
                f"{self.grid.canonical.zyx().shape}"
            )
        small = self.grid.canonical_to_model(prev, "area")
        prob = np.clip(np.asarray(small, np.float32), 0.0, 1.0)
        return HPINetState(np.ascontiguousarray(prob), {}, ())

    @torch.no_grad()
    def predict(
        self,
        prompts: Sequence[Prompt],
        new_prompts: Sequence[Prompt],
        previous: np.ndarray | None,
        state: HPINetState | None,
    ) -> EngineOutput:
        with self._autocast():
            return self._predict(prompts, new_prompts, state)

    def _predict(
        self,
        prompts: Sequence[Prompt],
        new_prompts: Sequence[Prompt],
        state: HPINetState | None,
    ) -> EngineOutput:
        if self.grid is None:
            raise PromptError("no volume encoded: call encode() first")
        cfg, model, grid = self.config, self.model, self.grid
        timings: dict[str, float] = {}
        zdim, s, _ = grid.model_shape
        if state is None:
            state = HPINetState(np.zeros(grid.model_shape, np.float32), {}, ())
        new_slices = sorted({grid.model_slice(p.z) for p in new_prompts})

        t = time.perf_counter()
        canon_shape = grid.canonical.zyx().shape
        hints = self._model_hints(prompts, canon_shape)
        new_hints = None
        if getattr(model.config, "new_prompt_channel", False):
            new_hints = self._model_hints(new_prompts, canon_shape)
        prev_np = state.prob
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
            vim_small, feats = model.run_vim(self.image, hints, prev, new_hints)
            vim_prob = model.vim_to_slices(vim_small, (s, s))[0, 0]  # (Z,S,S)
            timings["vim"] = time.perf_counter() - t

        memory = dict(state.memory)
        interacted = list(state.interacted)
        for z in new_slices:
            if z in interacted:
                interacted.remove(z)
            interacted.append(z)

        if self._volume_only:
            if cfg.stroke_radius_mm > 0 and interacted:
                # the stroke refinement on every prompted slice (the VIM answers all slices anew)
                zs = torch.tensor(sorted(interacted), device=self.device)
                vim_prob = vim_prob.clone()
                vim_prob[zs] = self._refine_with_strokes(
                    vim_prob[zs][:, None], self.image[0, 0][zs], hints[0][:, zs]
                )[:, 0].to(vim_prob.dtype)
            new_prob = vim_prob.float().cpu().numpy().astype(np.float32)
            propagated = list(range(zdim))
        else:
            max_distance = cfg.max_distance
            if state.interacted and cfg.correction_max_distance is not None:
                max_distance = cfg.correction_max_distance
            new_prob, propagated = self._propagate(
                new_slices,
                interacted,
                memory,
                hints,
                prev_sim,
                feats,
                timings,
                state.prob,
                max_distance,
                new_hints,
            )
            if vim_prob is not None and cfg.vim_weight > 0:
                v = vim_prob.float().cpu().numpy()
                new_prob = (1 - cfg.vim_weight) * new_prob + cfg.vim_weight * v
        new_prob = np.clip(new_prob, 0.0, 1.0).astype(np.float32)

        t = time.perf_counter()
        canon = grid.to_canonical_zyx(new_prob, order="linear")  # (Z, Y, X) float32
        timings["map_back"] = time.perf_counter() - t
        return EngineOutput(
            probability=canon.astype(np.float32, copy=False),
            state=HPINetState(new_prob, memory, tuple(interacted)),
            propagated_slices=sorted({z for j in propagated for z in grid.canonical_slices(j)}),
            timings=timings,
        )

    # ------------------------------------------------------------------ internals
    @property
    def _volume_only(self) -> bool:
        """The VIM's 3D output is the answer: a Volume-Pro model, a model without memory
        propagation, or ``vim_weight = 1`` (the propagation would be unused)."""
        model = self.model
        return (
            model.config.propagation == "volume"
            or model.mpffm is None
            or (model.vim is not None and self.config.vim_weight >= 1.0)
        )

    def _model_hints(self, prompts: Sequence[Prompt], canon_shape: tuple[int, ...]) -> torch.Tensor:
        """Hint maps ``(1, 2, Z, S, S)`` of ``prompts`` on the network grid, drawn and shrunk on
        the prompted slices only."""
        zs, on_slices = rasterize_prompt_slices(prompts, canon_shape)
        hints = self.grid.canonical_slice_hints_to_model(zs, on_slices)
        return torch.from_numpy(hints)[None].to(self.device)

    def _refine_with_strokes(
        self, prob: torch.Tensor, images: torch.Tensor, hints: torch.Tensor
    ) -> torch.Tensor:
        """:func:`refine_slice` on each prompted slice: ``prob`` (N,1,S,S), ``images`` (N,S,S),
        ``hints`` (2,N,S,S) in the network grid."""
        from ichseg.interaction.stroke_refine import refine_slice

        cfg = self.config
        radius = cfg.stroke_radius_mm / min(self.grid.spacing_zyx[1:])
        p = prob[:, 0].float().cpu().numpy()
        img = images.float().cpu().numpy()
        h = hints.float().cpu().numpy() > 0
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
        new_hints: torch.Tensor | None = None,
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
            image[idx][:, None],
            hints[0][:, idx].transpose(0, 1),
            prev[0, 0][idx][:, None],
            None if new_hints is None else new_hints[0][:, idx].transpose(0, 1),
        )
        sim_prob = torch.sigmoid(sim_logits)  # (N,1,S,S)
        if cfg.stroke_radius_mm > 0:
            sim_prob = self._refine_with_strokes(sim_prob, image[idx], hints[0][:, idx])
        keys_new = self.keys.index(new_slices)
        values_new = model.encode_value(image[idx][:, None], sim_prob, keys_new)
        for n, z in enumerate(new_slices):
            memory[z] = (keys_new.key[n], values_new[n])
            out_sum[z] += sim_prob[n, 0].float().cpu().numpy()
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
            prob_np = prob[:, 0].float().cpu().numpy()
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


def _cat_keys(parts: list[Any]) -> Any:
    from ichseg.models.mpffm import KeyFeatures

    return KeyFeatures(
        *(
            torch.cat([getattr(p, f) for p in parts])
            for f in ("key", "query_value", "f16", "f8", "f4")
        )
    )
