"""Load test of ``trustrec serve``: latency and throughput under concurrency, bursts, load shedding,
and an LLM ranker's latency.

Builds a run (``--model``, default ItemKNN, on ml-100k; or takes ``--run-dir``) and serves it with
``trustrec serve`` in a subprocess on 127.0.0.1 (real uvicorn, API key auth on). The load
generator is this process: a small asyncio HTTP/1.1 client over keep-alive sockets (far cheaper
per request than httpx, so it takes less of the CPUs it shares with the server); the CPU seconds
of server and client are both reported. For each of ``--max-batch 1`` (one request at a time in
worker threads: the path before micro-batching), ``--max-batch 32`` (micro-batching), and
``--max-batch 32 --torch-threads <all cores>`` (micro-batching with torch's default threads; the
server's default for a classic model is 1 thread, see ``trustrec.serve.run_server``):

* **load**: a closed loop of ``--clients`` (50) clients, each sending its next request when the
  last one is answered, ``--requests`` (4000) requests for random users (k=10) after a warm-up;
  client-side latency p50/p95/p99 and throughput;
* **burst**: ``--clients`` requests sent at the same instant over open connections, ``--bursts``
  (20) times; p50/p95/p99 over all of them;

then:

* **overload** (micro-batching): ``--max-concurrency 2 --max-queue 8`` and ``--overload-clients``
  (200) clients sending ``--overload-requests`` (2000): the share of 200 / 429 / 503 and the
  count of other 5xx (must be 0);
* **llm** (unless ``--skip-llm``): an ``llm_ranker`` run (SmolLM2-135M re-ranking ItemKNN's
  top-20, one listing order; built by fitting and saving the model, without the run's
  evaluation, which would score every test user), ``--llm-requests`` (10) requests with
  ``--llm-clients`` (4) clients, each with 20 random candidate items (k=10).

Latency at N closed-loop clients is bounded below by Little's law: mean latency = N / throughput.

    python benchmarks/serve_load.py

Prints a table and writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _command import command_line

SERVER = "import sys; from trustrec.cli import main; sys.argv = ['trustrec', *sys.argv[1:]]; main()"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(run_dir: Path, keys: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, "serve", str(run_dir), "--port", str(port), "--api-keys", str(keys), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TRUSTREC_API_KEYS": ""},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            status, _ = asyncio.run(_get(port, "/health"))
            if status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start in 300 s")


async def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = _Conn(port)
    await conn.open()
    try:
        return await conn.request(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    finally:
        conn.close()


class _Conn:
    """One keep-alive HTTP/1.1 connection: send a request, read the status and the body."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _post(key: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def _summary(latencies: list[float], codes: Counter, errors: Counter, wall: float, n: int) -> dict:
    lat = np.asarray(latencies) * 1000
    q = (lambda p: float(np.percentile(lat, p))) if len(lat) else (lambda p: float("nan"))
    return {
        "requests": n,
        "wall_s": wall,
        "throughput_rps": sum(codes.values()) / wall,
        "ok_rps": codes.get(200, 0) / wall,
        "p50_ms": q(50),
        "p95_ms": q(95),
        "p99_ms": q(99),
        "max_ms": float(lat.max()) if len(lat) else float("nan"),
        "status_counts": {str(k): v for k, v in sorted(codes.items())},
        "share": {str(k): v / n for k, v in sorted(codes.items())},
        "server_errors_5xx_other_than_503": sum(v for k, v in codes.items() if k >= 500 and k != 503),
        "client_errors": dict(errors),
    }


async def _closed_loop(port: int, raws: list[bytes], n_clients: int) -> dict:
    """``n_clients`` clients, each sending its next request when the last is answered."""
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    todo = iter(raws)

    async def client() -> None:
        conn = _Conn(port)
        for raw in todo:
            started = time.perf_counter()
            try:
                status, _ = await conn.request(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors[type(exc).__name__] += 1
                conn.close()
                continue
            codes[status] += 1
            if status == 200:
                latencies.append(time.perf_counter() - started)
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(n_clients)))
    out = _summary(latencies, codes, errors, time.perf_counter() - started, len(raws))
    out["clients"] = n_clients
    return out


