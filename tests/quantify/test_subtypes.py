"""predict_subtypes / label_mask_subtypes: source geometry (LPS and RAS), mL from spacing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from quantify_data import head_case

from ichseg.errors import ConfigError, GeometryError
from ichseg.io.volume import Volume, make_affine, reorient
from ichseg.models.registry import build_model
from ichseg.quantify.subtypes import label_mask_subtypes, predict_subtypes

TINY = {"slice_size": 64, "widths": [4, 8, 8, 16, 16], "decoder_channels": 8, "cls_hidden": 16}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model("munet", "lite", **TINY)
    with torch.no_grad():  # a bias that makes IPH (seg class 2, cls column 1) win everywhere
        m.seg_head.bias.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0, 0.0, 0.0]))
        m.cls_head[-1].bias.copy_(torch.tensor([-50.0, 50.0, -50.0, -50.0, -50.0, -50.0]))
    return m.eval()


@pytest.mark.parametrize("codes", ["LPS", "RAS"])
def test_predict_subtypes_source_geometry_and_ml(codes: str) -> None:
    _, scan = head_case(codes, depth=5)
    pred = predict_subtypes(_model(), scan)
    assert pred.labels.shape == scan.shape
    assert np.allclose(pred.labels.affine, scan.affine)
    assert pred.labels.array.dtype == np.uint8
    n = scan.array.size
    assert np.all(pred.labels.array == 2)
    assert pred.volumes_ml["IPH"] == pytest.approx(n * 0.9 * 0.9 * 5.0 / 1000.0)
    assert pred.present == {"EDH": False, "IPH": True, "IVH": False, "SAH": False, "SDH": False}
    assert len(pred.slices) == 5 and sorted(s["k"] for s in pred.slices) == list(range(5))
    doc = pred.to_dict()
    assert doc["volumes_ml"]["IPH"] == pred.volumes_ml["IPH"] and doc["shape"] == list(scan.shape)


def test_predict_subtypes_maps_back_exactly() -> None:
    """A prediction on a reoriented scan is the reoriented prediction."""
    m = _model()
    with torch.no_grad():
        m.seg_head.bias.zero_()
    _, scan = head_case("LPS", depth=5)
    a = predict_subtypes(m, scan).labels
    b = predict_subtypes(m, reorient(scan, "RAS")[0]).labels
    assert np.array_equal(reorient(b, "LPS")[0].array, a.array)


def test_label_mask_subtypes_restricted_to_mask() -> None:
    mask, scan = head_case("RAS", depth=8)
    r = label_mask_subtypes(mask, scan, _model())
    inside = mask.array > 0
    assert np.all(r.labels.array[inside] == 2) and np.all(r.labels.array[~inside] == 0)
    assert r.volumes_ml["IPH"] == pytest.approx(inside.sum() * 0.9 * 0.9 * 5.0 / 1000.0)
    assert r.source == "mask"
    other = Volume(mask.array[:, :, :4], make_affine((0.9, 0.9, 5.0)), mask.intensity)
    with pytest.raises(GeometryError):
        label_mask_subtypes(other, scan, _model())


def test_needs_munet() -> None:
    _, scan = head_case("LPS", depth=5)
    with pytest.raises(ConfigError):
        predict_subtypes(torch.nn.Linear(2, 2), scan)


def test_quantify_cli_subtypes_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from ichseg.cli import app, register_commands
    from ichseg.io.nifti import write_nifti
    from ichseg.models.registry import save_model

    register_commands()
    mask, scan = head_case("RAS", depth=8)
    binary = mask.as_label(mask.array > 0)
    m_path = write_nifti(binary, tmp_path / "mask.nii.gz")
    s_path = write_nifti(scan, tmp_path / "scan.nii.gz")
    w = save_model(_model(), tmp_path / "munet.pt")
    runner = CliRunner()
    r = runner.invoke(
        app, ["quantify", str(m_path), "--scan", str(s_path), "--subtypes-model", str(w), "--json"]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    ml = doc["munet_subtypes"]["volumes_ml"]
    assert ml["IPH"] == pytest.approx(float((binary.array > 0).sum()) * 0.9 * 0.9 * 5.0 / 1000)
    r = runner.invoke(app, ["quantify", str(m_path), "--subtypes-model", str(w)])
    assert isinstance(r.exception, ConfigError) and "needs --scan" in str(r.exception)
    r = runner.invoke(
        app, ["quantify", str(m_path), "--scan", str(s_path), "--subtypes-model", str(w)]
    )
    assert r.exit_code == 0 and "subtypes by MUNet" in r.output and "IPH" in r.output
