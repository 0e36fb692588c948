"""One small registry of named entries (datasets, language models): built-ins loaded on first
use, user additions, and lookups whose error suggests close names."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, TypeVar

from trustrec.errors import ConfigError

T = TypeVar("T")

__all__ = ["NamedRegistry"]


class NamedRegistry(Generic[T]):
    """Entries with a ``name``; ``builtins`` is called once, on first access."""

    def __init__(self, kind: str, builtins: Callable[[], Iterable[T]], not_found: type[Exception],
                 help_text: str, list_up_to: int = 12):
        self.kind = kind
        self._builtins = builtins
        self._not_found = not_found
        self._help = help_text
        self._list_up_to = list_up_to
        self._entries: dict[str, T] = {}

    def all(self) -> dict[str, T]:
        if not self._entries:
            for entry in self._builtins():
                self._entries[entry.name] = entry
        return self._entries

    def add(self, entry: T, *, overwrite: bool = False) -> None:
        entries = self.all()
        if entry.name in entries and not overwrite:
            raise ConfigError(f"{self.kind} {entry.name!r} is already registered; pass overwrite=True to replace it")
        entries[entry.name] = entry

    def get(self, name: str) -> T:
        entries = self.all()
        if name not in entries:
            close = difflib.get_close_matches(name, list(entries), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            listing = (f" Registered {self.kind}s: {', '.join(entries)}."
                       if len(entries) <= self._list_up_to else "")
            raise self._not_found(f"unknown {self.kind} {name!r}.{hint}{listing} {self._help}")
        return entries[name]
