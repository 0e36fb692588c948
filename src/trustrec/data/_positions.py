"""The BIGRec / D3 protocol's split: one example per user and position, cut globally by time.

Generative LLM recommenders (BIGRec, arXiv 2308.08434; D3 "Decoding Matters", arXiv 2406.14900,
and the papers that follow them) share one setting. Every interaction of a user except the first
is the target of one example whose history is the user's previous (at most ``max_history``)
interactions; all examples are sorted by their target's time and cut 8:1:1 globally, so every
validation target precedes every test target and the model is never asked about the past.

:func:`split_global_positions` builds that as a :class:`~trustrec.data.Split`: the valid and test
parts hold the examples' targets as (user, item, time) events; the training part holds every other
interaction, whose per-position examples (with the same ``max_history``) are exactly the
protocol's training examples. The split invariant (train never holds an evaluation event) is the
one :class:`~trustrec.data.Split` enforces for every method.

A BIGRec/D3 folder ships its valid and test rows (``Dataset.extras['valid']`` / ``['test']``):
those are used as given, and the training examples are rebuilt from the rest of the interaction
log, exactly as the protocol builds them (the note says so; without the folder's train file the
histories before the shown ones are not recoverable). :func:`position_eval_set` turns a part into
one query per example (the previous ``max_history`` interactions of the whole log, in order) and
:func:`compare_with_rows` checks those histories against the rows a folder ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from trustrec.data._arrays import Ragged
from trustrec.data._dataset import ROW_ORDER_TIME, SEQUENCE_ORDER_TIME, Dataset, Interactions
from trustrec.data._query import QueryBatch
from trustrec.data._split import SPLITTERS, EvalSet, Split, _check_part, drop_evaluation_events
from trustrec.errors import ConfigError, DataError

__all__ = [
    "compare_with_rows",
    "position_eval_set",
    "split_global_positions",
    "user_sequences",
]


def user_sequences(dataset: Dataset, parts: Sequence[Interactions]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every event of ``parts`` in per-user chronological order.

    Order: user, then time; events with the same time keep the order in which ``parts`` list them
    (each part keeps its own order), which is the file order for loaded data.

    Parameters
    ----------
    dataset : Dataset
        The dataset the parts index into.
    parts : sequence of Interactions
        The interactions to order (e.g. train, valid, test).

    Returns
    -------
    tuple of numpy.ndarray
        ``(user, item, timestamp)`` arrays, aligned, sorted as described.
    """
    del dataset  # the index space is the parts'; kept for a uniform signature
    users = np.concatenate([p.user for p in parts]) if parts else np.zeros(0, np.int64)
    items = np.concatenate([p.item for p in parts]) if parts else np.zeros(0, np.int64)
    times = np.concatenate([p.timestamp for p in parts]) if parts else np.zeros(0, np.int64)
    order = np.lexsort((times, users))  # lexsort is stable: ties keep the parts' order
    return users[order], items[order], times[order]


def _positions(users_sorted: np.ndarray) -> np.ndarray:
    """0-based position of each event within its user's block (rows sorted by user)."""
    if not len(users_sorted):
        return np.zeros(0, np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(users_sorted)) + 1]
    block = np.repeat(starts, np.diff(np.r_[starts, len(users_sorted)]))
    return np.arange(len(users_sorted)) - block


