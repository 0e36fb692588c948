"""The trustrec cache folder and atomic file writes shared by datasets, models and runs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from trustrec.errors import DataError


def cache_dir() -> Path:
    """``TRUSTREC_CACHE``, else ``$XDG_CACHE_HOME/trustrec``, else ``~/.cache/trustrec``."""
    env = os.environ.get("TRUSTREC_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trustrec"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def always(_: Path) -> bool:
    """A ``replaceable`` rule for folders inside trustrec's own cache."""
    return True


@contextlib.contextmanager
def atomic_directory(final: Path, *, replaceable: Callable[[Path], bool]):
    """Yield a temporary sibling folder; on success it replaces ``final`` in one rename.

    An existing, non-empty ``final`` is replaced only when ``replaceable(final)`` says trustrec
    wrote it (a checkpoint, a cache entry): a user's folder is never emptied. A crash leaves only
    a ``.tmp-*`` folder that the next attempt ignores, never a half-written ``final``.
    """
    final = Path(os.path.abspath(final))
    if final.is_symlink():
        raise DataError(f"{final}: is a symbolic link; trustrec writes only to a real folder path")
    if final.exists():
        if not final.is_dir():
            raise DataError(f"{final}: exists and is not a folder; choose another path")
        if any(final.iterdir()) and not replaceable(final):
            raise DataError(
                f"{final}: folder exists, is not empty and was not written by trustrec; "
                "refusing to replace it (choose a new or empty folder)"
            )
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        swap_in(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def swap_in(new: Path, final: Path) -> None:
    """Put the folder ``new`` at ``final``; an existing ``final`` (the caller has checked that
    trustrec wrote it) is moved aside first, so the swap is one rename, and removed after it."""
    new, final = Path(new), Path(final)
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=final.parent))
        os.replace(final, old / "x")
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def folder_lock(folder: Path, name: str, *, what: str):
    """Hold an exclusive lock named ``name`` in ``folder`` while the block runs; a second process
    asking for it fails at once with a message saying ``what`` is busy (never waits forever, never
    races). The lock file stays (removing it would reopen the race); it holds no data."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / f".lock-{name}"
    with open(lock_path, "a+b") as handle:  # closing releases the lock
        try:
            _lock_file(handle)
        except OSError:
            raise DataError(
                f"{what} is in use by another trustrec process (lock {lock_path}); "
                "wait for it to finish, or use another name or --out"
            ) from None
        yield lock_path


def _lock_file(handle) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]  # Windows-only API; mypy checks for this platform
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
