"""Exceptions and warnings raised by trustrec.

Every message says which object or file, which field, what was expected, what was
received and what to do next.
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "ConfigError",
    "DataError",
    "DataWarning",
    "DatasetNotFoundError",
    "DownloadError",
    "ModelNotFoundError",
    "NotFittedError",
    "TrustrecError",
]


class TrustrecError(Exception):
    """Base class of every error trustrec raises on purpose."""


class DataError(TrustrecError, ValueError):
    """Input data is malformed: a file, a column, a row or an array is not what it must be."""


class ConfigError(TrustrecError, ValueError):
    """A configuration or parameter is invalid; the message names the key."""


class NotFittedError(TrustrecError, RuntimeError):
    """A component was used before ``fit``."""


class ChecksumError(DataError):
    """A downloaded or cached file does not have the published checksum."""


class DownloadError(TrustrecError, OSError):
    """A dataset or model source could not be fetched."""


class DatasetNotFoundError(TrustrecError, LookupError):
    """A dataset name is not registered, or no source for it could be reached."""


class ModelNotFoundError(TrustrecError, LookupError):
    """A model name is not registered, or no checkpoint for it could be found."""


class DataWarning(UserWarning):
    """Data was loaded but something about it deserves attention."""
