"""The one-segmentation report (HTML, PDF), its interaction-log summary and the ABC/2 figure."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from quantify_data import VOLUME_ML, head_case

from ichseg.errors import GeometryError, InputFileError, InputWarning
from ichseg.interaction.random_walker import RandomWalkerEngine
from ichseg.interaction.session import InteractiveSession
from ichseg.io.volume import reorient, to_canonical
from ichseg.quantify.figures import plot_abc2
from ichseg.quantify.report import build_report, summarize_log, write_segmentation_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Two random-walker rounds on the head case's scan; the log file and the final mask."""
    _, scan = head_case()
    session = InteractiveSession(RandomWalkerEngine())
    session.set_volume(scan)
    session.add_scribble(z=3, points=[(18, 16), (20, 20)], positive=True)
    session.add_scribble(z=3, points=[(8, 8), (8, 40)], positive=False)
    session.run_round()
    session.add_scribble(z=2, points=[(19, 18), (20, 21)], positive=True)
    session.run_round()
    path = tmp_path_factory.mktemp("log") / "log.json"
    session.save_log(path)
    return path, session.mask(), session.log()


def test_html_report_has_every_section(tmp_path: Path, logged) -> None:
    log_path, seg_mask, _ = logged
    _, scan = head_case()
    out = tmp_path / "r.html"
    rep = write_segmentation_report(seg_mask, scan, out, log=log_path)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for heading in (
        "Volumes",
        "Quality checks",
        "Connected components",
        "Interaction rounds",
        "Overlay montage",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert "Subtypes" not in text  # a binary session mask has no subtype table
    assert f"{rep.quantify.planimetric_ml:.2f}" in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 3  # abc2, rounds, montage
    assert rep.interaction is not None and len(rep.interaction.rounds) == 2
    assert rep.interaction.n_prompts == 3 and rep.interaction.engine == "random_walker"
    assert "no wall-clock time" in text
    assert rep.interaction.notes == ()
    assert not list(tmp_path.glob(".ichseg-report-*"))  # the temporary folder is gone
    with pytest.raises(InputFileError, match="exists"):
        write_segmentation_report(seg_mask, scan, out)


def test_pdf_report_with_subtypes(tmp_path: Path) -> None:
    mask, scan = head_case("RAS")
    out = tmp_path / "r.pdf"
    rep = write_segmentation_report(mask, scan, out, title="case 7")
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 3  # text, ABC/2, montage
    assert rep.quantify.planimetric_ml == pytest.approx(VOLUME_ML)
    assert rep.quantify.has_subtypes and rep.quantify.flags == ["calcification", "intraventricular"]
    assert rep.as_dict()["quantify"]["labels"][1]["name"] == "IPH"


def test_log_notes_other_scan_and_other_mask(logged) -> None:
    _, seg_mask, log_dict = logged
    _, scan = head_case()
    other = scan.with_array(np.asarray(scan.array) + 1)
    with pytest.warns(InputWarning) as caught:
        inter = summarize_log(log_dict, scan=other, mask_ml=123.0)
    assert len(caught) == 2 and len(inter.notes) == 2
    assert "another scan" in inter.notes[0] and "123.00 mL" in inter.notes[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = summarize_log(log_dict, scan=scan, mask_ml=float(seg_mask.array.sum()) * 0.00405)
    assert same.notes == () and same.total_seconds >= 0 and same.source is None


def test_report_refuses_bad_outputs_and_grids(tmp_path: Path) -> None:
    mask, scan = head_case()
    with pytest.raises(InputFileError, match=r"\.html or \.pdf"):
        write_segmentation_report(mask, scan, tmp_path / "r.docx")
    with pytest.raises(InputFileError, match="does not exist"):
        write_segmentation_report(mask, scan, tmp_path / "missing" / "r.html")
    _, other = head_case(depth=6)
    with pytest.raises(GeometryError):
        build_report(mask, other)


def test_abc2_figure_calipers_on_the_largest_slice(tmp_path: Path) -> None:
    mask, scan = head_case("RAS")
    with_scan = plot_abc2(mask, tmp_path / "a.png", scan=scan)
    mask_only = plot_abc2(mask, tmp_path / "b.png")
    for p in (with_scan, mask_only):
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 10_000
    with pytest.raises(InputFileError):
        plot_abc2(mask, tmp_path / "c.jpg")
    # the calipers the figure draws lie on the canonical largest slice (k = 3)
    from ichseg.quantify.volume import abc2

    canon = to_canonical(mask)[0]
    res = abc2(mask.with_array((mask.array > 0).astype(np.uint8)))
    assert res.a is not None
    assert np.allclose(canon.world_to_voxel(res.a.ras)[:, 2], 3)
    empty = plot_abc2(mask.with_array(np.zeros(mask.shape, np.uint8)), tmp_path / "e.png")
    assert empty.stat().st_size > 5_000


def test_report_data_same_for_lps_and_ras() -> None:
    a = build_report(*head_case("LPS")).as_dict()["quantify"]
    m, s = head_case("LPS")
    b = build_report(reorient(m, "RAS")[0], reorient(s, "RAS")[0]).as_dict()["quantify"]
    assert a["planimetric_ml"] == pytest.approx(b["planimetric_ml"])
    assert a["abc2"]["volume_ml"] == pytest.approx(b["abc2"]["volume_ml"])
    assert a["flags"] == b["flags"]
