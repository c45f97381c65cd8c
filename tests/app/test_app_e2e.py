"""The app end to end in headless Chromium (Python Playwright driving Debian's /usr/bin/chromium).

* the default scan opens by itself; a brush stroke on the canvas becomes prompts; Refine changes
  the overlay (mask voxels via the API and a pixel difference of the canvas); undo / redo;
  export; the server restarts and the page finds its session again;
* geometry: on an LPS-stored and a RAS-stored scan, the voxel under the mouse is the canonical
  voxel the page claims (a marker voxel's HU under the crosshair), a one-voxel stroke arrives as
  exactly that canonical prompt, and the exported mask has it at the marker's ORIGINAL index.

Without Chromium (or without the built page) these tests are skipped, and fail when
``ICHSEG_REQUIRE_BROWSER=1`` (CI). Screenshots go to ``docs/images/app_*.png`` with
``ICHSEG_UPDATE_SCREENSHOTS=1``, else to a temporary folder.
"""

from __future__ import annotations

import gzip
import io
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ichseg.app.server import STATIC_DIR, AppConfig, create_app
from ichseg.interaction.engine import EngineFactory
from ichseg.io.nifti import write_nifti
from ichseg.io.volume import reorient, to_canonical

ROOT = Path(__file__).resolve().parents[2]
#: screenshots: into the docs only when asked (ICHSEG_UPDATE_SCREENSHOTS=1), else a temp folder,
#: so a test run leaves the working tree clean
IMAGES = (
    ROOT / "docs" / "images"
    if os.environ.get("ICHSEG_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="ichseg-app-shots-"))
)
CHROMIUM = os.environ.get("ICHSEG_CHROMIUM", "/usr/bin/chromium")
REQUIRE = os.environ.get("ICHSEG_REQUIRE_BROWSER") == "1"
SHAPE = (128, 128, 16)
TOKEN = "e2e-token-0123456789abcdef"
MARKER_HU = 4321  # above anything the phantom contains (checked)
#: Debian's Chromium as root in a container, with no network: the flags the environment needs
#: (+ SwiftShader for WebGL2 without a GPU)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
    "--no-first-run",
]


def _unavailable(why: str) -> None:
    if REQUIRE:
        pytest.fail(f"ICHSEG_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install 'ichseg[app]')")
    if not (STATIC_DIR / "index.html").is_file() or not (STATIC_DIR / "app.js").is_file():
        _unavailable("the page is not built (make install: npm ci && npm run build)")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    except Exception as exc:
        pw.stop()
        _unavailable(f"chromium does not start: {str(exc).splitlines()[0]}")
    yield b
    b.close()
    pw.stop()


@pytest.fixture(scope="module")
def factory() -> EngineFactory:
    return EngineFactory("random_walker")


class Server:
    """uvicorn in a thread, restartable on the same port and workdir."""

    def __init__(self, config: AppConfig, factory) -> None:
        self.config, self.factory = config, factory
        self.thread: threading.Thread | None = None
        self.server = None

    def start(self) -> Server:
        import uvicorn

        app = create_app(self.config, self.factory)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.config.port, log_level="warning", lifespan="off"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the app server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=20)
            self.server = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.config.port}/"

    @property
    def url(self) -> str:
        """The page's URL (with ``?token=`` when the server has one, as `ichseg app` prints)."""
        token = self.config.token
        return self.base + (f"?token={token}" if token else "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def marker_data(tmp_path_factory):
    """A data folder with the same scan stored LPS and RAS, one voxel set to MARKER_HU."""
    from ichseg.app.demo import pick_demo_case

    case, _ = pick_demo_case(shape=SHAPE)
    vol = case.image
    gt = to_canonical(case.mask)[0].zyx()
    z = int(np.argmax(gt.sum(axis=(1, 2))))
    ys, xs = np.nonzero(gt[z])
    y, x = int(np.median(ys)), int(np.median(xs))
    arr = vol.array.copy()
    assert (arr == MARKER_HU).sum() == 0
    arr[x, y, z] = MARKER_HU  # LPS stored = canonical: (i, j, k) = (x, y, z)
    marked = vol.with_array(arr)
    folder = tmp_path_factory.mktemp("data")
    write_nifti(marked, folder / "lps.nii.gz")
    write_nifti(reorient(marked, "RAS")[0], folder / "ras.nii.gz")
    return folder, (z, y, x)


def _open_page(browser, server: Server, size=(1120, 700), before=None):
    ctx = browser.new_context(viewport={"width": size[0], "height": size[1]}, accept_downloads=True)
    if before is not None:  # API calls with the page's cookie before the page opens
        before(ctx.request)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_function("window.ichseg && window.ichseg.loads >= 1", timeout=60_000)
    return ctx, page, errors


def _wait_idle(page) -> None:
    page.wait_for_function("window.ichseg.busy === 0", timeout=60_000)


_FETCH = (
    "(path) => fetch(path, {headers: {'X-Ichseg-Token': "
    "new URLSearchParams(location.search).get('token') || ''}})"
)


def _api(page, path: str):
    return page.evaluate(f"(p) => ({_FETCH})(p).then(r => r.json())", path)


def _mask_voxels(page) -> int:
    return page.evaluate(
        f"() => ({_FETCH})('/api/mask').then(r => r.arrayBuffer()).then(b => new Uint8Array(b)"
        ".reduce((a, v) => a + v, 0))"
    )


def _canvas_png(page) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.locator("#gl").screenshot())).convert("RGB"))


