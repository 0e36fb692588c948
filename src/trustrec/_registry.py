"""One registry mechanism for every named thing (models, audits, splitters, filters, metrics,
executors, datasets, mitigations): built-ins discovered, third-party ones through entry points,
user additions, and lookups whose error suggests close names.

Where the entries come from, on the first lookup (never at import):

1. ``builtins``: a callable returning entries (data-only registries such as datasets);
2. ``packages``: every module of these packages is imported, so the registration decorators of
   the built-ins run (``@register_model``, ``@register_audit``); there is no hand-kept list of
   modules, a new built-in is a new module;
3. entry points of the group ``group`` (``trustrec.<kind>``) of the installed distributions; each
   is loaded when its name is first looked up. A third-party entry point that fails to load, or
   loads something that is not what the group holds, raises :class:`PluginError` naming the
   distribution and the entry point (listing every entry warns and leaves it out; never silent).

Registrations made in code (a decorator, :meth:`NamedRegistry.register`, :meth:`NamedRegistry.add`)
win over the built-ins and the entry points of the same name; an entry point whose name is taken
is left out with a warning naming its distribution.

A registry built with a group ``trustrec.<kind>`` is public: :func:`registry` returns it by
``<kind>`` and :func:`kinds` lists them (also from :mod:`trustrec.registry`).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import threading
import warnings
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, ValuesView
from importlib import metadata
from typing import Any, Generic, TypeVar, overload

from trustrec.errors import ConfigError

T = TypeVar("T")

__all__ = ["GROUP_PREFIX", "NamedRegistry", "PluginError", "check_callable", "kinds", "registry"]

#: Entry-point groups of public registries start with this; the rest is the kind.
GROUP_PREFIX = "trustrec."
_KINDS: dict[str, NamedRegistry] = {}
_MISSING: Any = object()


class PluginError(ConfigError):
    """A third-party entry point that cannot be loaded, or that is not what its group holds."""


def check_callable(name: str, obj: Any) -> str | None:
    """The ``check`` of registries of functions: what an entry point loaded must be callable."""
    return None if callable(obj) else f"expected a function, got {type(obj).__name__}"


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return name or "an unknown distribution"


def _shipped(entry: Any) -> bool:
    """A class or function defined inside trustrec (a built-in)."""
    if not (inspect.isclass(entry) or inspect.isfunction(entry)):
        return False
    module = getattr(entry, "__module__", "") or ""
    return module == "trustrec" or module.startswith("trustrec.")


def _name_attr(entry: Any) -> str:
    """The default ``name_of``: the entry's ``name`` attribute."""
    return entry.name


