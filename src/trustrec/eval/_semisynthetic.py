"""Semi-synthetic worlds where the fully-exposed truth is known, to check evaluation schemes.

Method (seeded throughout):

1. **Ground truth.** Fit the binary-relevance MF (:class:`trustrec.models.classic.MF`, naive, on
   every rating the dataset has: the train log and the random-exposure test set, positives =
   rating ``>= positive_threshold``) and turn its logits into relevance probabilities
   ``P_ui = sigmoid(logit_ui / temperature + c)``, with ``c`` set by bisection so that the mean of
   ``P`` equals ``positive_rate`` (default: the positive share of the random-exposure test set,
   the missing-at-random rate). This is done once (:func:`fit_ground_truth`).
2. **A world per seed** (:func:`draw_world`): the fully-exposed preference matrix
   ``R_ui ~ Bernoulli(P_ui)``; a popularity-biased exposure ``O_ui ~ Bernoulli(e_ui)`` with
   ``e_ui = min(1, a * pop_i^alpha * boost^R_ui)`` (``pop_i`` = the share of users who like item i
   in ``R``, ``boost`` > 1 adds self-selection, ``a`` set so the mean exposure is the dataset's
   train density); the training log = the exposed pairs with rating 5 (relevant) or 1 (not); a
   random-exposure test set = ``n_random`` uniformly drawn items per user with their ratings.
   The world's dataset carries the true exposure probabilities as ``extras['propensities']``.
3. **The truth a scheme should estimate** (:func:`true_recall`): Recall@K on the fully-exposed
   matrix, each user's whole catalog ranked (minus their training items, as every scheme does),
   ties by expected value, averaged over users with at least one relevant candidate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt

from trustrec._config import Config
from trustrec.data import Dataset, IndexedArray, Interactions, QueryBatch, Ragged
from trustrec.errors import ConfigError, DataError
from trustrec.eval._unbiased import score_candidates, topk_membership

if TYPE_CHECKING:
    from trustrec.models import Recommender

__all__ = ["SemiSyntheticConfig", "SemiSyntheticWorld", "draw_world", "fit_ground_truth", "true_recall"]


class SemiSyntheticConfig(Config):
    """Settings of the semi-synthetic worlds (module docstring: the method, steps 1 and 2).

    Parameters
    ----------
    truth_embedding_size : int
        Embedding size of the ground-truth MF (default 16).
    truth_epochs : int
        Training epochs of the ground-truth MF (default 60).
    truth_reg : float
        L2 regularisation of the ground-truth MF (default 0.01).
    temperature : float
        Divides the truth's logits before the sigmoid: above 1 flattens the relevance
        probabilities ``P`` (default 1.0).
    positive_threshold : float
        A rating at or above it is relevant when fitting the truth (default 4.0).
    positive_rate : float or None
        Mean of ``P`` the calibration constant ``c`` is set to; None: the positive share of the
        random-exposure test set (the missing-at-random rate).
    exposure_alpha : float
        Popularity exponent of the exposure probabilities ``e_ui`` (default 1.0).
    relevance_boost : float
        Self-selection: a relevant pair's exposure is multiplied by it (default 2.0, at least 1).
    density : float or None
        Mean exposure the scale ``a`` is set to; None: the dataset's training density.
    n_random : int
        Uniformly drawn random-exposure test items per user (default 16).
    """

    truth_embedding_size: PositiveInt = 16
    truth_epochs: PositiveInt = 60
    truth_reg: float = Field(0.01, ge=0.0)
    temperature: float = Field(1.0, gt=0.0)
    positive_threshold: float = 4.0
    positive_rate: float | None = Field(None, gt=0.0, lt=1.0)  # None: the test set's positive share
    exposure_alpha: float = Field(1.0, ge=0.0)  # popularity exponent of exposure
    relevance_boost: float = Field(2.0, ge=1.0)  # self-selection: relevant items x boost
    density: float | None = Field(None, gt=0.0, lt=1.0)  # None: the dataset's train density
    n_random: PositiveInt = 16  # random-exposure items per user


@dataclass(frozen=True, eq=False)
class SemiSyntheticWorld:
    """One drawn semi-synthetic world (:func:`draw_world`).

    Parameters
    ----------
    dataset : Dataset
        The world's dataset: the biased training log, ``extras['random_exposure_test']`` and the
        true exposure probabilities ``extras['propensities']``.
    relevance : numpy.ndarray of bool, shape (n_users, n_items)
        The fully-exposed relevance matrix ``R``.
    exposure : numpy.ndarray of float, shape (n_users, n_items)
        The exposure probabilities ``e`` the training log was drawn with.
    seed : int
        Seed the world was drawn with.
    """

    dataset: Dataset
    relevance: np.ndarray
    exposure: np.ndarray
    seed: int


def fit_ground_truth(dataset: Dataset, config: SemiSyntheticConfig | None = None, *, seed: int = 0) -> np.ndarray:
    """Relevance probabilities from an MF fitted on every rating of a dataset.

    Step 1 of the module's method: a naive binary-relevance MF is fitted on the train log plus the
    random-exposure test set, and its logits are turned into ``sigmoid(logit / temperature + c)``
    with ``c`` found by bisection so the mean probability equals the positive rate
    (``config.positive_rate``, or the positive share of the random-exposure test set, or of all
    ratings when there is none).

    Parameters
    ----------
    dataset : Dataset
        A dataset with ratings, optionally with ``extras['random_exposure_test']``.
    config : SemiSyntheticConfig, optional
        Truth model and calibration settings; None uses the defaults.
    seed : int, default 0
        Seed of the MF fit.

    Returns
    -------
    numpy.ndarray of float, shape (n_users, n_items)
        The relevance probabilities ``P``.

    Raises
    ------
    DataError
        When the dataset has no ratings.
    """
    from trustrec.models import FitOptions
    from trustrec.models.classic import MF

    config = config or SemiSyntheticConfig()
    parts = [dataset.interactions]
    test = dataset.extras.get("random_exposure_test")
    if isinstance(test, Interactions):
        parts.append(test)
    ratings = Interactions.concat(parts)
    if ratings.rating is None:
        raise DataError(f"fit_ground_truth: dataset '{dataset.name}' has no ratings to fit the truth on")
    rate = config.positive_rate
    if rate is None:
        ref = test.rating if isinstance(test, Interactions) and test.rating is not None else ratings.rating
        rate = float((ref >= config.positive_threshold).mean())
    model = MF(
        method="naive",
        embedding_size=config.truth_embedding_size,
        epochs=config.truth_epochs,
        reg=config.truth_reg,
        positive_threshold=config.positive_threshold,
    )
    model.fit(dataset.with_interactions(ratings), FitOptions(seed=seed, progress=False))
    queries = QueryBatch(
        np.arange(dataset.n_users), Ragged(np.zeros(dataset.n_users + 1, np.int64), np.empty(0, np.int64))
    )
    logits = model.score(queries) / config.temperature
    lo, hi = -30.0, 30.0
    for _ in range(100):  # bisection on the offset: mean sigmoid(logits + c) = rate
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(logits + mid)))).mean() < rate:
            lo = mid
        else:
            hi = mid
    return 1 / (1 + np.exp(-(logits + (lo + hi) / 2)))


def draw_world(
    dataset: Dataset, truth: np.ndarray, config: SemiSyntheticConfig | None = None, *, seed: int = 0
) -> SemiSyntheticWorld:
    """Draw the relevance matrix, the biased training log and the random-exposure test set.

    Step 2 of the module's method: ``R ~ Bernoulli(truth)``, exposure
    ``e_ui = min(1, a * pop_i^alpha * boost^R_ui)`` scaled to the target density, the training log
    = the exposed pairs (rating 5 if relevant, else 1), and ``n_random`` uniformly drawn test items
    per user.

    Parameters
    ----------
    dataset : Dataset
        The dataset the truth was fitted on (its shape and train density are used).
    truth : numpy.ndarray of float, shape (n_users, n_items)
        Relevance probabilities (:func:`fit_ground_truth`).
    config : SemiSyntheticConfig, optional
        Exposure and test-set settings; None uses the defaults.
    seed : int, default 0
        Seed of every draw.

    Returns
    -------
    SemiSyntheticWorld
        The world.

    Raises
    ------
    DataError
        When ``truth``'s shape does not match the dataset.
    ConfigError
        When ``config.n_random`` is not below the number of items.
    """
    config = config or SemiSyntheticConfig()
    truth = np.asarray(truth, dtype=np.float64)
    n_users, n_items = truth.shape
    if (n_users, n_items) != (dataset.n_users, dataset.n_items):
        raise DataError(f"draw_world: truth is {truth.shape}, the dataset {dataset.n_users} x {dataset.n_items}")
    if config.n_random >= n_items:
        raise ConfigError(f"draw_world: n_random={config.n_random} must be below the {n_items} items")
    rng = np.random.default_rng(seed)
    relevance = rng.random(truth.shape) < truth
    pop = relevance.mean(0) + 1.0 / n_users  # > 0 for every item
    raw = pop[None, :] ** config.exposure_alpha * np.where(relevance, config.relevance_boost, 1.0)
    density = config.density or dataset.n_interactions / (n_users * n_items)
    lo, hi = 0.0, 1.0 / raw.min()
    for _ in range(100):  # bisection on the scale: mean min(1, a * raw) = density
        mid = (lo + hi) / 2
        if np.minimum(1.0, mid * raw).mean() < density:
            lo = mid
        else:
            hi = mid
    exposure = np.minimum(1.0, (lo + hi) / 2 * raw)
    observed = rng.random(truth.shape) < exposure
    users, items = np.nonzero(observed)
    # the random-exposure test: n_random distinct items per user, uniformly (argpartition of keys)
    keys = rng.random(truth.shape)
    picked = np.argpartition(keys, config.n_random - 1, axis=1)[:, : config.n_random]
    t_users = np.repeat(np.arange(n_users), config.n_random)
    t_items = picked.ravel()
    ids_u = np.arange(n_users).astype(str).astype(object)
    ids_i = np.arange(n_items).astype(str).astype(object)

    def frame(u, i):
        return pd.DataFrame(
            {
                "user_id": ids_u[u],
                "item_id": ids_i[i],
                "timestamp": np.zeros(len(u), np.int64),
                "rating": np.where(relevance[u, i], 5.0, 1.0),
            }
        )

    ds = Dataset.from_frame(
        frame(users, items),
        name=f"{dataset.name}-semisynthetic-{seed}",
        items=pd.DataFrame({"item_id": ids_i}),
        users=pd.DataFrame({"user_id": ids_u}),
        source=f"semi-synthetic from {dataset.name} (seed {seed})",
        notes=[
            (
                f"semi-synthetic world, seed {seed}: relevance ~ Bernoulli(MF truth), exposure ~ "
                f"popularity^{config.exposure_alpha:g} x {config.relevance_boost:g}^relevant, "
                f"{config.n_random} random test items per user; ratings 5 = relevant, 1 = not"
            )
        ],
        extras={
            "random_exposure_test": frame(t_users, t_items),
            "propensities": IndexedArray(exposure, ("user", "item")),
        },
    )
    return SemiSyntheticWorld(ds, relevance, exposure, seed)


def true_recall(
    model: Recommender, world: SemiSyntheticWorld, ks: Iterable[int], *, exclude_seen: bool = True
) -> dict[int, float]:
    """The Recall@K a model has on a world's fully-exposed relevance matrix.

    Step 3 of the module's method: each user's whole catalog is ranked (minus their training items
    with ``exclude_seen``), ties counted by their expected value (:func:`topk_membership`), and
    Recall@K is averaged over the users with at least one relevant candidate.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    world : SemiSyntheticWorld
        The world whose fully-exposed relevance matrix is the truth.
    ks : iterable of int
        Cutoffs K, each below the number of items.
    exclude_seen : bool, default True
        Leave each user's training items out of the ranking.

    Returns
    -------
    dict of int to float
        ``{K: mean Recall@K}``.

    Raises
    ------
    ConfigError
        When a K is not below the number of items.
    """
    ds = world.dataset
    users = np.arange(ds.n_users)
    queries = QueryBatch(users, ds.interactions.by_user(ds.n_users))
    scores, cand = score_candidates(model, queries, exclude_seen=exclude_seen)
    rel = world.relevance & cand
    n_rel = rel.sum(1)
    out = {}
    for k in ks:
        if k >= ds.n_items:
            raise ConfigError(f"true_recall: K={k} must be below the {ds.n_items} items")
        found = (topk_membership(scores, cand, k) * rel).sum(1)
        out[int(k)] = float(np.mean(found[n_rel > 0] / n_rel[n_rel > 0]))
    return out
