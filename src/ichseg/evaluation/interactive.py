"""Interactive evaluation runner: a simulated clinician drives a session for R rounds per case.

Protocol (our honest benchmark, reference notes §3 and peers F.5): the whole scan is given to the
method (no ground-truth crop); per case, a :class:`~ichseg.interaction.simulated_user.
SimulatedClinician` looks at the current prediction and the GT on the canonical ``(Z, Y, X)``
grid, picks one slice per round (round 1: the ``start`` rule; later: the slice with most wrong
voxels) and draws scribbles or clicks there; the prompts (canonical voxel indices) go to the
session, which runs one round. After every round all metrics of
:func:`~ichseg.evaluation.metrics.evaluate_case` are computed on the ORIGINAL voxel grid with the
original spacing (HD/HD95 in mm, NSD at 2 mm, volumes in mL, MAE on the probabilities); only the
authors' legacy row-HD, which depends on what an image row is, is computed on the canonical axial
slices.

Rules:

* **Determinism**: the clinician of case ``c`` is seeded with ``SeedSequence([seed, crc32(c)])``,
  so a case gets the same prompts whatever the case order or subset, and every method meets the
  same clinician (the prompts themselves differ once predictions differ).
* **Early stop**: when the clinician finds nothing wrong it stops; no further rows are written and
  the last row has ``clinician_stop = True``. Tables carry a case's last values to later rounds
  (:mod:`ichseg.evaluation.tables`).
* **Cases without hemorrhage** (empty GT): the protocol starts from a positive prompt on a
  hemorrhage slice, and with an empty GT the clinician has nothing to prompt (the empty initial
  prediction is already right). ``empty_gt="skip"`` (default) leaves them out (their ids are in
  ``df.attrs["skipped_empty"]``); ``empty_gt="evaluate"`` writes one round-1 row with the
  session's untouched (empty) prediction, no prompts and ``clinician_stop = True`` (Dice 1 by the
  both-empty convention), so they can be reported separately.

**Automatic, then corrected** (``initial=``): a callable ``initial(case_id, image) -> mask``
(e.g. masks written by ``ichseg predict``, or an automatic model run on the fly) gives each
case's round 0, which :meth:`~ichseg.interaction.session.InteractiveSession.start_from_mask`
makes the session's previous result; a row with ``round = 0`` ("automatic only", no prompts,
``reason = "initial_mask"``, ``seconds`` = the time ``initial`` took) is written first, and the
clinician then corrects that mask from round 1 on (round 1 still goes to its start slice unless
the mask is right there, then to the worst slice; later rounds to the worst slice). Result
frames with round-0 rows must be split before :mod:`ichseg.evaluation.tables` (rounds >= 1):
:func:`split_initial`.

``protocol="cvpr25"`` replaces the simulated clinician by the CVPR 2025 challenge user
(:class:`~ichseg.interaction.simulated_user.Cvpr25Clinician`, see
:mod:`ichseg.evaluation.cvpr25`): ``rounds`` is then the number of clicks (default 5), round 1
also gives the GT's largest-slice box unless ``cvpr25_box=False``, every round adds one click at
the centre of the largest 3D error component, and the rows get the extra
:data:`CVPR25_COLUMNS`. Everything else (metrics, early stop, determinism) is as above.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from ichseg.errors import ConfigError
from ichseg.evaluation.metrics import METRIC_KEYS, evaluate_case, legacy_slice_mean_row_hd
from ichseg.interaction.prompts import GridRef, Prompt
from ichseg.interaction.session import RoundResult
from ichseg.interaction.simulated_user import Cvpr25Clinician, SimulatedClinician
from ichseg.io.volume import CANONICAL_AXCODES, Volume, check_same_grid, to_canonical

#: Columns every results frame of :func:`evaluate_interactive` has, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "method",
    "fold",
    "case_id",
    "round",
    *METRIC_KEYS,
    "hd_undefined",
    "legacy_row_hd_slices",
    "legacy_row_hd_inf",
    "seconds",
    "set_volume_seconds",
    "mode",
    "start_rule",
    "clinician_seed",
    "slice",
    "reason",
    "n_prompts",
    "n_positive",
    "n_negative",
    "clinician_stop",
)
#: Extra columns of ``protocol="cvpr25"`` rows: whether the round gave the box, the click's
#: in-plane position (its slice is ``slice``) and the size of the error component it targets.
CVPR25_COLUMNS: tuple[str, ...] = ("box", "click_y", "click_x", "error_voxels")
PROTOCOLS: tuple[str, ...] = ("clinician", "cvpr25")  #: values of ``protocol``
DEFAULT_ROUNDS = {"clinician": 8, "cvpr25": 5}  #: rounds (clicks) when none are given


class SessionLike(Protocol):
    """What the runner needs from an interactive method (an InteractiveSession)."""

    grid_ref: GridRef

    def set_volume(self, volume: Volume) -> None: ...

    def add_prompts(self, prompts: Iterable[Prompt]) -> None: ...

    def run_round(self) -> RoundResult: ...

    def mask(self) -> Volume: ...

    def probability(self) -> Volume: ...

    def start_from_mask(self, mask: Volume, source: str = ...) -> RoundResult: ...


#: ``initial(case_id, image)``: the case's round-0 mask on the image's grid (see module docstring)
InitialMasks = Callable[[str, Volume], Volume]
MethodFactory = Callable[[], SessionLike]
CaseTriple = tuple[str, Volume, Volume]


@dataclass(frozen=True)
class ClinicianSpec:
    """How the simulated clinician behaves (see :class:`SimulatedClinician`)."""

    mode: Literal["scribble", "click"] = "scribble"
    start: Literal["random_band", "largest"] = "random_band"
    seed: int = 0
    band: tuple[float, float] = (0.1, 0.9)
    clicks_per_round: int = 1

    def __post_init__(self) -> None:
        self.make()  # validates every field with the clinician's own checks

    def case_seed(self, case_id: str) -> int:
        """The clinician seed of one case (independent of case order and method)."""
        crc = zlib.crc32(str(case_id).encode("utf-8"))
        return int(np.random.SeedSequence([int(self.seed) & 0xFFFFFFFF, crc]).generate_state(1)[0])

    def make(self, seed: int | None = None) -> SimulatedClinician:
        return SimulatedClinician(
            mode=self.mode,
            start=self.start,
            band=self.band,
            seed=self.seed if seed is None else seed,
            clicks_per_round=self.clicks_per_round,
        )


@dataclass(frozen=True)
class Cvpr25Spec:
    """How the CVPR 2025 protocol user behaves (see :class:`Cvpr25Clinician`)."""

    box: bool = True  #: give the largest-slice GT box with the first click
    click_radius: float = 2.0  #: click disc radius in canonical pixels
    ring_vox: int = 2  #: width of the box's background ring in pixels

    def __post_init__(self) -> None:
        self.make((1.0, 1.0, 1.0))  # validates the fields

    def make(self, spacing_zyx: tuple[float, float, float]) -> Cvpr25Clinician:
        return Cvpr25Clinician(
            spacing_zyx, box=self.box, click_radius=self.click_radius, ring_vox=self.ring_vox
        )


@dataclass
class KeptCase:
    """Final masks of one case for figures: canonical LPS ``(i, j, k)`` arrays."""

    case_id: str
    image01: np.ndarray  #: brain-windowed image in [0, 1] (float32)
    gt: np.ndarray  #: bool
    preds: dict[str, np.ndarray] = field(default_factory=dict)  #: method -> bool final mask


def _display_image(canonical: Volume) -> np.ndarray:
    from ichseg.preprocess.windowing import window_volume

    return window_volume(canonical, "brain", assume_stored_window_ok=True).astype(np.float32)


def _case_metrics(
    result_mask: np.ndarray,
    result_prob: np.ndarray,
    gt: np.ndarray,
    image: Volume,
    pred_c: np.ndarray,
    gt_c: np.ndarray,
) -> dict[str, float]:
    """evaluate_case on the original grid; legacy row-HD on canonical axial slices."""
    canonical = tuple(image.axcodes) == CANONICAL_AXCODES
    m = evaluate_case(
        result_mask,
        gt,
        image.spacing,
        prob=result_prob,
        layout="ijk" if canonical else "zyx",
    )
    if not canonical:
        legacy = legacy_slice_mean_row_hd(pred_c, gt_c, "zyx")
        m["legacy_row_hd"] = legacy.mean
        m["legacy_row_hd_slices"] = float(legacy.n_slices)
        m["legacy_row_hd_inf"] = float(legacy.n_inf)
    return m


def _progress(enabled: bool) -> Any:
    from ichseg.progress import progress_bar

    return progress_bar(enabled=enabled)


def evaluate_interactive(
    method_factory: MethodFactory,
    cases: Iterable[CaseTriple],
    *,
    rounds: int | None = None,
    clinician: ClinicianSpec | None = None,
    protocol: Literal["clinician", "cvpr25"] = "clinician",
    cvpr25_box: bool = True,
    method_name: str = "method",
    fold: int | None = None,
    empty_gt: Literal["skip", "evaluate"] = "skip",
    keep_masks: int = 0,
    kept: dict[str, KeptCase] | None = None,
    progress: bool = True,
    n_cases: int | None = None,
    initial: InitialMasks | None = None,
    initial_source: str = "automatic",
) -> pd.DataFrame:
    """Run the simulated-clinician protocol for one method; long-format results frame.

    ``cases`` yields ``(case_id, image, gt_mask)`` with the mask on the image's grid (loaded
    lazily if it is a generator). ``method_factory()`` returns a fresh session per case. One row
    per (method, fold, case_id, round) with :data:`RESULT_COLUMNS`; ``fold=None`` is written as
    fold 0. ``keep_masks = N`` stores the final masks of the first N evaluated cases into ``kept`` (keyed by
    case id, one entry per case shared by all methods run with the same dict), for
    :func:`ichseg.evaluation.report.write_report`'s overlay figure.

    ``protocol``: ``"clinician"`` (default; the :class:`ClinicianSpec` user, ``rounds`` default
    8) or ``"cvpr25"`` (the challenge protocol, ``rounds`` = clicks, default 5; ``cvpr25_box``
    gives the box in round 1; ``clinician`` must then be ``None``). See the module docstring.

    ``initial``: round-0 masks per case (``initial(case_id, image) -> Volume``, logged with
    ``initial_source``); each case then gets a ``round = 0`` row before its rounds.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if rounds is None:
        rounds = DEFAULT_ROUNDS[protocol]
    if isinstance(rounds, bool) or int(rounds) != rounds or rounds < 1:
        raise ConfigError(f"rounds must be an integer >= 1, got {rounds}")
    if empty_gt not in ("skip", "evaluate"):
        raise ConfigError(f"empty_gt must be 'skip' or 'evaluate', got {empty_gt!r}")
    if keep_masks < 0:
        raise ConfigError(f"keep_masks must be >= 0, got {keep_masks}")
    if keep_masks and kept is None:
        raise ConfigError("keep_masks > 0 needs a dict passed as kept= to receive the masks")
    spec: ClinicianSpec | Cvpr25Spec
    if protocol == "cvpr25":
        if clinician is not None:
            raise ConfigError("clinician= applies to protocol='clinician' only, not 'cvpr25'")
        spec = Cvpr25Spec(box=bool(cvpr25_box))
    else:
        spec = clinician or ClinicianSpec()
    fold_value = 0 if fold is None else int(fold)
    if n_cases is None and isinstance(cases, Sized):
        n_cases = len(cases)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    seen: set[str] = set()
    with _progress(progress) as bar:
        task = bar.add_task(
            f"{method_name}", total=None if n_cases is None else n_cases * int(rounds)
        )
        n_evaluated = 0
        for case_id, image, gt in cases:
            case_id = str(case_id)
            if case_id in seen:
                raise ConfigError(f"case {case_id!r} appears twice in the evaluation cases")
            seen.add(case_id)
            check_same_grid(image, gt, f"case {case_id}: ground-truth mask")
            gt_arr = np.asarray(gt.array) > 0
            gt_canon = to_canonical(gt.as_label(gt_arr))[0]
            gt_c = gt_canon.zyx()
            bar.update(task, description=f"{method_name} · case {case_id}")
            if not gt_arr.any() and empty_gt == "skip":
                skipped.append(case_id)
                bar.advance(task, int(rounds))
                continue
            case_rows, final_mask, ran = _run_case(
                method_factory,
                case_id,
                image,
                gt_arr,
                gt_c,
                int(rounds),
                spec,
                method_name,
                fold_value,
                lambda: bar.advance(task, 1),
                None if initial is None else (lambda i=image, c=case_id: initial(c, i)),
                initial_source,
            )
            bar.advance(task, int(rounds) - ran)
            rows.extend(case_rows)
            n_evaluated += 1
            if kept is not None and n_evaluated <= keep_masks:
                entry = kept.get(case_id)
                if entry is None:
                    canon_img = to_canonical(image)[0]
                    entry = KeptCase(case_id, _display_image(canon_img), gt_canon.array > 0)
                    kept[case_id] = entry
                entry.preds[method_name] = to_canonical(image.as_label(final_mask))[0].array > 0
    columns = [*RESULT_COLUMNS, *(CVPR25_COLUMNS if protocol == "cvpr25" else ())]
    df = pd.DataFrame(rows, columns=columns)
    df.attrs["skipped_empty"] = skipped
    return df


