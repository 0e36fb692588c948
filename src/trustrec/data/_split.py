"""Train/valid/test splits that never leak, and the queries + targets they define.

Every split orders interactions the same way (user, timestamp, position in the source), so ties
in time are broken by the file order and results are reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec._registry import NamedRegistry, check_callable
from trustrec.data._arrays import Ragged
from trustrec.data._dataset import Dataset, Interactions
from trustrec.data._query import QueryBatch
from trustrec.errors import ConfigError, DataError

__all__ = [
    "SPLITTERS",
    "EvalSet",
    "Split",
    "drop_evaluation_events",
    "has_clock",
    "make_split",
    "split_given_test",
    "split_leave_one_out",
    "split_random",
    "split_random_exposure",
    "split_temporal",
]

PARTS = ("valid", "test")


@dataclass(frozen=True, eq=False)
class EvalSet:
    """Queries for users with at least one target, and their targets (rows aligned).

    Parameters
    ----------
    queries : QueryBatch
        One query per evaluated user.
    targets : Ragged
        Each query's target item indices (row ``i`` belongs to query ``i``).
    part : str
        The split part evaluated (``"valid"`` or ``"test"``).
    """

    queries: QueryBatch
    targets: Ragged
    part: str

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, index) -> EvalSet:
        rows = np.atleast_1d(np.arange(len(self))[index])
        return EvalSet(self.queries[rows], self.targets.take(rows), self.part)


@dataclass(frozen=True, eq=False)
class Split:
    """``train``/``valid``/``test`` interactions of one dataset (same index space).

    The training part never holds a (user, item, time) event of the valid or test part: any it
    is given are removed here, counted in ``params["evaluation_events_removed_from_train"]``
    and said in ``notes`` (without a clock nothing is removed; see the module docstring).

    Parameters
    ----------
    dataset : Dataset
        The dataset split.
    train, valid, test : Interactions
        The three parts, in the dataset's index space.
    method : str
        The split method's name.
    params : Mapping[str, Any], optional
        The parameters the method ran with (stored read-only); empty by default.
    notes : tuple of str, default ()
        Remarks on the split.
    """

    dataset: Dataset
    train: Interactions
    valid: Interactions
    test: Interactions
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        # The invariant every split method shares, enforced here so none can break it: the train
        # part holds no (user, item, time) event of the valid or test part.
        train, removed = drop_evaluation_events(self.dataset, self.train, [self.valid, self.test])
        params, notes = dict(self.params), tuple(self.notes)
        if removed:
            notes += (
                (
                    f"{removed} training interactions were also evaluation events and were removed from "
                    "train (a split never trains on what it evaluates)"
                ),
            )
            params["evaluation_events_removed_from_train"] = (
                params.get("evaluation_events_removed_from_train", 0) + removed
            )
        object.__setattr__(self, "train", train)
        object.__setattr__(self, "notes", notes)
        object.__setattr__(self, "params", MappingProxyType(params))

    # -- derived splits: the one place a split is rebuilt (the invariant above re-applies) -----
    def with_train(
        self, train: Interactions, *, params: Mapping[str, Any] | None = None, note: str | None = None
    ) -> Split:
        """This split with the training part replaced by ``train`` (same dataset index space);
        valid and test unchanged. ``params`` are merged into the split's params and ``note``
        is appended to its notes."""
        _check_in_dataset(self.dataset, train, "Split.with_train")
        return self._derive(self.dataset, train, params, note)

    def with_added_train(
        self,
        interactions: Interactions,
        *,
        new_user_ids: Iterable[str] = (),
        params: Mapping[str, Any] | None = None,
        note: str | None = None,
        dataset_note: str | None = None,
    ) -> Split:
        """This split with ``interactions`` appended to the training part (fake users, canaries,
        feedback accepted by simulated users); valid and test unchanged.

        ``new_user_ids``: raw ids of users the dataset does not have yet; they take the indices
        ``n_users, n_users + 1, ...`` (in that order) that ``interactions`` may refer to. With new
        users the dataset grows: their user rows and their interactions join it (``dataset_note``
        goes into its notes; extras indexed by user are dropped, ``Interactions`` extras kept).
        Without new users the dataset is unchanged. ``params``/``note`` as in :meth:`with_train`."""
        ds = self.dataset
        new_ids = [str(u) for u in new_user_ids]
        if len(set(new_ids)) != len(new_ids):
            raise DataError(
                f"Split.with_added_train: new_user_ids repeat ids ({len(new_ids)} ids, {len(set(new_ids))} distinct)"
            )
        taken = sorted(set(new_ids) & set(ds.user_ids.tolist()))
        if taken:
            raise DataError(
                f"Split.with_added_train: {len(taken)} new user ids are already users of dataset "
                f"'{ds.name}': {taken[:5]}; pick unused ids"
            )
        if len(interactions) == 0 and not new_ids:
            return self._derive(ds, self.train, params, note)
        if len(interactions) and (self.train.rating is None) != (interactions.rating is None):
            raise DataError(
                "Split.with_added_train: the added interactions must have ratings exactly when the "
                f"training data has (training data {'has' if self.train.has_rating else 'has no'} "
                "ratings)"
            )
        _check_in_dataset(ds, interactions, "Split.with_added_train", n_users=ds.n_users + len(new_ids))
        if new_ids:
            users = pd.concat([ds.users, pd.DataFrame({"user_id": new_ids})], ignore_index=True)
            extras = {key: v for key, v in ds.extras.items() if isinstance(v, Interactions)}
            ds = Dataset(
                ds.name,
                Interactions.concat([ds.interactions, interactions]),
                ds.items,
                users,
                ds.provenance,
                ds.notes + ((dataset_note,) if dataset_note else ()),
                ds.source,
                extras,
            )
        return self._derive(ds, Interactions.concat([self.train, interactions]), params, note)

    def without_users(
        self,
        users: npt.ArrayLike,
        *,
        parts: tuple[str, ...] = ("train", "valid", "test"),
        params: Mapping[str, Any] | None = None,
        note: str | None = None,
    ) -> Split:
        """This split without any interaction of the user indices ``users`` in ``parts`` (all by
        default; ``parts=("train",)`` keeps them evaluated but never trained on). Users and items
        keep their indices. ``params``/``note`` as in :meth:`with_train`."""
        bad = [p for p in parts if p not in ("train", *PARTS)]
        if bad or not parts:
            raise ConfigError(
                f"Split.without_users: parts must be a non-empty subset of ('train', 'valid', 'test'), got {parts!r}"
            )
        users = np.asarray(users, np.int64).ravel()

        def kept(part: str, inter: Interactions) -> Interactions:
            return inter.select(~np.isin(inter.user, users)) if part in parts else inter

        return Split(
            self.dataset,
            kept("train", self.train),
            kept("valid", self.valid),
            kept("test", self.test),
            self.method,
            {**self.params, **(params or {})},
            self.notes + ((note,) if note else ()),
        )

    def _derive(self, dataset: Dataset, train: Interactions, params, note) -> Split:
        return Split(
            dataset,
            train,
            self.valid,
            self.test,
            self.method,
            {**self.params, **(params or {})},
            self.notes + ((note,) if note else ()),
        )

    def train_dataset(self) -> Dataset:
        """The dataset restricted to training interactions (catalog and users unchanged)."""
        return self.dataset.with_interactions(self.train)

    def history_for(self, part: str) -> Interactions:
        """What a model may see when asked about ``part``: train for valid, train+valid for test."""
        _check_part(part)
        return self.train if part == "valid" else Interactions.concat([self.train, self.valid])

    def eval_set(self, part: str = "test", *, with_attributes: bool = False) -> EvalSet:
        """Users with a target in ``part``; their histories (chronological) and their targets."""
        _check_part(part)
        held = self.valid if part == "valid" else self.test
        threshold = self.params.get("positive_threshold")
        if threshold is not None and held.rating is not None:
            held = held.select(held.rating >= threshold)
        n_users = self.dataset.n_users
        users = np.unique(held.user)
        histories = self.history_for(part).by_user(n_users).take(users)
        targets = held.by_user(n_users).take(users)
        attrs = None
        if with_attributes:
            attrs = self.dataset.users.iloc[users].drop(columns=["user_id"]).reset_index(drop=True)
        return EvalSet(QueryBatch(users, histories, attrs), targets, part)

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "valid_users": len(np.unique(self.valid.user)),
            "test_users": len(np.unique(self.test.user)),
        }

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "params": dict(self.params), **self.sizes(), "notes": list(self.notes)}


def has_clock(dataset: Dataset) -> bool:
    """Whether the dataset's interactions carry times that tell events apart (not all equal)."""
    ts = dataset.interactions.timestamp
    return len(ts) > 0 and bool(ts.min() != ts.max())


