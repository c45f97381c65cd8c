"""Load on `ichseg app`: many concurrent users on loopback, each doing refine rounds.

Starts the real server (``ichseg app`` as a subprocess on 127.0.0.1) and drives it with one
thread and one ``httpx.Client`` (own session cookie) per simulated user: open the embedded
default scan (512 x 512 x 32), then rounds of [paint a stroke -> Refine -> fetch the mask]. The
strokes are voxels of the default case's true hemorrhage (the same seed the server uses), so
every round does real work. Per refine it records the client's round trip, the engine's own
round time (``RoundResult.seconds``, returned by the API) and the server handler's time, and
reports p50/p95 of each and of the overhead = round trip - engine time (target <= 150 ms).

Phases (bounded in requests and time; everything stops by itself):

1. ``--users`` concurrent users with ``--method`` (default the random walker, so the load test
   leaves the shared machine usable), ``--max-sessions`` = users so nothing is evicted;
2. restore: the server is restarted on the same workdir and a few users come back, which
   rebuilds their sessions by replaying their autosaved logs (time of the first request);
3. ``--default-rounds`` rounds of one user with the product's default engine
   (``hpinet_refined``, shipped weights), to show the same overhead with the real model.

Writes ``benchmarks/results/app_load.md`` and ``.json``.

    python benchmarks/app_load.py --users 20 --rounds 3 --default-rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, float), q)) if values else float("nan")


class AppServer:
    """``ichseg app`` in a subprocess on loopback."""

    def __init__(
        self, workdir: Path, method: str, max_sessions: int, log: Path, slots: int | None = None
    ) -> None:
        self.port = _free_port()
        exe = Path(sys.executable).with_name("ichseg")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ichseg.cli"]
        cmd += [
            "app",
            "--port",
            str(self.port),
            "--workdir",
            str(workdir),
            "--method",
            method,
            "--max-sessions",
            str(max_sessions),
            *(["--compute-slots", str(slots)] if slots else []),
        ]
        self.log = log.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120.0) -> float:
        import httpx

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ichseg app exited with code {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("ichseg app did not answer in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def stroke_plan(rounds: int) -> list[tuple[bool, list[int]]]:
    """One stroke per round on the default case: hemorrhage on the slices with most blood, in
    descending order, a small block of voxels each (like a short brush stroke)."""
    from ichseg.app.demo import pick_demo_case
    from ichseg.io.volume import to_canonical

    case, _ = pick_demo_case()
    gt = to_canonical(case.mask)[0].zyx()
    areas = gt.sum(axis=(1, 2)).astype(np.int64)
    order = np.argsort(-areas, kind="stable")
    plan = []
    for r in range(rounds):
        z = int(order[r % max(1, int((areas > 0).sum()))])
        ys, xs = np.nonzero(gt[z])
        cy, cx = int(np.median(ys)), int(np.median(xs))
        vox = [
            v
            for dy in range(-2, 3)
            for dx in range(-6, 7)
            if gt[z, cy + dy, cx + dx]
            for v in (z, cy + dy, cx + dx)
        ]
        plan.append((True, vox or [z, cy, cx]))
    return plan


def user(
    base: str,
    plan: list[tuple[bool, list[int]]],
    deadline: float,
    out: list[dict],
    errors: list[str],
    barrier: threading.Barrier | None,
    think: tuple[float, float] | None = None,
    seed: int = 0,
) -> None:
    """One user: open the default scan, then per planned stroke [think, paint, Refine, fetch
    the mask]. ``think``: seconds of painting/looking before each stroke (uniform in the
    range; None = back to back)."""
    import httpx

    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=base, timeout=120) as c:
        try:
            if barrier is not None:
                barrier.wait(timeout=60)
            t = time.perf_counter()
            r = c.post("/api/study/default")
            r.raise_for_status()
            out.append({"kind": "open", "rtt_s": time.perf_counter() - t})
            for positive, vox in plan:
                if think is not None:
                    time.sleep(float(rng.uniform(*think)))
                if time.perf_counter() > deadline:
                    break
                c.post(
                    "/api/strokes", json={"positive": positive, "voxels": vox}
                ).raise_for_status()
                t = time.perf_counter()
                r = c.post("/api/refine")
                rtt = time.perf_counter() - t
                r.raise_for_status()
                body = r.json()
                t = time.perf_counter()
                m = c.get("/api/mask")
                m.raise_for_status()
                mask_rtt = time.perf_counter() - t
                out.append(
                    {
                        "kind": "refine",
                        "rtt_s": rtt,
                        "engine_s": body["result"]["seconds"],
                        "server_s": body["server_seconds"],
                        **{f"srv_{k}": v for k, v in body.get("server_timings", {}).items()},
                        "mask_rtt_s": mask_rtt,
                        "mask_bytes": len(m.content),
                        "volume_ml": body["volume"]["planimetric_ml"],
                    }
                )
        except Exception as exc:  # reported, never hidden
            errors.append(f"{type(exc).__name__}: {exc}")


def run_users(
    base: str, n: int, plan, deadline: float, think: tuple[float, float] | None = None
) -> tuple[list[dict], list[str], float]:
    records: list[dict] = []
    errors: list[str] = []
    barrier = threading.Barrier(n)
    threads = [
        threading.Thread(
            target=user, args=(base, plan, deadline, records, errors, barrier, think, k)
        )
        for k in range(n)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.perf_counter() + 60))
    return records, errors, time.perf_counter() - t0


def summarize(records: list[dict]) -> dict:
    ref = [r for r in records if r["kind"] == "refine"]
    rtt = [r["rtt_s"] for r in ref]
    eng = [r["engine_s"] for r in ref]
    over = [r["rtt_s"] - r["engine_s"] for r in ref]
    handler = [r["server_s"] - r["engine_s"] for r in ref]
    transport = [r["rtt_s"] - r["server_s"] for r in ref]
    mask = [r["mask_rtt_s"] for r in ref]
    queue = [r.get("srv_compute_wait_s", 0.0) for r in ref]
    own = [o - q for o, q in zip(over, queue, strict=True)]
    autosave = [r.get("srv_after_round_s", float("nan")) for r in ref]
    payload = [r.get("srv_payload_s", float("nan")) for r in ref]
    opens = [r["rtt_s"] for r in records if r["kind"] == "open"]
    stats = {}
    for name, vals in (
        ("refine_round_trip_s", rtt),
        ("engine_round_s", eng),
        ("overhead_s", over),
        ("compute_wait_s", queue),
        ("overhead_without_queue_s", own),
        ("overhead_in_handler_s", handler),
        ("overhead_http_and_queue_s", transport),
        ("handler_autosave_s", autosave),
        ("handler_payload_s", payload),
        ("mask_fetch_s", mask),
        ("open_default_s", opens),
    ):
        stats[name] = {"p50": _pct(vals, 50), "p95": _pct(vals, 95), "n": len(vals)}
    stats["mask_bytes_median"] = statistics.median([r["mask_bytes"] for r in ref]) if ref else 0
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="refine rounds per user")
    ap.add_argument("--method", default="random_walker", help="engine of the load phase")
    ap.add_argument("--default-rounds", type=int, default=4, help="rounds with hpinet_refined")
    ap.add_argument("--restore-users", type=int, default=3)
    ap.add_argument("--think-min", type=float, default=3.0, help="paced phase: think time, s")
    ap.add_argument("--think-max", type=float, default=8.0, help="0 skips the paced phase")
    ap.add_argument("--time-limit", type=float, default=150.0, help="seconds per load phase")
    ap.add_argument(
        "--compute-slots",
        type=int,
        default=None,
        help="server's --compute-slots (default: its own)",
    )
    ap.add_argument("--out", default=str(RESULTS / "app_load"))
    ap.add_argument(
        "--report-only", action="store_true", help="rewrite the .md from an existing .json"
    )
    args = ap.parse_args()
    if args.report_only:
        saved = json.loads(Path(args.out).with_suffix(".json").read_text())
        Path(args.out).with_suffix(".md").write_text(report(saved))
        return
    command = "python benchmarks/app_load.py " + " ".join(sys.argv[1:])

    import httpx

    t_all = time.perf_counter()
    load_before = os.getloadavg()
    plan = stroke_plan(max(args.rounds, args.default_rounds))
    work = Path(tempfile.mkdtemp(prefix="ichseg-app-load-"))
    log = work / "server.log"
    result: dict = {
        "command": command,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(v, 2) for v in load_before],
        },
        "scan": "embedded default: synthetic head CT 512 x 512 x 32 (seed 2026)",
    }
    try:
        # 0. one user alone: the app's overhead without CPU contention
        server = AppServer(work / "wd_solo", args.method, 4, log)
        startup = server.wait_ready()
        records, errors = [], []
        t0 = time.perf_counter()
        user(server.url, plan[: args.rounds], time.perf_counter() + 120, records, errors, None)
        result["solo"] = {
            "method": args.method,
            "users": 1,
            "rounds": args.rounds,
            "server_startup_s": startup,
            "wall_s": time.perf_counter() - t0,
            "errors": errors,
            "stats": summarize(records),
            "records": records,
        }
        server.stop()
        # 1. the load phase
        server = AppServer(work / "wd", args.method, args.users, log, args.compute_slots)
        startup = server.wait_ready()
        deadline = time.perf_counter() + args.time_limit
        records, errors, wall = run_users(server.url, args.users, plan[: args.rounds], deadline)
        health = httpx.get(server.url + "/api/health").json()
        server.stop()
        result["compute_slots"] = health.get("compute_slots")
        result["load"] = {
            "method": args.method,
            "users": args.users,
            "rounds_per_user": args.rounds,
            "think_s": None,
            "max_sessions": args.users,
            "server_startup_s": startup,
            "wall_s": wall,
            "errors": errors,
            "live_sessions_at_end": health.get("live_sessions"),
            "stats": summarize(records),
            "records": records,
        }
        # 1b. the same users with think time between rounds (painting takes people seconds)
        if args.think_max > 0:
            server = AppServer(work / "wd_paced", args.method, args.users, log, args.compute_slots)
            startup = server.wait_ready()
            deadline = time.perf_counter() + args.time_limit
            think = (args.think_min, args.think_max)
            records, errors, wall = run_users(
                server.url, args.users, plan[: args.rounds], deadline, think
            )
            server.stop()
            result["paced"] = {
                **{k: result["load"][k] for k in ("method", "users", "rounds_per_user")},
                "think_s": list(think),
                "max_sessions": args.users,
                "server_startup_s": startup,
                "wall_s": wall,
                "errors": errors,
                "stats": summarize(records),
                "records": records,
            }
        # 2. a few users work, the server restarts on the same workdir, the users come back
        #    (with their cookies) and their sessions are rebuilt from the autosaved logs
        restore: list[float] = []
        server = AppServer(work / "wd2", args.method, 4, log)
        server.wait_ready()
        jars = []
        for _ in range(args.restore_users):
            with httpx.Client(base_url=server.url, timeout=120) as c:
                c.post("/api/study/default").raise_for_status()
                for positive, vox in plan[: args.rounds]:
                    c.post("/api/strokes", json={"positive": positive, "voxels": vox})
                    c.post("/api/refine").raise_for_status()
                jars.append(dict(c.cookies))
        server.stop()
        server = AppServer(work / "wd2", args.method, 4, log)
        server.wait_ready()
        for jar in jars:
            with httpx.Client(base_url=server.url, timeout=120, cookies=jar) as c:
                t = time.perf_counter()
                st = c.get("/api/state").json()
                restore.append(time.perf_counter() - t)
                assert st["round"] == args.rounds, st
        server.stop()
        result["restore"] = (
            None
            if not restore
            else {
                "method": args.method,
                "rounds_replayed": args.rounds,
                "first_request_s": restore,
                "p50_s": _pct(restore, 50),
            }
        )
        # 3. the product's default engine
        if args.default_rounds > 0:
            server = AppServer(work / "wd3", "hpinet_refined", 4, log)
            startup = server.wait_ready(timeout=300)
            records, errors = [], []
            t0 = time.perf_counter()
            user(
                server.url,
                plan[: args.default_rounds],
                time.perf_counter() + 240,
                records,
                errors,
                None,
            )
            wall = time.perf_counter() - t0
            server.stop()
            result["default_engine"] = {
                "method": "hpinet_refined",
                "users": 1,
                "rounds": args.default_rounds,
                "server_startup_s": startup,
                "wall_s": wall,
                "errors": errors,
                "stats": summarize(records),
                "records": records,
            }
    finally:
        result["total_s"] = time.perf_counter() - t_all
        result["machine"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        result["server_log_tail"] = tail
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(report(result))
    print(report(result))


def _verdict(s: dict) -> str:
    p50, p95 = s["p50"] <= 0.150, s["p95"] <= 0.150
    if p50 and p95:
        return "met at p50 and p95"
    return "met at p50, not at p95" if p50 else "not met"


def _row(name: str, s: dict) -> str:
    return f"| {name} | {s['p50'] * 1000:.0f} | {s['p95'] * 1000:.0f} | {s['n']} |"


def report(r: dict) -> str:
    lines = [
        "# `ichseg app` under load (loopback)",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Machine: {r['machine']['cpus']} CPUs shared with other jobs (load average "
        f"{r['machine']['loadavg_before'][0]} before, {r['machine'].get('loadavg_after', ['?'])[0]}"
        f" after); {r['machine']['platform']}, Python {r['machine']['python']}. Scan: "
        f"{r['scan']}. Total run {r.get('total_s', 0):.0f} s.",
        "",
    ]
    for key in ("load", "paced"):
        load = r.get(key)
        if not load:
            continue
        st = load["stats"]
        if load["think_s"]:
            how = (
                f"with {load['think_s'][0]:g}-{load['think_s'][1]:g} s of painting (think time, "
                "uniform) before each stroke"
            )
            title = "paced like people"
        else:
            how = "back to back, no think time (worst case: every user refines at once)"
            title = "burst"
        lines += [
            f"## {load['users']} concurrent users, engine `{load['method']}`, {title}",
            "",
            f"Each user: open the default scan, then {load['rounds_per_user']} x (stroke, Refine, "
            f"fetch the mask) {how}; `--max-sessions {load['max_sessions']}` (no eviction). "
            f"Wall {load['wall_s']:.1f} s, errors: {len(load['errors'])}"
            + (f" ({'; '.join(load['errors'][:3])})" if load["errors"] else "")
            + ".",
            "",
            "| measure | p50 ms | p95 ms | n |",
            "|---|---|---|---|",
            _row("Refine round trip (client)", st["refine_round_trip_s"]),
            _row("engine round (`RoundResult.seconds`)", st["engine_round_s"]),
            _row("**overhead = round trip - engine**", st["overhead_s"]),
            _row("... waiting for a compute slot (queue)", st["compute_wait_s"]),
            _row("**... the app's own work (overhead - queue)**", st["overhead_without_queue_s"]),
            _row(
                "... in the handler (queue, autosave, mask, ABC/2, suggestion, JSON)",
                st["overhead_in_handler_s"],
            ),
            _row(
                "... HTTP, JSON parsing, waiting for a thread/CPU", st["overhead_http_and_queue_s"]
            ),
            _row("handler part: the session's autosave of the log", st["handler_autosave_s"]),
            _row("handler part: mask, bbox, ABC/2, suggested slice", st["handler_payload_s"]),
            _row("mask fetch after Refine (bbox crop)", st["mask_fetch_s"]),
            _row("open the default scan (engine encode included)", st["open_default_s"]),
            "",
            f"Overhead target <= 150 ms: p50 {st['overhead_s']['p50'] * 1000:.0f} ms, p95 "
            f"{st['overhead_s']['p95'] * 1000:.0f} ms ({_verdict(st['overhead_s'])}); "
            "without the wait for a compute slot: p50 "
            f"{st['overhead_without_queue_s']['p50'] * 1000:.0f} ms, p95 "
            f"{st['overhead_without_queue_s']['p95'] * 1000:.0f} ms "
            f"({_verdict(st['overhead_without_queue_s'])}).",
            "",
        ]
        if not load["think_s"]:
            lines += [
                f"With {load['users']} users refining at the same moment on "
                f"{r['machine']['cpus']} shared cores, the server computes at most "
                f"{r.get('compute_slots', '?')} engine round(s) at a time (`--compute-slots`, "
                "default cores // threads per round) and the other requests wait their turn: "
                "that wait is load, not work the app adds, but a user feels it, so it is part "
                "of the overhead above and shown on its own line. The app's own work around "
                "the engine (autosave, canonical mask, ABC/2, suggested slice, JSON) is what "
                "remains.",
                "",
            ]
    rest = r.get("restore")
    if rest:
        times = ", ".join(f"{t:.2f}" for t in rest["first_request_s"])
        lines += [
            "## Restore after a server restart",
            "",
            f"A returning user's first request rebuilds the session by replaying its log "
            f"({rest['rounds_replayed']} rounds, `{rest['method']}`): {times} s "
            f"(p50 {rest['p50_s']:.2f} s). The first request after the restart also regenerates "
            "the embedded default scan in the new process (once per process). The same replay "
            "happens for a session evicted from memory.",
            "",
        ]
    for key, title in (
        ("solo", "1 user alone, engine `{m}`"),
        ("default_engine", "Default engine `{m}` (shipped ICH-HPINet weights), 1 user"),
    ):
        de = r.get(key)
        if not de:
            continue
        st = de["stats"]
        lines += [
            f"## {title.format(m=de['method'])}",
            "",
            f"{de['rounds']} rounds back to back, server start {de['server_startup_s']:.1f} s, "
            f"errors: {len(de['errors'])}; overhead {_verdict(st['overhead_s'])}.",
            "",
            "| measure | p50 ms | p95 ms | n |",
            "|---|---|---|---|",
            _row("Refine round trip (client)", st["refine_round_trip_s"]),
            _row("engine round (`RoundResult.seconds`)", st["engine_round_s"]),
            _row("**overhead = round trip - engine**", st["overhead_s"]),
            _row("mask fetch after Refine", st["mask_fetch_s"]),
            _row("open the default scan (encode included)", st["open_default_s"]),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
