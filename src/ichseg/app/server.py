"""``ichseg app``: the interactive segmentation web app (FastAPI + uvicorn, NiiVue in the page).

One process serves the page (``static/dist``, built from ``frontend/`` with esbuild) and a JSON
API over :class:`~ichseg.interaction.session.InteractiveSession`. Geometry contract with the
viewer: the scan is served as NIfTI on its **canonical LPS grid** (``/api/scan.nii``), so a
voxel ``(i, j, k)`` of the served image is the session's canonical ``(x, y, z)``; the page turns
NiiVue's drawing-bitmap indices into canonical ``(z, y, x)`` through the served affine (see
``frontend/src/geometry.js``) and sends painted voxels, which become prompts verbatim.

Security: loopback by default. With ``token`` set (required for any other bind address) every
request must carry it as the ``X-Ichseg-Token`` header or the ``token`` query parameter
(compared in constant time). Users are told apart by a random ``ichseg_sid`` cookie (HttpOnly,
SameSite=Strict); a session is only reachable with its cookie. Uploads are bounded in bytes
(checked while they stream in) and scans in voxels; archive members and ``--data`` picks cannot
leave their folders (:mod:`ichseg.app.files`).

Errors: every :class:`~ichseg.errors.IchsegError` becomes a 4xx JSON ``{"error": "<one line>"}``;
anything unexpected a 500 with a one-line message (the traceback goes to the server log only).
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ichseg.app.files import list_data
from ichseg.app.sessions import (
    DEFAULT_SEED,
    LiveSession,
    SessionStore,
    StoreConfig,
    bbox_zyx,
    default_compute_slots,
)
from ichseg.errors import ConfigError, IchsegError

log = logging.getLogger("ichseg.app")

STATIC_DIR = Path(__file__).parent / "static" / "dist"
TOKEN_HEADER = "x-ichseg-token"
COOKIE = "ichseg_sid"
_SID_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
UPLOAD_PATH = "/api/study/upload"
INITIAL_MASK_PATH = "/api/initial-mask"
#: requests whose body is a file: limited by --max-upload-mb instead of MAX_BODY_BYTES
UPLOAD_PATHS = (UPLOAD_PATH, INITIAL_MASK_PATH)
#: multipart framing allowed on top of the file itself
UPLOAD_OVERHEAD = 1 << 16
MIN_TOKEN_LENGTH = 16
#: largest body of any other request (strokes, prompts): 64 MiB
MAX_BODY_BYTES = 64 * 2**20


class DataPick(BaseModel):
    name: str


class Stroke(BaseModel):
    positive: bool
    voxels: list[int]  #: flat z, y, x triplets of canonical voxel indices


class Prompts(BaseModel):
    prompts: list[dict[str, Any]]


def default_workdir() -> Path:
    """``$XDG_DATA_HOME/ichseg/app`` (``~/.local/share/ichseg/app``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ichseg" / "app"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class AppConfig:
    """Settings of one app server (the CLI's options)."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path | None = None
    workdir: Path = field(default_factory=default_workdir)
    token: str | None = None
    method: str | None = None  #: engine method spec; None = the product default
    max_sessions: int = 4
    #: engine computations run at once (None: cores // threads per round); more requests queue
    compute_slots: int | None = None
    max_upload_bytes: int = 1024 * 2**20
    max_voxels: int = 512 * 512 * 512
    default_seed: int = DEFAULT_SEED
    #: grid of the default scan (None: the full 512 x 512 x 32 demo scan; tests use a small one)
    default_shape: tuple[int, int, int] | None = None

    def validate(self) -> AppConfig:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, got {self.port}")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"--token must be at least {MIN_TOKEN_LENGTH} characters (e.g. python -c "
                "'import secrets; print(secrets.token_urlsafe(24))')"
            )
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"--host {self.host} is reachable from other machines: pass --token (every "
                "request then has to carry it), or keep the default 127.0.0.1"
            )
        if self.max_sessions < 1:
            raise ConfigError(f"--max-sessions must be >= 1, got {self.max_sessions}")
        if self.compute_slots is not None and self.compute_slots < 1:
            raise ConfigError(f"--compute-slots must be >= 1, got {self.compute_slots}")
        if self.max_upload_bytes < 1 or self.max_voxels < 1:
            raise ConfigError("upload and voxel limits must be positive")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise ConfigError(f"--data {self.data_dir}: not a folder")
        return self


# ------------------------------------------------------------------------------------ middleware
async def _send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    import json

    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Pure ASGI: access token, the user's session cookie, and the upload byte limit."""

    def __init__(self, app: Any, config: AppConfig) -> None:
        self.app = app
        self.token = config.token.encode() if config.token else None
        self.upload_limit = config.max_upload_bytes + UPLOAD_OVERHEAD

    def _token_ok(self, scope: dict[str, Any]) -> bool:
        if self.token is None:
            return True
        given = None
        for name, value in scope.get("headers", []):
            if name == TOKEN_HEADER.encode():
                given = value
                break
        if given is None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            values = query.get("token")
            given = values[0].encode() if values else None
        # compare_digest takes time independent of where the bytes differ
        return given is not None and hmac.compare_digest(given, self.token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._token_ok(scope):
            await _send_json(
                send,
                401,
                {"error": "missing or wrong access token: open the URL that `ichseg app` printed"},
            )
            return
        sid, new = None, False
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                jar: SimpleCookie = SimpleCookie()
                try:
                    jar.load(value.decode("latin-1"))
                except Exception:  # a malformed cookie header: start a new session
                    continue
                if COOKIE in jar and _SID_RE.match(jar[COOKIE].value):
                    sid = jar[COOKIE].value
        if sid is None:
            sid, new = secrets.token_urlsafe(32), True
        scope["ichseg.sid"] = sid

        rejected = False  # set once this middleware has answered 413 itself

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if rejected:  # the app's own answer to a cut-off body is dropped
                return
            if new and message["type"] == "http.response.start":
                cookie = f"{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000"
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode())]
            await send(message)

        if scope["method"] in ("POST", "PUT", "PATCH"):
            is_upload = scope["path"] in UPLOAD_PATHS
            limit = self.upload_limit if is_upload else MAX_BODY_BYTES
            what = "upload" if is_upload else "request"
            error = {"error": f"{what} larger than the limit of {limit >> 20} MiB"}
            length = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
            if length is not None and length.isdigit() and int(length) > limit:
                await _send_json(send, 413, error)
                return
            # a body without a declared length is counted as it streams in: past the limit the
            # middleware answers 413 and the app sees the client leave
            seen = 0
            inner = receive

            async def receive() -> dict[str, Any]:
                nonlocal seen, rejected
                if rejected:
                    return {"type": "http.disconnect"}
                message = await inner()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        rejected = True
                        await _send_json(send, 413, error)
                        return {"type": "http.disconnect"}
                return message

        try:
            await self.app(scope, receive, send_with_cookie)
        except Exception:
            if not rejected:
                raise


