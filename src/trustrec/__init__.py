"""trustrec: build, evaluate, audit and harden LLM-empowered recommender systems.

Subpackages load lazily, so ``import trustrec`` stays light (no torch, no transformers).
"""

import lazy_loader as _lazy

from trustrec._version import __version__

__getattr__, __dir__, _all = _lazy.attach(
    __name__,
    submodules=["data", "models", "eval", "errors", "testing", "runs", "audit", "mitigate", "report", "parallel"],
)
__all__ = ["__version__", *_all]  # noqa: PLE0604  # _all: lazy_loader's submodule names (strings)
