"""``ichseg quantify``, ``compare``, ``report`` and ``segment --out x.seg.dcm / --report`` end to
end, and the one-line refusals (exit code 2) of bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from models_tiny import TINY32 as TINY
from quantify_data import N_VOXELS, VOLUME_ML, head_case
from typer.testing import CliRunner

from ichseg.cli import app, main, register_commands
from ichseg.errors import ConfigError
from ichseg.io.dicom import read_dicom_series, write_dicom_series
from ichseg.io.nifti import write_nifti
from ichseg.io.volume import Volume, make_affine, to_canonical

#: a few-thousand-parameter HPINet (as in the interaction tests)


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    register_commands()
    return CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("q")
    out = {}
    for codes in ("LPS", "RAS"):
        mask, scan = head_case(codes)
        out[f"mask_{codes}"] = write_nifti(mask, root / f"mask_{codes}.nii.gz")
        out[f"scan_{codes}"] = write_nifti(scan, root / f"scan_{codes}.nii.gz")
    mask, scan = head_case()
    prob = Volume(((mask.array > 0) * 0.7).astype(np.float32), mask.affine)  # not labels
    out["prob"] = write_nifti(prob, root / "prob.nii.gz")
    small = Volume(np.asarray(mask.array)[:, :, :6], mask.affine, mask.intensity)
    out["mask_small"] = write_nifti(small, root / "mask_small.nii.gz")
    # a follow-up on another grid (0.45 x 0.45 x 5 mm, RAS): 1600 voxels = 1.62 mL
    big = np.zeros((96, 96, 8), np.uint8)
    big[28:48, 28:48, 2:6] = 1
    fol = Volume(big, make_affine((0.45, 0.45, 5.0), "RAS", (0, 0, 10)), mask.intensity)
    out["followup"] = write_nifti(fol, root / "followup.nii.gz")
    out["root"] = root
    return out


def run(runner: CliRunner, args: list[str]):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def test_quantify_text_json_png_lps_and_ras(runner, files, tmp_path) -> None:
    res = run(runner, ["quantify", files["mask_LPS"], "--scan", files["scan_LPS"]])
    assert f"planimetric volume: {VOLUME_ML:.2f} mL ({N_VOXELS} voxels" in res.output
    assert "[FLAG] calcification" in res.output and "[FLAG] intraventricular" in res.output
    assert "IVH" in res.output and re.search(r"mean 4\d\d HU", res.output)
    docs = {}
    for codes in ("LPS", "RAS"):
        png = tmp_path / f"abc2_{codes}.png"
        res = run(
            runner,
            [
                "quantify",
                files[f"mask_{codes}"],
                "--scan",
                files[f"scan_{codes}"],
                "--json",
                "--png",
                png,
            ],
        )
        docs[codes] = json.loads(res.output)  # stdout is one JSON document
        assert png.stat().st_size > 10_000 and docs[codes]["png"] == str(png)
    lps, ras = docs["LPS"], docs["RAS"]
    assert lps["mask"]["orientation"] == "LPS" and ras["mask"]["orientation"] == "RAS"
    assert lps["planimetric_ml"] == pytest.approx(VOLUME_ML)
    assert ras["planimetric_ml"] == pytest.approx(lps["planimetric_ml"])
    assert ras["abc2"]["volume_ml"] == pytest.approx(lps["abc2"]["volume_ml"])
    assert lps["flags"] == ras["flags"] == ["calcification", "intraventricular"]
    assert [lab["name"] for lab in lps["labels"]] == ["EDH", "IPH", "IVH", "SAH", "SDH"]
    named = run(
        runner, ["quantify", files["mask_LPS"], "--label-names", "2=ICH", "--label-names", "3=IVH"]
    )
    assert "ICH" in named.output and "names: given" in named.output
    assert "[?] calcification" in named.output  # no --scan: cannot be told


def test_compare_json_and_text(runner, files) -> None:
    res = run(runner, ["compare", files["mask_LPS"], files["followup"], "--hours", "6", "--json"])
    doc = json.loads(res.output)
    assert doc["baseline"]["volume_ml"] == pytest.approx(VOLUME_ML)
    assert doc["followup"]["volume_ml"] == pytest.approx(1.62)
    change = 1.62 - VOLUME_ML  # +53 %, ratio 1.53
    assert doc["abs_change_ml"] == pytest.approx(change)
    assert doc["growth_ml_per_h"] == pytest.approx(change / 6)
    assert doc["rel_change"] == pytest.approx(change / VOLUME_ML)
    assert doc["flags"] == {"dowlatshahi": True, "kazui": True, "jcm2025": True}
    assert doc["expanded"] is True and doc["interval_hours"] == 6
    text = run(runner, ["compare", files["mask_LPS"], files["followup"]]).output
    assert "different grids" in text and "jcm2025" in text


def test_report_html_and_pdf(runner, files, tmp_path) -> None:
    html = tmp_path / "r.html"
    res = run(
        runner,
        ["report", files["mask_RAS"], "--scan", files["scan_RAS"], "--out", html, "--title", "x"],
    )
    assert f"hemorrhage {VOLUME_ML:.2f} mL" in res.output and "check: calcification" in res.output
    text = html.read_text(encoding="utf-8")
    assert "<h2>Subtypes</h2>" in text and "data:image/png;base64," in text
    pdf = tmp_path / "r.pdf"
    run(runner, ["report", files["mask_LPS"], "--scan", files["scan_LPS"], "--out", pdf])
    assert pdf.read_bytes().startswith(b"%PDF")


def test_quantify_reads_a_dicom_seg_with_its_labels(runner, files, tmp_path) -> None:
    pytest.importorskip("highdicom")
    from ichseg.io.dicom_seg import write_dicom_seg

    mask, scan = head_case()
    write_dicom_series(scan, tmp_path / "ct")
    source = read_dicom_series(tmp_path / "ct")
    seg = write_dicom_seg(mask, source, tmp_path / "m.seg.dcm")
    res = run(runner, ["quantify", seg, "--scan", tmp_path / "ct", "--json"])
    doc = json.loads(res.output)
    assert doc["planimetric_ml"] == pytest.approx(VOLUME_ML)
    assert doc["label_names_source"] == "dicom-seg"
    assert {lab["name"]: lab["n_voxels"] for lab in doc["labels"]} == {"IPH": 241, "IVH": 20}
    no_scan = runner.invoke(app, ["quantify", str(seg)])
    assert isinstance(no_scan.exception, ConfigError)
    assert "pass that series folder with --scan" in str(no_scan.exception)


def test_segment_writes_dicom_seg_and_report(runner, tmp_path) -> None:
    pytest.importorskip("highdicom")
    import torch

    from ichseg.interaction.prompts import GridRef, InteractionRound, PromptSet, Scribble
    from ichseg.io.dicom_seg import read_dicom_seg
    from ichseg.models.registry import build_model, save_model

    torch.manual_seed(0)
    ckpt = save_model(build_model("hpinet", "lite", **TINY), tmp_path / "tiny.pt")
    _, scan = head_case("RAS")
    write_dicom_series(scan, tmp_path / "ct")
    source = read_dicom_series(tmp_path / "ct")
    canon = to_canonical(source)[0]
    sc = Scribble(3, [(18, 16), (20, 20)], True, 2.0)
    prompts = PromptSet(GridRef.from_volume(canon), (InteractionRound(1, (sc,)),)).save(
        tmp_path / "prompts.json"
    )
    out, report = tmp_path / "x.seg.dcm", tmp_path / "x.pdf"
    res = run(
        runner,
        [
            "segment",
            tmp_path / "ct",
            "--prompts",
            prompts,
            "--out",
            out,
            "--weights",
            ckpt,
            "--report",
            report,
        ],
    )
    assert "hematoma volume" in res.output
    back = read_dicom_seg(out, source)
    assert back.same_geometry(source) and back.array.any()
    assert (tmp_path / "x.log.json").is_file()
    assert report.read_bytes().startswith(b"%PDF")


def _one_line_error(capsys, args: list) -> str:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    assert err.startswith("error:") and "\n" not in err, err
    return err


def test_bad_inputs_are_one_line_errors(files, tmp_path, capsys) -> None:
    m, s = files["mask_LPS"], files["scan_LPS"]
    bad_log = tmp_path / "log.json"
    bad_log.write_text('{"format": "something else"}')
    cases = [
        (["quantify", tmp_path / "none.nii.gz"], "no such file"),
        (["quantify", files["prob"]], "non-integer values"),
        (["quantify", m, "--png", tmp_path / "a.jpg"], "must end with .png"),
        (["quantify", m, "--label-names", "IPH"], "expected VALUE=NAME"),
        (["quantify", m, "--weighting", "simpson"], "--weighting must be"),
        (["quantify", files["mask_small"], "--scan", s], "does not match image shape"),
        (["compare", m, files["followup"], "--hours", "-3"], "--hours"),
        (["compare", m, files["followup"], "--criterion", "brott"], "--criterion"),
        (["compare", m, tmp_path / "none.nii.gz"], "no such file"),
        (["report", m, "--scan", s], "needs --out"),
        (["report", m, "--out", tmp_path / "r.html"], "needs --scan"),
        (["report", m, "--scan", s, "--out", tmp_path / "r.docx"], "must end with"),
        (
            ["report", m, "--scan", s, "--out", tmp_path / "r.html", "--log", bad_log],
            "not an ichseg interaction log",
        ),
        (["report", m, "--scan", s, "--out", m], "must end with"),
    ]
    for args, expected in cases:
        assert expected in _one_line_error(capsys, args), args


def test_dicom_outputs_refused_for_nifti_before_any_model(files, tmp_path, capsys) -> None:
    from ichseg.interaction.prompts import GridRef, InteractionRound, PromptSet, Scribble

    _, scan = head_case()
    sc = Scribble(3, [(18, 16), (20, 20)], True, 2.0)
    prompts = PromptSet(GridRef.from_volume(to_canonical(scan)[0]), (InteractionRound(1, (sc,)),))
    p = prompts.save(tmp_path / "p.json")
    base = ["segment", files["scan_LPS"], "--prompts", p, "--weights", tmp_path / "none.pt"]
    err = _one_line_error(capsys, [*base, "--out", tmp_path / "x.seg.dcm"])
    assert "a DICOM-SEG refers to the slices of a DICOM series" in err and "nifti" in err
    err = _one_line_error(capsys, [*base, "--out", tmp_path / "x.nii.gz", "--report", "r.txt"])
    assert "--report" in err and ".html" in err
    seg = tmp_path / "fake.dcm"
    seg.write_bytes(b"")
    err = _one_line_error(capsys, ["quantify", files["mask_LPS"], "--png", seg])
    assert "--png" in err
