"""The executor protocol, the serial executor and the Ray executor (module docstring of
:mod:`trustrec.parallel`)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from trustrec._registry import NamedRegistry
from trustrec.errors import ConfigError

__all__ = ["EXECUTORS", "Executor", "RayExecutor", "SerialExecutor", "resolve_executor"]

T = TypeVar("T")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` on each item; ``map`` returns the results in the order of ``items``. An error
    raised by one call propagates (the first in input order, for executors that run them all)."""

    @property
    def name(self) -> str: ...

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]: ...


def _check_executor(name: str, obj: Any) -> str | None:
    if not isinstance(obj, type):
        return f"expected an executor class (built with no arguments), got {type(obj).__name__}"
    if getattr(obj, "name", None) != name or not callable(getattr(obj, "map", None)):
        return f"{obj.__name__} needs name = {name!r} and a map(fn, items) method"
    return None


#: Executors by name (kind ``executors`` of :mod:`trustrec.registry`): classes built with no
#: arguments by :func:`resolve_executor`. The built-ins are decorated with ``@EXECUTORS.register``;
#: third-party ones come from the entry-point group ``trustrec.executors``.
EXECUTORS: NamedRegistry[type] = NamedRegistry(
    "executor", None, ConfigError, "", group="trustrec.executors", check=_check_executor
)


@EXECUTORS.register
class SerialExecutor:
    """Each call in this process, one after the other, in input order (the default)."""

    name: ClassVar[str] = "serial"

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return [fn(item) for item in items]

    def __repr__(self) -> str:
        return "SerialExecutor()"