def _run_case(
    method_factory: MethodFactory,
    case_id: str,
    image: Volume,
    gt_arr: np.ndarray,
    gt_c: np.ndarray,
    rounds: int,
    spec: ClinicianSpec | Cvpr25Spec,
    method_name: str,
    fold: int,
    tick: Callable[[], None],
    initial: Callable[[], Volume] | None = None,
    initial_source: str = "automatic",
) -> tuple[list[dict[str, Any]], np.ndarray, int]:
    """Rows of one case, its final mask (original grid) and the number of rounds run."""
    session = method_factory()
    t0 = time.perf_counter()
    session.set_volume(image)
    set_volume_seconds = time.perf_counter() - t0
    user: SimulatedClinician | Cvpr25Clinician
    if isinstance(spec, Cvpr25Spec):
        seed, mode = 0, "cvpr25"  # the challenge user is deterministic: no seed
        start_rule = "largest_area_box" if spec.box else "largest_error"
        user = spec.make(_spacing_zyx(session.grid_ref))
    else:
        seed, mode, start_rule = spec.case_seed(case_id), spec.mode, spec.start
        user = spec.make(seed)
    pred_c = np.zeros(gt_c.shape, bool)
    base = {
        "method": method_name,
        "fold": fold,
        "case_id": case_id,
        "set_volume_seconds": set_volume_seconds,
        "mode": mode,
        "start_rule": start_rule,
        "clinician_seed": seed,
    }
    cvpr25 = isinstance(spec, Cvpr25Spec)
    rows: list[dict[str, Any]] = []
    final_mask = np.zeros(image.shape, np.uint8)
    if initial is not None:
        t = time.perf_counter()
        start = initial()
        seconds = time.perf_counter() - t
        res = session.start_from_mask(start, initial_source)
        pred_c = to_canonical(image.as_label(res.mask))[0].zyx() > 0
        m = _case_metrics(res.mask, res.probability, gt_arr, image, pred_c, gt_c)
        rows.append(
            {
                **base,
                "round": 0,
                **m,
                "seconds": seconds,
                "slice": math.nan,
                "reason": "initial_mask",
                "n_prompts": 0,
                "n_positive": 0,
                "n_negative": 0,
                "clinician_stop": False,
                **(_cvpr25_fields({}) if cvpr25 else {}),
            }
        )
        final_mask = res.mask
    for r in range(1, rounds + 1):
        turn = user.step(pred_c, gt_c)
        if turn.stop or not turn.prompts:
            if rows:
                rows[-1]["clinician_stop"] = True
            else:  # nothing to correct before any round: only possible with an empty GT
                mask = np.asarray(session.mask().array)
                prob = np.asarray(session.probability().array)
                m = _case_metrics(mask, prob, gt_arr, image, pred_c, gt_c)
                rows.append(
                    {
                        **base,
                        "round": 1,
                        **m,
                        "seconds": 0.0,
                        "slice": math.nan,
                        "reason": str(turn.info.get("reason", "prediction_correct")),
                        "n_prompts": 0,
                        "n_positive": 0,
                        "n_negative": 0,
                        "clinician_stop": True,
                        **(_cvpr25_fields(turn.info) if cvpr25 else {}),
                    }
                )
                final_mask = mask
            break
        session.add_prompts(turn.prompts)
        t = time.perf_counter()
        res = session.run_round()
        seconds = time.perf_counter() - t
        pred_c = to_canonical(image.as_label(res.mask))[0].zyx() > 0
        m = _case_metrics(res.mask, res.probability, gt_arr, image, pred_c, gt_c)
        info = turn.info
        rows.append(
            {
                **base,
                "round": r,
                **m,
                "seconds": seconds,
                "slice": info.get("slice"),
                "reason": str(info.get("reason", "")),
                "n_prompts": int(info.get("n_prompts", len(turn.prompts))),
                "n_positive": int(info.get("n_positive", 0)),
                "n_negative": int(info.get("n_negative", 0)),
                "clinician_stop": False,
                **(_cvpr25_fields(info) if cvpr25 else {}),
            }
        )
        final_mask = res.mask
        tick()
    ran = sum(1 for row in rows if row["n_prompts"] > 0)
    return rows, final_mask, ran


