"""Users' sessions of the app: one open study each, autosaved, evicted and restored on demand.

A user is a random session cookie. Its hash names a folder under ``<workdir>/sessions/`` that
holds everything needed to rebuild the session after an eviction or a server restart:

* ``study.json`` — what was opened (the embedded default scan, a ``--data`` pick or an upload);
* ``upload/`` — the uploaded file, or the extracted DICOM series;
* ``log.json`` — the interaction log, rewritten after every prompt, round, undo and redo;
* ``exports/`` — every mask exported; ``archive/<time>/`` — earlier studies of the same user.

At most ``max_sessions`` sessions are kept in memory; the least recently used one is dropped
when another is needed (its log is complete on disk) and rebuilt by replaying its log the next
time its user asks (:func:`~ichseg.interaction.session.resume_session`, or the same steps with
the server's already loaded model when the log's engine is the server's).

Engine work (encoding a scan, a refine round, replaying a log) runs through one
:class:`ComputeGate` with ``compute_slots`` places: requests beyond it wait their turn instead of
all computing at once, which on a small machine makes every round many times slower (each round's
own threads then fight over the same cores).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.app.files import (
    extract_zip_safely,
    resolve_data_pick,
    safe_upload_name,
    suffix_of,
)
from ichseg.errors import IchsegError, InputFileError, PromptError
from ichseg.interaction.prompts import Scribble, prompt_from_dict
from ichseg.interaction.session import (
    InteractiveSession,
    read_log,
    replay_events,
    resume_session,
    session_config_from_log,
    volume_sha256,
    write_json_atomic,
)
from ichseg.io.volume import Intensity, IntensityKind, Volume, to_canonical

STUDY_FORMAT = "ichseg-app-study"
#: the embedded default scan: the demo's seed (a synthetic head CT with a 5-60 mL bleed)
DEFAULT_SEED = 2026
MAX_STROKE_VOXELS = 1_000_000
#: prompt types the app accepts through /api/prompts (the page makes clicks, strokes and boxes)
APP_PROMPT_TYPES = ("click", "scribble", "box")


class NoStudyError(PromptError):
    """The user has no open study yet (HTTP 409)."""

    status_code = 409


# ---------------------------------------------------------------------------------- default scan
_default_cache: dict[tuple[int, tuple[int, int, int] | None], Volume] = {}
_default_lock = threading.Lock()


def default_scan(
    seed: int = DEFAULT_SEED, shape: tuple[int, int, int] | None = None
) -> tuple[Volume, str]:
    """The embedded default scan (generated once per process from a fixed seed) and its name."""
    from ichseg.app.demo import pick_demo_case

    key = (int(seed), None if shape is None else tuple(int(s) for s in shape))
    with _default_lock:
        if key not in _default_cache:
            case, index = pick_demo_case(seed, shape=key[1])
            vol = case.image
            vol.meta["source"] = None
            vol.meta["app_name"] = f"synthetic head CT (seed {seed}, case {index})"
            _default_cache[key] = vol
        vol = _default_cache[key]
    return vol, str(vol.meta["app_name"])


# ---------------------------------------------------------------------------------- live session
@dataclass
class LiveSession:
    """A session in memory, with what the viewer needs cached per history state."""

    key: str
    folder: Path
    study: dict[str, Any]
    volume: Volume
    session: InteractiveSession
    warnings: list[str] = field(default_factory=list)
    _canonical: Volume | None = None
    _cache_state: Any = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.folder / "log.json"

    def save(self) -> None:
        self.session.save_log(self.log_path)

    def canonical_scan(self) -> Volume:
        """The scan reoriented to canonical LPS (what the viewer shows), in HU."""
        if self._canonical is None:
            canon, _ = to_canonical(self.volume)
            if canon.intensity.kind == IntensityKind.WINDOWED:
                canon = canon.with_array(canon.hu(), Intensity.hu())
            self._canonical = canon
        return self._canonical

    def _cached(self) -> dict[str, Any]:
        state = self.session.state
        if self._cache_state is not state:
            self._cache = {}
            self._cache_state = state
        return self._cache

    def canonical_mask_zyx(self) -> np.ndarray:
        """The current mask on the canonical grid as ``(Z, Y, X)`` uint8 (the same voxels as
        :meth:`InteractiveSession.mask`, which is this array mapped back to the original grid)."""
        cache = self._cached()
        if "mask" not in cache:
            state = self.session.state
            if state.canonical_prob is None:
                cache["mask"] = np.zeros(self.session.grid_ref.shape_zyx, np.uint8)
            else:
                cache["mask"] = (state.canonical_prob >= self.session.config.threshold).view(
                    np.uint8
                )
        return cache["mask"]

    def mask_bbox(self) -> tuple[int, int, int, int, int, int] | None:
        """``(z0, y0, x0, z1, y1, x1)`` (ends exclusive) of the canonical mask; None if empty."""
        cache = self._cached()
        if "bbox" not in cache:
            cache["bbox"] = bbox_zyx(self.canonical_mask_zyx())
        return cache["bbox"]

    def suggested_slice(self) -> int | None:
        cache = self._cached()
        if "suggest" not in cache:
            cache["suggest"] = self.session.suggest_next_slice()
        return cache["suggest"]

    def abc2(self) -> dict[str, Any]:
        """ABC/2 of the current mask with its calipers in canonical voxels ``(z, y, x)``.

        Measured on the mask's bounding box (plus one voxel) with the affine shifted to it: the
        same lengths and volume as on the whole grid, at a fraction of the cost."""
        cache = self._cached()
        if "abc2" not in cache:
            from ichseg.quantify.volume import abc2

            canon = self.canonical_scan()
            box = self.mask_bbox()
            if box is None:
                lo = np.zeros(3, np.int64)
                crop = np.zeros((1, 1, 1), np.uint8)
            else:
                shape = np.asarray(self.session.grid_ref.shape_zyx)
                lo = np.maximum(np.asarray(box[:3]) - 1, 0)
                hi = np.minimum(np.asarray(box[3:]) + 1, shape)
                crop = self.canonical_mask_zyx()[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            shift = np.eye(4)
            shift[:3, 3] = lo[::-1]  # (i, j, k) = (x, y, z) offset of the crop
            mask = Volume(
                np.ascontiguousarray(crop.transpose(2, 1, 0)),
                canon.affine @ shift,
                Intensity.label(),
            )
            res = abc2(mask)
            z_off, y_off, x_off = (int(v) for v in lo)
            out: dict[str, Any] = {
                "volume_ml": res.volume_ml,
                "a_mm": res.a_mm,
                "b_mm": res.b_mm,
                "c_mm": res.c_mm,
                "weighting": res.weighting,
                "n_slices": res.n_slices,
                "slice_z": res.slice_index + z_off if res.slice_index >= 0 else None,
                "calipers": [],
            }
            for name, cal in (("A", res.a), ("B", res.b)):
                if cal is not None:
                    out["calipers"].append(
                        {
                            "name": name,
                            "length_mm": cal.length_mm,
                            "zyx": [
                                [float(p[2]) + z_off, float(p[1]) + y_off, float(p[0]) + x_off]
                                for p in cal.ijk
                            ],
                            "ras": [[float(v) for v in p] for p in cal.ras],
                        }
                    )
            cache["abc2"] = out
        return cache["abc2"]

    def hints_zyx(self) -> tuple[np.ndarray, tuple[int, ...]]:
        """Prompts in effect rasterized on the slices they touch: ``(n, Y, X)`` uint8 labels
        (1 hemorrhage, 2 background, 3 both) and the slice indices."""
        from ichseg.interaction.hints import rasterize_slice

        prompts = self.session.prompts
        z_all = sorted({p.z for p in prompts})
        _, y, x = self.session.grid_ref.shape_zyx
        out = np.zeros((len(z_all), y, x), np.uint8)
        for n, z in enumerate(z_all):
            h = rasterize_slice(prompts, (y, x), z) > 0
            out[n] = h[0].astype(np.uint8) + 2 * h[1].astype(np.uint8)
        return out, tuple(z_all)


def bbox_zyx(a: np.ndarray) -> tuple[int, int, int, int, int, int] | None:
    """Bounding box ``(z0, y0, x0, z1, y1, x1)`` (ends exclusive) of the non-zero voxels of a
    ``(Z, Y, X)`` array, from its axis projections; None if it is all zero."""
    zs = np.flatnonzero(a.reshape(a.shape[0], -1).any(axis=1))
    if zs.size == 0:
        return None
    z0, z1 = int(zs[0]), int(zs[-1]) + 1
    sub = a[z0:z1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    return z0, int(ys[0]), int(xs[0]), z1, int(ys[-1]) + 1, int(xs[-1]) + 1


def stroke_to_scribbles(
    voxels: np.ndarray, positive: bool, shape_zyx: tuple[int, int, int]
) -> list[Scribble]:
    """Painted voxels ``(N, 3)`` as ``(z, y, x)`` -> one 1-px scribble per horizontal run, so
    the rasterized prompts are exactly the painted voxels."""
    v = np.asarray(voxels)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise PromptError("a stroke needs at least one (z, y, x) voxel")
    if v.shape[0] > MAX_STROKE_VOXELS:
        raise PromptError(f"a stroke may paint at most {MAX_STROKE_VOXELS} voxels")
    v = v.astype(np.int64)
    lim = np.asarray(shape_zyx)
    bad = np.any((v < 0) | (v >= lim), axis=1)
    if bad.any():
        z, y, x = (int(c) for c in v[np.argmax(bad)])
        raise PromptError(f"stroke voxel (z={z}, y={y}, x={x}) is outside the scan {tuple(lim)}")
    v = np.unique(v, axis=0)  # sorted by z, then y, then x
    new_run = np.ones(len(v), bool)
    new_run[1:] = (v[1:, 0] != v[:-1, 0]) | (v[1:, 1] != v[:-1, 1]) | (v[1:, 2] != v[:-1, 2] + 1)
    starts = np.nonzero(new_run)[0]
    ends = np.append(starts[1:], len(v)) - 1
    return [
        Scribble(
            int(v[s, 0]),
            ((float(v[s, 1]), float(v[s, 2])), (float(v[e, 1]), float(v[e, 2]))),
            bool(positive),
            1.0,
        )
        for s, e in zip(starts, ends, strict=True)
    ]


def _without_prefix(exc: IchsegError, folder: Path) -> IchsegError:
    """The same error with the server-side folder left out of its message (users see names
    relative to what they picked or uploaded, not the server's paths)."""
    text = str(exc)
    for prefix in {str(folder) + "/", str(folder.resolve()) + "/"}:
        text = text.replace(prefix, "")
    if text == str(exc):
        return exc
    new = type(exc)(text)
    return new


def _save_upload(source: Any, target: Path, name: str, limit: int) -> None:
    """Stream an uploaded file object to ``target``, refusing more than ``limit`` bytes or none."""
    size = 0
    with target.open("wb") as out:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            if size > limit:
                from ichseg.app.files import UploadTooLargeError

                raise UploadTooLargeError(
                    f"{name}: larger than the upload limit of {limit / 2**20:.0f} MiB"
                )
            out.write(chunk)
    if size == 0:
        raise InputFileError(f"{name}: the uploaded file is empty")


# ---------------------------------------------------------------------------------- compute
def default_compute_slots(threads_per_round: int | None = None) -> int:
    """Engine rounds run at once by default: the CPU cores over the threads one round uses
    (``threads_per_round``; None: torch's intra-op threads)."""
    import os

    if threads_per_round is None:
        import torch

        threads_per_round = torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) // max(1, int(threads_per_round)))