def _stroke(page, z: int, points: list[tuple[float, float]]) -> None:
    n = page.evaluate("() => window.ichseg.strokes")
    pos = [page.evaluate(f"() => window.ichseg.voxelToClient({z}, {y}, {x})") for y, x in points]
    page.mouse.move(*pos[0])
    page.mouse.down()
    for p in pos[1:]:
        page.mouse.move(*p, steps=2)
    page.mouse.up()
    page.wait_for_function(f"window.ichseg.strokes > {n}", timeout=30_000)
    _wait_idle(page)


def _download(page, selector: str) -> bytes:
    with page.expect_download(timeout=30_000) as dl:
        page.click(selector)
    return Path(dl.value.path()).read_bytes()


def test_paint_refine_undo_export_restart(browser, factory, tmp_path, marker_data):
    z, y, x = marker_data[1]
    config = AppConfig(
        port=_free_port(),
        workdir=tmp_path / "wd",
        method="random_walker",
        default_shape=SHAPE,
    )
    server = Server(config, factory).start()
    try:
        ctx, page, errors = _open_page(browser, server)
        st = page.evaluate("() => window.ichseg.state")
        assert st["study"]["kind"] == "default" and st["round"] == 0
        page.evaluate(f"() => window.ichseg.goToVoxel({z}, {y}, {x})")
        _stroke(page, z, [(y - 1, x - 4), (y, x), (y + 1, x + 4)])
        pending = _api(page, "/api/prompts")["pending"]
        assert pending and all(p["z"] == z and p["positive"] for p in pending)
        before = _canvas_png(page)
        assert _mask_voxels(page) == 0

        page.keyboard.press("r")  # Refine
        page.wait_for_function("window.ichseg.rounds >= 1", timeout=60_000)
        _wait_idle(page)
        after = _canvas_png(page)
        n_mask = _mask_voxels(page)
        assert n_mask > 0
        changed = (np.abs(after.astype(int) - before.astype(int)).sum(axis=2) > 40).sum()
        assert changed > 200, f"only {changed} pixels changed after Refine"
        st = page.evaluate("() => window.ichseg.state")
        assert st["round"] == 1 and st["volume"]["planimetric_ml"] > 0
        assert page.locator("#vol-ml").inner_text().endswith("mL")
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / "app_refined.png"))
        page.click("#overlay-modes button[data-mode=outline]")
        page.screenshot(path=str(IMAGES / "app_outline.png"))
        page.click("#overlay-modes button[data-mode=filled]")

        page.keyboard.press("Control+z")  # undo
        page.wait_for_function("window.ichseg.state.round === 0", timeout=30_000)
        _wait_idle(page)
        assert _mask_voxels(page) == 0
        page.keyboard.press("Control+y")  # redo
        page.wait_for_function("window.ichseg.state.round === 1", timeout=30_000)
        _wait_idle(page)
        assert _mask_voxels(page) == n_mask

        data = _download(page, "#export-nifti")
        out = nib.Nifti1Image.from_bytes(gzip.decompress(data))
        assert out.shape == SHAPE and int(np.asarray(out.dataobj).sum()) == n_mask
        # keyboard: window presets and slice scrolling
        page.keyboard.press("4")
        assert page.evaluate("() => window.ichseg.window") == "bone"
        page.keyboard.press("1")
        z0 = page.evaluate("() => window.ichseg.currentSlice()[0]")
        page.keyboard.press("ArrowUp")
        assert page.evaluate("() => window.ichseg.currentSlice()[0]") == min(z0 + 1, SHAPE[2] - 1)
        assert not errors, errors
        ml = st["volume"]["planimetric_ml"]

        server.stop()  # restart: a new server process on the same workdir
        server = Server(config, factory).start()
        page.reload()
        page.wait_for_function("window.ichseg && window.ichseg.loads >= 1", timeout=60_000)
        _wait_idle(page)
        st = page.evaluate("() => window.ichseg.state")
        assert st["round"] == 1 and st["volume"]["planimetric_ml"] == pytest.approx(ml)
        assert _mask_voxels(page) == n_mask
        page.evaluate(f"() => window.ichseg.goToVoxel({z}, {y}, {x})")
        page.screenshot(path=str(IMAGES / "app_resumed.png"))
        assert not errors, errors
        ctx.close()
    finally:
        server.stop()


