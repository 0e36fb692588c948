"""Old import path of :mod:`trustrec.cli.audit` (the command lives in the ``trustrec.cli`` package)."""

from trustrec.cli.audit import *  # noqa: F403
from trustrec.cli.audit import __all__  # noqa: F401
