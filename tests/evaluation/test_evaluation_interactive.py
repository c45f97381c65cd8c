"""Interactive evaluation runner, method specs and the ``ichseg evaluate`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from models_tiny import TINY32
from typer.testing import CliRunner

from ichseg.cli import app, register_commands
from ichseg.errors import ConfigError, DatasetLayoutError, GeometryError
from ichseg.evaluation.interactive import (
    RESULT_COLUMNS,
    ClinicianSpec,
    KeptCase,
    evaluate_interactive,
    load_method,
)
from ichseg.evaluation.metrics import METRIC_KEYS, evaluate_case
from ichseg.evaluation.tables import table_rounds
from ichseg.interaction.random_walker import RandomWalkerConfig, RandomWalkerEngine
from ichseg.interaction.session import InteractiveSession, RoundResult
from ichseg.io.volume import Intensity, IntensityKind, Volume, make_affine, reorient
from ichseg.models.registry import build_model, save_model

RW = RandomWalkerConfig(margin_mm=8.0)
SHAPE = (40, 40, 10)


def phantom(seed: int = 0, empty: bool = False, axcodes: str = "LPS"):
    rng = np.random.default_rng(seed)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    r2 = ((ii - 19.5) / 18) ** 2 + ((jj - 19.5) / 18) ** 2
    img = np.full(SHAPE, -1000.0)
    img[r2 < 1] = 1000.0
    img[r2 < 0.8] = 35.0
    c = (14 + rng.integers(-2, 3), 22 + rng.integers(-2, 3), 5)
    bleed = ((ii - c[0]) / 5) ** 2 + ((jj - c[1]) / 4) ** 2 + ((kk - c[2]) / 2.2) ** 2 < 1
    if empty:
        bleed[:] = False
    img[bleed] = 70.0
    img += rng.normal(0, 2, SHAPE) * (r2 < 0.8)
    vol = Volume(img.astype(np.int16), make_affine((1.0, 1.2, 5.0), "LPS", (3, 4, 5)))
    mask = vol.as_label(bleed)
    if axcodes != "LPS":
        vol, _ = reorient(vol, axcodes)
        mask, _ = reorient(mask, axcodes)
    return vol, mask


def cases(n=2, **kw):
    return [(f"c{i}", *phantom(seed=i, **kw)) for i in range(n)]


class Recording:
    """Wraps a session and records its round results (to recompute metrics independently)."""

    def __init__(self, inner, log):
        self.inner, self.log = inner, log

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run_round(self) -> RoundResult:
        r = self.inner.run_round()
        self.log.append(r)
        return r


class Oracle:
    """A 'method' returning the ground truth after any prompt (to test early stopping)."""

    def __init__(self, gt: Volume):
        self.gt = gt

    def set_volume(self, volume: Volume) -> None:
        self.volume = volume
        self.grid_ref = None
        self.n = 0

    def add_prompts(self, prompts) -> None:
        self.n += len(list(prompts))

    def run_round(self) -> RoundResult:
        m = np.asarray(self.gt.array, np.uint8)
        return RoundResult(1, m.astype(np.float32), m, 0.0, 0.0, [], [], 0.0)

    def mask(self) -> Volume:
        return self.volume.as_label(np.zeros(self.volume.shape, np.uint8))

    def probability(self) -> Volume:
        z = np.zeros(self.volume.shape, np.float32)
        return self.volume.with_array(z, Intensity(IntensityKind.UNKNOWN))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run far faster single-threaded on a shared CPU; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("hpinet", "lite", **TINY32)
    return save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def test_rows_columns_and_metrics_on_original_grid():
    log: list[RoundResult] = []
    data = cases(2)
    df = evaluate_interactive(
        lambda: Recording(InteractiveSession(RandomWalkerEngine(RW)), log),
        data,
        rounds=3,
        clinician=ClinicianSpec(seed=3),
        method_name="rw",
        fold=1,
        progress=False,
    )
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert set(df["method"]) == {"rw"} and set(df["fold"]) == {1}
    assert not df.duplicated(["method", "fold", "case_id", "round"]).any()
    for _, g in df.groupby("case_id"):
        rounds = g["round"].tolist()
        assert rounds == list(range(1, len(rounds) + 1)) and 1 <= len(rounds) <= 3
        assert g["n_prompts"].min() >= 1 and g["slice"].notna().all()
    first = df[(df["case_id"] == "c0") & (df["round"] == 1)].iloc[0]
    assert first["start_rule"] == "random_band" and first["mode"] == "scribble"
    assert first["reason"] == "start_random_band" and first["n_positive"] >= 1
    assert len(log) == len(df)
    _, image, gt = data[0]
    expected = evaluate_case(
        log[0].mask, gt.array, image.spacing, prob=log[0].probability, layout="ijk"
    )
    for key in (*METRIC_KEYS, "hd_undefined"):
        assert first[key] == pytest.approx(expected[key], nan_ok=True), key
    assert first["seconds"] > 0 and first["dice"] > 0.5


def test_deterministic_and_orientation_independent():
    spec = ClinicianSpec(mode="click", start="largest", seed=7)
    kw = {"rounds": 2, "clinician": spec, "progress": False}
    a = evaluate_interactive(lambda: InteractiveSession(RandomWalkerEngine(RW)), cases(2), **kw)
    b = evaluate_interactive(lambda: InteractiveSession(RandomWalkerEngine(RW)), cases(2), **kw)
    ras = [(cid, *reorient_pair(img, m)) for cid, img, m in cases(2)]
    c = evaluate_interactive(lambda: InteractiveSession(RandomWalkerEngine(RW)), ras, **kw)
    cols = [x for x in RESULT_COLUMNS if x not in ("seconds", "set_volume_seconds")]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    # The same scans stored RAS: same prompts, metrics on the (different) original grid agree.
    metric_cols = ["dice", "jaccard", "hd", "hd95", "nsd2mm", "mae", "vol_pred_ml"]
    pd.testing.assert_frame_equal(a[metric_cols], c[metric_cols], atol=1e-9)
    assert (a["slice"] == c["slice"]).all()
    # every case gets its own clinician seed
    assert a["clinician_seed"].nunique() == 2


def reorient_pair(img, mask):
    return reorient(img, "RAS")[0], reorient(mask, "RAS")[0]


def test_early_stop_carries_last_values():
    data = cases(1)
    gt = data[0][2]
    df = evaluate_interactive(
        lambda: Oracle(gt), data, rounds=5, method_name="oracle", progress=False
    )
    assert df["round"].tolist() == [1] and bool(df["clinician_stop"].iloc[0])
    assert df["dice"].iloc[0] == 1.0 and df["abs_vol_err_ml"].iloc[0] == 0.0
    t = table_rounds(df, "dice", rounds=range(1, 6))
    assert t.loc["oracle"].tolist() == [1.0] * 5


def test_empty_ground_truth_skip_or_evaluate():
    data = [*cases(1), ("empty", *phantom(empty=True))]
    df = evaluate_interactive(
        lambda: InteractiveSession(RandomWalkerEngine(RW)), data, rounds=2, progress=False
    )
    assert "empty" not in set(df["case_id"]) and df.attrs["skipped_empty"] == ["empty"]
    df2 = evaluate_interactive(
        lambda: InteractiveSession(RandomWalkerEngine(RW)),
        data,
        rounds=2,
        empty_gt="evaluate",
        progress=False,
    )
    row = df2[df2["case_id"] == "empty"]
    assert len(row) == 1 and row["dice"].iloc[0] == 1.0 and row["n_prompts"].iloc[0] == 0
    assert bool(row["clinician_stop"].iloc[0]) and row["vol_gt_ml"].iloc[0] == 0.0


def test_keep_masks_and_input_errors():
    kept: dict[str, KeptCase] = {}
    data = cases(2)
    for name in ("a", "b"):
        evaluate_interactive(
            lambda: InteractiveSession(RandomWalkerEngine(RW)),
            data,
            rounds=1,
            method_name=name,
            keep_masks=1,
            kept=kept,
            progress=False,
        )
    assert list(kept) == ["c0"] and set(kept["c0"].preds) == {"a", "b"}
    k = kept["c0"]
    assert k.gt.shape == SHAPE and k.image01.max() <= 1.0 and k.preds["a"].dtype == bool
    with pytest.raises(ConfigError):
        evaluate_interactive(
            lambda: InteractiveSession(RandomWalkerEngine(RW)), data, keep_masks=1, progress=False
        )
    with pytest.raises(ConfigError):
        evaluate_interactive(
            lambda: InteractiveSession(RandomWalkerEngine(RW)), data, rounds=0, progress=False
        )
    with pytest.raises(ConfigError):
        evaluate_interactive(
            lambda: InteractiveSession(RandomWalkerEngine(RW)), data + data[:1], progress=False
        )
    img, mask = phantom()
    bad = Volume(mask.array, img.affine * np.diag([2, 1, 1, 1]), Intensity.label())
    with pytest.raises(GeometryError):
        evaluate_interactive(
            lambda: InteractiveSession(RandomWalkerEngine(RW)), [("x", img, bad)], progress=False
        )


def test_hpinet_method_from_checkpoint(tiny_ckpt):
    name, factory = load_method(f"hpinet:{tiny_ckpt}")
    assert name == "hpinet"
    assert isinstance(factory(), InteractiveSession)
    df = evaluate_interactive(factory, cases(1), rounds=2, method_name=name, progress=False)
    assert set(df["method"]) == {"hpinet"} and 1 <= len(df) <= 2
    assert df[["dice", "mae", "vol_pred_ml"]].notna().all().all()


def test_load_method_specs(tiny_ckpt):
    name, factory = load_method("random_walker")
    assert name == "random_walker" and isinstance(factory().engine, RandomWalkerEngine)
    name, factory = load_method("rw-narrow=random_walker:beta=50,margin_mm=12")
    s = factory()
    assert name == "rw-narrow" and s.engine.config.beta == 50 and s.engine.config.margin_mm == 12
    name, _ = load_method(f"mine=hpinet:{tiny_ckpt}")
    assert name == "mine"
    name, factory = load_method(f"hp=hpinet:{tiny_ckpt},vim_weight=0.25,previous_as_mask=true")
    s = factory()
    assert s.engine.config.vim_weight == 0.25 and s.engine.config.previous_as_mask is True
    for bad_hp in (f"hpinet:{tiny_ckpt},bogus=1", f"hpinet:{tiny_ckpt},{tiny_ckpt}"):
        with pytest.raises(ConfigError):
            load_method(bad_hp)
    for bad in ("unet", "random_walker:bogus=1", "random_walker:beta", "=random_walker", ""):
        with pytest.raises(ConfigError):
            load_method(bad)
    with pytest.raises(ConfigError):
        load_method("random_walker:beta=-1")


def test_hpinet_methods_use_the_output_mix_selected_on_validation(tiny_ckpt):
    """``hpinet`` mixes in the VIM by the committed validation selection; ``hpinet_paper`` and
    ``hpinet_refined`` (whose own selection kept w = 0) keep the paper's propagated output."""
    import json
    from pathlib import Path

    from ichseg.interaction.engine import METHODS, SELECTED_VIM_WEIGHT

    root = Path(__file__).resolve().parents[2] / "benchmarks/results"
    chosen = json.loads((root / "vim_weight_selection/selection.json").read_text())
    assert chosen["chosen_vim_weight"] == SELECTED_VIM_WEIGHT and chosen["stroke_radius_mm"] == 0
    refined = json.loads((root / "vim_weight_selection_refined/selection.json").read_text())
    assert refined["stroke_radius_mm"] == METHODS["hpinet_refined"][1]["stroke_radius_mm"] > 0
    assert METHODS["hpinet_refined"][1].get("vim_weight", 0.0) == refined["chosen_vim_weight"]
    assert METHODS["hpinet"][1]["vim_weight"] == SELECTED_VIM_WEIGHT
    assert METHODS["hpinet"][1].get("stroke_radius_mm", 0.0) == 0.0  # no classical part
    for name, w in (("hpinet", SELECTED_VIM_WEIGHT), ("hpinet_paper", 0.0)):
        _, factory = load_method(f"{name}:{tiny_ckpt}")
        cfg = factory().engine.config
        assert cfg.vim_weight == w and cfg.stroke_radius_mm == 0.0