def drop_evaluation_events(dataset: Dataset, train: Interactions, held: list[Interactions]) -> tuple[Interactions, int]:
    """``train`` without the (user, item, time) events that occur in ``held``, and how many were
    removed. Without a clock (every timestamp equal, as in Coat) events cannot be told apart by
    time, so nothing is removed: a separately collected test set (random exposure) may then share
    (user, item) pairs with the log, which the splits report."""
    held = [h for h in held if h is not None and len(h)]
    if not held or not len(train) or not has_clock(dataset):
        return train, 0
    evaluated = Interactions.concat(held)
    keys = pd.MultiIndex.from_arrays([evaluated.user, evaluated.item, evaluated.timestamp])
    in_eval = pd.MultiIndex.from_arrays([train.user, train.item, train.timestamp]).isin(keys)
    removed = int(in_eval.sum())
    return (train.select(~in_eval) if removed else train), removed


def _check_in_dataset(dataset: Dataset, inter: Interactions, owner: str, *, n_users: int | None = None) -> None:
    if not isinstance(inter, Interactions):
        raise DataError(f"{owner}: expected Interactions, got {type(inter).__name__}")
    n_users = dataset.n_users if n_users is None else n_users
    if len(inter) and inter.user.max() >= n_users:
        raise DataError(
            f"{owner}: user index {int(inter.user.max())} is outside the {n_users} users of dataset "
            f"'{dataset.name}'"
            + ("" if n_users > dataset.n_users else "; name new users with new_user_ids (Split.with_added_train)")
        )
    if len(inter) and inter.item.max() >= dataset.n_items:
        raise DataError(
            f"{owner}: item index {int(inter.item.max())} is outside the catalog of dataset "
            f"'{dataset.name}' ({dataset.n_items} items)"
        )


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ConfigError(f"split part must be one of {PARTS}, got {part!r}")


