"""Compatibility shim: control over any recommender lives in :mod:`trustrec.mitigate.control`."""

from trustrec.mitigate.control import *  # noqa: F403
from trustrec.mitigate.control import __all__  # noqa: F401
