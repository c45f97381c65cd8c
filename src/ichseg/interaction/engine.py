"""The engine protocol: what an interactive method must do, and nothing about sessions.

An engine (segment-anything's predictor, nnInteractive's session core, Cutie's inference core)
does the heavy per-scan work once in :meth:`Engine.encode` and then answers prompts cheaply in
:meth:`Engine.predict`. It never sees the scan's original orientation, the undo history, logs or
files: :class:`~ichseg.interaction.session.InteractiveSession` owns those and is the only thing
evaluation, the CLI and the app talk to.

Everything an engine receives and returns lives on the **canonical** ``(Z, Y, X)`` grid of the
scan (LPS, see :mod:`ichseg.io.volume`): prompts are voxel indices of that grid and the returned
probability has its shape. Engine state that depends on the interaction history (e.g. the
network's memory frames) is returned with each prediction and handed back on the next call, so
the session can undo and redo by keeping the states of its rounds.

Engines are built by name from :func:`ichseg.interaction.engines.build_engine`; a log records
``name`` and ``config_dict()`` so a replay rebuilds the same engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ichseg.interaction.prompts import Prompt
from ichseg.io.volume import Volume


@dataclass
class EngineOutput:
    """What one :meth:`Engine.predict` call produced (canonical ``(Z, Y, X)`` arrays)."""

    probability: np.ndarray  #: float32 hemorrhage probability in [0, 1]
    state: Any = None  #: engine-private, passed back as ``state`` on the next call
    propagated_slices: list[int] = field(default_factory=list)  #: slices the round recomputed
    timings: dict[str, float] = field(default_factory=dict)  #: seconds per stage


@runtime_checkable
class Engine(Protocol):
    """An interactive segmentation method (see the module docstring)."""

    #: registry name (``hpinet``, ``hpinet_refined``, ``random_walker``, ...)
    name: str

    def config_dict(self) -> dict[str, Any]:
        """Plain-JSON settings that rebuild this engine with :func:`build_engine`."""
        ...

    def model_info(self) -> dict[str, Any]:
        """Facts about learned parts for the log (weights path and sha256; empty if none)."""
        ...

    def encode(self, canonical: Volume) -> None:
        """Heavy per-scan work, once: ``canonical`` is the scan reoriented to LPS."""
        ...

    def predict(
        self,
        prompts: Sequence[Prompt],
        new_prompts: Sequence[Prompt],
        previous: np.ndarray | None,
        state: Any,
    ) -> EngineOutput:
        """Probability for all ``prompts`` so far (``new_prompts`` are this round's, also in
        ``prompts``); ``previous`` is the last round's canonical probability (``None`` in the
        first round or after undoing to the start) and ``state`` the last round's engine state.

        Optional extra method: ``start_state(previous) -> state`` for sessions that start from
        an existing mask (:meth:`~ichseg.interaction.session.InteractiveSession.start_from_mask`,
        e.g. an automatic model's result as round 0): called once with that mask's canonical
        ``(Z, Y, X)`` array, its return value is the ``state`` of round 1. Both built-in engines
        have it; an engine without it gets ``state=None`` and the mask only as ``previous``."""
        ...


# ------------------------------------------------------------------------------- building engines
#: Methods by name: (engine kind, default options). ``hpinet`` is the network alone (previous
#: round fed as in the paper's Algorithm 1, no classical part; its output mixes the VIM's 3D
#: answer into the slice propagation, :data:`SELECTED_VIM_WEIGHT`); ``hpinet_paper`` is the
#: same network with the paper's output (slice propagation only); ``hpinet_refined`` is that
#: paper output plus the 2D random-walker refinement near the strokes; ``random_walker`` is the
#: training-free baseline.
#: Both ``hpinet`` methods bring scans outside the shipped weights' training geometry to its
#: scale (:class:`~ichseg.preprocess.model_input.PhysicalScale`): the training scans span
#: 222-255 mm in-plane and 4.8-6 mm slices, randomised to 2.5-7 mm (``MODEL_CARD.md``), so a
#: narrower field of view is padded with air to 220 mm, a field of view wider than 260 mm is
#: cropped towards 260 mm as far as the head allows (session 11) and slices under 2.5 mm are
#: averaged into ~5 mm slabs; other scans are untouched. A preprocessing rule, not a refinement
#: of the output.
TRAINED_GEOMETRY: dict[str, Any] = {
    "min_fov_mm": 220.0,
    "max_fov_mm": 260.0,
    "min_slice_mm": 2.5,
    "target_slice_mm": 5.0,
}
#: The network's output ``(1 - w) * slice propagation + w * VIM`` of the shipped weights, ``w``
#: chosen on validation sessions of the training data (fold 0 inner validation, clean and
#: domain-shifted, never the test scans) by ``benchmarks/select_vim_weight.py``'s pre-declared
#: rule (session 12, ``benchmarks/results/vim_weight_selection/``). The paper's output is
#: ``w = 0`` (method ``hpinet_paper``).
SELECTED_VIM_WEIGHT = 0.75
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "hpinet": ("hpinet", {**TRAINED_GEOMETRY, "vim_weight": SELECTED_VIM_WEIGHT}),
    # the same selection with the stroke refinement kept the propagated output (w = 0:
    # ``benchmarks/results/vim_weight_selection_refined/``)
    "hpinet_refined": ("hpinet", {**TRAINED_GEOMETRY, "stroke_radius_mm": 10.0}),
    "hpinet_paper": ("hpinet", {**TRAINED_GEOMETRY}),
    "random_walker": ("random_walker", {}),
}
_ALIASES = {"rw": "random_walker"}
#: the method the product uses when the user names none (CLI, demo, app)
DEFAULT_METHOD = "hpinet_refined"


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec ``[LABEL=]NAME[:WEIGHTS][,KEY=VALUE...]``."""

    label: str  #: name shown in tables
    name: str  #: a key of :data:`METHODS`
    weights: str | None  #: checkpoint path (learned engines only)
    options: dict[str, Any]  #: engine option overrides (on top of the method's defaults)

    @property
    def kind(self) -> str:
        return METHODS[self.name][0]

    def engine_options(self) -> dict[str, Any]:
        return {**METHODS[self.name][1], **self.options}


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_method_spec(spec: str) -> MethodSpec:
    """Parse ``hpinet``, ``hpinet_refined:runs/f0/best.pt,stroke_radius_mm=6``,
    ``rw-wide=random_walker:margin_mm=40`` ... (the optional ``LABEL=`` names the result)."""
    from ichseg.errors import ConfigError

    text = str(spec).strip()
    if not text:
        raise ConfigError("empty method spec")
    label = None
    head = text.split(":", 1)[0]
    if "=" in head:
        label, text = (s.strip() for s in text.split("=", 1))
        if not label:
            raise ConfigError(f"method {spec!r}: empty label before '='")
    name, _, arg = text.partition(":")
    name = name.strip().lower().replace("-", "_")
    name = _ALIASES.get(name, name)
    if name not in METHODS:
        raise ConfigError(
            f"unknown method {spec!r}: use one of {', '.join(METHODS)} "
            "(e.g. hpinet, hpinet:WEIGHTS.pt, random_walker:beta=300)"
        )
    items = [a.strip() for a in arg.split(",") if a.strip()]
    paths = [a for a in items if "=" not in a]
    if len(paths) > 1:
        raise ConfigError(f"method {spec!r}: more than one weights path")
    if paths and METHODS[name][0] != "hpinet":
        raise ConfigError(f"method {spec!r}: {name} takes no weights file")
    options: dict[str, Any] = {}
    for item in items:
        if "=" in item:
            key, value = item.split("=", 1)
            options[key.strip()] = _parse_value(value.strip())
    return MethodSpec(label or name, name, paths[0] if paths else None, options)


class EngineFactory:
    """Makes fresh engines of one method; a learned model is loaded once and shared."""

    def __init__(
        self,
        spec: str | MethodSpec,
        *,
        weights: str | None = None,
        device: str = "cpu",
        **options: Any,
    ) -> None:
        self.spec = spec if isinstance(spec, MethodSpec) else parse_method_spec(spec)
        self.options = {**self.spec.engine_options(), **options}
        self.device = device
        self._model = None
        self.weights_path = None
        from ichseg.options import config_from_options

        if self.spec.kind == "random_walker":
            from ichseg.interaction.random_walker import RandomWalkerConfig

            self._config = config_from_options(RandomWalkerConfig, self.options, self.spec.label)
        else:
            from ichseg.interaction.hpinet_engine import HPINetEngineConfig

            self._config = HPINetEngineConfig.from_options(self.options, self.spec.label)
            self._load(weights or self.spec.weights)

    def _load(self, weights: str | None) -> None:
        from pathlib import Path

        from ichseg.errors import ConfigError

        try:
            from ichseg.models.pretrained import load_weights
        except ImportError:
            raise ConfigError(
                "this build has no shipped ICH-HPINet weights (ichseg.models.pretrained is "
                "missing); use --method hpinet:PATH/TO/weights.pt"
            ) from None

        model, path = load_weights(Path(weights) if weights else None)
        self._model = model.eval()
        self.weights_path = path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def threads_per_round(self) -> int:
        """CPU threads one round keeps busy: 1 for the random walker (scipy's sparse solver is
        single-threaded), torch's intra-op threads for a network engine."""
        if self.spec.kind == "random_walker":
            return 1
        import torch

        return max(1, torch.get_num_threads())

    def __call__(self) -> Engine:
        if self.spec.kind == "random_walker":
            from ichseg.interaction.random_walker import RandomWalkerEngine

            return RandomWalkerEngine(self._config)
        from ichseg.interaction.hpinet_engine import HPINetEngine

        return HPINetEngine(
            self._model,
            self._config,
            name=self.spec.name,
            device=self.device,
            weights_path=self.weights_path,
        )


def build_engine(
    spec: str = DEFAULT_METHOD, *, weights: str | None = None, device: str = "cpu", **options: Any
) -> Engine:
    """One engine from a method spec (see :func:`parse_method_spec`) plus option overrides."""
    return EngineFactory(spec, weights=weights, device=device, **options)()


def engine_from_log(engine: dict[str, Any], *, weights: str | None = None, device: str = "cpu"):
    """The engine a log recorded (``log["engine"]``): its method with exactly its options.

    ``weights`` overrides the recorded weights path (the caller checks the sha256)."""
    name = engine["name"]
    spec = MethodSpec(name, _ALIASES.get(name, name), None, {})
    if spec.name not in METHODS:
        from ichseg.errors import InputFileError

        raise InputFileError(f"the log's engine {name!r} is not known to this ichseg")
    recorded = (engine.get("model") or {}).get("weights")
    config = dict(engine.get("config") or {})
    return EngineFactory(spec, weights=weights or recorded, device=device, **config)()