def test_start_from_a_mask_file(browser, factory, tmp_path):
    from ichseg.app.demo import pick_demo_case

    case, _ = pick_demo_case(shape=SHAPE)
    path = write_nifti(reorient(case.mask, "RAS")[0], tmp_path / "auto.nii.gz")
    config = AppConfig(
        port=_free_port(), workdir=tmp_path / "wd", method="random_walker", default_shape=SHAPE
    )
    server = Server(config, factory).start()
    try:
        ctx, page, errors = _open_page(browser, server)
        assert _mask_voxels(page) == 0
        page.set_input_files("#initial-mask", str(path))
        page.wait_for_function("window.ichseg.state.can_undo === true", timeout=30_000)
        _wait_idle(page)
        assert page.evaluate("() => window.ichseg.state.round") == 0
        assert _mask_voxels(page) == int(np.asarray(case.mask.array).sum())
        assert "round 0" in page.locator("#banner").inner_text()
        assert not errors, errors
        ctx.close()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def data_server(factory, marker_data, tmp_path_factory):
    """A server with --data and an access token: the page, its API calls and the downloads
    must all carry the token."""
    config = AppConfig(
        port=_free_port(),
        workdir=tmp_path_factory.mktemp("wd"),
        data_dir=marker_data[0],
        method="random_walker",
        default_shape=SHAPE,
        token=TOKEN,
    )
    server = Server(config, factory).start()
    yield server
    server.stop()