async def _bursts(port: int, raws: list[bytes], size: int, n_bursts: int) -> dict:
    """``size`` requests sent at one instant over open connections, ``n_bursts`` times."""
    conns = [_Conn(port) for _ in range(size)]
    await asyncio.gather(*(c.open() for c in conns))
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    burst_wall: list[float] = []

    async def one(conn: _Conn, raw: bytes, started: float) -> None:
        try:
            status, _ = await conn.request(raw)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] += 1
            return
        codes[status] += 1
        if status == 200:
            latencies.append(time.perf_counter() - started)

    started_all = time.perf_counter()
    for b in range(n_bursts):
        await asyncio.sleep(0.05)  # the server idle again
        started = time.perf_counter()
        # every request written before any answer is read: they reach the server together
        await asyncio.gather(*(one(c, raws[b * size + i], started) for i, c in enumerate(conns)))
        burst_wall.append(time.perf_counter() - started)
    for c in conns:
        c.close()
    out = _summary(latencies, codes, errors, time.perf_counter() - started_all, size * n_bursts)
    out.update(clients=size, bursts=n_bursts, burst_wall_ms_mean=1000 * float(np.mean(burst_wall)))
    del out["throughput_rps"], out["ok_rps"], out["wall_s"]
    return out


def _make_run(model: str, out: Path) -> Path:
    from trustrec.runs import run_experiment

    config = {
        "name": f"{model}-ml100k-serve",
        "dataset": {"name": "ml-100k"},
        "split": {"method": "leave_one_out"},
        "model": {"name": model, "params": {}},
        "eval": {"metrics": ["ndcg@10"], "n_boot": 10},
    }
    return run_experiment(config, out, progress=False, log=lambda *_: None).path