@SPLITTERS.register(name="global_positions")
def split_global_positions(
    dataset: Dataset,
    *,
    max_history: int = 10,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    given: str = "auto",
) -> Split:
    """The BIGRec / D3 split (see the module docstring).

    Parameters
    ----------
    dataset : Dataset
        The dataset to split; it needs timestamps that tell events apart.
    max_history : int, default 10
        History length of an example (the protocol's 10); recorded in the split's params, used by
        :func:`position_eval_set` and by models that build per-position training examples.
    valid_frac, test_frac : float, default 0.1
        Shares of the examples (sorted by target time) in valid and test (the protocol's 8:1:1).
    given : {"auto", "yes", "no"}, default "auto"
        Whether to use the valid/test targets a BIGRec/D3 folder ships (``extras['valid']`` and
        ``extras['test']``): ``"auto"`` when the dataset has both, ``"yes"`` requires them,
        ``"no"`` cuts the examples itself.

    Returns
    -------
    Split
        Train: every interaction that is not a valid/test example target; valid/test: the example
        targets. ``params`` hold ``max_history``, the example counts and ``given``.

    Raises
    ------
    ConfigError
        For fractions outside ``(0, 1)`` that leave no training share, ``max_history < 1`` or an
        unknown ``given``.
    DataError
        For a dataset without a clock, ``given="yes"`` without shipped parts, or a cut that leaves
        a part empty.
    """
    if max_history < 1:
        raise ConfigError(f"split 'global_positions': max_history must be >= 1, got {max_history}")
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ConfigError(
            "split 'global_positions': valid_frac and test_frac must be in (0, 1) with a sum below 1, "
            f"got {valid_frac} and {test_frac}"
        )
    if given not in ("auto", "yes", "no"):
        raise ConfigError(f"split 'global_positions': given must be 'auto', 'yes' or 'no', got {given!r}")
    inter = dataset.interactions
    if len(inter) and np.all(inter.timestamp == inter.timestamp[0]):
        raise DataError(
            f"split 'global_positions': dataset '{dataset.name}' has no clock (every timestamp is equal); "
            "the protocol cuts examples by their target's time"
        )
    if given != "yes" and {ROW_ORDER_TIME, SEQUENCE_ORDER_TIME} & set(dataset.notes):
        has_parts = all(isinstance(dataset.extras.get(p), Interactions) for p in ("valid", "test"))
        if not has_parts:
            raise DataError(
                f"split 'global_positions': dataset '{dataset.name}' has no timestamps (its notes: an order stands "
                "in for time), so a global cut by target time would cut by row order, not by time; use a "
                "per-user split (leave_one_out) instead"
            )
    shipped = {p: dataset.extras.get(p) for p in ("valid", "test")}
    has_shipped = all(isinstance(v, Interactions) and len(v) for v in shipped.values())
    if given == "yes" and not has_shipped:
        raise DataError(
            f"split 'global_positions': given='yes' but dataset '{dataset.name}' ships no valid and test "
            "rows (extras['valid'] and extras['test'], as a BIGRec/D3 folder has)"
        )
    params: dict[str, Any] = {"max_history": int(max_history)}
    if has_shipped and given != "no":
        valid, test = shipped["valid"], shipped["test"]
        assert isinstance(valid, Interactions) and isinstance(test, Interactions)  # has_shipped checked it
        return _split_given(dataset, valid, test, params)
    users, items, times = user_sequences(dataset, [inter])
    is_example = _positions(users) >= 1
    example_rows = np.flatnonzero(is_example)
    # All examples sorted by the target's time (stable: per-user order breaks ties), cut 8:1:1.
    by_time = example_rows[np.argsort(times[example_rows], kind="stable")]
    n = len(by_time)
    # Cut points as the protocol's code takes them: int(n * 0.8) and int(n * 0.9).
    n_train = int(n * (1 - valid_frac - test_frac))
    n_valid = int(n * (1 - test_frac)) - n_train
    n_test = n - n_train - n_valid
    if min(n_train, n_valid, n_test) < 1:
        raise DataError(
            f"split 'global_positions': dataset '{dataset.name}' gives {n} examples (users' interactions "
            f"after their first); the {1 - valid_frac - test_frac:.0%}/{valid_frac:.0%}/{test_frac:.0%} "
            "cut leaves a part empty"
        )
    part_of = np.zeros(len(users), np.int8)  # 0 train (or a first interaction), 1 valid, 2 test
    part_of[by_time[n_train : n_train + n_valid]] = 1
    part_of[by_time[n_train + n_valid :]] = 2

    def part(code: int) -> Interactions:
        rows = np.flatnonzero(part_of == code)
        return _events(dataset, users[rows], items[rows], times[rows])

    params.update(
        {
            "given": False,
            "valid_frac": valid_frac,
            "test_frac": test_frac,
            "train_examples": n_train,
            "valid_examples": n_valid,
            "test_examples": n_test,
        }
    )
    note = (
        f"BIGRec/D3 protocol: {n} examples (every interaction after a user's first, history = the "
        f"previous <= {max_history}), sorted by target time and cut {n_train}/{n_valid}/{n_test}"
    )
    return Split(dataset, part(0), part(1), part(2), method="global_positions", params=params, notes=(note,))


