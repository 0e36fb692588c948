"""Reading untrusted files without hanging or exhausting memory: the one place for input limits.

Every reader of user-supplied files goes through here:

- :func:`open_regular` opens a *regular* file only. It refuses folders, FIFOs, sockets and
  devices (opened non-blocking, so a FIFO never hangs), a NUL character in the path, and turns
  "not found" / "permission denied" into one-line errors.
- :func:`open_decompressed` / :func:`read_decompressed` read gzip files with a bound on the
  decompressed size (``TRUSTREC_MAX_DECOMPRESSED``, default ``4G``) and on the expansion ratio
  (``TRUSTREC_MAX_COMPRESSION_RATIO``, default 200, checked once 64 MiB came out), so a
  decompression bomb stops early with an error saying which limit it hit and how to raise it.
  :func:`check_archive_size` applies the same size limit to zip and tar archives.
- :func:`load_yaml` is the one YAML loader (safe, no Python objects). It refuses documents whose
  aliases expand beyond ``MAX_YAML_NODES`` nodes (a "billion laughs" alias bomb), recursive
  aliases, nesting deeper than the parser can handle, files that are not UTF-8 and files larger
  than ``MAX_TEXT_BYTES``.
- :func:`load_json` parses JSON with the same bounds (deep nesting is an error, not a
  ``RecursionError``).

Errors are :class:`~trustrec.errors.DataError` for data files and
:class:`~trustrec.errors.ConfigError` for configs (the caller chooses), each naming the file.
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import zlib
from typing import Any, BinaryIO

from trustrec.errors import ConfigError, DataError, TrustrecError

__all__ = [
    "MAX_TEXT_BYTES",
    "MAX_YAML_NODES",
    "check_archive_size",
    "check_path_text",
    "load_json",
    "load_json_object",
    "load_yaml",
    "max_compression_ratio",
    "max_decompressed_bytes",
    "open_decompressed",
    "open_regular",
    "read_decompressed",
    "read_regular_bytes",
]

MAX_TEXT_BYTES = 16 * 2**20
"""Largest config or JSON document read whole (16 MiB)."""
MAX_YAML_NODES = 100_000
"""Largest YAML document, counted in nodes after expanding every alias."""
MAX_JSON_DEPTH_HINT = "nested too deeply"
_RATIO_CHECK_AFTER = 64 * 2**20
_DEFAULT_MAX_DECOMPRESSED = "4G"
_DEFAULT_MAX_RATIO = 200.0
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


# -- paths and regular files ----------------------------------------------------------------------
def check_path_text(path, what: str = "path", error: type[TrustrecError] = DataError) -> None:
    """Refuse a path or name holding a NUL character (the OS cannot represent it)."""
    try:
        text = os.fspath(path)
    except TypeError:
        return
    if ("\x00" if isinstance(text, str) else b"\x00") in text:
        raise error(f"{what} {text!r} contains a NUL character (\\x00); file and dataset names cannot hold one")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _os_error(path, exc: OSError, what: str, error: type[TrustrecError]) -> TrustrecError:
    reasons: dict[int | None, str] = {
        errno.ENOENT: "file not found",
        errno.EACCES: "permission denied (cannot read it)",
        errno.EPERM: "permission denied (cannot read it)",
        errno.EISDIR: f"is a folder, expected {what}",
        errno.ENOTDIR: "a part of the path is not a folder",
        errno.ELOOP: "too many symbolic links",
        errno.ENAMETOOLONG: "the name is too long",
    }
    reason = reasons.get(exc.errno, exc.strerror or str(exc))
    return error(f"{path}: {reason}")


def open_regular(path, *, what: str = "a file", error: type[TrustrecError] = DataError) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (following symbolic links).

    Folders, FIFOs, sockets and devices are refused with ``error`` naming what was found;
    the file is opened non-blocking first, so a FIFO with no writer cannot hang the call.
    """
    check_path_text(path, "path", error)
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _os_error(path, exc, what, error) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{path}: is {_kind(mode)}, expected {what}; trustrec reads regular files only")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_bytes(
    path,
    *,
    limit: int | None = None,
    what: str = "a file",
    error: type[TrustrecError] = DataError,
    setting: str | None = None,
) -> bytes:
    """The bytes of a regular file; more than ``limit`` bytes is an error (``setting`` names the
    way to raise the limit, if any)."""
    with open_regular(path, what=what, error=error) as fh:
        data = fh.read() if limit is None else _read_at_most(fh, limit + 1)
    if limit is not None and len(data) > limit:
        how = f"; raise it with {setting}" if setting else ""
        raise error(f"{path}: larger than the limit of {_size(limit)} for {what}{how}")
    return data