class NamedRegistry(Mapping, Generic[T]):
    """Entries by name (module documentation). Reads like a read-only mapping of names to
    entries (``name in reg``, ``reg[name]``, ``sorted(reg)``) whose lookups discover lazily.

    ``kind`` names one entry in messages ("unknown {kind} 'x'"); ``name_of`` gives an entry's
    name (default: its ``name`` attribute); ``check(name, obj)`` returns what is wrong with an
    object an entry point loaded, or ``None``.

    Parameters
    ----------
    kind : str
        What one entry is, for messages (``"model"``, ``"audit"`` ...).
    builtins : callable or None
        Returns the built-in entries; None: none given this way.
    not_found : type of Exception
        The error raised for an unknown name.
    help_text : str
        Appended to the unknown-name message.
    list_up_to : int
        The unknown-name message lists the registered names when there are at most this many.
    group : str or None
        Entry-point group of third-party entries (``trustrec.<kind>`` makes the registry
        public); None: no entry points.
    packages : iterable of str
        Packages whose modules are all imported on the first lookup, so that built-ins register.
    name_of : callable or None
        Gives an entry's name; None: its ``name`` attribute.
    check : callable or None
        ``check(name, obj)``: what is wrong with an object an entry point loaded, or None.
    """

    def __init__(
        self,
        kind: str,
        builtins: Callable[[], Iterable[T]] | None = None,
        not_found: type[Exception] = ConfigError,
        help_text: str = "",
        list_up_to: int = 12,
        *,
        group: str | None = None,
        packages: Iterable[str] = (),
        name_of: Callable[[T], str] | None = None,
        check: Callable[[str, Any], str | None] | None = None,
    ):
        self.kind = kind
        self.group = group
        self.packages = tuple(packages)
        self._builtins = builtins
        self._not_found = not_found
        self._help = help_text
        self._list_up_to = list_up_to
        self._name_of = name_of or _name_attr
        self._check = check
        self._entries: dict[str, T] = {}
        self._origin: dict[str, str] = {}  # name -> "builtin" | "user" | "plugin"
        self._pending: dict[str, metadata.EntryPoint] = {}
        self._state = "new"  # new -> loading -> loaded
        self._lock = threading.RLock()
        if group and group.startswith(GROUP_PREFIX):
            _KINDS[group[len(GROUP_PREFIX) :]] = self

    # -- discovery -----------------------------------------------------------------------------
    def _ensure(self) -> None:
        if self._state == "loaded":
            return
        with self._lock:
            if self._state != "new":
                return
            self._state = "loading"
            try:
                if self._builtins is not None:
                    for entry in self._builtins():
                        if self._origin.get(self._name_of(entry)) != "user":
                            self._put(self._name_of(entry), entry, "builtin")
                for package in self.packages:
                    _import_all(package)
                self._scan_entry_points()
            finally:
                self._state = "loaded"

    def _scan_entry_points(self) -> None:
        if not self.group:
            return
        for ep in metadata.entry_points(group=self.group):
            taken = (
                f"the {self._origin[ep.name]} {self.kind} of that name"
                if ep.name in self._entries
                else f"the entry point {self._pending[ep.name].value!r}"
                if ep.name in self._pending
                else None
            )
            if taken:
                warnings.warn(
                    f"{self.group}: entry point {ep.name!r} = {ep.value!r} of {_dist_name(ep)} is not "
                    f"used: {taken} is registered already",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            self._pending[ep.name] = ep

    def refresh(self) -> None:
        """Forget the entry points not loaded yet and those loaded, and scan the installed
        distributions again (after installing or removing a plug-in in a running process)."""
        with self._lock:
            self._ensure()
            for name in [n for n, o in self._origin.items() if o == "plugin"]:
                del self._entries[name], self._origin[name]
            self._pending.clear()
            importlib.invalidate_caches()
            self._scan_entry_points()

    def _load(self, name: str) -> T:
        ep = self._pending[name]
        where = f"entry point {ep.name!r} = {ep.value!r} (group {self.group}) of {_dist_name(ep)}"
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(
                f"the {self.kind} {name!r} could not be loaded from the {where}: {type(exc).__name__}: {exc}"
            ) from exc
        problem = self._check(name, obj) if self._check is not None else None
        if problem:
            raise PluginError(f"the {where} is not a usable {self.kind}: {problem}")
        with self._lock:
            self._pending.pop(name, None)
            if self._origin.get(name) != "user":  # the plug-in's own decorator may have run
                self._put(name, obj, "plugin")
        return self._entries[name]

    def _put(self, name: str, entry: T, origin: str) -> None:
        self._entries[name] = entry
        self._origin[name] = origin

    # -- registration --------------------------------------------------------------------------
    @overload
    def register(self, entry: T, /, *, name: str | None = None) -> T: ...

    @overload
    def register(self, entry: None = None, /, *, name: str | None = None) -> Callable[[T], T]: ...

    def register(self, entry: T | None = None, /, *, name: str | None = None) -> T | Callable[[T], T]:
        """Register ``entry`` (under ``name``, default its own name) without discovering the
        others: what registration decorators call. Usable as ``@reg.register`` or
        ``@reg.register(name="x")``. A later registration of a name wins, except that a
        built-in never replaces one made by user code."""
        if entry is None:
            return lambda e: self.register(e, name=name)
        key = name if name is not None else self._name_of(entry)
        builtin = self._state == "loading" or _shipped(entry)
        with self._lock:
            if builtin and self._origin.get(key) == "user":
                return entry
            self._pending.pop(key, None)
            self._put(key, entry, "builtin" if builtin else "user")
        return entry

    def add(self, entry: T, *, overwrite: bool = False, name: str | None = None) -> None:
        """Register ``entry`` after discovering the others; a name already taken is an error
        unless ``overwrite``."""
        key = name if name is not None else self._name_of(entry)
        if key in self and not overwrite:
            raise ConfigError(f"{self.kind} {key!r} is already registered; pass overwrite=True to replace it")
        with self._lock:
            self._pending.pop(key, None)
            self._put(key, entry, "user")

    def __setitem__(self, name: str, entry: T) -> None:
        self.register(entry, name=name)

    # -- lookup --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every registered name, without loading the entry points."""
        self._ensure()
        return list(self._entries) + [n for n in self._pending if n not in self._entries]

    def origin(self, name: str) -> str:
        """``"builtin"``, ``"user"`` or ``"plugin"`` (an entry point, loaded or not)."""
        self._ensure()
        if name in self._pending:
            return "plugin"
        self.get(name)
        return self._origin[name]

    def all(self) -> dict[str, T]:
        """Every entry by name, loading the entry points; one that cannot load is left out with
        a warning that names it (looking its name up raises the error)."""
        self._ensure()
        for name in list(self._pending):
            try:
                self._load(name)
            except PluginError as exc:  # noqa: PERF203  # one bad plugin must not hide the others
                warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
        return self._entries

    def get(self, name: str, default: Any = _MISSING) -> T:
        """The entry ``name``; unknown: ``default`` if given, else the registry's error (with
        close names). An entry point is loaded here, the first time."""
        self._ensure()
        if name in self._entries:
            return self._entries[name]
        if name in self._pending:
            return self._load(name)
        if default is not _MISSING:
            return default
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        listing = f" Registered {self.kind}s: {', '.join(names)}." if len(names) <= self._list_up_to else ""
        raise self._not_found(f"unknown {self.kind} {name!r}.{hint}{listing} {self._help}".rstrip())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._entries or name in self._pending

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> ItemsView[str, T]:
        return self.all().items()

    def values(self) -> ValuesView[T]:
        return self.all().values()

    def __repr__(self) -> str:
        return f"NamedRegistry({self.kind!r}, group={self.group!r})"

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


def _import_all(package: str) -> None:
    """Import ``package`` and every module in it (what runs the registration decorators)."""
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), package + "."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            importlib.import_module(info.name)


def _import_subpackages() -> None:
    """Import trustrec's packages: each defines its registries when imported."""
    import trustrec

    for info in pkgutil.iter_modules(trustrec.__path__):
        if info.ispkg and not info.name.startswith("_"):
            importlib.import_module(f"trustrec.{info.name}")


def kinds() -> list[str]:
    """The kinds of the public registries ("audits", "models", "metrics", ...).

    Imports trustrec's packages first, so that each defines its registries.

    Returns
    -------
    list of str
        The kinds, sorted.
    """
    _import_subpackages()
    return sorted(_KINDS)


def registry(kind: str) -> NamedRegistry:
    """The public registry of ``kind`` (entry-point group ``trustrec.<kind>``).

    Parameters
    ----------
    kind : str
        A registry kind (one of :func:`kinds`).

    Returns
    -------
    NamedRegistry
        The registry.

    Raises
    ------
    ConfigError
        When there is no public registry of ``kind``.
    """
    if kind not in _KINDS:
        _import_subpackages()
    if kind not in _KINDS:
        raise ConfigError(f"unknown registry kind {kind!r}; one of {', '.join(sorted(_KINDS))}")
    return _KINDS[kind]
