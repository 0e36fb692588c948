"""Executors: how independent pieces of work (the audits of a plan, the cells of a grid audit) are
run. The library code is the same whichever executor runs it; only where the work runs changes.

- :class:`SerialExecutor` (the default) runs each call in this process, in order.
- :class:`RayExecutor` runs each call as a Ray task (the ``ray`` extra: ``pip install
  'trustrec[ray]'``); ``import ray`` happens only when one is built.

An executor is anything with a ``name`` and ``map(fn, items) -> list`` that returns
``[fn(item) for item in items]`` in input order (:class:`Executor`). Pure functions of their
arguments give identical results under every executor; seeds travel in the items or in ``fn``.
"""

from trustrec.parallel._executors import Executor, RayExecutor, SerialExecutor, resolve_executor

__all__ = ["Executor", "RayExecutor", "SerialExecutor", "resolve_executor"]