def _import_ray():
    """``ray``, or one clear error naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "the Ray executor needs the 'ray' extra (ray is not installed): "
            f"pip install 'trustrec[ray]' ({type(exc).__name__}: {exc})"
        ) from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) address must accept a TCP connection: ``ray.init``
    would otherwise retry for minutes before it fails. ``"auto"`` is Ray's own lookup (it fails at
    once when no cluster was started on this machine)."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"RayExecutor: address {address!r} is not 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(
            f"RayExecutor: no Ray cluster answered at {address!r} ({type(exc).__name__}: {exc}); start one "
            "with `ray start --head` and give the address it prints"
        ) from None


def _call(fn, item):
    """The Ray task body: ``fn`` arrives once through the object store, each item by value."""
    return fn(item)


@EXECUTORS.register
class RayExecutor:
    """Each call is a Ray task; results come back in input order.

    When Ray is not initialised, the first ``map`` either connects to the running cluster at
    ``address`` (``"auto"``: the one ``ray start`` left on this machine; ``"HOST:PORT"``: a head
    node's GCS address; ``"ray://HOST:10001"``: a Ray client server) or, with no address, starts a
    local instance with ``num_cpus`` CPUs (``None``: all of this machine's) without the dashboard;
    :meth:`shutdown` disconnects from the cluster or stops the local instance, and leaves the
    cluster itself running. An instance the caller initialised already (``ray.init(...)``) is used
    as it is and left running. ``num_cpus_per_task`` is what each task asks of the scheduler.

    What must pickle (cloudpickle): ``fn`` with everything it holds (for the audit runner, the
    fitted model, the split and the shared audit inputs; ``fn`` is put in the object store once
    per ``map``, not once per item), every item (for the audit runner, the configured audits),
    and every result (``AuditResult``: estimates, pandas evidence tables). A model holding an
    open client, a thread lock or a process-local GPU handle must be rebuilt by ``fn`` on the
    worker instead. Results equal the serial executor's for functions that depend only on their
    arguments (trustrec audits take every seed from their config).

    Parameters
    ----------
    num_cpus : int or None
        CPUs of a local Ray instance this executor starts (at least 1); None: all of this
        machine's. Not with ``address`` (a cluster's CPUs are its own).
    address : str or None
        The Ray cluster to connect to (``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``);
        None: start a local instance.
    num_cpus_per_task : float
        CPUs each task asks of the scheduler (more than 0).
    init_kwargs : dict or None
        Extra keyword arguments for ``ray.init`` when this executor starts Ray.

    Raises
    ------
    ConfigError
        When ray is not installed, ``num_cpus`` or ``num_cpus_per_task`` is out of range, or
        ``num_cpus`` is given together with ``address``. Connecting to an address where no
        cluster answers raises a ConfigError naming the address at the first ``map``.
    """

    name: ClassVar[str] = "ray"

    def __init__(
        self,
        *,
        num_cpus: int | None = None,
        num_cpus_per_task: float = 1,
        address: str | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ):
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError(
                f"RayExecutor: address must be a non-empty string such as 'auto' or 'HOST:PORT', got {address!r}"
            )
        if address is not None and num_cpus is not None:
            raise ConfigError(
                "RayExecutor: num_cpus applies to a local instance; a cluster at an address has its own CPUs"
            )
        if num_cpus is not None and num_cpus < 1:
            raise ConfigError(f"RayExecutor: num_cpus must be >= 1, got {num_cpus}")
        if not num_cpus_per_task > 0:
            raise ConfigError(f"RayExecutor: num_cpus_per_task must be > 0, got {num_cpus_per_task}")
        self.num_cpus, self.num_cpus_per_task, self.address = num_cpus, num_cpus_per_task, address
        self.init_kwargs = dict(init_kwargs or {})
        self._ray = _import_ray()
        self._started = False

    def _ensure_started(self):
        ray = self._ray
        if not ray.is_initialized():
            if self.address is None:
                kwargs = {"num_cpus": self.num_cpus, "include_dashboard": False, "log_to_driver": True}
            else:
                _check_reachable(self.address)
                kwargs = {"address": self.address, "log_to_driver": True}
            try:
                ray.init(**{**kwargs, **self.init_kwargs})
            except ConnectionError as exc:
                raise ConfigError(
                    f"RayExecutor: no Ray cluster answered at address {self.address!r} "
                    f"(start one with `ray start --head`): {exc}"
                ) from None
            self._started = True
        return ray

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        items = list(items)
        if not items:
            return []
        ray = self._ensure_started()
        task = ray.remote(num_cpus=self.num_cpus_per_task, max_retries=0)(_call)
        fn_ref = ray.put(fn)
        return ray.get([task.remote(fn_ref, item) for item in items])

    def shutdown(self) -> None:
        """Stop the local Ray instance this executor started (nothing when it used one already running)."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def __repr__(self) -> str:
        where = f"address={self.address!r}" if self.address is not None else f"num_cpus={self.num_cpus}"
        return f"RayExecutor({where}, num_cpus_per_task={self.num_cpus_per_task})"


def resolve_executor(executor: Executor | str | None, *, address: str | None = None) -> Executor:
    """``None`` or ``"serial"``: the serial executor; ``"ray"``: a :class:`RayExecutor` with its
    defaults (any other name: that registered executor, built with no arguments); an object with
    ``name`` and ``map``: itself.

    Parameters
    ----------
    executor : Executor, str or None
        An executor, a registered executor name, or None.
    address : str or None
        For ``"ray"`` only: the Ray cluster to connect to (see :class:`RayExecutor`).

    Returns
    -------
    Executor
        The executor to use.

    Raises
    ------
    ConfigError
        When the name is not a registered executor, the object is not an executor, or
        ``address`` is given for an executor other than ``"ray"``.
    """
    if address is not None:
        if executor != "ray":
            raise ConfigError(f"an address names a Ray cluster: it needs executor 'ray', not {executor!r}")
        return RayExecutor(address=address)
    if executor is None:
        return SerialExecutor()
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {executor!r}; one of {', '.join(EXECUTORS)}")
        return EXECUTORS.get(executor)()
    if not isinstance(executor, Executor):
        raise ConfigError(
            f"executor must be 'serial', 'ray' or an object with name and map(fn, items), got {type(executor).__name__}"
        )
    return executor
