"""Forget requests: remove users' data from a fitted recommender.

``method="exact"`` (every model) retrains a fresh copy with the same hyper-parameters and seed
on the data without the users' interactions: the reference, which by construction keeps no
trace of them (same index space, so it answers the same queries). ``method="gradient_ascent"``
(torch models with a per-sequence training loss: ``sasrec``, ``bpr_mf``) starts from the fitted
model and runs a few steps of gradient ascent on the forgotten users' sequences with a
retain-set term (the training method :func:`trustrec.models.training.approximate_unlearn`): approximate, much
faster, to be verified with the ``unlearning`` audit (membership inference on the forgotten
users, distance of the outputs to the exact retrain, accuracy on retained users).

The model given is never changed: a new model is returned. Its ``unlearning_`` attribute records
the method, the number of users and the seconds taken, never their ids.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from trustrec.data import Dataset, Split, resolve_users
from trustrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from trustrec.models import Recommender

__all__ = ["UNLEARNING_METHODS", "forget", "remove_users", "resolve_users"]

UNLEARNING_METHODS = ("exact", "gradient_ascent")


def remove_users(data: Dataset | Split, users: npt.ArrayLike) -> Dataset | Split:
    """``data`` without any interaction of the user indices ``users`` (for a Split: its training
    part; valid and test stay, they are never trained on). Users and items keep their indices.

    Parameters
    ----------
    data : Dataset or Split
        The data.
    users : array_like
        User indices whose interactions are removed.

    Returns
    -------
    Dataset or Split
        The same kind as ``data``, without those users' (training) interactions.

    Raises
    ------
    DataError
        When ``data`` is neither a Dataset nor a Split.
    """
    users = np.asarray(users, np.int64)
    if isinstance(data, Split):
        return data.without_users(users, parts=("train",), note=f"training interactions of {len(users)} users removed")
    if isinstance(data, Dataset):
        return data.with_interactions(data.interactions.select(~np.isin(data.interactions.user, users)))
    raise DataError(f"remove_users: expected a Dataset or a Split, got {type(data).__name__}")


def _training(data: Dataset | Split):
    if isinstance(data, Split):
        return data.dataset, data.train
    if isinstance(data, Dataset):
        return data, data.interactions
    raise DataError(f"forget: expected the Dataset or Split the model was fitted on, got {type(data).__name__}")


def forget(
    model: Recommender,
    data: Dataset | Split,
    user_ids: npt.ArrayLike,
    *,
    method: Literal["exact", "gradient_ascent"] = "exact",
    by: Literal["id", "index"] = "id",
    seed: int = 0,
    steps: int = 10,
    learning_rate: float | None = None,
    retain_weight: float = 1.0,
    batch_size: int = 32,
    max_forget_loss: float | None = None,
) -> Recommender:
    """A copy of ``model`` (fitted on ``data``) that has forgotten the users ``user_ids`` (raw
    ids, or indices with ``by="index"``; unknown users raise, naming them). See the module
    docstring for the methods; ``seed`` is the seed of the exact retrain (use the fit's seed to
    get exactly the model trained without them) and of the approximate method's batches; the
    other keywords go to :func:`trustrec.models.training.approximate_unlearn`.

    Parameters
    ----------
    model : Recommender
        The fitted model (unchanged).
    data : Dataset or Split
        The data ``model`` was fitted on.
    user_ids : array_like
        The users to forget: raw ids, or user indices with ``by="index"``.
    method : {"exact", "gradient_ascent"}
        ``"exact"``: retrain a fresh copy without the users; ``"gradient_ascent"``:
        approximate unlearning of a torch model with a per-sequence training loss.
    by : {"id", "index"}
        How ``user_ids`` name the users.
    seed : int
        Seed of the exact retrain and of the approximate method's batches.
    steps : int
        Most Adam steps of the ascent (``"gradient_ascent"`` only, as the settings below).
    learning_rate : float or None
        Adam's learning rate; None: a tenth of the model config's.
    retain_weight : float
        Weight of the retain-set term.
    batch_size : int
        Rows per forget batch and size of the retain batch.
    max_forget_loss : float or None
        Bound on the forgotten users' mean loss (the forget term is dropped once it is
        reached); None: no bound.

    Returns
    -------
    Recommender
        A new model that has forgotten the users; its ``unlearning_`` records the method,
        ``n_users`` and ``seconds``.

    Raises
    ------
    ConfigError
        When ``method`` is unknown, or ``"gradient_ascent"`` is asked of a model without
        approximate unlearning.
    DataError
        When ``data`` is neither a Dataset nor a Split, ``user_ids`` is empty or names an
        unknown user, or the model was fitted on data of another size.
    """
    from trustrec.models import FitOptions, has_capability
    from trustrec.models.training import approximate_unlearn, supports_approximate_unlearning

    if method not in UNLEARNING_METHODS:
        raise ConfigError(f"forget: method must be one of {UNLEARNING_METHODS}, got {method!r}")
    dataset, train = _training(data)
    users = resolve_users(dataset, user_ids, by=by)
    started = time.perf_counter()
    if method == "exact":
        fresh = model.set_params()
        fresh.fit(remove_users(data, users), FitOptions(seed=seed, progress=False))
        fresh.unlearning_ = {"method": "exact", "n_users": len(users), "seconds": time.perf_counter() - started}
        return fresh
    model._check_fitted()
    if not (has_capability(model, "unlearnable") and supports_approximate_unlearning(model)):
        raise ConfigError(
            f"forget: {type(model).__name__} has no approximate unlearning (gradient_ascent needs a torch "
            "model with a per-sequence training loss: sasrec, bpr_mf); use method='exact'"
        )
    if model.n_users_ != dataset.n_users or model.n_items_ != dataset.n_items:
        raise DataError(
            f"forget: the model was fitted on {model.n_users_} users x {model.n_items_} items but the "
            f"data has {dataset.n_users} x {dataset.n_items}; pass the data it was fitted on"
        )
    seqs = train.by_user(dataset.n_users)
    counts = seqs.lengths
    retained = np.flatnonzero((counts > 0) & ~np.isin(np.arange(dataset.n_users), users))
    clone = approximate_unlearn(
        model,
        seqs.take(users),
        seqs.take(retained),
        forget_users=users,
        retain_users=retained,
        steps=steps,
        learning_rate=learning_rate,
        retain_weight=retain_weight,
        batch_size=batch_size,
        max_forget_loss=max_forget_loss,
        seed=seed,
    )
    clone.unlearning_ = {
        **clone.unlearning_,
        "n_users": len(users),
        "n_users_without_data": int((counts[users] == 0).sum()),
        "seconds": time.perf_counter() - started,
    }
    return clone
