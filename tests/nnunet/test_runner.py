"""nnU-Net training (one iteration through ichseg.nnunet.runner.train) and prediction back in
each scan's own geometry; the ``ichseg nnunet`` CLI's bad-input handling."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ichseg.cli import main
from ichseg.data.dataset import Dataset
from ichseg.data.splits import Splits
from ichseg.errors import ConfigError, InputFileError
from ichseg.io.reader import load_volume
from ichseg.io.volume import Volume
from ichseg.models.registry import safe_torch_load
from ichseg.nnunet import compat
from ichseg.nnunet.runner import Budget, predict_files, predict_volumes, train

pytestmark = pytest.mark.slow


def _ras_copy(vol: Volume) -> Volume:
    """The same physical image stored with i and j flipped (RAS voxel order)."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [vol.shape[0] - 1, vol.shape[1] - 1]
    return Volume(vol.array[::-1, ::-1, :].copy(), vol.affine @ flip, vol.intensity)


def test_train_writes_a_weights_only_checkpoint(tiny_model) -> None:
    ckpt = safe_torch_load(tiny_model.checkpoint)  # weights_only=True: plain types only
    assert ckpt["trainer_name"] == "nnUNetTrainerIchsegBudget"
    assert ckpt["current_epoch"] == 1 and ckpt["init_args"]["fold"] == 0
    assert (tiny_model.model_dir / "plans.json").is_file()
    log = (tiny_model.model_dir / "fold_0").glob("training_log_*.txt")
    text = next(log).read_text()
    assert "final validation skipped" in text


def test_predict_volumes_returns_masks_in_source_geometry(
    tiny_model, tiny_set: tuple[Dataset, Splits]
) -> None:
    ds, sp = tiny_set
    scan = ds.get(sp.fold(0).test[0]).load_image()
    ras = _ras_copy(scan)
    masks = predict_volumes(tiny_model.model_dir, [scan, ras], fold=0, progress=False)
    for m, v in zip(masks, [scan, ras], strict=True):
        assert m.shape == v.shape and np.array_equal(m.affine, v.affine)
        assert m.array.dtype == np.uint8 and set(np.unique(m.array).tolist()) <= {0, 1}
    # nnU-Net saw the same LPS data both times: the masks are the same physical voxels
    np.testing.assert_array_equal(masks[1].array, masks[0].array[::-1, ::-1, :])


def test_predict_files_and_cli(
    tiny_model, tiny_set: tuple[Dataset, Splits], tmp_path: Path
) -> None:
    ds, sp = tiny_set
    src = ds.get(sp.fold(0).test[1]).image_path
    (out,) = predict_files(tiny_model.model_dir, [src], tmp_path / "a", progress=False)
    img, msk = nib.load(src), nib.load(out)
    assert msk.shape == img.shape and np.allclose(msk.affine, img.affine, atol=1e-5)
    with pytest.raises(InputFileError, match="exists"):
        predict_files(tiny_model.model_dir, [src], tmp_path / "a", progress=False)
    with pytest.raises(SystemExit) as exc:
        main(
            ["nnunet", "predict", str(tiny_model.model_dir), str(src), "--out", str(tmp_path / "b")]
        )
    assert exc.value.code == 0
    cli_mask = load_volume(tmp_path / "b" / out.name, allow_non_ct=True)
    np.testing.assert_array_equal(cli_mask.array, np.asarray(msk.dataobj))


def test_stock_nnunet_checkpoint_with_numpy_log_predicts(
    tiny_model, tiny_set: tuple[Dataset, Splits], tmp_path: Path
) -> None:
    """A results folder of nnU-Net's own ``nnUNetTrainer`` (numpy scalars in the log) loads."""
    import shutil

    import torch

    model_dir = tmp_path / "stock"
    shutil.copytree(tiny_model.model_dir, model_dir)
    ckpt_path = model_dir / "fold_0" / "checkpoint_final.pth"
    ckpt = safe_torch_load(ckpt_path)
    ckpt["trainer_name"] = "nnUNetTrainer"
    ckpt["_best_ema"] = np.float64(0.1)
    ckpt["logging"] = {
        k: [np.float64(v) for v in vals]
        for k, vals in ckpt["logging"].items()
        if all(isinstance(v, float) for v in vals)
    }
    torch.save(ckpt, ckpt_path)
    with pytest.raises(InputFileError, match="refusing to unpickle"):
        safe_torch_load(ckpt_path)
    ds, sp = tiny_set
    scan = ds.get(sp.fold(0).test[0]).load_image()
    (stock,) = predict_volumes(model_dir, [scan], fold=0, progress=False)
    (ours,) = predict_volumes(tiny_model.model_dir, [scan], fold=0, progress=False)
    np.testing.assert_array_equal(stock.array, ours.array)


def test_train_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no exported dataset with id 5"):
        train(tmp_path, 5)
    with pytest.raises(ConfigError, match="iters_per_epoch must be >= 1"):
        Budget(1, 0)
    with pytest.raises(ConfigError, match="num_gpus > 1 needs device cuda"):
        train(tmp_path, 5, num_gpus=2)


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_bad_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    w = str(tmp_path / "w")
    assert "no such file" in _cli_error(
        ["nnunet", "export", str(tmp_path / "x"), "--work-dir", w], capsys
    )
    assert "--fold must be" in _cli_error(
        ["nnunet", "export", str(tmp_path), "--work-dir", w, "--fold", "x"], capsys
    )
    assert "dataset name" in _cli_error(
        ["nnunet", "export", str(tmp_path), "--work-dir", w, "--name", "a b"], capsys
    )
    assert "no exported dataset" in _cli_error(["nnunet", "train", "--work-dir", w], capsys)
    assert "--budget must be" in _cli_error(
        ["nnunet", "train", "--work-dir", w, "--budget", "huge"], capsys
    )
    assert "not an nnU-Net results folder" in _cli_error(
        ["nnunet", "predict", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "o")], capsys
    )
    monkeypatch.setattr(compat, "nnunet_available", lambda: False)
    for args in (
        ["nnunet", "train", "--work-dir", w],
        ["nnunet", "export", str(tmp_path), "--work-dir", w],
        ["nnunet", "predict", str(tmp_path), str(tmp_path), "--out", w],
    ):
        err = _cli_error(args, capsys)
        assert "nnunetv2" in err and "pip install --no-deps" in err


def test_primus_standin_is_registered() -> None:
    import sys

    compat.install_primus_standin()
    mod = sys.modules[compat.PRIMUS_MODULE]
    assert getattr(mod, "__ichseg_standin__", False)  # timm is not installed here
