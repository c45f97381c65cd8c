"""The main job on the embedded default: a synthetic scan, preprocessing, and an interactive
session driven by the simulated clinician with the shipped weights.

Everything is generated on the fly from a fixed seed, so nothing but the package is needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEMO_SEED = 2026
DEMO_ROUNDS = 3


@dataclass
class DemoResult:
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    rounds: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def pick_demo_case(
    seed: int = DEMO_SEED, max_tries: int = 20, shape: tuple[int, int, int] | None = None
):
    """The first synthetic case of ``seed`` with a hemorrhage of 5–60 mL (full size default)."""
    from ichseg.data.synthetic import PhantomConfig, generate_case

    config = PhantomConfig() if shape is None else PhantomConfig.for_shape(shape)
    for index in range(max_tries):
        case = generate_case(config, seed, index)
        ml = float(case.mask.array.sum()) * case.image.voxel_volume_ml
        if 5.0 <= ml <= 60.0:
            return case, index
    return case, index


def run_demo(
    out_dir: str | Path,
    *,
    seed: int = DEMO_SEED,
    rounds: int = DEMO_ROUNDS,
    weights: str | Path | None = None,
    shape: tuple[int, int, int] | None = None,
    session_config: Any = None,
    engine_options: dict[str, Any] | None = None,
    echo=print,
) -> DemoResult:
    """Run the demo; ``echo`` receives human-readable progress lines.

    The session uses the product's default method
    (:data:`ichseg.interaction.engine.DEFAULT_METHOD`) with ``engine_options`` on top (e.g.
    ``{"stroke_radius_mm": 0}``) and ``session_config``
    (:class:`~ichseg.interaction.session.SessionConfig`, default: its defaults). The demo's own
    files in ``out_dir`` (``demo_*``) are replaced on every run.
    """
    from ichseg.evaluation.metrics import dice
    from ichseg.interaction.engine import DEFAULT_METHOD, EngineFactory
    from ichseg.interaction.session import InteractiveSession
    from ichseg.interaction.simulated_user import SimulatedClinician
    from ichseg.io.nifti import write_nifti
    from ichseg.io.reader import load_mask, load_volume, save_mask
    from ichseg.io.volume import to_canonical
    from ichseg.preprocess.model_input import prepare_image
    from ichseg.visualize.montage import render_montage
    from ichseg.visualize.overlay import OverlayPanel, render_overlay

    out = Path(out_dir)
    # weights and engine options first: a missing file or a bad option fails before any work
    factory = EngineFactory(
        DEFAULT_METHOD, weights=None if weights is None else str(weights), **(engine_options or {})
    )
    wpath = factory.weights_path
    engine = factory()
    out.mkdir(parents=True, exist_ok=True)
    res = DemoResult(out)

    t0 = time.perf_counter()
    case, index = pick_demo_case(seed, shape=shape)
    res.files["scan"] = write_nifti(case.image, out / "demo_scan.nii.gz")
    res.files["ground_truth"] = write_nifti(case.mask, out / "demo_ground_truth.nii.gz")
    gen_s = time.perf_counter() - t0
    lesions = ", ".join(
        f"{les.get('subtype', '?')} {les.get('volume_ml', float('nan')):.1f} mL"
        for les in case.info.get("lesions", [])
    )
    echo(f"synthetic scan (seed {seed}, case {index}) in {gen_s:.1f} s: {lesions or 'no lesion'}")

    volume = load_volume(res.files["scan"])
    gt = load_mask(res.files["ground_truth"], volume)
    true_ml = float(gt.array.sum()) * volume.voxel_volume_ml
    _, grid = prepare_image(volume, int(engine.model.config.slice_size))
    echo(f"loaded: {volume.describe()}")
    echo(
        f"preprocessing: brain window L40/W80 -> [0, 1], canonical LPS, network grid "
        f"{grid.model_shape} at {tuple(round(s, 3) for s in grid.spacing_zyx)} mm; "
        f"true hematoma volume {true_ml:.2f} mL"
    )
    res.files["montage"] = render_montage(
        volume, gt, out / "demo_montage.png", title="synthetic scan with ground truth"
    )

    log_path = out / "demo_interaction_log.json"
    session = InteractiveSession(engine, session_config, autosave=log_path)  # saved every round
    session.set_volume(volume)
    engine_cfg = session.engine.config_dict()
    echo(
        f"model {wpath.name} ({DEFAULT_METHOD}: stroke refinement "
        f"{engine_cfg.get('stroke_radius_mm', 0):g} mm, feed previous "
        f"{engine_cfg.get('feed_previous')}, threshold {session.config.threshold:g}): "
        f"per-volume encoding {session.set_volume_seconds:.2f} s"
    )
    clinician = SimulatedClinician(mode="scribble", start="largest", seed=seed)
    gt_zyx = to_canonical(gt)[0].zyx()
    pred_zyx = np.zeros_like(gt_zyx)
    panels: list[OverlayPanel] = []
    for _ in range(rounds):
        turn = clinician.step(pred_zyx, gt_zyx)
        if turn.stop or not turn.prompts:
            echo("simulated clinician is satisfied: stopping")
            break
        session.add_prompts(turn.prompts)
        r = session.run_round()
        pred_zyx = to_canonical(session.mask())[0].zyx()
        d = dice(r.mask > 0, gt.array > 0)
        res.rounds.append(
            {"round": r.index, "dice": d, "volume_ml": r.volume_ml, "seconds": r.seconds}
        )
        z = int(turn.prompts[0].z)
        panels.append(
            OverlayPanel(
                z,
                pred_zyx.copy(),
                f"round {r.index}, slice {z}\nDice {d:.3f} | {r.volume_ml:.1f} mL "
                f"(true {true_ml:.1f} mL)",
                tuple(turn.prompts),
            )
        )
        echo(
            f"round {r.index}: scribbles on slice {turn.info.get('slice')}, Dice {d:.3f}, "
            f"volume {r.volume_ml:.2f} mL (true {true_ml:.2f}, change {r.delta_ml:+.2f}), "
            f"{r.seconds:.2f} s"
        )
    res.files["mask"] = save_mask(session.mask(), out / "demo_mask.nii.gz", overwrite=True)
    res.files["log"] = session.save_log(log_path)
    if panels:
        res.files["overlay"] = render_overlay(
            volume,
            gt,
            panels,
            out / "demo_overlay.png",
            title=f"ICH-HPINet ({DEFAULT_METHOD}), {len(panels)} simulated round(s)",
        )
    res.summary = {
        "true_volume_ml": true_ml,
        "final_volume_ml": session.volume_ml,
        "final_dice": res.rounds[-1]["dice"] if res.rounds else float("nan"),
        "rounds": len(res.rounds),
    }
    for name, path in res.files.items():
        echo(f"  {name:13s} {path}")
    return res
