"""Old import path of :mod:`trustrec.cli.models` (the command lives in the ``trustrec.cli`` package)."""

from trustrec.cli.models import *  # noqa: F403
from trustrec.cli.models import __all__  # noqa: F401