# ------------------------------------------------------------------------------------ payloads
def _grid_payload(live: LiveSession) -> dict[str, Any]:
    canon = live.canonical_scan()
    a = np.asarray(canon.affine, np.float64)
    sx, sy, sz = canon.spacing
    vol = live.volume
    return {
        "shape_zyx": list(live.session.grid_ref.shape_zyx),
        "affine": a.tolist(),
        "affine_inv": np.linalg.inv(a).tolist(),
        "spacing_zyx": [sz, sy, sx],
        "original_shape": list(vol.shape),
        "original_axcodes": "".join(vol.axcodes),
    }


def state_payload(live: LiveSession, store: SessionStore) -> dict[str, Any]:
    """Everything the page shows about a session (small: no voxel arrays)."""
    s = live.session
    results = s.results()
    last = results[-1] if results else None
    return {
        "study": {
            "name": live.study.get("name"),
            "kind": live.study.get("kind"),
            "dicom": bool(live.study.get("dicom")),
            "intensity": live.volume.intensity.describe(),
        },
        "grid": _grid_payload(live),
        "method": s.engine.name,
        "round": s.round_index,
        "pending": len(s.pending),
        "n_prompts": len(s.prompts),
        "can_undo": s.can_undo,
        "can_redo": s.can_redo,
        "volume": {
            "planimetric_ml": s.volume_ml,
            "delta_ml": last.delta_ml if last else 0.0,
            "abc2": live.abc2(),
        },
        "rounds": [
            {
                "index": r.index,
                "volume_ml": r.volume_ml,
                "delta_ml": r.delta_ml,
                "seconds": r.seconds,
                "slices": r.interacted_slices,
                "note": r.note,
            }
            for r in results
        ],
        "note": last.note if last else None,
        "suggested_slice": live.suggested_slice(),
        "warnings": list(live.warnings),
    }


