"""Executors: the serial default, the Ray executor (``ray`` extra) and the audit runner through
each, with identical results."""

import copyreg
import io
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

import pandas as pd
import pytest

from trustrec.data import split_leave_one_out
from trustrec.errors import ConfigError
from trustrec.models import FitOptions, make_model
from trustrec.parallel import Executor, RayExecutor, SerialExecutor, resolve_executor
from trustrec.runs import audit_model, audit_plan
from trustrec.testing import toy_dataset

PLAN = {
    "names": ["item_exposure", "calibration", "user_fairness", "history_perturbation"],
    "params": {"user_fairness": {"n_boot": 20}, "history_perturbation": {"max_users": 12, "n_boot": 20}},
}


def read_only(mapping):
    return MappingProxyType(mapping)


def round_trip(obj):
    """Through pickle, with read-only mappings pickled as cloudpickle (Ray) pickles them."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: lambda m: (read_only, (dict(m),))}
    pickler.dump(obj)
    return pickle.loads(buffer.getvalue())


class PicklingExecutor:
    """Runs in this process but sends ``fn``, each item and each result through pickle, as a
    remote executor does, so that nothing is shared by reference with the caller."""

    name = "pickling"
    mapped: ClassVar[list] = []  # every map's items, from this process and from unpickled copies

    def __init__(self):
        self.calls = 0

    def map(self, fn, items):
        self.calls += 1
        items = list(items)
        PicklingExecutor.mapped.append(items)
        fn = round_trip(fn)
        return [round_trip(fn(round_trip(item))) for item in items]


@pytest.fixture(scope="module")
def fitted():
    split = split_leave_one_out(toy_dataset(), short_users="train")
    return make_model("item_knn").fit(split, FitOptions(progress=False)), split


def untimed(mapping):
    """Settings or an evidence table without the wall-clock seconds (of fits) a run records."""
    if isinstance(mapping, pd.DataFrame):
        return mapping.drop(columns=[c for c in mapping.columns if "seconds" in c])
    return {k: v for k, v in mapping.items() if "seconds" not in k}


def assert_same_results(a, b):
    assert [r.audit for r in a] == [r.audit for r in b]
    for x, y in zip(a, b):
        assert list(x.estimates) == list(y.estimates) and x.estimates == y.estimates, x.audit
        assert x.verdict.to_dict() == y.verdict.to_dict(), x.audit
        assert x.summary == y.summary and x.warnings == y.warnings, x.audit
        assert untimed(x.settings) == untimed(y.settings), x.audit
        assert list(x.evidence) == list(y.evidence), x.audit
        for name in x.evidence:
            pd.testing.assert_frame_equal(untimed(x.evidence[name]), untimed(y.evidence[name]), obj=f"{x.audit}/{name}")


def assert_same_files(a, b):
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_serial_executor_and_resolution():
    assert SerialExecutor().map(lambda x: x * x, range(4)) == [0, 1, 4, 9]
    assert SerialExecutor().map(str, []) == []
    assert isinstance(resolve_executor(None), SerialExecutor)
    assert isinstance(resolve_executor("serial"), SerialExecutor)
    own = PicklingExecutor()
    assert resolve_executor(own) is own and isinstance(own, Executor)
    with pytest.raises(ConfigError, match="unknown executor 'dask'; one of serial, ray"):
        resolve_executor("dask")
    with pytest.raises(ConfigError, match="executor must be"):
        resolve_executor(42)


def test_missing_ray_extra_gives_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    for build in (RayExecutor, lambda: resolve_executor("ray")):
        with pytest.raises(ConfigError, match=r"needs the 'ray' extra .*pip install 'trustrec\[ray\]'"):
            build()


def test_audit_model_through_another_executor_matches_serial(fitted, tmp_path):
    model, split = fitted
    log_serial, log_other = [], []
    entries, serial = audit_model(
        model, split, audit_plan(**PLAN), out=tmp_path / "serial", progress=False, log=log_serial.append
    )
    executor = PicklingExecutor()
    entries2, other = audit_model(
        model,
        split,
        audit_plan(**PLAN),
        out=tmp_path / "other",
        progress=False,
        log=log_other.append,
        executor=executor,
    )
    assert executor.calls == 1
    assert sum(r.verdict.status != "not_applicable" for r in serial) >= 3
    assert_same_results(serial, other)
    assert_same_files(tmp_path / "serial", tmp_path / "other")
    assert log_serial == log_other
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in entries] == [
        {k: v for k, v in e.items() if k != "seconds"} for e in entries2
    ]
    _, explicit = audit_model(model, split, audit_plan(**PLAN), progress=False, log=lambda *_: None, executor="serial")
    assert_same_results(serial, explicit)


POISONING = {
    "names": ["poisoning"],
    "params": {
        "poisoning": {
            "attacks": ["random", "bandwagon"],
            "budgets": [0.1, 0.25],
            "n_targets": 2,
            "filler_size": 4,
            "n_boot": 20,
        }
    },
}


def test_poisoning_grid_cells_through_another_executor_match_serial(fitted):
    model, split = fitted
    _, serial = audit_model(model, split, audit_plan(**POISONING), progress=False, log=lambda *_: None)
    PicklingExecutor.mapped.clear()
    _, other = audit_model(
        model, split, audit_plan(**POISONING), progress=False, log=lambda *_: None, executor=PicklingExecutor()
    )
    assert len(PicklingExecutor.mapped) == 2  # the plan, then (on the "worker") the grid
    assert PicklingExecutor.mapped[1] == [
        (1, "random", 0.1),
        (2, "random", 0.25),
        (3, "bandwagon", 0.1),
        (4, "bandwagon", 0.25),
    ]
    assert serial[0].verdict.status != "not_applicable"
    assert len(serial[0].evidence["by_attack"]) == 5
    assert_same_results(serial, other)


def test_ray_executor_gives_identical_audit_results(fitted, tmp_path):
    ray = pytest.importorskip("ray", reason="the Ray executor needs the 'ray' extra: pip install 'trustrec[ray]'")
    model, split = fitted
    _, serial = audit_model(
        model, split, audit_plan(**PLAN), out=tmp_path / "serial", progress=False, log=lambda *_: None
    )
    assert not ray.is_initialized()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayExecutor()
        assert executor.map(abs, [-3, 2, -1]) == [3, 2, 1]
        _, through_ray = audit_model(
            model,
            split,
            audit_plan(**PLAN),
            out=tmp_path / "ray",
            progress=False,
            log=lambda *_: None,
            executor=executor,
        )
        _, poisoning_ray = audit_model(
            model, split, audit_plan(**POISONING), progress=False, log=lambda *_: None, executor=executor
        )  # grid cells as nested Ray tasks
        executor.shutdown()  # it did not start Ray, so leaves it running
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert_same_results(serial, through_ray)
    assert_same_files(tmp_path / "serial", tmp_path / "ray")
    _, poisoning_serial = audit_model(model, split, audit_plan(**POISONING), progress=False, log=lambda *_: None)
    assert_same_results(poisoning_serial, poisoning_ray)


def test_cli_audit_executor_option(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from trustrec.cli import app

    unknown = CliRunner().invoke(app, ["audit", str(tmp_path), "--executor", "dask"])
    assert unknown.exit_code == 2 and "unknown executor 'dask'; one of serial, ray" in unknown.output
    monkeypatch.setitem(sys.modules, "ray", None)
    missing = CliRunner().invoke(app, ["audit", str(tmp_path), "--executor", "ray"])
    assert missing.exit_code == 2 and "needs the 'ray' extra" in missing.output
    assert "pip install 'trustrec[ray]'" in missing.output and "Traceback" not in missing.output
    assert not (tmp_path / "audits").exists()  # refused before any work


def test_ray_executor_starts_and_stops_its_own_local_instance():
    ray = pytest.importorskip("ray", reason="the Ray executor needs the 'ray' extra: pip install 'trustrec[ray]'")
    assert not ray.is_initialized()
    executor = RayExecutor(num_cpus=2, init_kwargs={"log_to_driver": False})
    try:
        assert executor.map(lambda x: -x, range(5)) == [0, -1, -2, -3, -4]
        assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2
        assert executor.map(abs, []) == []
    finally:
        executor.shutdown()
    assert not ray.is_initialized()
    with pytest.raises(ConfigError, match="num_cpus must be >= 1"):
        RayExecutor(num_cpus=0)


def test_address_needs_the_ray_executor_and_a_reachable_cluster():
    with pytest.raises(ConfigError, match="an address names a Ray cluster: it needs executor 'ray', not 'serial'"):
        resolve_executor("serial", address="auto")
    with pytest.raises(ConfigError, match="num_cpus applies to a local instance"):
        RayExecutor(address="auto", num_cpus=2)
    with pytest.raises(ConfigError, match="address must be a non-empty string"):
        RayExecutor(address=" ")
    pytest.importorskip("ray", reason="the Ray executor needs the 'ray' extra: pip install 'trustrec[ray]'")
    with pytest.raises(ConfigError, match=r"address 'nonsense' is not 'auto', HOST:PORT or ray://HOST:PORT"):
        RayExecutor(address="nonsense").map(abs, [1])
    with socket.socket() as probe:  # a port nobody listens on: refused at once, not after minutes of retries
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"no Ray cluster answered at '127.0.0.1:{port}'"):
        RayExecutor(address=f"127.0.0.1:{port}").map(abs, [1])


def test_cli_audit_address_without_ray_executor_is_refused(tmp_path):
    from typer.testing import CliRunner

    from trustrec.cli import app

    result = CliRunner().invoke(app, ["audit", str(tmp_path), "--address", "auto"])
    assert result.exit_code == 2 and "it needs executor 'ray'" in result.output
    assert not (tmp_path / "audits").exists()


@pytest.mark.slow
def test_ray_executor_runs_audits_on_a_cluster_at_an_address(fitted, tmp_path, monkeypatch):
    """A real head node started by `ray start` (as on a cluster), reached through its address."""
    ray = pytest.importorskip("ray", reason="the Ray executor needs the 'ray' extra: pip install 'trustrec[ray]'")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip("the `ray` command is not installed beside this Python")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    # Ray's token authentication keeps the token where the head node's session puts it; a test
    # cluster on loopback needs none, and the client must agree with the head node
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=2", "--node-ip-address=127.0.0.1"]
    start += ["--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats", "--block"]
    # --block: this process owns the head node; ending its session stops that cluster and no other
    head = subprocess.Popen(
        start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    model, split = fitted
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "`ray start --head` exited"
                assert time.monotonic() < deadline, "the head node did not open its port in 120 s"
                time.sleep(0.5)
        _, serial = audit_model(model, split, audit_plan(**PLAN), progress=False, log=lambda *_: None)
        executor = resolve_executor("ray", address=f"127.0.0.1:{port}")
        try:
            _, on_cluster = audit_model(
                model, split, audit_plan(**PLAN), progress=False, log=lambda *_: None, executor=executor
            )
            assert ray.cluster_resources()["CPU"] == 2  # the cluster's CPUs, not this process's choice
        finally:
            executor.shutdown()  # disconnects; the cluster keeps running
        assert not ray.is_initialized()
        assert head.poll() is None  # still running after the executor left it
        assert_same_results(serial, on_cluster)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)