def _events(dataset: Dataset, users: np.ndarray, items: np.ndarray, times: np.ndarray) -> Interactions:
    """Interactions of these (user, item, time) events, with the dataset's ratings when it has them."""
    rating = None
    if dataset.interactions.rating is not None:
        keys = pd.MultiIndex.from_arrays(
            [dataset.interactions.user, dataset.interactions.item, dataset.interactions.timestamp]
        )
        lookup = pd.Series(dataset.interactions.rating, index=keys)
        lookup = lookup[~lookup.index.duplicated()]
        rating = lookup.reindex(pd.MultiIndex.from_arrays([users, items, times])).to_numpy(np.float32)
    return Interactions(users, items, times, rating)


def _split_given(dataset: Dataset, valid: Interactions, test: Interactions, params: dict[str, Any]) -> Split:
    inter = dataset.interactions
    keys = pd.MultiIndex.from_arrays([inter.user, inter.item, inter.timestamp])
    held = pd.MultiIndex.from_arrays(
        [np.r_[valid.user, test.user], np.r_[valid.item, test.item], np.r_[valid.timestamp, test.timestamp]]
    )
    missing = int((~held.isin(keys)).sum())
    if missing:
        raise DataError(
            f"split 'global_positions': {missing} shipped valid/test targets of dataset '{dataset.name}' are "
            "not in its interaction log; the log must contain every target (a BIGRec/D3 folder's does)"
        )
    # Split removes the targets from train (every copy of their key: a split never trains on what it
    # evaluates) and says how many it removed.
    train = inter
    kept, _ = drop_evaluation_events(dataset, train, [valid, test])
    users, _, _ = user_sequences(dataset, [kept])
    n_train = int((_positions(users) >= 1).sum())
    params.update(
        {
            "given": True,
            "train_examples": n_train,
            "valid_examples": len(valid),
            "test_examples": len(test),
        }
    )
    note = (
        f"BIGRec/D3 protocol on the shipped valid ({len(valid)}) and test ({len(test)}) rows; the "
        f"{n_train} training examples were rebuilt from the other {len(kept)} interactions exactly as the "
        f"protocol builds them (every interaction after a user's first, history = the previous <= "
        f"{params['max_history']})"
    )
    return Split(dataset, train, valid, test, method="global_positions", params=params, notes=(note,))


def position_eval_set(split: Split, part: str = "test", *, max_history: int | None = None) -> EvalSet:
    """One query per example of ``part``: its user, the previous ``max_history`` interactions of
    the whole log (train, valid and test, in per-user time order) and its single target.

    Parameters
    ----------
    split : Split
        A split whose valid/test parts are per-position example targets (``global_positions``;
        any split works, each held-out event becoming one example).
    part : {"valid", "test"}, default "test"
        The part to evaluate.
    max_history : int or None
        History length; None: the split's ``params["max_history"]`` (10 when absent).

    Returns
    -------
    EvalSet
        Queries (users repeat when a user has several examples) and one target per query, in the
        order of the part's events. A held-out event that is its user's first interaction gets an
        empty history (the protocol's own cut never makes one; shipped rows can, when the log
        merged a repeated event).

    Raises
    ------
    ConfigError
        For an unknown part or ``max_history < 1``.
    """
    _check_part(part)
    max_history = int(max_history if max_history is not None else split.params.get("max_history", 10))
    if max_history < 1:
        raise ConfigError(f"position_eval_set: max_history must be >= 1, got {max_history}")
    # The log in per-user time order; at equal times train events come before valid ones and valid
    # before test (an example's history precedes its target). Copies of a key the split removed
    # from train (a repeated event whose twin is held out) stay in the log as history.
    parts = [split.train, _unassigned(split), split.valid, split.test]
    users, items, _ = user_sequences(split.dataset, parts)
    code = np.repeat(np.arange(4), [len(p) for p in parts])
    in_part = np.concatenate([np.arange(len(p)) for p in parts])
    order = np.lexsort((np.concatenate([p.timestamp for p in parts]), np.concatenate([p.user for p in parts])))
    code, in_part = code[order], in_part[order]
    rows = np.flatnonzero(code == (2 if part == "valid" else 3))
    rows = rows[np.argsort(in_part[rows])]  # the part's own order
    pos = _positions(users)[rows]
    length = np.minimum(pos, max_history)
    starts = rows - length
    offsets = np.r_[0, np.cumsum(length)]
    flat = np.repeat(starts - offsets[:-1], length) + np.arange(offsets[-1])
    histories = Ragged(offsets, items[flat])
    targets = Ragged(np.arange(len(rows) + 1), items[rows])
    return EvalSet(QueryBatch(users[rows], histories), targets, part)