def _nifti_bytes(array_ijk: np.ndarray, affine: np.ndarray) -> bytes:
    import nibabel as nib

    img = nib.Nifti1Image(array_ijk, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    if array_ijk.dtype == np.uint8:
        img.header["cal_min"], img.header["cal_max"] = 0, 1
    return img.to_bytes()


def _crop(zyx: np.ndarray, box: tuple[int, ...] | None = None) -> tuple[bytes, str]:
    """The bounding box of the non-zero voxels and its bytes (C order of ``(z, y, x)``)."""
    if box is None:
        box = bbox_zyx(zyx)
    if box is None:
        return b"", "0,0,0,0,0,0"
    z0, y0, x0, z1, y1, x1 = box
    crop = zyx[z0:z1, y0:y1, x0:x1]
    return np.ascontiguousarray(crop, dtype=np.uint8).tobytes(), ",".join(map(str, box))


def _index_html(token: str | None) -> str | None:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return None
    text = index.read_text(encoding="utf-8")
    query = f"?token={quote(token, safe='')}" if token else ""
    return text.replace("__ICHSEG_Q__", html.escape(query, quote=True))


_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>ichseg app</title>
<h1>The ichseg app's page is not built</h1>
<p>Run <code>make install</code> (it runs <code>npm ci</code> and the build in
<code>src/ichseg/app/frontend</code>), or there: <code>npm ci &amp;&amp; npm run build</code>.
The JSON API under <code>/api/</code> works without it.</p>"""


# ------------------------------------------------------------------------------------ the app
def create_app(config: AppConfig, engine_factory: Any = None) -> GuardMiddleware:
    """The ASGI app. ``engine_factory``: makes one engine per session (default: an
    :class:`~ichseg.interaction.engine.EngineFactory` of ``config.method``, loaded once)."""
    config.validate()
    import ichseg.quantify.volume  # noqa: F401  (scipy.spatial: imported now, not in a round)

    if engine_factory is None:
        from ichseg.interaction.engine import DEFAULT_METHOD, EngineFactory

        engine_factory = EngineFactory(config.method or DEFAULT_METHOD)
    store = SessionStore(
        StoreConfig(
            workdir=Path(config.workdir),
            data_dir=Path(config.data_dir) if config.data_dir else None,
            max_sessions=config.max_sessions,
            compute_slots=config.compute_slots
            or default_compute_slots(getattr(engine_factory, "threads_per_round", None)),
            max_upload_bytes=config.max_upload_bytes,
            max_voxels=config.max_voxels,
            default_seed=config.default_seed,
            default_shape=config.default_shape,
        ),
        engine_factory,
    )
    api = FastAPI(
        title="ichseg app", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json"
    )
    api.state.store = store
    api.state.config = config

    @api.exception_handler(IchsegError)
    async def _ichseg_error(_request: Request, exc: IchsegError) -> JSONResponse:
        status = int(getattr(exc, "status_code", 400))
        return JSONResponse({"error": _one_line(exc)}, status_code=status)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = f"invalid request: {where + ': ' if where else ''}{first.get('msg', 'malformed')}"
        return JSONResponse({"error": _one_line(msg)}, status_code=422)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": _one_line(exc.detail)}, status_code=exc.status_code)

    @api.exception_handler(ClientDisconnect)
    async def _gone(_request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # the client left mid-body (or GuardMiddleware cut an oversized body and answered 413)
        return JSONResponse({"error": "the request body ended early"}, status_code=400)

    @api.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in the ichseg app")
        return JSONResponse(
            {"error": f"internal error ({type(exc).__name__}); see the server log"},
            status_code=500,
        )

    def sid(request: Request) -> str:
        return str(request.scope["ichseg.sid"])

    # ------------------------------------------------------------------ page
    @api.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        text = _index_html(config.token)
        if text is None:
            return HTMLResponse(_NOT_BUILT, status_code=503)
        return HTMLResponse(text, headers={"cache-control": "no-store"})

    if STATIC_DIR.is_dir():
        api.mount("/dist", StaticFiles(directory=STATIC_DIR), name="dist")

    # ------------------------------------------------------------------ info
    @api.get("/api/health")
    def health() -> dict[str, Any]:
        return {
            "ok": True,
            "live_sessions": store.live_count(),
            "compute_slots": store.compute.slots,
        }

    @api.get("/api/config")
    def app_config() -> dict[str, Any]:
        from ichseg.preprocess.windowing import WINDOW_PRESETS

        return {
            "method": getattr(engine_factory, "name", None),
            "data": config.data_dir is not None,
            "max_upload_bytes": config.max_upload_bytes,
            "max_voxels": config.max_voxels,
            "windows": {
                k: {"level": WINDOW_PRESETS[k].level, "width": WINDOW_PRESETS[k].width}
                for k in ("brain", "subdural", "stroke", "bone")
            },
        }

    @api.get("/api/data")
    def data_items() -> dict[str, Any]:
        if config.data_dir is None:
            return {"items": []}
        return {"items": [i.as_dict() for i in list_data(Path(config.data_dir))]}

    # ------------------------------------------------------------------ studies
    @api.post("/api/study/default")
    def open_default(request: Request) -> dict[str, Any]:
        live = store.open_default(sid(request))
        return state_payload(live, store)

    @api.post("/api/study/data")
    def open_data(request: Request, pick: DataPick) -> dict[str, Any]:
        live = store.open_data(sid(request), pick.name)
        return state_payload(live, store)

    @api.post(UPLOAD_PATH)
    async def open_upload(request: Request) -> dict[str, Any]:
        form = await request.form(max_files=1, max_fields=4)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise NoFileError("no file in the upload: send it as the form field 'file'")
            live = await run_in_threadpool(
                store.open_upload, sid(request), upload.filename, upload.file
            )
            return await run_in_threadpool(state_payload, live, store)
        finally:
            await form.close()

    @api.post(INITIAL_MASK_PATH)
    async def initial_mask(request: Request) -> dict[str, Any]:
        """A mask file on the open study's grid (e.g. from ``ichseg predict``) becomes round 0."""
        form = await request.form(max_files=1, max_fields=4)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise NoFileError("no file in the upload: send it as the form field 'file'")

            def start() -> dict[str, Any]:
                with store.use(sid(request)) as live:
                    store.start_from_mask(live, upload.filename, upload.file)
                    return state_payload(live, store)

            return await run_in_threadpool(start)
        finally:
            await form.close()

    @api.get("/api/state")
    def state(request: Request) -> dict[str, Any]:
        with store.use(sid(request), required=False) as live:
            if live is None:
                return {"study": None}
            return state_payload(live, store)

    # ------------------------------------------------------------------ voxels for the viewer
    @api.get("/api/scan.nii")
    def scan_nifti(request: Request) -> Response:
        with store.use(sid(request)) as live:
            canon = live.canonical_scan()
            arr = canon.array
            if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
                if arr.min() >= -32768 and arr.max() <= 32767:
                    arr = arr.astype(np.int16)
            elif arr.dtype.kind in "iu" and arr.dtype.itemsize > 2:
                arr = arr.astype(np.float32)
            body = _nifti_bytes(np.asarray(arr), canon.affine)
        return Response(body, media_type="application/octet-stream")

    @api.get("/api/mask.nii")
    def mask_nifti(request: Request) -> Response:
        with store.use(sid(request)) as live:
            body = _nifti_bytes(
                np.ascontiguousarray(live.canonical_mask_zyx().transpose(2, 1, 0)),
                live.canonical_scan().affine,
            )
        return Response(body, media_type="application/octet-stream")

    @api.get("/api/mask")
    def mask_crop(request: Request) -> Response:
        with store.use(sid(request)) as live:
            body, bbox = _crop(live.canonical_mask_zyx(), live.mask_bbox())
            rnd = live.session.round_index
        return Response(
            body,
            media_type="application/octet-stream",
            headers={"x-bbox": bbox, "x-round": str(rnd), "cache-control": "no-store"},
        )

    @api.get("/api/hints")
    def hints_crop(request: Request) -> Response:
        with store.use(sid(request)) as live:
            labels, zs = live.hints_zyx()
            shape = live.session.grid_ref.shape_zyx
        full_body, bbox = b"", "0,0,0,0,0,0"
        if zs:
            z0, z1 = zs[0], zs[-1] + 1
            block = np.zeros((z1 - z0, shape[1], shape[2]), np.uint8)
            for n, z in enumerate(zs):
                block[z - z0] = labels[n]
            body, inner = _crop(block)
            if body:
                lo_hi = [int(v) for v in inner.split(",")]
                lo_hi[0] += z0
                lo_hi[3] += z0
                full_body, bbox = body, ",".join(map(str, lo_hi))
        return Response(
            full_body,
            media_type="application/octet-stream",
            headers={"x-bbox": bbox, "cache-control": "no-store"},
        )

    @api.get("/api/prompts")
    def prompts(request: Request) -> dict[str, Any]:
        with store.use(sid(request)) as live:
            s = live.session
            return {
                "prompts": [p.to_dict() for p in s.prompts],
                "pending": [p.to_dict() for p in s.pending],
            }

    # ------------------------------------------------------------------ interaction
    @api.post("/api/strokes")
    def add_stroke(request: Request, stroke: Stroke) -> dict[str, Any]:
        with store.use(sid(request)) as live:
            n = store.add_stroke(live, stroke.voxels, stroke.positive)
            return {**state_payload(live, store), "added": n}

    @api.post("/api/prompts")
    def add_prompts(request: Request, body: Prompts) -> dict[str, Any]:
        with store.use(sid(request)) as live:
            n = store.add_prompts(live, body.prompts)
            return {**state_payload(live, store), "added": n}

    @api.post("/api/refine")
    def refine(request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        waited: dict[str, float] = {}
        with store.use(sid(request)) as live:
            t1 = time.perf_counter()
            with store.compute.slot(waited):
                t1b = time.perf_counter()
                r = live.session.run_round()  # includes the log's autosave after the round
            t2 = time.perf_counter()
            out = state_payload(live, store)
            t3 = time.perf_counter()
        out["result"] = {
            "index": r.index,
            "volume_ml": r.volume_ml,
            "delta_ml": r.delta_ml,
            "seconds": r.seconds,
            "note": r.note,
            "timings": {k: float(v) for k, v in r.timings.items()},
        }
        out["server_seconds"] = time.perf_counter() - t0
        out["server_timings"] = {
            "session_lock_s": t1 - t0,  # waiting for this user's session (restore included)
            "compute_wait_s": waited.get("compute_wait_s", t1b - t1),  # queued for a slot
            "run_round_s": t2 - t1b,
            "after_round_s": (t2 - t1b) - r.seconds,  # the session's autosave of the log
            "payload_s": t3 - t2,  # mask, bounding box, ABC/2, suggested slice
        }
        return out

    @api.post("/api/undo")
    def undo(request: Request) -> dict[str, Any]:
        with store.use(sid(request)) as live:
            live.session.undo()
            live.save()
            return state_payload(live, store)

    @api.post("/api/redo")
    def redo(request: Request) -> dict[str, Any]:
        with store.use(sid(request)) as live:
            live.session.redo()
            live.save()
            return state_payload(live, store)

    # ------------------------------------------------------------------ export
    @api.get("/api/export/mask.nii.gz")
    def export_nifti(request: Request) -> Response:
        from ichseg.io.reader import save_mask

        with store.use(sid(request)) as live:
            mask = live.session.mask()
            out_dir = live.folder / "exports"
            out_dir.mkdir(exist_ok=True)
            path = out_dir / f"round{live.session.round_index:03d}-{_stamp()}.nii.gz"
            save_mask(mask, path)
            body = path.read_bytes()
            name = _download_name(live, "mask.nii.gz")
        return Response(
            body,
            media_type="application/gzip",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    @api.get("/api/export/mask.seg.dcm")
    def export_seg(request: Request) -> Response:
        from ichseg.io.dicom_seg import write_dicom_seg

        with store.use(sid(request)) as live:
            source = live.volume.meta.get("source")
            if not live.study.get("dicom") or not source:
                raise NotDicomError(
                    "DICOM-SEG export needs a DICOM study (open a zipped DICOM series or a "
                    "DICOM folder from --data); export the mask as NIfTI instead"
                )
            out_dir = live.folder / "exports"
            out_dir.mkdir(exist_ok=True)
            path = out_dir / f"round{live.session.round_index:03d}-{_stamp()}.seg.dcm"
            write_dicom_seg(live.session.mask(), source, path)
            body = path.read_bytes()
            name = _download_name(live, "mask.seg.dcm")
        return Response(
            body,
            media_type="application/dicom",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    @api.get("/api/export/log.json")
    def export_log(request: Request) -> Response:
        with store.use(sid(request)) as live:
            body = live.log_path.read_bytes()
        return Response(body, media_type="application/json")

    return GuardMiddleware(api, config)


class NoFileError(IchsegError):
    """An upload request without a file part."""


class NotDicomError(IchsegError):
    """DICOM-SEG export asked for a study that is not DICOM (HTTP 409)."""

    status_code = 409


def _one_line(value: Any) -> str:
    text = " ".join(str(value).split())
    return text[:500] if text else "error"


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{time.monotonic_ns() % 1000:03d}"


def _download_name(live: LiveSession, suffix: str) -> str:
    stem = str(live.study.get("name") or "scan")
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha", ".zip"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "scan"
    return f"{stem[:60]}_{suffix}"


def serve(config: AppConfig, *, echo: Any = print) -> None:
    """Validate ``config``, load the engine once, and run the server until interrupted."""
    import uvicorn

    from ichseg.interaction.engine import DEFAULT_METHOD, EngineFactory

    config.validate()
    Path(config.workdir).mkdir(parents=True, exist_ok=True)
    if not (Path(config.workdir).is_dir() and os.access(config.workdir, os.W_OK)):
        raise ConfigError(f"--workdir {config.workdir}: not a writable folder")
    t0 = time.perf_counter()
    factory = EngineFactory(config.method or DEFAULT_METHOD)
    app = create_app(config, factory)
    shown_host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"http://{shown_host}:{config.port}/"
    if config.token:
        url += f"?token={quote(config.token, safe='')}"
    echo(
        f"ichseg app: engine {factory.name} ready in {time.perf_counter() - t0:.1f} s; "
        f"sessions in {config.workdir}"
    )
    if not STATIC_DIR.is_dir():
        echo("warning: the page is not built (run `make install`); the API still works")
    echo(f"open {url}  (Ctrl+C stops the server)")
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)


__all__ = ["AppConfig", "create_app", "default_workdir", "is_loopback", "serve"]
