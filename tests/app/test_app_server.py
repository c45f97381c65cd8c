"""The app's HTTP API (FastAPI TestClient): studies, strokes, rounds, undo/redo, export, limits,
access token, session isolation, eviction + restore and restart + resume.

The random-walker engine keeps every round fast; the default scan is the embedded synthetic one
on a small grid (generated once per test process)."""

from __future__ import annotations

import gzip
import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("fastapi")
with warnings.catch_warnings():  # starlette's note that it prefers httpx2 (httpx works)
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from ichseg.app.server import AppConfig, create_app, is_loopback
from ichseg.app.sessions import stroke_to_scribbles
from ichseg.errors import ConfigError
from ichseg.interaction.engine import EngineFactory
from ichseg.interaction.hints import rasterize_prompts
from ichseg.io.nifti import write_nifti
from ichseg.io.volume import reorient, to_canonical
from ichseg.quantify.volume import abc2

SHAPE = (128, 128, 16)  # (i, j, k) of the small default scan
TOKEN = "s3cret-token-for-tests-0123"


@pytest.fixture(scope="module")
def factory() -> EngineFactory:
    return EngineFactory("random_walker")


@pytest.fixture(scope="module")
def default_case():
    from ichseg.app.demo import pick_demo_case

    case, _ = pick_demo_case(shape=SHAPE)
    return case


@pytest.fixture(scope="module")
def bleed_voxels(default_case) -> tuple[int, list[int]]:
    """Canonical slice with the most blood and a small block of voxels inside the bleed."""
    gt = to_canonical(default_case.mask)[0].zyx()
    z = int(np.argmax(gt.sum(axis=(1, 2))))
    ys, xs = np.nonzero(gt[z])
    cy, cx = int(np.median(ys)), int(np.median(xs))
    vox = [v for dy in (-1, 0, 1) for dx in (-2, -1, 0, 1, 2) for v in (z, cy + dy, cx + dx)]
    return z, vox


def make_client(tmp_path: Path, factory, **kw) -> TestClient:
    cfg = AppConfig(
        workdir=kw.pop("workdir", tmp_path / "wd"),
        method="random_walker",
        default_shape=SHAPE,
        **kw,
    )
    return TestClient(create_app(cfg, factory))


def ok(resp) -> dict:
    assert resp.status_code == 200, resp.text
    return resp.json()