class ComputeGate:
    """At most ``slots`` engine computations at a time; the rest queue (first come, first
    served by the OS's lock). :meth:`slot` records how long the caller waited."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"compute slots must be >= 1, got {slots}")
        self.slots = slots
        self._sem = threading.BoundedSemaphore(slots)

    @contextlib.contextmanager
    def slot(self, waited: dict[str, float] | None = None) -> Iterator[None]:
        """Hold one slot; ``waited["compute_wait_s"]`` gets the seconds spent queueing."""
        t0 = time.perf_counter()
        with self._sem:
            if waited is not None:
                waited["compute_wait_s"] = waited.get("compute_wait_s", 0.0) + (
                    time.perf_counter() - t0
                )
            yield


# ---------------------------------------------------------------------------------- the store
@dataclass
class StoreConfig:
    workdir: Path
    data_dir: Path | None = None
    max_sessions: int = 4
    compute_slots: int = 1  #: engine computations at once (:class:`ComputeGate`)
    max_upload_bytes: int = 1024 * 2**20
    max_voxels: int = 512 * 512 * 512
    default_seed: int = DEFAULT_SEED
    default_shape: tuple[int, int, int] | None = None


def _json_norm(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class SessionStore:
    """Sessions by user id, at most ``max_sessions`` in memory (LRU), the rest on disk."""

    def __init__(self, config: StoreConfig, engine_factory: Callable[[], Any]) -> None:
        self.config = config
        self.factory = engine_factory
        self.root = Path(config.workdir) / "sessions"
        self.root.mkdir(parents=True, exist_ok=True)
        self._live: OrderedDict[str, LiveSession] = OrderedDict()
        self._locks: dict[str, threading.RLock] = {}
        self._lock = threading.Lock()
        self.compute = ComputeGate(config.compute_slots)
        self.restores = 0  #: sessions rebuilt from their logs (evicted or after a restart)
        self.evictions = 0

    # --------------------------------------------------------------------------- keys & locks
    @staticmethod
    def key_for(user_id: str) -> str:
        """The folder name of a user: a hash, so the workdir never holds the cookie itself."""
        return hashlib.sha256(f"ichseg-app:{user_id}".encode()).hexdigest()[:32]

    def _key_lock(self, key: str) -> threading.RLock:
        with self._lock:
            return self._locks.setdefault(key, threading.RLock())

    def folder(self, key: str) -> Path:
        return self.root / key

    def live_count(self) -> int:
        with self._lock:
            return len(self._live)

    def is_live(self, user_id: str) -> bool:
        with self._lock:
            return self.key_for(user_id) in self._live

    # --------------------------------------------------------------------------- access
    @contextlib.contextmanager
    def use(self, user_id: str, *, required: bool = True) -> Iterator[LiveSession | None]:
        """The user's live session (restored from disk if needed) while holding its lock."""
        key = self.key_for(user_id)
        lock = self._key_lock(key)
        with lock:
            with self._lock:
                live = self._live.get(key)
                if live is not None:
                    self._live.move_to_end(key)
            if live is None:
                live = self._restore(key)
                if live is not None:
                    self._insert(live)
            if live is None and required:
                raise NoStudyError("no study is open: open the default scan, a file or a pick")
            yield live
        self._evict()

    def _insert(self, live: LiveSession) -> None:
        with self._lock:
            self._live[live.key] = live
            self._live.move_to_end(live.key)

    def _evict(self) -> None:
        """Drop least recently used sessions beyond ``max_sessions`` (never one in use)."""
        with self._lock:
            for key in list(self._live):
                if len(self._live) <= self.config.max_sessions:
                    break
                lock = self._locks.get(key)
                if lock is None or not lock.acquire(blocking=False):
                    continue
                try:
                    del self._live[key]
                    self.evictions += 1
                finally:
                    lock.release()

    # --------------------------------------------------------------------------- studies
    def _load_study_volume(self, key: str, study: dict[str, Any]) -> tuple[Volume, list[str]]:
        kind = study.get("kind")
        caught: list[str] = []
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            if kind == "default":
                shape = study.get("shape")
                vol, _ = default_scan(int(study["seed"]), tuple(shape) if shape else None)
            elif kind == "data":
                if self.config.data_dir is None:
                    raise InputFileError(
                        "this session's scan came from a --data folder, but the server was "
                        "started without --data"
                    )
                from ichseg.io.reader import load_volume

                path = resolve_data_pick(self.config.data_dir, str(study["data_name"]))
                vol = load_volume(path, max_voxels=self.config.max_voxels)
            elif kind == "upload":
                from ichseg.io.reader import load_volume

                rel = Path(str(study["upload"]))
                if rel.is_absolute() or ".." in rel.parts:
                    raise InputFileError("study.json: invalid upload path")
                vol = load_volume(self.folder(key) / rel, max_voxels=self.config.max_voxels)
            else:
                raise InputFileError(f"study.json: unknown study kind {kind!r}")
        caught = [str(w.message) for w in rec if issubclass(w.category, UserWarning)]
        return vol, caught

    def _engine_for(self, log_engine: dict[str, Any]) -> Any | None:
        """A fresh engine from the server's factory if the log's engine is the same method
        with the same options and model; otherwise ``None`` (the log's own engine is built)."""
        fresh = self.factory()
        same = (
            log_engine.get("name") == fresh.name
            and _json_norm(log_engine.get("config") or {}) == _json_norm(fresh.config_dict())
            and _json_norm(log_engine.get("model") or {}) == _json_norm(fresh.model_info())
        )
        return fresh if same else None

    def _restore(self, key: str) -> LiveSession | None:
        folder = self.folder(key)
        study_path, log_path = folder / "study.json", folder / "log.json"
        if not study_path.is_file() or not log_path.is_file():
            return None
        try:
            study = json.loads(study_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputFileError(f"the saved session cannot be read ({exc})") from None
        if not isinstance(study, dict) or study.get("format") != STUDY_FORMAT:
            raise InputFileError("the saved session is not an ichseg app study")
        try:
            volume, caught = self._load_study_volume(key, study)
        except IchsegError as exc:
            raise InputFileError(
                f"the saved session's scan cannot be loaded again ({exc}); open another study"
            ) from None
        data = read_log(log_path)
        want = (data.get("scan") or {}).get("sha256")
        if want and want != volume_sha256(volume):
            raise InputFileError(
                "the saved session's scan has changed since it was saved; open it again"
            )
        engine = self._engine_for(data["engine"])
        with self.compute.slot():
            if engine is not None:
                session = InteractiveSession(engine, session_config_from_log(data))
                replay_events(session, data, volume)
                session.autosave = log_path
            else:
                session = resume_session(log_path, volume)
        self.restores += 1
        return LiveSession(key, folder, study, volume, session, caught)

    def _start(
        self,
        user_id: str,
        study: dict[str, Any],
        load: Callable[[Path], tuple[Volume, list[str]]],
        staged: Path | None = None,
    ) -> LiveSession:
        """Open a new study for the user: load it (before touching the current one), archive
        the previous study, then start and save a fresh session."""
        key = self.key_for(user_id)
        folder = self.folder(key)
        with self._key_lock(key):
            volume, caught = load(folder)
            session = InteractiveSession(self.factory())
            with self.compute.slot():
                session.set_volume(volume)
            self._archive(folder)
            folder.mkdir(parents=True, exist_ok=True)
            if staged is not None:
                staged.rename(folder / "upload")
            study = {
                "format": STUDY_FORMAT,
                "version": 1,
                **study,
                "opened": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            write_json_atomic(folder / "study.json", study)
            live = LiveSession(key, folder, study, volume, session, caught)
            session.autosave = live.log_path
            live.save()
            with self._lock:
                self._live.pop(key, None)
            self._insert(live)
        self._evict()
        return live

    def _archive(self, folder: Path) -> None:
        if not (folder / "study.json").exists():
            return
        dest = folder / "archive" / time.strftime("%Y%m%d-%H%M%S")
        n = 1
        while dest.exists():
            dest = dest.with_name(f"{dest.name.split('.')[0]}.{n}")
            n += 1
        dest.mkdir(parents=True)
        for name in ("study.json", "log.json", "upload", "exports", "initial"):
            if (folder / name).exists():
                (folder / name).rename(dest / name)

    def open_default(self, user_id: str) -> LiveSession:
        cfg = self.config
        shape = list(cfg.default_shape) if cfg.default_shape else None
        vol, name = default_scan(cfg.default_seed, cfg.default_shape)
        study = {"kind": "default", "name": name, "seed": cfg.default_seed, "shape": shape}
        return self._start(user_id, study, lambda _folder: (vol, []))

    def open_data(self, user_id: str, name: str) -> LiveSession:
        if self.config.data_dir is None:
            raise InputFileError("the server was started without --data: nothing to pick from")
        root = self.config.data_dir.resolve()
        path = resolve_data_pick(root, name)
        rel = path.relative_to(root).as_posix()
        study = {"kind": "data", "name": rel, "data_name": rel, "dicom": path.is_dir()}
        try:
            return self._start(user_id, study, lambda _f: self._load_study_volume("", study))
        except IchsegError as exc:
            raise _without_prefix(exc, root) from None

    def start_from_mask(self, live: LiveSession, filename: str | None, source: Any) -> None:
        """Make an uploaded mask (NIfTI, NRRD or MHA on the study's grid, or a permuted or
        flipped copy of it) the session's round 0; the file is kept under ``initial/`` and the
        mask itself goes into the log, so a restore replays it."""
        from ichseg.io.reader import load_mask

        name = safe_upload_name(filename)
        if suffix_of(name, (".zip",)) is not None:
            raise InputFileError(f"{name}: an initial mask is one NIfTI, NRRD or MHA file")
        folder = live.folder / "initial" / time.strftime("%Y%m%d-%H%M%S")
        n = 1
        while folder.exists():
            folder = folder.with_name(f"{folder.name.split('.')[0]}.{n}")
            n += 1
        folder.mkdir(parents=True)
        target = folder / name
        try:
            _save_upload(source, target, name, self.config.max_upload_bytes)
            mask = load_mask(target, max_voxels=self.config.max_voxels)
            with self.compute.slot():
                live.session.start_from_mask(mask, source=f"upload:{name}")
        except IchsegError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise _without_prefix(exc, folder) from None
        live.save()

    def open_upload(self, user_id: str, filename: str | None, source: Any) -> LiveSession:
        """Open an uploaded file (``source``: a binary file object at its start)."""
        name = safe_upload_name(filename)
        key = self.key_for(user_id)
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".incoming-{time.monotonic_ns()}"
        staging.mkdir()
        try:
            target = staging / name
            limit = self.config.max_upload_bytes
            _save_upload(source, target, name, limit)
            dicom = suffix_of(name, (".zip",)) is not None
            if dicom:
                extract_zip_safely(target, staging / "dicom", max_total_bytes=limit)
                target.unlink()
                rel = "upload/dicom"
            else:
                rel = f"upload/{name}"
            study = {"kind": "upload", "name": name, "upload": rel, "dicom": dicom}

            def load(_folder: Path) -> tuple[Volume, list[str]]:
                from ichseg.io.reader import load_volume

                path = staging / Path(rel).relative_to("upload")
                with warnings.catch_warnings(record=True) as rec:
                    warnings.simplefilter("always")
                    vol = load_volume(path, max_voxels=self.config.max_voxels)
                # the files move to <folder>/upload: record the final location
                vol.meta["source"] = str(folder / rel)
                return vol, [str(w.message) for w in rec if issubclass(w.category, UserWarning)]

            return self._start(user_id, study, load, staged=staging)
        except IchsegError as exc:
            raise _without_prefix(exc, staging) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # --------------------------------------------------------------------------- prompts
    @staticmethod
    def add_stroke(live: LiveSession, voxels: list[int], positive: bool) -> int:
        flat = np.asarray(voxels, dtype=np.int64)
        if flat.ndim != 1 or flat.size % 3:
            raise PromptError("stroke voxels must be a flat list of z, y, x triplets")
        scribbles = stroke_to_scribbles(
            flat.reshape(-1, 3), positive, live.session.grid_ref.shape_zyx
        )
        live.session.add_prompts(scribbles)
        live.save()
        return len(scribbles)

    @staticmethod
    def add_prompts(live: LiveSession, prompts: list[dict[str, Any]]) -> int:
        if not prompts:
            raise PromptError("no prompts given")
        for p in prompts:
            kind = p.get("type") if isinstance(p, dict) else None
            if kind not in APP_PROMPT_TYPES:
                raise PromptError(
                    f"the app takes {', '.join(APP_PROMPT_TYPES[:-1])} and "
                    f"{APP_PROMPT_TYPES[-1]} prompts, got type {kind!r}"
                )
        parsed = [prompt_from_dict(p) for p in prompts]
        live.session.add_prompts(parsed)
        live.save()
        return len(parsed)
