"""Executors: how independent pieces of work (the audits of a plan, the cells of a grid audit) are
run. The library code is the same whichever executor runs it; only where the work runs changes.

- :class:`SerialExecutor` (the default) runs each call in this process, in order.
- :class:`RayExecutor` runs each call as a Ray task (the ``ray`` extra: ``pip install
  'trustrec[ray]'``); ``import ray`` happens only when one is built.

An executor is anything with a ``name`` and ``map(fn, items) -> list`` that returns
``[fn(item) for item in items]`` in input order (:class:`Executor`). Pure functions of their
arguments give identical results under every executor; seeds travel in the items or in ``fn``.

Executors are registered by name in :data:`EXECUTORS` (kind ``executors`` of
:mod:`trustrec.registry`; third-party ones through the entry-point group ``trustrec.executors``).
"""

from trustrec.parallel._executors import (
    EXECUTORS,
    Executor,
    RayExecutor,
    SerialExecutor,
    resolve_executor,
)

__all__ = ["EXECUTORS", "Executor", "RayExecutor", "SerialExecutor", "resolve_executor"]