def _make_llm_run(out: Path) -> Path:
    """An llm_ranker run folder (config.yaml, checkpoint/, metrics.json) without the evaluation."""
    import yaml

    from trustrec.models import make_model
    from trustrec.runs import load_run_config, prepare_data

    params = {"retriever": {"name": "item_knn", "params": {}}, "n_candidates": 20, "n_permutations": 1}
    out.mkdir(parents=True)
    config = {
        "name": out.name,
        "dataset": {"name": "ml-100k"},
        "split": {"method": "leave_one_out"},
        "model": {"name": "llm_ranker", "params": params},
        "eval": {"metrics": ["ndcg@10"], "n_boot": 10},
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    _, split = prepare_data(load_run_config(out / "config.yaml"))
    make_model("llm_ranker", **params).fit(split).save(out / "checkpoint")
    (out / "metrics.json").write_text(json.dumps({"note": "not evaluated: built for benchmarks/serve_load.py"}))
    return out


def _phase(run_dir: Path, keys: Path, extra: list[str], work) -> dict:
    proc, port = _start(run_dir, keys, *extra)
    try:
        cpu0, client0 = _cpu_seconds(proc.pid), time.process_time()
        result = asyncio.run(work(port))
        result["server_cpu_s"] = _cpu_seconds(proc.pid) - cpu0
        result["client_cpu_s"] = time.process_time() - client0
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=None, help="serve this finished run (default: build one)")
    ap.add_argument("--model", default="item_knn")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--bursts", type=int, default=20)
    ap.add_argument("--max-batch", type=int, default=32, help="the micro-batching setting measured against 1")
    ap.add_argument("--max-concurrency", type=int, default=4)
    ap.add_argument("--overload-clients", type=int, default=200)
    ap.add_argument("--overload-requests", type=int, default=2000)
    ap.add_argument("--llm-requests", type=int, default=10)
    ap.add_argument("--llm-clients", type=int, default=4)
    ap.add_argument("--skip-llm", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_load.json")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    rng = np.random.default_rng(args.seed)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        run_dir = args.run_dir or _make_run(args.model, tmp_path / "runs")
        build_s = time.perf_counter() - started
        model_name = json.loads((run_dir / "checkpoint" / "config.json").read_text())["model"]
        fitted = json.loads((run_dir / "checkpoint" / "fitted.json").read_text())
        users = [str(u) for u in fitted["user_ids_"]]
        items = [str(i) for i in fitted["item_ids_"]]
        key = secrets.token_hex(16)
        keys = tmp_path / "keys"
        keys.write_text(key + "\n")

        def raws(n: int) -> list[bytes]:
            return [_post(key, {"user_id": u, "k": 10}) for u in rng.choice(users, n).tolist()]

        common = ["--rate-limit", "0", "--max-concurrency", str(args.max_concurrency)]
        cores = str(os.cpu_count() or 1)
        # (tag, max_batch, extra server flags): one at a time, micro-batched, and micro-batched with
        # torch's intra-op threads on every core (torch's default; the server's default is 1)
        phases = [("one_at_a_time", 1, []), ("batched", args.max_batch, [])]
        if args.max_batch > 1:
            phases.append(("batched_torch_all_cores", args.max_batch, ["--torch-threads", cores]))
        for tag, batch, flags in phases:
            load_raws, burst_raws = raws(args.requests), raws(args.clients * args.bursts)

            async def work(port: int, load_raws=load_raws, burst_raws=burst_raws) -> dict:
                await _closed_loop(port, raws(200), 10)  # warm-up
                return {
                    "load": await _closed_loop(port, load_raws, args.clients),
                    "burst": await _bursts(port, burst_raws, args.clients, args.bursts),
                }

            # queue room for every client: this phase measures latency, not shedding
            extra = [*common, "--max-queue", str(4 * args.clients), "--max-batch", str(batch), *flags]
            phase = _phase(run_dir, keys, extra, work)
            for name in ("load", "burst"):
                results[f"{name}_{tag}"] = {**phase[name], "max_batch": batch, "server_flags": " ".join(flags)}
            results[f"load_{tag}"].update(server_cpu_s=phase["server_cpu_s"], client_cpu_s=phase["client_cpu_s"])
            console.print(f"{tag}: done")

        over_raws = raws(args.overload_requests)

        async def overload(port: int) -> dict:
            await _closed_loop(port, raws(50), 5)
            return await _closed_loop(port, over_raws, args.overload_clients)

        extra = ["--rate-limit", "0", "--max-concurrency", "2", "--max-queue", "8", "--max-batch", str(args.max_batch)]
        results["overload"] = _phase(run_dir, keys, extra, overload)
        results["overload"].update(max_concurrency=2, max_queue=8, max_batch=args.max_batch)

        llm_build_s = None
        if not args.skip_llm:
            started = time.perf_counter()
            llm_dir = _make_llm_run(tmp_path / "runs" / "llm-ranker-ml100k-serve")
            llm_build_s = time.perf_counter() - started
            llm_raws = [
                _post(key, {"user_id": u, "k": 10, "candidates": rng.choice(items, 20, replace=False).tolist()})
                for u in rng.choice(users, args.llm_requests).tolist()
            ]

            async def llm(port: int) -> dict:
                await _closed_loop(port, llm_raws[:1], 1)  # warm-up: loads the LLM
                return await _closed_loop(port, llm_raws, args.llm_clients)

            results["llm_ranker"] = _phase(llm_dir, keys, [*common, "--max-queue", "64"], llm)
            results["llm_ranker"].update(model="llm_ranker (SmolLM2-135M over item_knn top-20, 1 order)", candidates=20)

    table = Table(title=f"trustrec serve: {model_name} on ml-100k ({os.cpu_count()} CPUs shared by client and server)")
    for col in (
        "phase",
        "max_batch",
        "server flags",
        "clients",
        "requests",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "req/s",
        "statuses",
    ):
        table.add_column(col, justify="right")
    for phase, r in results.items():
        table.add_row(
            phase,
            str(r.get("max_batch", "")),
            r.get("server_flags", ""),
            str(r["clients"]),
            str(r["requests"]),
            f"{r['p50_ms']:.1f}",
            f"{r['p95_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['throughput_rps']:.3g}" if "throughput_rps" in r else "-",
            " ".join(f"{k}:{v}" for k, v in r["status_counts"].items()),
        )
    console.print(table)
    ratios = {}
    for name in ("load", "burst"):
        for before_tag, after_tag in (("one_at_a_time", "batched"), ("batched_torch_all_cores", "batched")):
            if f"{name}_{before_tag}" not in results:
                continue
            before, after = results[f"{name}_{before_tag}"], results[f"{name}_{after_tag}"]
            for q in ("p50_ms", "p95_ms", "p99_ms"):
                ratios[f"{name}_{q}_{after_tag}/{before_tag}"] = after[q] / before[q]
    for before_tag in ("one_at_a_time", "batched_torch_all_cores"):
        if f"load_{before_tag}" in results:
            ratios[f"load_throughput_batched/{before_tag}"] = (
                results["load_batched"]["throughput_rps"] / results[f"load_{before_tag}"]["throughput_rps"]
            )
    for k, v in ratios.items():
        console.print(f"{k} = {v:.2f}")
    target = results["load_batched"]["p99_ms"] < 50
    console.print(f"target p99 < 50 ms at {args.clients} closed-loop clients: {'met' if target else 'NOT met'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "serve_load",
        "command": command_line(),
        "args": {k: str(v) for k, v in vars(args).items() if k != "out"},
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "model": model_name,
        "run_build_s": build_s,
        "llm_run_build_s": llm_build_s,
        "target_p99_ms": 50,
        "target_met": bool(target),
        "ratios": ratios,
        "results": results,
    }
    args.out.write_text(json.dumps(payload, indent=1, default=float))
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
