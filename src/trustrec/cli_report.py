"""Old import path of :mod:`trustrec.cli.report` (the command lives in the ``trustrec.cli`` package)."""

from trustrec.cli.report import *  # noqa: F403
from trustrec.cli.report import __all__  # noqa: F401