def _rank_within_user(users_sorted: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row within its user's block and the block size (rows sorted by user)."""
    counts = np.bincount(users_sorted, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(users_sorted)) - starts[users_sorted]
    return position, counts[users_sorted]


#: Split methods by name (kind ``splitters`` of :mod:`trustrec.registry`): ``fn(dataset, **params)
#: -> Split``. The built-ins are the functions below decorated with ``@SPLITTERS.register``;
#: third-party ones come from the entry-point group ``trustrec.splitters``.
SPLITTERS: NamedRegistry = NamedRegistry(
    "split method", None, ConfigError, "", group="trustrec.splitters", check=check_callable
)


@SPLITTERS.register(name="leave_one_out")
def split_leave_one_out(dataset: Dataset, *, short_users: str = "error") -> Split:
    """Per user, by time: last interaction -> test, second last -> valid, the rest -> train.

    A user needs 3 interactions; ``short_users`` says what to do with others: ``'error'``
    (default), ``'train'`` (keep them as training data only) or ``'drop'``.

    Parameters
    ----------
    dataset : Dataset
        The dataset to split.
    short_users : {"error", "train", "drop"}, default "error"
        What to do with users with fewer than 3 interactions.

    Returns
    -------
    Split
        The split, method ``"leave_one_out"``.

    Raises
    ------
    ConfigError
        If ``short_users`` is not one of the choices.
    DataError
        If the dataset has no interactions, or (with ``short_users="error"``) a user has fewer
        than 3.
    """
    if short_users not in ("error", "train", "drop"):
        raise ConfigError(f"split_leave_one_out: short_users must be 'error', 'train' or 'drop', got {short_users!r}")
    inter = dataset.interactions
    if len(inter) == 0:
        raise DataError(f"Dataset '{dataset.name}' has no interactions to split")
    order = inter.chronological_order()
    position, count = _rank_within_user(inter.user[order], dataset.n_users)
    from_end = count - 1 - position
    short = count < 3
    notes = []
    if short.any():
        short_users_idx = np.unique(inter.user[order][short])
        example = dataset.user_ids[short_users_idx[0]]
        n_ex = int(np.bincount(inter.user, minlength=dataset.n_users)[short_users_idx[0]])
        if short_users == "error":
            raise DataError(
                f"leave-one-out needs 3 interactions per user, but {len(short_users_idx)} users of "
                f"'{dataset.name}' have fewer (e.g. user {example!r} has {n_ex}). Filter them first "
                "(k_core(dataset, user_k=3)) or pass short_users='train' or 'drop'."
            )
        notes.append(f"{len(short_users_idx)} users with < 3 interactions: {short_users}")
    part = np.where(from_end == 0, 2, np.where(from_end == 1, 1, 0))
    if short.any():
        part[short] = 0 if short_users == "train" else -1
    train, valid, test = (inter.select(np.sort(order[part == p])) for p in (0, 1, 2))
    return Split(
        dataset,
        train,
        valid,
        test,
        method="leave_one_out",
        params={"short_users": short_users},
        notes=tuple(notes),
    )


@SPLITTERS.register(name="temporal")
def split_temporal(dataset: Dataset, *, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Global time split: the oldest interactions train, then valid, then the newest test.

    Cut points are timestamps, so interactions at the same time always land on the same side.

    Parameters
    ----------
    dataset : Dataset
        The dataset to split.
    valid_frac : float, default 0.1
        The share of interactions (before ties) meant for valid; in [0, 1).
    test_frac : float, default 0.1
        The share meant for test; in (0, 1), with ``valid_frac + test_frac < 1``.

    Returns
    -------
    Split
        The split, method ``"temporal"``; its params hold the cut timestamps ``valid_from``
        and ``test_from``.

    Raises
    ------
    ConfigError
        If the fractions are out of range.
    DataError
        If the dataset has no interactions.
    """
    if not (0 <= valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ConfigError(
            f"split_temporal: need 0 <= valid_frac, 0 < test_frac and valid_frac + test_frac < 1; "
            f"got valid_frac={valid_frac}, test_frac={test_frac}"
        )
    inter = dataset.interactions
    n = len(inter)
    if n == 0:
        raise DataError(f"Dataset '{dataset.name}' has no interactions to split")
    ts = np.sort(inter.timestamp)
    t_valid = ts[min(n - 1, int(np.floor(n * (1 - valid_frac - test_frac))))]
    t_test = ts[min(n - 1, int(np.floor(n * (1 - test_frac))))]
    train = inter.timestamp < t_valid
    valid = (inter.timestamp >= t_valid) & (inter.timestamp < t_test)
    test = inter.timestamp >= t_test
    notes = []
    if not valid.any() and valid_frac > 0:
        notes.append("valid is empty: too many interactions share the cut-off timestamp")
    cold = np.setdiff1d(np.unique(inter.user[test]), np.unique(inter.user[train | valid]))
    if len(cold):
        notes.append(f"{len(cold)} test users have no earlier interactions (cold start)")
    return Split(
        dataset,
        inter.select(train),
        inter.select(valid),
        inter.select(test),
        method="temporal",
        params={"valid_frac": valid_frac, "test_frac": test_frac, "valid_from": int(t_valid), "test_from": int(t_test)},
        notes=tuple(notes),
    )


@SPLITTERS.register(name="random")
def split_random(dataset: Dataset, *, valid_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0) -> Split:
    """Per user, a seeded random share of interactions goes to valid and test (rounded).

    Every user with at least one interaction keeps at least one for training.

    Parameters
    ----------
    dataset : Dataset
        The dataset to split.
    valid_frac : float, default 0.1
        Each user's share of interactions for valid; in [0, 1).
    test_frac : float, default 0.1
        Each user's share for test; in (0, 1), with ``valid_frac + test_frac < 1``.
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    Split
        The split, method ``"random"``.

    Raises
    ------
    ConfigError
        If the fractions are out of range.
    DataError
        If the dataset has no interactions.
    """
    if not (0 <= valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ConfigError(
            f"split_random: need 0 <= valid_frac, 0 < test_frac, valid_frac + test_frac < 1; "
            f"got {valid_frac}, {test_frac}"
        )
    inter = dataset.interactions
    if len(inter) == 0:
        raise DataError(f"Dataset '{dataset.name}' has no interactions to split")
    keys = np.random.default_rng(seed).random(len(inter))
    order = np.lexsort((keys, inter.user))
    position, count = _rank_within_user(inter.user[order], dataset.n_users)
    n_test = np.minimum(np.round(count * test_frac), count - 1)
    n_valid = np.minimum(np.round(count * valid_frac), count - 1 - n_test)
    part = np.where(position < n_test, 2, np.where(position < n_test + n_valid, 1, 0))
    train, valid, test = (inter.select(np.sort(order[part == p])) for p in (0, 1, 2))
    return Split(
        dataset,
        train,
        valid,
        test,
        method="random",
        params={"valid_frac": valid_frac, "test_frac": test_frac, "seed": seed},
    )


@SPLITTERS.register(name="given_test")
def split_given_test(
    dataset: Dataset,
    *,
    test: Interactions | str = "random_exposure_test",
    valid_frac: float = 0.0,
    positive_threshold: float | None = None,
    seed: int = 0,
) -> Split:
    """Train on the dataset's interactions and test on a given set (e.g. a random-exposure test).

    ``test`` is an ``Interactions`` in the dataset's index space or the name of one of the
    dataset's ``extras``. ``valid_frac`` carves a seeded per-user validation share from train.
    With ``positive_threshold``, only test ratings at or above it count as targets.

    Events of the test set are removed from train and valid; (user, item) pairs shared by test
    and train are counted in ``params["train_test_overlap"]``.

    Parameters
    ----------
    dataset : Dataset
        The dataset whose interactions are trained on.
    test : Interactions or str, default "random_exposure_test"
        The test interactions, or the name of an ``Interactions`` extra of ``dataset``.
    valid_frac : float, default 0.0
        Each user's share of interactions for valid (as :func:`split_random` with half of it as
        valid and half as test, both kept as valid); 0 leaves valid empty.
    positive_threshold : float, optional
        The lowest test rating that counts as a target; recorded in the split's params.
    seed : int, default 0
        Seed of the validation draw.

    Returns
    -------
    Split
        The split, method ``"given_test"``.

    Raises
    ------
    DataError
        If ``test`` names no ``Interactions`` extra, or refers to users or items outside the
        dataset.
    ConfigError
        If ``valid_frac`` is out of the range :func:`split_random` accepts.
    """
    if isinstance(test, str):
        extra = dataset.extras.get(test)
        if not isinstance(extra, Interactions):
            raise DataError(
                f"Dataset '{dataset.name}' has no interaction set {test!r} "
                f"(extras: {sorted(dataset.extras)}); pass the test interactions explicitly"
            )
        test_name, test = test, extra
    else:
        test_name = "given"
    if len(test) and (test.user.max() >= dataset.n_users or test.item.max() >= dataset.n_items):
        raise DataError("split_given_test: test interactions refer to users/items outside the dataset")
    inter = dataset.interactions
    if valid_frac > 0:
        inner = split_random(dataset, valid_frac=valid_frac / 2, test_frac=valid_frac / 2, seed=seed)
        train, valid = inner.train, Interactions.concat([inner.valid, inner.test])
    else:
        train, valid = inter, inter.select(np.zeros(len(inter), dtype=bool))
    train, removed = drop_evaluation_events(dataset, train, [test])
    valid, removed_valid = drop_evaluation_events(dataset, valid, [test])
    key_train = train.user * dataset.n_items + train.item
    key_test = test.user * dataset.n_items + test.item
    overlap = int(np.isin(key_test, key_train).sum())
    notes = []
    if removed + removed_valid:
        notes.append(
            f"the given test set's {removed + removed_valid} events are also in the interaction log; "
            "they were removed from train/valid (a split never trains on what it evaluates)"
        )
    if overlap:
        notes.append(f"{overlap} test (user, item) pairs also occur in train (as published)")
    return Split(
        dataset,
        train,
        valid,
        test,
        method="given_test",
        params={
            "test": test_name,
            "valid_frac": valid_frac,
            "positive_threshold": positive_threshold,
            "seed": seed,
            "train_test_overlap": overlap,
            "evaluation_events_removed_from_train": removed + removed_valid,
        },
        notes=tuple(notes),
    )


@SPLITTERS.register(name="random_exposure")
def split_random_exposure(
    dataset: Dataset,
    *,
    test: Interactions | str = "random_exposure_test",
    positive_threshold: float | None = 4.0,
    valid_frac: float = 0.0,
    cold_test_items: str = "error",
    seed: int = 0,
) -> Split:
    """Train on the (missing-not-at-random) log, test on a random-exposure set: the ratings of
    items shown to users at random (Coat's ``test.ascii``, Yahoo! R3's test file, a random sample
    of KuaiRec's fully-exposed matrix).

    The test part keeps every exposed rating, positive or not, because the unbiased schemes in
    ``trustrec.eval`` need the exposed negatives; targets of the ordinary evaluation are those
    rated ``>= positive_threshold`` (4 by default; ``None`` for a test set without ratings, where
    every exposed item is a positive). ``cold_test_items`` says what to do with test items that
    never occur in train (no model learnt them): ``'error'`` (default), ``'drop'`` (their test
    rows are removed and counted in the notes) or ``'keep'``.

    Parameters
    ----------
    dataset : Dataset
        The dataset whose interactions are the logged training data.
    test : Interactions or str, default "random_exposure_test"
        The random-exposure interactions, or the name of an extra of ``dataset`` holding them.
    positive_threshold : float, optional
        The lowest test rating that is a positive (default 4.0); ``None`` makes every exposed
        item a positive.
    valid_frac : float, default 0.0
        Each user's share of training interactions for valid (see :func:`split_given_test`).
    cold_test_items : {"error", "drop", "keep"}, default "error"
        What to do with test rows of items that never occur in train.
    seed : int, default 0
        Seed of the validation draw.

    Returns
    -------
    Split
        The split, method ``"random_exposure"``, with ``params["random_exposure"]`` true.

    Raises
    ------
    ConfigError
        If ``cold_test_items`` is not one of the choices, or ``positive_threshold`` is not a
        number or ``None``.
    DataError
        If the dataset has no extra named ``test``, the test set has no ratings while
        ``positive_threshold`` is set, or (with ``cold_test_items="error"``) a test item never
        occurs in train.
    """
    if cold_test_items not in ("error", "drop", "keep"):
        raise ConfigError(
            f"split_random_exposure: cold_test_items must be 'error', 'drop' or 'keep', got {cold_test_items!r}"
        )
    if isinstance(test, str) and test not in dataset.extras:
        raise DataError(
            f"Dataset '{dataset.name}' has no random-exposure test set {test!r} (extras: "
            f"{sorted(dataset.extras)}); load a dataset that ships one (coat, yahoo-r3, kuairec) or "
            "pass test=Interactions(...)"
        )
    if positive_threshold is not None:
        try:
            positive_threshold = float(positive_threshold)
        except (TypeError, ValueError):
            raise ConfigError(
                f"split_random_exposure: positive_threshold must be a number or None, got {positive_threshold!r}"
            ) from None
    base = split_given_test(dataset, test=test, valid_frac=valid_frac, positive_threshold=positive_threshold, seed=seed)
    held = base.test
    if positive_threshold is not None and held.rating is None:
        raise DataError(
            f"split_random_exposure: the test set of '{dataset.name}' has no ratings, so "
            f"positive_threshold={positive_threshold:g} cannot apply; pass positive_threshold=None "
            "(every exposed item is then a positive)"
        )
    notes = list(base.notes)
    train_items = np.bincount(base.train.item, minlength=dataset.n_items) > 0
    cold = ~train_items[held.item]
    if cold.any():
        n_items_cold = len(np.unique(held.item[cold]))
        what = (
            f"{int(cold.sum())} test ratings of {n_items_cold} items that never occur in train "
            f"(e.g. item {dataset.item_ids[held.item[cold][0]]!r})"
        )
        if cold_test_items == "error":
            raise DataError(
                f"split_random_exposure: {what}; no model has learnt them. Pass "
                "cold_test_items='drop' to remove those test rows or 'keep' to evaluate them as they are"
            )
        if cold_test_items == "drop":
            held = held.select(~cold)
            notes.append(f"dropped {what}")
        else:
            notes.append(f"kept {what}")
    n_pos = len(held) if positive_threshold is None else int((held.rating >= positive_threshold).sum())
    notes.append(
        f"random-exposure test: {len(held)} exposed (user, item) pairs of "
        f"{len(np.unique(held.user))} users, {n_pos} positives"
        + ("" if positive_threshold is None else f" (rating >= {positive_threshold:g})")
    )
    params = {**dict(base.params), "cold_test_items": cold_test_items, "random_exposure": True}
    return Split(dataset, base.train, base.valid, held, method="random_exposure", params=params, notes=tuple(notes))


def make_split(dataset: Dataset, method: str, **params: Any) -> Split:
    """Split by name (as in a run config).

    Parameters
    ----------
    dataset : Dataset
        The dataset to split.
    method : str
        A name registered in ``SPLITTERS`` (``leave_one_out``, ``temporal``, ``random``,
        ``given_test``, ``random_exposure``, ``global_positions`` or a plugin's).
    **params
        The method's keyword arguments; a ``seed`` is checked first.

    Returns
    -------
    Split
        The split the method returns.

    Raises
    ------
    ConfigError
        If ``method`` is unknown, the seed is invalid, the method rejects the parameters
        (a ``TypeError``), or the method raises it.
    DataError
        If the method refuses the dataset.
    """
    if method not in SPLITTERS:
        raise ConfigError(f"unknown split method {method!r}; valid: {sorted(SPLITTERS)}")
    if "seed" in params:
        from trustrec._config import check_seed

        params["seed"] = check_seed(params["seed"], f"split {method!r}")
    try:
        return SPLITTERS[method](dataset, **params)
    except TypeError as exc:
        raise ConfigError(f"split {method!r}: {exc}") from exc