def _unassigned(split: Split) -> Interactions:
    """Events of the dataset's log that are in none of the split's parts, counting copies of a key."""
    inter = split.dataset.interactions
    keys = ["u", "i", "t"]
    log = pd.DataFrame({"u": inter.user, "i": inter.item, "t": inter.timestamp})
    parts = [split.train, split.valid, split.test]
    used = pd.DataFrame(
        {
            "u": np.concatenate([p.user for p in parts]),
            "i": np.concatenate([p.item for p in parts]),
            "t": np.concatenate([p.timestamp for p in parts]),
        }
    )
    n_used = used.groupby(keys, sort=False).size().rename("n").reset_index()
    copy = log.groupby(keys, sort=False).cumcount().to_numpy()
    n = log.merge(n_used, on=keys, how="left")["n"].fillna(0).to_numpy()
    return inter.select(copy >= n)


def compare_with_rows(eval_set: EvalSet, rows: pd.DataFrame, dataset: Dataset) -> dict[str, int]:
    """Check the built examples against rows a folder ships (aligned, one row per example).

    Parameters
    ----------
    eval_set : EvalSet
        Built by :func:`position_eval_set` for the part the rows belong to.
    rows : pandas.DataFrame
        The shipped rows, in the part's order: ``user_id``, ``item_id`` (raw ids) and
        ``history_item_id`` (list of raw ids per row).
    dataset : Dataset
        The dataset whose vocabularies map the raw ids.

    Returns
    -------
    dict
        ``rows``, ``equal`` (same user, target and history in order), ``same_items_other_order``
        (same history items, ties in time ordered differently) and ``different``.

    Raises
    ------
    DataError
        When the row count differs from the number of examples.
    """
    if len(rows) != len(eval_set):
        raise DataError(f"compare_with_rows: {len(rows)} shipped rows for {len(eval_set)} built examples")
    user_ids = np.asarray(dataset.user_ids, dtype=object)
    item_ids = np.asarray(dataset.item_ids, dtype=object)
    built_hist = [tuple(item_ids[h]) for h in eval_set.queries.histories.rows()]
    shipped_hist = [tuple(str(x) for x in h) for h in rows["history_item_id"]]
    same_user = user_ids[eval_set.queries.users] == rows["user_id"].astype(str).to_numpy(dtype=object)
    same_target = item_ids[eval_set.targets.values] == rows["item_id"].astype(str).to_numpy(dtype=object)
    exact = np.array([a == b for a, b in zip(built_hist, shipped_hist)], dtype=bool) & same_user & same_target
    reordered = (
        np.array([sorted(a) == sorted(b) for a, b in zip(built_hist, shipped_hist)], dtype=bool)
        & same_user
        & same_target
        & ~exact
    )
    return {
        "rows": len(rows),
        "equal": int(exact.sum()),
        "same_items_other_order": int(reordered.sum()),
        "different": int(len(rows) - exact.sum() - reordered.sum()),
    }