def split_initial(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows with round >= 1, round-0 rows)`` of a results frame (the tables and reports of
    :mod:`ichseg.evaluation.tables` take rounds >= 1 only)."""
    zero = df["round"] == 0
    rest = df[~zero].reset_index(drop=True)
    rest.attrs = dict(df.attrs)
    return rest, df[zero].reset_index(drop=True)


def _spacing_zyx(grid: GridRef) -> tuple[float, float, float]:
    """Voxel size (mm) of a canonical grid along ``(z, y, x)``."""
    sx, sy, sz = np.sqrt((grid.affine_array[:3, :3] ** 2).sum(axis=0))
    return float(sz), float(sy), float(sx)


def _cvpr25_fields(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "box": bool(info.get("box", False)),
        "click_y": info.get("click_y", math.nan),
        "click_x": info.get("click_x", math.nan),
        "error_voxels": info.get("error_voxels", 0),
    }


# ------------------------------------------------------------------------------------------
# methods from spec strings
# ------------------------------------------------------------------------------------------
def load_method(spec: str, *, device: str = "cpu") -> tuple[str, MethodFactory]:
    """Parse a method spec into ``(label, factory)``; the factory returns a fresh session.

    Specs (see :func:`ichseg.interaction.engine.parse_method_spec`; an optional ``LABEL=``
    prefix sets the name shown in tables, e.g. ``f0=hpinet:runs/f0/best.pt``):

    * ``hpinet`` — ICH-HPINet alone (previous round fed back as in the paper), its output
      mixing the VIM into the slice propagation (``vim_weight`` chosen on validation), with
      the shipped weights; ``hpinet:PATH`` with a checkpoint written by ``ichseg train``;
    * ``hpinet_paper`` — the same network with the paper's output (propagation only);
    * ``hpinet_refined`` — the paper's output plus the 2D random-walker refinement near the
      strokes (``stroke_radius_mm=10``; not in the paper);
    * ``...,KEY=VALUE`` — :class:`~ichseg.interaction.hpinet_engine.HPINetEngineConfig` or
      :class:`~ichseg.interaction.random_walker.RandomWalkerConfig` overrides;
    * ``random_walker`` or ``random_walker:beta=90,margin_mm=20`` — the classical baseline.

    A model is loaded once here; each factory call makes a new session around a new engine.
    """
    from ichseg.interaction.engine import EngineFactory, parse_method_spec
    from ichseg.interaction.session import InteractiveSession

    parsed = parse_method_spec(spec)
    engines = EngineFactory(parsed, device=_resolve_device(device))

    def factory() -> SessionLike:
        return InteractiveSession(engines())

    return parsed.label, factory


def _resolve_device(device: str) -> str:
    import torch

    d = str(device).lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    if d != "cpu" and not d.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return d
