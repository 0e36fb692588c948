"""Data layer: the immutable Dataset, loaders, the registry of named datasets, filters, splits."""

from trustrec.data._arrays import Ragged
from trustrec.data._atomic import load_atomic, read_atomic_file
from trustrec.data._dataset import Dataset, FilterStep, IndexedArray, Interactions

__all__ = [
    "Dataset",
    "Interactions",
    "IndexedArray",
    "FilterStep",
    "Ragged",
    "load_atomic",
    "read_atomic_file",
]