@pytest.mark.parametrize("stored", ["lps", "ras"])
def test_viewer_voxels_are_canonical_voxels(browser, data_server, marker_data, stored):
    folder, (z, y, x) = marker_data
    name = f"{stored}.nii.gz"
    server = data_server
    if stored == "lps":  # pick the scan in the page's list
        ctx, page, errors = _open_page(browser, server, size=(900, 600))
        page.select_option("#data-list", name)
        page.click("#open-data")
        page.wait_for_function("window.ichseg.loads >= 2", timeout=60_000)
    else:  # opened through the API first: the page reopens the user's session

        def pick(request) -> None:
            assert request.get(server.base + "api/state").status == 401  # no token
            resp = request.post(
                server.base + "api/study/data",
                data={"name": name},
                headers={"X-Ichseg-Token": TOKEN},
            )
            assert resp.ok, resp.text()

        ctx, page, errors = _open_page(browser, server, size=(900, 600), before=pick)
    _wait_idle(page)
    st = page.evaluate("() => window.ichseg.state")
    assert st["study"]["name"] == name
    assert st["grid"]["original_axcodes"] == stored.upper()

    # the marker is displayed at the canonical voxel the page computes
    page.evaluate(f"() => window.ichseg.goToVoxel({z}, {y}, {x})")
    hu = page.evaluate("() => window.ichseg.location.values[0].value")
    assert hu == pytest.approx(MARKER_HU)
    assert page.evaluate("() => window.ichseg.currentSlice()") == [z, y, x]

    # a one-voxel stroke (brush 0.5 mm -> 1 px) at that voxel arrives as exactly that prompt
    page.fill("#brush", "0.5")
    page.dispatch_event("#brush", "input")
    assert page.evaluate("() => window.ichseg.nv.opts.penSize") == 1
    _stroke(page, z, [(y, x)])
    pending = _api(page, "/api/prompts")["pending"]
    assert pending == [
        {
            "type": "scribble",
            "z": z,
            "points": [[y, x], [y, x]],
            "positive": True,
            "width_vox": 1,
        }
    ]
    # a horizontal drag along x stays on row y + 3 and runs from x to the right; what the
    # page shows painted is exactly what the session received
    _stroke(page, z, [(y + 3, x), (y + 3, x + 6)])
    runs = _api(page, "/api/prompts")["pending"][1:]
    assert {(r["points"][0][0], r["points"][1][0]) for r in runs} == {(y + 3, y + 3)}
    covered = {c for r in runs for c in range(r["points"][0][1], r["points"][1][1] + 1)}
    assert min(covered) == x and covered == set(range(x, max(covered) + 1))
    assert len(covered) >= 5  # NiiVue may drop the last few pixels of a very fast drag
    drawn = {tuple(v[:3]) for v in page.evaluate("() => window.ichseg.drawnCanonical()")}
    sent = {(z, y, x)} | {(z, y + 3, c) for c in covered}
    assert drawn == sent
    # a click (click tool) lands on the voxel under the mouse
    page.keyboard.press("c")
    n = page.evaluate("() => window.ichseg.strokes")
    page.mouse.click(*page.evaluate(f"() => window.ichseg.voxelToClient({z}, {y - 2}, {x - 1})"))
    page.wait_for_function(f"window.ichseg.strokes > {n}", timeout=30_000)
    _wait_idle(page)
    click = _api(page, "/api/prompts")["pending"][-1]
    assert click["type"] == "click" and click["z"] == z
    assert np.allclose(click["point"], [y - 2, x - 1], atol=0.5)
    # a box (box tool, O) dragged from one voxel to another covers exactly those pixels
    page.keyboard.press("o")
    n = page.evaluate("() => window.ichseg.strokes")
    _stroke(page, z, [(y - 4, x - 3), (y + 1, x + 5)])
    box = _api(page, "/api/prompts")["pending"][-1]
    assert box["type"] == "box" and box["z"] == z
    assert box["corners"] == [[y - 4.5, x - 3.5], [y + 1.5, x + 5.5]]
    drawn = page.evaluate("() => window.ichseg.drawnCanonical()")
    ring = {tuple(v[:3]) for v in drawn if v[3] == 2}
    assert ring and all(
        vz == z and not (y - 4 <= vy <= y + 1 and x - 3 <= vx <= x + 5) for vz, vy, vx in ring
    )

    page.click("#refine")
    page.wait_for_function("window.ichseg.rounds >= 1", timeout=60_000)
    _wait_idle(page)
    out = nib.Nifti1Image.from_bytes(gzip.decompress(_download(page, "#export-nifti")))
    stored_img = nib.load(folder / name)
    assert np.allclose(out.affine, stored_img.affine, atol=1e-4)
    marker_orig = tuple(int(v) for v in np.argwhere(np.asarray(stored_img.dataobj) == MARKER_HU)[0])
    assert np.asarray(out.dataobj)[marker_orig] == 1  # the painted voxel, on the original grid
    assert not errors, errors
    ctx.close()


def test_error_banner_for_a_rejected_upload(browser, data_server, tmp_path):
    server = data_server
    ctx, page, errors = _open_page(browser, server)
    bad = tmp_path / "not_a_scan.nii"
    bad.write_bytes(b"\0" * 600)
    page.set_input_files("#upload", str(bad))
    page.wait_for_selector("#banner:not(.hidden)", timeout=30_000)
    _wait_idle(page)
    text = page.locator("#banner-text").inner_text()
    assert "not_a_scan.nii" in text and "Traceback" not in text and "\n" not in text
    # the open study is untouched
    assert page.evaluate("() => window.ichseg.state.study.kind") == "default"
    page.screenshot(path=str(IMAGES / "app_error_banner.png"))
    assert not errors, errors
    ctx.close()
