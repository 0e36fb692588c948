"""Data layer: the immutable Dataset, loaders, the registry of named datasets, filters, splits,
and the queries recommenders answer."""

from trustrec.data._amazon import load_amazon
from trustrec.data._arrays import Ragged, readonly
from trustrec.data._atomic import load_atomic, read_atomic_file
from trustrec.data._bigrec import load_bigrec
from trustrec.data._coat import load_coat
from trustrec.data._dataset import Dataset, FilterStep, IndexedArray, Interactions
from trustrec.data._detect import detect_format, load_path
from trustrec.data._filters import FILTERS, drop_duplicates, k_core, sample_users, to_implicit
from trustrec.data._groups import (
    ITEM_GROUP_COLUMNS,
    MISSING_GROUP,
    activity_levels,
    age_bands,
    guess_item_group_column,
    item_group_matrix,
    split_group_values,
    user_group_table,
)
from trustrec.data._movielens import load_movielens
from trustrec.data._positions import compare_with_rows, position_eval_set, split_global_positions, user_sequences
from trustrec.data._query import Query, QueryBatch
from trustrec.data._random_exposure import load_kuairec, load_random_exposure, load_yahoo_r3
from trustrec.data._registry import (
    DatasetEntry,
    load_dataset,
    register_dataset,
    registry,
    resolve_dataset,
)
from trustrec.data._requests import REQUEST_COLUMNS, recommendation_requests
from trustrec.data._sources import FilesSource, UrlSource, WheelSource
from trustrec.data._split import (
    SPLITTERS,
    EvalSet,
    Split,
    make_split,
    split_given_test,
    split_leave_one_out,
    split_random,
    split_random_exposure,
    split_temporal,
)
from trustrec.data._tabular import load_tabular
from trustrec.data._users import resolve_users

__all__ = [
    "FILTERS",
    "ITEM_GROUP_COLUMNS",
    "MISSING_GROUP",
    "REQUEST_COLUMNS",
    "SPLITTERS",
    "Dataset",
    "DatasetEntry",
    "EvalSet",
    "FilesSource",
    "FilterStep",
    "IndexedArray",
    "Interactions",
    "Query",
    "QueryBatch",
    "Ragged",
    "Split",
    "UrlSource",
    "WheelSource",
    "activity_levels",
    "age_bands",
    "compare_with_rows",
    "detect_format",
    "drop_duplicates",
    "guess_item_group_column",
    "item_group_matrix",
    "k_core",
    "load_amazon",
    "load_atomic",
    "load_bigrec",
    "load_coat",
    "load_dataset",
    "load_kuairec",
    "load_movielens",
    "load_path",
    "load_random_exposure",
    "load_tabular",
    "load_yahoo_r3",
    "make_split",
    "position_eval_set",
    "read_atomic_file",
    "readonly",
    "recommendation_requests",
    "register_dataset",
    "registry",
    "resolve_dataset",
    "resolve_users",
    "sample_users",
    "split_given_test",
    "split_global_positions",
    "split_group_values",
    "split_leave_one_out",
    "split_random",
    "split_random_exposure",
    "split_temporal",
    "to_implicit",
    "user_group_table",
    "user_sequences",
]