def test_default_weights_missing_is_a_config_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ichseg.models.pretrained", None)  # import fails
    with pytest.raises(ConfigError, match="hpinet:PATH"):
        load_method("hpinet")


# ------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def runner() -> CliRunner:
    register_commands()
    return CliRunner()


def test_cli_evaluate_two_methods(runner, tiny_physionet, tiny_ckpt, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(tiny_physionet), "--out", str(out)]
    args += ["--method", "random_walker:margin_mm=8", "--method", f"hpinet:{tiny_ckpt}"]
    args += ["--cases", "001,002", "--rounds", "2", "--seed", "5", "--threads", "1"]
    args += ["--no-progress"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "random_walker" in res.output and "hpinet" in res.output
    df = pd.read_csv(out / "results.csv", dtype={"case_id": str})
    assert set(df["method"]) == {"random_walker", "hpinet"}
    assert set(df["case_id"]) == {"001", "002"}
    for f in ("report.md", "table_final.csv", "noc.csv", "paired_tests.csv", "overlay.png"):
        assert (out / f).is_file(), f
    text = (out / "report.md").read_text()
    first = text.splitlines()[1]
    assert first.startswith("ichseg evaluate --data") and "--seed 5" in first
    assert "--method random_walker:margin_mm=8" in first


def test_cli_evaluate_splits_fold_and_errors(runner, tiny_physionet, tmp_path):
    splits = tmp_path / "splits.json"
    folds = [
        {"fold": 0, "train": ["003", "004", "005", "006"], "val": [], "test": ["001", "002"]},
        {"fold": 1, "train": ["001", "002", "005", "006"], "val": [], "test": ["003", "004"]},
        {"fold": 2, "train": ["001", "002", "003", "004"], "val": [], "test": ["005", "006"]},
    ]
    data = {"dataset": "t", "k": 3, "seed": 0, "val_fraction": 0.0, "folds": folds}
    splits.write_text(json.dumps(data))
    out = tmp_path / "e"
    base = ["evaluate", "--data", str(tiny_physionet), "--out", str(out), "--no-progress"]
    opts = ["--method", "random_walker:margin_mm=8", "--splits", str(splits), "--fold", "1"]
    opts += ["--rounds", "1", "--max-cases", "1", "--mode", "click", "--start", "largest"]
    res = runner.invoke(app, [*base, *opts])
    assert res.exit_code == 0, res.output + repr(res.exception)
    df = pd.read_csv(out / "results.csv", dtype={"case_id": str})
    assert set(df["case_id"]) == {"003"} and set(df["fold"]) == {1}
    assert not (out / "paired_tests.csv").exists()  # a single method: no tests
    bad = [
        (["--method", "random_walker", "--fold", "1"], ConfigError),
        (["--method", "random_walker", "--cases", "999"], DatasetLayoutError),
        (["--method", "random_walker", "--method", "random_walker"], ConfigError),
        (["--method", "nnunet"], ConfigError),
        (["--method", "random_walker", "--mode", "lasso"], ConfigError),
        (["--method", "random_walker", "--reference", "x"], ConfigError),
    ]
    for extra, exc in bad:
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code != 0 and isinstance(res.exception, exc), (extra, res.exception)