def _read_at_most(fh, n: int) -> bytes:
    """Up to ``n`` bytes, read in chunks (``fh.read(n)`` would allocate all ``n`` bytes at once)."""
    chunks, total = [], 0
    while total < n:
        chunk = fh.read(min(1 << 24, n - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


# -- decompression limits -------------------------------------------------------------------------
def _parse_size(text: str, name: str) -> int:
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = raw[-1:] if raw[-1:] in _UNITS and raw[-1:] else ""
    number = raw[: len(raw) - len(unit)] if unit else raw
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a size; use bytes or a number with K, M, G or T (e.g. 8G)") from None
    if not 0 < value < float("inf"):
        raise ConfigError(f"{name}={text!r} must be a positive size (e.g. 8G)")
    return int(value)


def max_decompressed_bytes() -> int:
    """The bound on the decompressed size of one file: ``TRUSTREC_MAX_DECOMPRESSED`` (default 4G)."""
    return _parse_size(
        os.environ.get("TRUSTREC_MAX_DECOMPRESSED", _DEFAULT_MAX_DECOMPRESSED), "TRUSTREC_MAX_DECOMPRESSED"
    )


def max_compression_ratio() -> float:
    """The bound on decompressed / compressed size: ``TRUSTREC_MAX_COMPRESSION_RATIO`` (default 200),
    checked once more than 64 MiB came out (small files are never refused by it)."""
    text = os.environ.get("TRUSTREC_MAX_COMPRESSION_RATIO", str(_DEFAULT_MAX_RATIO))
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 1:
        raise ConfigError(f"TRUSTREC_MAX_COMPRESSION_RATIO={text!r} must be a number above 1 (e.g. 1000)")
    return value


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


class _BoundedGzip(io.RawIOBase):
    """A raw reader of (possibly concatenated) gzip members that stops at the size and ratio limits;
    closing it closes the underlying file."""

    def __init__(self, raw: BinaryIO, path, error: type[TrustrecError]):
        super().__init__()
        self._raw, self._path, self._error = raw, path, error
        self._limit, self._ratio = max_decompressed_bytes(), max_compression_ratio()
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._fed = 0  # compressed bytes fed to the current member
        self._pending = b""  # compressed input not yet fed
        self._out = 0
        self._in = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()

    def _check(self) -> None:
        if self._out > self._limit:
            setting = os.environ.get("TRUSTREC_MAX_DECOMPRESSED", _DEFAULT_MAX_DECOMPRESSED)
            raise self._error(
                f"{self._path}: decompresses to more than {_size(self._limit)}, the limit "
                f"TRUSTREC_MAX_DECOMPRESSED={setting}; if the file is genuine, raise it "
                "(e.g. TRUSTREC_MAX_DECOMPRESSED=16G)"
            )
        if self._out > _RATIO_CHECK_AFTER and self._out > self._ratio * max(self._in, 1):
            raise self._error(
                f"{self._path}: expands more than {self._ratio:g} times ({_size(self._out)} from "
                f"{_size(self._in)} compressed so far), which looks like a decompression bomb; if the "
                f"file is genuine, raise TRUSTREC_MAX_COMPRESSION_RATIO (now {self._ratio:g})"
            )

    def readinto(self, buffer) -> int:
        want = len(buffer)
        while not self._eof:
            if not self._pending:
                chunk = self._raw.read(1 << 16)
                if not chunk:
                    if self._fed:
                        raise self._error(f"{self._path}: the gzip data ends early (truncated file)")
                    self._eof = True
                    break
                self._in += len(chunk)
                self._pending = chunk
            if not self._fed:  # between members: padding zeros may follow the last one
                self._pending = self._pending.lstrip(b"\x00")
                if not self._pending:
                    continue
            try:
                self._fed += len(self._pending)
                data = self._z.decompress(self._pending, want)
            except zlib.error as exc:
                raise self._error(f"{self._path}: not valid gzip data ({exc}); is the file complete?") from None
            self._pending = self._z.unconsumed_tail
            if self._z.eof:  # one member done; another may follow
                self._pending = self._z.unused_data
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._fed = 0
            if data:
                self._out += len(data)
                self._check()
                buffer[: len(data)] = data
                return len(data)
        return 0


def open_decompressed(path, *, what: str = "a file", error: type[TrustrecError] = DataError) -> BinaryIO:
    """A binary reader of a regular file, gunzipped within the limits when it starts with the gzip
    magic bytes (a name ending in ``.gz`` must be gzip data)."""
    raw = open_regular(path, what=what, error=error)
    try:
        head = raw.read(2)
        raw.seek(0)
    except OSError as exc:
        raw.close()
        raise _os_error(path, exc, what, error) from None
    if head == b"\x1f\x8b":
        return io.BufferedReader(_BoundedGzip(raw, path, error), buffer_size=1 << 16)
    if str(path).endswith(".gz"):
        raw.close()
        raise error(f"{path}: the name ends in .gz but the file is not gzip-compressed; rename it or compress it")
    return raw


def read_decompressed(path, *, what: str = "a file", error: type[TrustrecError] = DataError) -> bytes:
    """All bytes of a (possibly gzipped) regular file within the decompression limits; a plain
    file larger than ``TRUSTREC_MAX_DECOMPRESSED`` is refused too."""
    limit = max_decompressed_bytes()
    with open_decompressed(path, what=what, error=error) as fh:
        data = _read_at_most(fh, limit + 1)
    if len(data) > limit:
        raise error(
            f"{path}: larger than {_size(limit)}, the limit TRUSTREC_MAX_DECOMPRESSED; if the "
            "file is genuine, raise it (e.g. TRUSTREC_MAX_DECOMPRESSED=16G)"
        )
    return data


def check_archive_size(total: int, name: str, error: type[TrustrecError] = DataError) -> None:
    """Refuse an archive whose members add up to more than the decompression limit."""
    limit = max_decompressed_bytes()
    if total > limit:
        raise error(
            f"{name}: its files add up to {_size(total)} uncompressed, more than the limit "
            f"TRUSTREC_MAX_DECOMPRESSED ({_size(limit)}); if the archive is genuine, raise it "
            "(e.g. TRUSTREC_MAX_DECOMPRESSED=16G)"
        )


# -- text documents -------------------------------------------------------------------------------
def _decode_utf8(data: bytes, where: str, error: type[TrustrecError]) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{where}: not UTF-8 text (byte {data[exc.start]:#04x} at line {line}, byte offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None


def _read_document(source, what: str, error: type[TrustrecError]) -> tuple[str, str]:
    """(text, where) of a path, bytes or str source."""
    if isinstance(source, (str, bytes)) and not isinstance(source, os.PathLike):
        where = what
        data = source
    else:
        where = str(source)
        data = read_regular_bytes(source, limit=MAX_TEXT_BYTES, what=what, error=error)
    if isinstance(data, bytes):
        data = _decode_utf8(data, where, error)
    if "\x00" in data:
        raise error(f"{where}: contains a NUL character; expected text")
    return data, where


def _expanded_size(root, limit: int) -> int:
    """Nodes of a composed YAML graph with every alias expanded; raises ValueError beyond
    ``limit`` or for a recursive alias. Iterative (no recursion), memoised per node."""
    import yaml

    sizes: dict[int, int] = {}
    state: dict[int, int] = {}  # 1: on the stack, 2: done
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            if isinstance(node, yaml.MappingNode):
                kids = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                kids = node.value
            else:
                kids = []
            total = 1 + sum(sizes[id(k)] for k in kids)
            if total > limit:
                raise ValueError(f"its aliases expand to more than {limit:,} nodes")
            sizes[key] = total
            state[key] = 2
            continue
        if state.get(key) == 2:
            continue
        if state.get(key) == 1:
            raise ValueError("an alias refers to a node that contains it (recursive alias)")
        state[key] = 1
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            kids = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            kids = node.value
        else:
            kids = []
        for k in kids:
            if state.get(id(k)) == 1:
                raise ValueError("an alias refers to a node that contains it (recursive alias)")
            if state.get(id(k)) != 2:
                stack.append((k, False))
    return sizes[id(root)]


def load_yaml(
    source, *, what: str = "a YAML file", error: type[TrustrecError] = ConfigError, max_nodes: int = MAX_YAML_NODES
) -> Any:
    """Parse one YAML document safely (plain data only) from a path, ``bytes`` or ``str``.

    Refuses, with ``error`` naming the file: a non-regular or unreadable file, more than
    ``MAX_TEXT_BYTES``, text that is not UTF-8, a YAML syntax error, nesting deeper than the parser
    allows, recursive aliases, and aliases that expand beyond ``max_nodes`` nodes (alias bombs).
    An empty document is ``None``.
    """
    import yaml

    text, where = _read_document(source, what, error)
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _expanded_size(node, max_nodes)
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise error(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from None
        except RecursionError:
            raise error(f"{where}: YAML nested too deeply to read; flatten the document") from None
        except ValueError as exc:
            raise error(f"{where}: refused: {exc}; a config needs no more than a few aliases") from None
    finally:
        loader.dispose()


def load_json(source, *, what: str = "a JSON file", error: type[TrustrecError] = DataError) -> Any:
    """Parse JSON from a path, ``bytes`` or ``str``; errors (syntax, nesting too deep, not UTF-8,
    not a regular file, larger than ``MAX_TEXT_BYTES``) are ``error`` naming the file."""
    text, where = _read_document(source, what, error)
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{where}: JSON {MAX_JSON_DEPTH_HINT} to read") from None
    except ValueError as exc:
        raise error(f"{where}: not valid JSON ({exc})") from None


def load_json_object(path, *, what: str = "a JSON file", error: type[TrustrecError] = DataError) -> dict:
    """:func:`load_json` of the file ``path`` whose top level must be an object (a mapping)."""
    from pathlib import Path

    data = load_json(Path(path), what=what, error=error)
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