def err(resp, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


def crop(resp) -> tuple[np.ndarray, list[int]]:
    bbox = [int(v) for v in resp.headers["x-bbox"].split(",")]
    shape = (bbox[3] - bbox[0], bbox[4] - bbox[1], bbox[5] - bbox[2])
    return np.frombuffer(resp.content, np.uint8).reshape(shape), bbox


# ------------------------------------------------------------------------------------ basics
def test_default_scan_stroke_refine_undo_redo_export(tmp_path, factory, bleed_voxels, default_case):
    c = make_client(tmp_path, factory)
    assert ok(c.get("/api/state")) == {"study": None}
    st = ok(c.post("/api/study/default"))
    assert st["study"]["kind"] == "default" and st["round"] == 0 and not st["can_undo"]
    assert st["grid"]["shape_zyx"] == [SHAPE[2], SHAPE[1], SHAPE[0]]
    cookie = c.cookies.get("ichseg_sid")
    assert cookie and len(cookie) >= 32

    # the served scan is the canonical volume, voxel for voxel
    img = nib.Nifti1Image.from_bytes(c.get("/api/scan.nii").content)
    canon = to_canonical(default_case.image)[0]
    assert np.array_equal(np.asarray(img.dataobj), canon.array)
    assert np.allclose(img.affine, canon.affine, atol=1e-4)

    z, vox = bleed_voxels
    st = ok(c.post("/api/strokes", json={"positive": True, "voxels": vox}))
    assert st["pending"] == 3 and st["added"] == 3 and st["can_undo"]
    hints, bbox = crop(c.get("/api/hints"))
    assert bbox[0] == z and hints.sum() == 15  # 15 painted voxels, label 1
    painted = {tuple(vox[i : i + 3]) for i in range(0, len(vox), 3)}
    got = {
        (bbox[0] + a, bbox[1] + b, bbox[2] + d) for a, b, d in zip(*np.nonzero(hints), strict=True)
    }
    assert got == painted

    r = ok(c.post("/api/refine"))
    assert r["round"] == 1 and r["result"]["seconds"] > 0 and r["pending"] == 0
    assert r["volume"]["planimetric_ml"] > 1.0
    assert r["volume"]["delta_ml"] == pytest.approx(r["volume"]["planimetric_ml"])
    abc = r["volume"]["abc2"]
    assert abc["volume_ml"] > 0 and abc["slice_z"] is not None and len(abc["calipers"]) == 2
    assert r["rounds"][0]["index"] == 1
    mask, mbox = crop(c.get("/api/mask"))
    assert mask.sum() > 0 and mbox[0] <= z < mbox[3]
    # the viewer's canonical mask and the cropped ABC/2 agree with the session's own mask
    store = c.app.app.state.store
    with store.use(cookie) as live:
        full = to_canonical(live.session.mask())[0].zyx()
        ref = abc2(live.session.mask())
    assert np.array_equal(full[mbox[0] : mbox[3], mbox[1] : mbox[4], mbox[2] : mbox[5]], mask)
    assert full.sum() == mask.sum()
    for k in ("volume_ml", "a_mm", "b_mm", "c_mm"):
        assert abc[k] == pytest.approx(getattr(ref, k))
    assert np.allclose(abc["calipers"][0]["ras"], ref.a.ras, atol=1e-6)
    assert np.allclose(abc["calipers"][1]["ras"], ref.b.ras, atol=1e-6)

    # undo / redo
    assert not ok(c.post("/api/undo"))["can_undo"]
    assert c.get("/api/mask").headers["x-bbox"] == "0,0,0,0,0,0"
    st = ok(c.post("/api/redo"))
    assert st["round"] == 1 and st["volume"]["planimetric_ml"] == pytest.approx(
        r["volume"]["planimetric_ml"]
    )
    err(c.post("/api/redo"), 400)

    # export on the ORIGINAL grid
    resp = c.get("/api/export/mask.nii.gz")
    assert resp.status_code == 200 and "attachment" in resp.headers["content-disposition"]
    out = nib.Nifti1Image.from_bytes(gzip.decompress(resp.content))
    assert out.shape == SHAPE and np.allclose(out.affine, default_case.image.affine, atol=1e-4)
    assert int(np.asarray(out.dataobj).sum()) == int(mask.sum())
    log = json.loads(c.get("/api/export/log.json").content)
    assert log["format"] == "ichseg-interaction-log"
    # a default (non-DICOM) study cannot be exported as DICOM-SEG
    assert "DICOM" in err(c.get("/api/export/mask.seg.dcm"), 409)


def test_clicks_and_errors_are_one_line_json(tmp_path, factory, bleed_voxels):
    c = make_client(tmp_path, factory)
    assert "no study" in err(c.post("/api/refine"), 409)
    ok(c.post("/api/study/default"))
    assert "no new prompts" in err(c.post("/api/refine"), 400)
    assert "nothing to undo" in err(c.post("/api/undo"), 400)
    assert "outside" in err(
        c.post("/api/strokes", json={"positive": True, "voxels": [99, 0, 0]}), 400
    )
    err(c.post("/api/strokes", json={"positive": True, "voxels": [1, 2]}), 400)
    assert "voxels" in err(c.post("/api/strokes", json={"positive": True}), 422)
    err(
        c.post("/api/strokes", content=b"{not json", headers={"content-type": "application/json"}),
        422,
    )
    assert "click, scribble and box" in err(
        c.post("/api/prompts", json={"prompts": [{"type": "lasso"}]}), 400
    )
    assert "corners" in err(
        c.post("/api/prompts", json={"prompts": [{"type": "box", "z": 1}]}), 400
    )
    err(c.get("/api/nothing-here"), 404)
    z, vox = bleed_voxels
    click = {"type": "click", "z": z, "point": [vox[1], vox[2]], "positive": True, "radius_vox": 2}
    st = ok(c.post("/api/prompts", json={"prompts": [click]}))
    assert st["pending"] == 1
    assert ok(c.get("/api/prompts"))["pending"][0]["type"] == "click"
    r = ok(c.post("/api/refine"))
    assert r["volume"]["planimetric_ml"] > 0
    # only background strokes on an empty mask: empty result with a note
    c2 = make_client(tmp_path, factory, workdir=tmp_path / "wd2")
    ok(c2.post("/api/study/default"))
    ok(c2.post("/api/strokes", json={"positive": False, "voxels": vox}))
    r = ok(c2.post("/api/refine"))
    assert r["volume"]["planimetric_ml"] == 0 and "background" in r["note"]


def test_box_prompt_around_the_bleed(tmp_path, factory, default_case):
    c = make_client(tmp_path, factory)
    ok(c.post("/api/study/default"))
    gt = to_canonical(default_case.mask)[0].zyx()
    z = int(np.argmax(gt.sum(axis=(1, 2))))
    ys, xs = np.nonzero(gt[z])
    corners = [[ys.min() - 0.5, xs.min() - 0.5], [ys.max() + 0.5, xs.max() + 0.5]]
    box = {"type": "box", "z": z, "corners": [[float(v) for v in p] for p in corners]}
    st = ok(c.post("/api/prompts", json={"prompts": [box]}))
    assert st["pending"] == 1
    assert ok(c.get("/api/prompts"))["pending"][0]["type"] == "box"
    hints, bbox = crop(c.get("/api/hints"))
    # the background ring lies just outside the box, on that slice, and never inside it
    assert bbox[0] == z and set(np.unique(hints)) == {0, 2}
    assert bbox[1] < ys.min() and bbox[4] > ys.max() + 1
    ok(c.post("/api/strokes", json={"positive": True, "voxels": [z, int(ys[0]), int(xs[0])]}))
    r = ok(c.post("/api/refine"))
    assert r["volume"]["planimetric_ml"] > 0


def test_request_bodies_are_bounded(tmp_path, factory, monkeypatch):
    import ichseg.app.server as server

    c = make_client(tmp_path, factory)
    ok(c.post("/api/study/default"))
    monkeypatch.setattr(server, "MAX_BODY_BYTES", 1000)
    body = {"positive": True, "voxels": [1, 2, 3] * 400}
    assert "limit" in err(c.post("/api/strokes", json=body), 413)

    def chunks():
        text = json.dumps(body).encode()
        for i in range(0, len(text), 256):
            yield text[i : i + 256]

    resp = c.post("/api/strokes", content=chunks(), headers={"content-type": "application/json"})
    err(resp, 413)
    assert ok(c.get("/api/state"))["pending"] == 0


def test_stroke_runs_rasterize_to_exactly_the_painted_voxels():
    rng = np.random.default_rng(0)
    vox = np.column_stack(
        [rng.integers(0, 3, 300), rng.integers(0, 20, 300), rng.integers(0, 30, 300)]
    )
    scribbles = stroke_to_scribbles(vox, True, (3, 20, 30))
    hints = rasterize_prompts(scribbles, (3, 20, 30))
    want = np.zeros((3, 20, 30), bool)
    want[tuple(vox.T)] = True
    assert np.array_equal(hints[0] > 0, want) and not hints[1].any()


# ------------------------------------------------------------------------------------ token
def test_token_checked_on_every_request(tmp_path, factory):
    c = make_client(tmp_path, factory, token=TOKEN)
    for path in ("/", "/api/health", "/api/state", "/dist/app.js"):
        assert "token" in err(c.get(path), 401)
    err(c.get("/api/health", headers={"X-Ichseg-Token": TOKEN + "x"}), 401)
    err(c.get("/api/health?token=wrong"), 401)
    ok(c.get("/api/health", headers={"X-Ichseg-Token": TOKEN}))
    ok(c.get(f"/api/health?token={TOKEN}"))
    ok(c.post("/api/study/default", headers={"X-Ichseg-Token": TOKEN}))
    page = c.get(f"/?token={TOKEN}")
    if page.status_code == 200:  # the page is built: its asset URLs carry the token
        assert f"dist/app.js?token={TOKEN}" in page.text


def test_bind_address_rules():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(ConfigError, match="token"):
        AppConfig(host="0.0.0.0").validate()
    with pytest.raises(ConfigError, match="at least"):
        AppConfig(host="0.0.0.0", token="short").validate()
    AppConfig(host="0.0.0.0", token=TOKEN).validate()


def test_compute_gate_queues_beyond_its_slots():
    import threading
    import time

    from ichseg.app.sessions import ComputeGate

    gate = ComputeGate(1)
    running, peak, waits = [0], [0], []
    lock = threading.Lock()

    def work() -> None:
        waited: dict[str, float] = {}
        with gate.slot(waited):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1
        waits.append(waited["compute_wait_s"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1  # never two at once
    assert max(waits) >= 0.1  # the last one waited for at least two others
    with pytest.raises(ValueError, match="slots"):
        ComputeGate(0)
    with pytest.raises(ConfigError, match="compute-slots"):
        AppConfig(compute_slots=0).validate()


def test_default_compute_slots_follow_the_engines_threads(monkeypatch):
    import os

    import torch

    from ichseg.app.sessions import default_compute_slots
    from ichseg.interaction.engine import EngineFactory

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert default_compute_slots(1) == 8
    assert default_compute_slots(3) == 2
    assert default_compute_slots(16) == 1  # never 0
    assert default_compute_slots(None) == max(1, 8 // torch.get_num_threads())
    # the random walker's round is single-threaded: one slot per core
    assert EngineFactory("random_walker").threads_per_round == 1


def test_refine_reports_its_wait_for_a_compute_slot(tmp_path, factory, bleed_voxels):
    c = make_client(tmp_path, factory, compute_slots=1)
    assert ok(c.get("/api/health"))["compute_slots"] == 1
    ok(c.post("/api/study/default"))
    ok(c.post("/api/strokes", json={"positive": True, "voxels": bleed_voxels[1]}))
    store = c.app.app.state.store
    with store.compute.slot():  # another user's round holds the only slot for a moment
        import threading

        timer = threading.Timer(0.3, lambda: None)
        timer.start()
        result: dict = {}
        worker = threading.Thread(target=lambda: result.update(ok(c.post("/api/refine"))))
        worker.start()
        timer.join()
    worker.join()
    timings = result["server_timings"]
    assert timings["compute_wait_s"] >= 0.25
    assert timings["run_round_s"] >= result["result"]["seconds"] > 0


def test_cli_refuses_public_host_without_token(capsys):
    from ichseg.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["app", "--host", "0.0.0.0", "--method", "random_walker"])
    assert exc.value.code == 2
    text = capsys.readouterr().err
    assert "--token" in text and "Traceback" not in text and len(text.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------ uploads
def _small_scan(default_case, axcodes: str = "LPS"):
    vol = default_case.image
    return vol if axcodes == "LPS" else reorient(vol, axcodes)[0]


def test_upload_nifti_size_and_voxel_limits(tmp_path, factory, default_case):
    path = write_nifti(_small_scan(default_case, "RAS"), tmp_path / "ras scan.nii.gz")
    data = path.read_bytes()
    c = make_client(tmp_path, factory, max_upload_bytes=len(data) + 1024)
    st = ok(c.post("/api/study/upload", files={"file": ("../../ras scan.nii.gz", data)}))
    assert st["study"]["kind"] == "upload" and st["study"]["name"] == "ras_scan.nii.gz"
    assert st["grid"]["original_axcodes"] == "RAS"
    key_dirs = list((tmp_path / "wd" / "sessions").iterdir())
    assert [p.name for p in (key_dirs[0] / "upload").iterdir()] == ["ras_scan.nii.gz"]

    # too big: refused from the declared length, and while streaming (no length declared)
    big = data + b"\0" * 4096
    assert "limit" in err(c.post("/api/study/upload", files={"file": ("big.nii.gz", big)}), 413)

    def chunks():
        for i in range(0, len(big) * 2, 8192):
            yield (big * 2)[i : i + 8192]

    resp = c.post(
        "/api/study/upload",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    err(resp, 413)
    # the refusals did not touch the open study
    assert ok(c.get("/api/state"))["study"]["name"] == "ras_scan.nii.gz"

    c2 = make_client(tmp_path, factory, workdir=tmp_path / "wd2", max_voxels=1000)
    assert "voxels" in err(c2.post("/api/study/upload", files={"file": ("a.nii.gz", data)}), 400)
    assert "unsupported" in err(c2.post("/api/study/upload", files={"file": ("a.png", b"x")}), 400)
    err(c2.post("/api/study/upload", files={"file": ("broken.nii", b"\0" * 400)}), 400)
    assert "empty" in err(c2.post("/api/study/upload", files={"file": ("e.nii", b"")}), 400)
    assert "file" in err(c2.post("/api/study/upload", data={"x": "1"}), 400)


def _zip(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_zip_slip_and_dicom_upload(tmp_path, factory, default_case):
    from ichseg.io.dicom import write_dicom_series

    c = make_client(tmp_path, factory)
    outside = tmp_path / "wd" / "evil.txt"
    for name in (
        "../evil.txt",
        "../../evil.txt",
        "/tmp/evil.txt",
        "C:/evil.txt",
        "a/../../evil.txt",
    ):
        msg = err(c.post("/api/study/upload", files={"file": ("s.zip", _zip({name: b"x"}))}), 400)
        assert "zip-slip" in msg
    assert not outside.exists() and not (tmp_path / "evil.txt").exists()
    assert "link" in err(
        c.post("/api/study/upload", files={"file": ("s.zip", _zip({"a.dcm": b"x"}, "l.dcm"))}), 400
    )
    err(c.post("/api/study/upload", files={"file": ("s.zip", b"PK\x03\x04 not a zip")}), 400)
    # nothing half-extracted remains
    for d in (tmp_path / "wd" / "sessions").iterdir():
        assert not any(p.name.startswith(".incoming") for p in d.iterdir())

    files = write_dicom_series(default_case.image, tmp_path / "dicom")
    members = {f"series/{p.name}": p.read_bytes() for p in files}
    st = ok(c.post("/api/study/upload", files={"file": ("ct series.zip", _zip(members))}))
    assert st["study"]["dicom"] and st["grid"]["shape_zyx"] == [SHAPE[2], SHAPE[1], SHAPE[0]]
    ok(c.post("/api/strokes", json={"positive": True, "voxels": [8, 64, 64, 8, 64, 65]}))
    ok(c.post("/api/refine"))
    seg = c.get("/api/export/mask.seg.dcm")
    if seg.status_code == 200:  # highdicom installed
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(seg.content))
        assert ds.Modality == "SEG"
    else:
        assert "highdicom" in err(seg, 400)


def test_data_picks_cannot_escape(tmp_path, factory, default_case):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    write_nifti(default_case.image, data / "sub" / "case.nii.gz")
    secret = write_nifti(default_case.image, tmp_path / "secret.nii.gz")
    os.symlink(secret, data / "link.nii.gz")
    os.symlink(tmp_path, data / "linkdir")
    c = make_client(tmp_path, factory, data_dir=data)
    items = ok(c.get("/api/data"))["items"]
    assert items == [{"name": "sub/case.nii.gz", "kind": "nifti"}]  # links are not listed
    for name in (
        "../secret.nii.gz",
        str(secret),
        "sub/../../secret.nii.gz",
        "link.nii.gz",
        "linkdir/secret.nii.gz",
        "",
        ".",
    ):
        err(c.post("/api/study/data", json={"name": name}), 400)
    st = ok(c.post("/api/study/data", json={"name": "sub/case.nii.gz"}))
    assert st["study"] == {
        "name": "sub/case.nii.gz",
        "kind": "data",
        "dicom": False,
        "intensity": "raw HU",
    }


# ------------------------------------------------------------------------------------ users
def test_sessions_are_isolated_per_user(tmp_path, factory, bleed_voxels):
    app = create_app(
        AppConfig(workdir=tmp_path / "wd", method="random_walker", default_shape=SHAPE), factory
    )
    a, b = TestClient(app), TestClient(app)
    ok(a.post("/api/study/default"))
    ok(a.post("/api/strokes", json={"positive": True, "voxels": bleed_voxels[1]}))
    set_cookie = a.post("/api/study/default").headers.get("set-cookie")
    assert set_cookie is None  # the cookie is only set once
    assert ok(b.get("/api/state")) == {"study": None}
    for path in ("/api/prompts", "/api/mask", "/api/scan.nii", "/api/export/mask.nii.gz"):
        err(b.get(path), 409)
    first = b.get("/api/health")
    assert "HttpOnly" in first.headers.get("set-cookie", "") or b.cookies.get("ichseg_sid")
    assert a.cookies.get("ichseg_sid") != b.cookies.get("ichseg_sid")
    # a forged, malformed cookie gets a fresh session instead of an error
    c = TestClient(app, cookies={"ichseg_sid": "../../etc"})
    assert ok(c.get("/api/state")) == {"study": None}
    # the workdir holds hashed folder names, never the cookie itself
    names = [p.name for p in (tmp_path / "wd" / "sessions").iterdir()]
    assert a.cookies.get("ichseg_sid") not in names and len(names) == 1


def test_eviction_and_restore(tmp_path, factory, bleed_voxels):
    app = create_app(
        AppConfig(
            workdir=tmp_path / "wd", method="random_walker", default_shape=SHAPE, max_sessions=2
        ),
        factory,
    )
    store = app.app.state.store
    clients = [TestClient(app) for _ in range(3)]
    ok(clients[0].post("/api/study/default"))
    ok(clients[0].post("/api/strokes", json={"positive": True, "voxels": bleed_voxels[1]}))
    first = ok(clients[0].post("/api/refine"))
    ok(clients[0].post("/api/strokes", json={"positive": False, "voxels": [0, 0, 0]}))
    for c in clients[1:]:
        ok(c.post("/api/study/default"))
    assert store.live_count() == 2 and store.evictions == 1
    assert not store.is_live(clients[0].cookies["ichseg_sid"])
    st = ok(clients[0].get("/api/state"))  # restored from its log
    assert store.restores == 1 and st["round"] == 1 and st["pending"] == 1
    assert st["volume"]["planimetric_ml"] == pytest.approx(first["volume"]["planimetric_ml"])
    assert store.live_count() == 2
    st = ok(clients[0].post("/api/undo"))  # drops the pending stroke
    assert st["pending"] == 0 and st["round"] == 1


def test_restart_resumes_where_it_was(tmp_path, factory, bleed_voxels):
    wd = tmp_path / "wd"
    c1 = make_client(tmp_path, factory, workdir=wd)
    ok(c1.post("/api/study/default"))
    ok(c1.post("/api/strokes", json={"positive": True, "voxels": bleed_voxels[1]}))
    r1 = ok(c1.post("/api/refine"))
    ok(c1.post("/api/strokes", json={"positive": True, "voxels": bleed_voxels[1][:3]}))
    mask1 = c1.get("/api/mask").content
    cookie = c1.cookies["ichseg_sid"]

    c2 = TestClient(
        create_app(AppConfig(workdir=wd, method="random_walker", default_shape=SHAPE), factory),
        cookies={"ichseg_sid": cookie},
    )  # a new server process on the same workdir
    st = ok(c2.get("/api/state"))
    assert st["round"] == 1 and st["pending"] == 1 and st["can_undo"]
    assert st["volume"]["planimetric_ml"] == pytest.approx(r1["volume"]["planimetric_ml"])
    assert c2.get("/api/mask").content == mask1
    r2 = ok(c2.post("/api/refine"))
    assert r2["round"] == 2
    ok(c2.post("/api/undo"))
    assert ok(c2.get("/api/state"))["round"] == 1
    # opening another study keeps the previous one in the archive
    ok(c2.post("/api/study/default"))
    folder = next((wd / "sessions").iterdir())
    archived = list((folder / "archive").iterdir())
    assert len(archived) == 1 and (archived[0] / "log.json").is_file()


# ------------------------------------------------------------------------------ initial mask
def _nifti_bytes(vol) -> bytes:
    buf = io.BytesIO()
    img = nib.Nifti1Image(np.asarray(vol.array), vol.affine)
    buf.write(gzip.compress(img.to_bytes()))
    return buf.getvalue()


def test_initial_mask_upload_starts_round_zero_and_survives_a_restart(
    tmp_path, factory, default_case, bleed_voxels
):
    wd = tmp_path / "wd"
    c = make_client(tmp_path, factory, workdir=wd)
    assert "no study" in err(c.post("/api/initial-mask", files={"file": ("m.nii.gz", b"x")}), 409)
    ok(c.post("/api/study/default"))
    # the true mask, stored RAS (a flipped copy of the scan's grid is reoriented)
    mask_ras = reorient(default_case.mask, "RAS")[0]
    st = ok(
        c.post("/api/initial-mask", files={"file": ("auto mask.nii.gz", _nifti_bytes(mask_ras))})
    )
    true_ml = float(np.asarray(default_case.mask.array).sum()) * default_case.mask.voxel_volume_ml
    assert st["round"] == 0 and st["can_undo"]  # undo drops the initial mask
    assert st["volume"]["planimetric_ml"] == pytest.approx(true_ml, rel=1e-6)
    mask0 = c.get("/api/mask").content
    folder = next((wd / "sessions").iterdir())
    assert [p.name for p in (folder / "initial").glob("*/*")] == ["auto_mask.nii.gz"]
    # a correction round on top of it
    ok(c.post("/api/strokes", json={"positive": False, "voxels": bleed_voxels[1][:3]}))
    assert ok(c.post("/api/refine"))["round"] == 1
    # a second initial mask once rounds exist is refused with one line
    msg = err(
        c.post("/api/initial-mask", files={"file": ("m.nii.gz", _nifti_bytes(mask_ras))}), 400
    )
    assert "undo to the start" in msg and "\n" not in msg
    # after a restart the session comes back with its round 0 and round 1
    c2 = TestClient(
        create_app(AppConfig(workdir=wd, method="random_walker", default_shape=SHAPE), factory),
        cookies={"ichseg_sid": c.cookies["ichseg_sid"]},
    )
    assert ok(c2.get("/api/state"))["round"] == 1
    ok(c2.post("/api/undo"))
    assert c2.get("/api/mask").content == mask0


def test_initial_mask_of_another_grid_is_refused(tmp_path, factory, default_case):
    c = make_client(tmp_path, factory)
    ok(c.post("/api/study/default"))
    wrong = nib.Nifti1Image(np.zeros((10, 10, 4), np.uint8), np.eye(4))
    buf = gzip.compress(wrong.to_bytes())
    msg = err(c.post("/api/initial-mask", files={"file": ("wrong.nii.gz", buf)}), 400)
    assert str(tmp_path) not in msg  # no server path in the message
    assert "\n" not in msg and ok(c.get("/api/state"))["round"] == 0
    folder = next((tmp_path / "wd" / "sessions").iterdir())
    assert not any((folder / "initial").glob("*/*"))  # a refused file is not kept
    assert "empty" in err(c.post("/api/initial-mask", files={"file": ("e.nii.gz", b"")}), 400)
