"""List-level alignment of an LLM recommender: rewards from trustrec's own metrics, Best-of-N,
static Best-of-N alignment, BLADE's adaptive target, RISER's routing of rollout groups and its
capped policy loss, DPO pairs, and the loss terms that train them (:class:`BestOfNTargetLoss`,
:class:`RiserLoss`) (issue 22; BLADE arXiv 2605.04559 and RISER arXiv 2602.00632
have no readable code, so the choices each paper leaves open are written down here).

**Rewards** (:class:`ListReward`): per list, a weighted sum of

- accuracy: NDCG@K or hit@K of the held-out items (:func:`trustrec.eval.ndcg` /
  :func:`~trustrec.eval.hit_rate` on :func:`~trustrec.eval.hits_matrix`, the evaluator's own
  functions);
- fairness: ``1 - TV(list's group distribution, target shares)``, the group distribution of
  :func:`~trustrec.eval.group_distribution` (the fairness audits' exposure frame), 1 when the
  list's exposure matches the target shares;
- diversity: :func:`~trustrec.eval.intra_list_diversity` (0 for lists of fewer than 2 items);
- novelty: :func:`~trustrec.eval.novelty` divided by ``log2(n_users)`` (its largest value), so
  the term is in [0, 1].

**Best-of-N** (:func:`best_of_n`): of N sampled lists per user, the one with the highest
reward (ties: the first sampled); it costs N model calls per user.

**Static Best-of-N alignment** (:func:`bon_weights`): the BoN distribution is
``p*(L) ∝ p_ref(L) F(R(L))^(N-1)`` with ``F`` the reward CDF under the reference model. For
rollouts drawn from the reference, the importance weight of rollout ``L`` is
``F(R(L))^(N-1)``, normalised within its user's group; training minimises the weighted negative
log-likelihood of the rollouts (:func:`weighted_nll`). ``F`` is the empirical CDF of reference
rollouts' rewards with ties at the midpoint, ``F(r) = P(R < r) + P(R = r) / 2`` (our choice:
it keeps equal rewards at equal weight and never gives the best reward weight 1 alone).

**BLADE** (:class:`BladeTarget`): the same target with ``F`` re-estimated every step from a prior
and the current policy's rollouts: ``F_t(r) = (a F_prior(r) + m F_now(r)) / (a + m)`` with ``a``
the prior's pseudo-count and ``m`` the number of current rollouts (our reading of "fusing a
prior with the current policy's rollouts"). Above the reference's reward range a static ``F``
is 1 for every rollout (no preference among good lists: "indiscriminate supervision"); ``F_t``
still ranks them. :func:`effective_supervision` measures how far a group's weights are from
uniform (total variation), the signal the paper says decays under static BoN.

**RISER** (:func:`route_groups`, :func:`group_advantages`, :func:`capped_policy_loss`): rollouts
are de-duplicated per user (:func:`first_occurrences`); a group whose rewards differ is learnable
and gets group-relative advantages ``(r - mean) / (std + eps)``; the policy loss caps the
per-token log-ratio to the sampling policy at ``±cap`` (a token already moved by more than the
cap in the advantage's direction gives no gradient, PPO's pessimistic clip written on log
ratios). A group whose rewards are all equal carries no signal and becomes pairwise preferences
(the held-out item over each sampled one) for :func:`~trustrec.models.training.preference_loss`
against a frozen reference (:func:`preference_pairs`). Plain **DPO** uses the same pairs for
every user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import numpy.typing as npt
from pydantic import Field, PositiveInt, model_validator

from trustrec._config import Config, validate_config
from trustrec.errors import ConfigError, DataError
from trustrec.models.training import LossTerm, shared_prompt_logprobs, token_logprobs

if TYPE_CHECKING:
    import torch

    from trustrec.data import Dataset

__all__ = [
    "BestOfNTargetLoss",
    "BladeTarget",
    "ListReward",
    "ListRewardConfig",
    "RiserLoss",
    "best_of_n",
    "bon_weights",
    "capped_policy_loss",
    "effective_supervision",
    "first_occurrences",
    "group_advantages",
    "midpoint_cdf",
    "preference_pairs",
    "route_groups",
    "weighted_nll",
]


class ListRewardConfig(Config):
    """Weights of a list reward's terms (see the module docstring).

    Parameters
    ----------
    k : int
        List length the metrics read (default 10).
    accuracy_metric : {"ndcg", "hit"}
        The accuracy term (default ``"ndcg"``).
    accuracy : float
        Its weight (default 1.0).
    fairness : float
        Weight of ``1 - TV(group distribution, target shares)`` (default 0.0).
    diversity : float
        Weight of intra-list diversity (default 0.0).
    novelty : float
        Weight of normalised novelty (default 0.0).
    """

    k: PositiveInt = 10
    accuracy_metric: Literal["ndcg", "hit"] = "ndcg"
    accuracy: float = Field(1.0, ge=0)
    fairness: float = Field(0.0, ge=0)
    diversity: float = Field(0.0, ge=0)
    novelty: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _check(self):
        if self.accuracy + self.fairness + self.diversity + self.novelty <= 0:
            raise ValueError("the reward's weights sum to zero: every list would get the same reward")
        return self


class ListReward:
    """A list reward over one catalog (see the module docstring).

    Parameters
    ----------
    config : ListRewardConfig, mapping or None
        The weights (None: accuracy only; a mapping is validated, a bad one raises ConfigError).
    n_items : int
        Catalog size.
    membership : array_like or None
        ``(n_items, n_groups)`` item-group membership; needed by the fairness term.
    target_shares : array_like or None
        ``(n_groups,)`` target exposure share per group (default: each group's share of the
        catalog).
    item_vectors : array_like or None
        ``(n_items, d)`` item vectors; needed by the diversity term.
    item_user_counts : array_like or None
        ``(n_items,)`` training users per item; needed by the novelty term.
    n_users : int or None
        Training users; needed by the novelty term.
    """

    def __init__(
        self,
        config: ListRewardConfig | Mapping[str, Any] | None = None,
        *,
        n_items: int,
        membership: npt.ArrayLike | None = None,
        target_shares: npt.ArrayLike | None = None,
        item_vectors: npt.ArrayLike | None = None,
        item_user_counts: npt.ArrayLike | None = None,
        n_users: int | None = None,
    ):
        self.config = cast(ListRewardConfig, validate_config(ListRewardConfig, config or {}, "ListReward"))
        self.n_items = int(n_items)
        c = self.config
        if c.fairness > 0 and membership is None:
            raise ConfigError("ListReward: the fairness term needs membership")
        if c.diversity > 0 and item_vectors is None:
            raise ConfigError("ListReward: the diversity term needs item_vectors")
        if c.novelty > 0 and (item_user_counts is None or not n_users or n_users < 2):
            raise ConfigError("ListReward: the novelty term needs item_user_counts and n_users >= 2")
        self.membership = None if membership is None else np.asarray(membership, dtype=np.float64)
        if self.membership is not None:
            if self.membership.shape[0] != self.n_items:
                raise DataError(f"ListReward: membership has {self.membership.shape[0]} rows for {n_items} items")
            shares = self.membership.sum(0) / max(self.membership.sum(), 1e-12)
            self.target_shares = shares if target_shares is None else np.asarray(target_shares, dtype=np.float64)
            if self.target_shares.shape != shares.shape or not np.isclose(self.target_shares.sum(), 1.0):
                raise DataError("ListReward: target_shares must be one share per group, summing to 1")
        self.item_vectors = None if item_vectors is None else np.asarray(item_vectors, dtype=np.float64)
        self.item_user_counts = None if item_user_counts is None else np.asarray(item_user_counts, dtype=np.float64)
        self.n_users = n_users

    @classmethod
    def from_dataset(
        cls, config: ListRewardConfig | Mapping[str, Any] | None, train: Dataset, *, popularity_groups: int = 5
    ) -> ListReward:
        """The reward over ``train``'s catalog, each term fed from the training data as the
        evaluator and the audits feed theirs: the fairness term's groups are
        :func:`~trustrec.eval.popularity_groups` of the training interactions (target shares: each
        group's share of the catalog), the diversity term's vectors the multi-hot of the items'
        group column (:func:`~trustrec.eval.item_vectors_from_groups`, the evaluator's ILD) and
        novelty's users per item the distinct training users. Only the terms with a weight are
        built.

        Parameters
        ----------
        config : ListRewardConfig, mapping or None
            The weights.
        train : Dataset
            The training data.
        popularity_groups : int
            Groups of the fairness term (default 5, equal interaction mass).

        Returns
        -------
        ListReward
            The reward.
        """
        from trustrec.eval import item_user_counts, item_vectors_from_groups
        from trustrec.eval import popularity_groups as groups_of

        c = cast(ListRewardConfig, validate_config(ListRewardConfig, config or {}, "ListReward"))
        inter = train.interactions
        user_counts = item_user_counts(inter.user, inter.item, train.n_items).astype(np.float64)
        membership = vectors = None
        if c.fairness > 0:
            group = groups_of(np.bincount(inter.item, minlength=train.n_items), popularity_groups)
            membership = np.eye(popularity_groups)[group]
        if c.diversity > 0:
            vectors = item_vectors_from_groups(train.items)[0]
        return cls(
            c,
            n_items=train.n_items,
            membership=membership,
            item_vectors=vectors,
            item_user_counts=user_counts,
            n_users=train.n_users,
        )

    def components(self, lists: npt.ArrayLike, targets: Sequence[npt.ArrayLike] | np.ndarray) -> dict[str, np.ndarray]:
        """Each term per list (unweighted).

        Parameters
        ----------
        lists : array_like of int
            ``(n, L)`` ranked items per list, -1 padding; the first ``k`` are read.
        targets : sequence of sequence of int, or array_like of int
            The held-out items of each list's user (one int per list, or a list of them).

        Returns
        -------
        dict of str to numpy.ndarray
            ``accuracy``, ``fairness``, ``diversity``, ``novelty`` (those with a weight).
        """
        from trustrec.data import Ragged
        from trustrec.eval import group_distribution, hit_rate, hits_matrix, intra_list_diversity, ndcg, novelty

        top = np.asarray(lists, dtype=np.int64)
        if top.ndim != 2:
            raise DataError(f"ListReward: lists must be a 2-d item matrix; got shape {top.shape}")
        top = top[:, : self.config.k]
        if (top >= self.n_items).any() or (top < -1).any():
            raise DataError(f"ListReward: an item index is outside -1..{self.n_items - 1}")
        rows = [np.atleast_1d(np.asarray(t, dtype=np.int64)) for t in targets]
        if len(rows) != len(top):
            raise DataError(f"ListReward: {len(rows)} target rows for {len(top)} lists")
        truth = Ragged.from_rows(rows)
        c, out = self.config, {}
        if c.accuracy > 0:
            hits = hits_matrix(top, truth, self.n_items)
            metric = ndcg if c.accuracy_metric == "ndcg" else hit_rate
            out["accuracy"] = metric(hits, truth.lengths)
        if c.fairness > 0:
            shares = group_distribution(top, self.membership)
            out["fairness"] = 1.0 - 0.5 * np.abs(shares - self.target_shares).sum(1)
        if c.diversity > 0:
            out["diversity"] = np.nan_to_num(intra_list_diversity(top, self.item_vectors), nan=0.0)
        if c.novelty > 0:
            values = novelty(top, self.item_user_counts, int(self.n_users or 0))
            out["novelty"] = np.nan_to_num(values, nan=0.0) / np.log2(float(self.n_users or 2))
        return out

    def __call__(self, lists: npt.ArrayLike, targets: Sequence[npt.ArrayLike] | np.ndarray) -> np.ndarray:
        """``(n,)`` weighted reward per list (see :meth:`components`)."""
        c = self.config
        weights = {"accuracy": c.accuracy, "fairness": c.fairness, "diversity": c.diversity, "novelty": c.novelty}
        parts = self.components(lists, targets)
        return np.sum([weights[name] * value for name, value in parts.items()], axis=0)


def best_of_n(samples: npt.ArrayLike, rewards: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Per user, the sampled list with the highest reward (ties: the first sampled).

    Parameters
    ----------
    samples : array_like of int
        ``(n_users, N, L)`` sampled lists.
    rewards : array_like of float
        ``(n_users, N)`` their rewards.

    Returns
    -------
    tuple of numpy.ndarray
        ``(n_users, L)`` chosen lists and ``(n_users,)`` the chosen sample's index.
    """
    s, r = np.asarray(samples), np.asarray(rewards, dtype=np.float64)
    if s.ndim != 3 or r.shape != s.shape[:2]:
        raise DataError(f"best_of_n: samples {s.shape} and rewards {r.shape} do not match")
    if s.shape[1] < 2:
        raise ConfigError("best_of_n: needs N >= 2 samples per user")
    if not np.isfinite(r).all():
        raise DataError("best_of_n: rewards must be finite")
    chosen = r.argmax(1)
    return s[np.arange(len(s)), chosen], chosen


def midpoint_cdf(reference: npt.ArrayLike, values: npt.ArrayLike) -> np.ndarray:
    """``F(r) = P(R < r) + P(R = r) / 2`` of the reference rewards, at ``values``.

    Parameters
    ----------
    reference : array_like of float
        The reference rewards (any shape; at least one, all finite).
    values : array_like of float
        Where ``F`` is read.

    Returns
    -------
    numpy.ndarray
        ``F`` at ``values``, their shape.
    """
    ref = np.sort(np.asarray(reference, dtype=np.float64).ravel())
    if not len(ref) or not np.isfinite(ref).all():
        raise DataError("midpoint_cdf: needs finite reference rewards")
    v = np.asarray(values, dtype=np.float64)
    below = np.searchsorted(ref, v, side="left")
    upto = np.searchsorted(ref, v, side="right")
    return (below + 0.5 * (upto - below)) / len(ref)


def _normalised(cdf: np.ndarray, n: int) -> np.ndarray:
    raw = cdf ** (n - 1)
    totals = raw.sum(1, keepdims=True)
    uniform = np.full_like(raw, 1.0 / raw.shape[1])
    return np.divide(raw, totals, out=uniform, where=totals > 0)


def bon_weights(rewards: npt.ArrayLike, reference: npt.ArrayLike, n: int) -> np.ndarray:
    """Static Best-of-N target weights of each user's rollouts: ``F(R)^(N-1)`` normalised within
    the user's group, ``F`` the midpoint CDF of ``reference`` rewards (a group whose weights are
    all 0 gets uniform weights).

    Parameters
    ----------
    rewards : array_like of float
        ``(n_users, G)`` rewards of each user's rollouts.
    reference : array_like of float
        Rewards of reference-model rollouts (any shape).
    n : int
        The N of Best-of-N (at least 2).

    Returns
    -------
    numpy.ndarray
        ``(n_users, G)`` weights, rows summing to 1.
    """
    if n < 2:
        raise ConfigError(f"bon_weights: N must be >= 2; got {n}")
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise DataError(f"bon_weights: rewards must be (n_users, G); got shape {r.shape}")
    return _normalised(midpoint_cdf(reference, r), n)


class BladeTarget:
    """BLADE's adaptive Best-of-N target: the reward CDF fused from a prior (``prior_strength``
    pseudo-counts of the reference rewards) and each step's policy rollouts.

    Parameters
    ----------
    reference : array_like of float
        Rewards of reference-model rollouts: the prior.
    n : int
        The N of Best-of-N (at least 2).
    prior_strength : float
        Pseudo-count ``a`` of the prior (default: the number of reference rewards).
    """

    def __init__(self, reference: npt.ArrayLike, n: int, prior_strength: float | None = None):
        if n < 2:
            raise ConfigError(f"BladeTarget: N must be >= 2; got {n}")
        self.reference = np.asarray(reference, dtype=np.float64).ravel()
        midpoint_cdf(self.reference, 0.0)  # refuses an empty or non-finite prior
        self.n = int(n)
        self.prior_strength = float(len(self.reference) if prior_strength is None else prior_strength)
        if self.prior_strength < 0:
            raise ConfigError("BladeTarget: prior_strength must be >= 0")

    def cdf(self, current: npt.ArrayLike, values: npt.ArrayLike) -> np.ndarray:
        """``F_t`` at ``values`` given this step's rollout rewards ``current``."""
        now = np.asarray(current, dtype=np.float64).ravel()
        a, m = self.prior_strength, len(now)
        prior = midpoint_cdf(self.reference, values)
        if m == 0:
            return prior
        return (a * prior + m * midpoint_cdf(now, values)) / (a + m)

    def weights(self, rewards: npt.ArrayLike) -> np.ndarray:
        """``(n_users, G)`` target weights of this step's rollouts (rows summing to 1)."""
        r = np.asarray(rewards, dtype=np.float64)
        if r.ndim != 2:
            raise DataError(f"BladeTarget.weights: rewards must be (n_users, G); got shape {r.shape}")
        return _normalised(self.cdf(r, r), self.n)


def effective_supervision(weights: npt.ArrayLike) -> np.ndarray:
    """Per group, the total-variation distance of its weights from uniform (0: the target says
    nothing about which rollout is better).

    Parameters
    ----------
    weights : array_like of float
        ``(n_users, G)`` rows summing to 1.

    Returns
    -------
    numpy.ndarray
        ``(n_users,)`` in ``[0, 1 - 1/G]``.
    """
    w = np.asarray(weights, dtype=np.float64)
    return 0.5 * np.abs(w - 1.0 / w.shape[1]).sum(1)


def weighted_nll(logprobs: torch.Tensor, weights: npt.ArrayLike | torch.Tensor) -> torch.Tensor:
    """``-sum_i w_i log p(L_i)`` averaged over users: fitting the rollouts to a target
    distribution (static BoN alignment and BLADE).

    Parameters
    ----------
    logprobs : torch.Tensor
        ``(n_users, G)`` sequence log-likelihoods of the rollouts under the policy.
    weights : array_like or torch.Tensor
        ``(n_users, G)`` target weights (rows summing to 1; not differentiated).

    Returns
    -------
    torch.Tensor
        The scalar loss.
    """
    import torch

    w = torch.as_tensor(weights, dtype=logprobs.dtype, device=logprobs.device).detach()
    if w.shape != logprobs.shape:
        raise DataError(f"weighted_nll: weights {tuple(w.shape)} and logprobs {tuple(logprobs.shape)} differ")
    return -(w * logprobs).sum(1).mean()


def first_occurrences(items: npt.ArrayLike) -> np.ndarray:
    """Each user's rollouts that name an item (>= 0) not named by an earlier rollout of the
    same user (RISER's de-duplication).

    Parameters
    ----------
    items : array_like of int
        ``(n_users, G)`` the item each rollout names (-1: none).

    Returns
    -------
    numpy.ndarray
        ``(n_users, G)`` boolean mask.
    """
    x = np.asarray(items, dtype=np.int64)
    if x.ndim != 2:
        raise DataError(f"first_occurrences: items must be (n_users, G); got shape {x.shape}")
    order = np.argsort(x, axis=1, kind="stable")
    sorted_items = np.take_along_axis(x, order, 1)
    new = np.ones_like(sorted_items, dtype=bool)
    new[:, 1:] = sorted_items[:, 1:] != sorted_items[:, :-1]
    mask = np.zeros_like(new)
    np.put_along_axis(mask, order, new, 1)
    return mask & (x >= 0)


def route_groups(rewards: npt.ArrayLike, valid: npt.ArrayLike | None = None, *, tol: float = 1e-12) -> np.ndarray:
    """Which groups are learnable: at least two valid rollouts whose rewards differ (by more
    than ``tol``); the others go to the pairwise loss.

    Parameters
    ----------
    rewards : array_like of float
        ``(n_users, G)`` rollout rewards.
    valid : array_like of bool or None
        ``(n_users, G)`` rollouts that count (default all; e.g. :func:`first_occurrences`).
    tol : float
        Rewards closer than this are equal (default 1e-12).

    Returns
    -------
    numpy.ndarray
        ``(n_users,)`` boolean.
    """
    r = np.asarray(rewards, dtype=np.float64)
    v = np.ones_like(r, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    high = np.where(v, r, -np.inf).max(1)
    low = np.where(v, r, np.inf).min(1)
    return (v.sum(1) >= 2) & (high - low > tol)


def group_advantages(rewards: npt.ArrayLike, valid: npt.ArrayLike | None = None, eps: float = 1e-6) -> np.ndarray:
    """Group-relative advantages ``(r - mean) / (std + eps)`` over each user's valid rollouts
    (population std; 0 for invalid rollouts and for non-learnable groups).

    Parameters
    ----------
    rewards : array_like of float
        ``(n_users, G)`` rollout rewards.
    valid : array_like of bool or None
        ``(n_users, G)`` rollouts that count (default all).
    eps : float
        Added to the standard deviation (default 1e-6).

    Returns
    -------
    numpy.ndarray
        ``(n_users, G)`` advantages.
    """
    r = np.asarray(rewards, dtype=np.float64)
    v = np.ones_like(r, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    count = np.maximum(v.sum(1, keepdims=True), 1)
    mean = np.where(v, r, 0).sum(1, keepdims=True) / count
    std = np.sqrt(np.where(v, (r - mean) ** 2, 0).sum(1, keepdims=True) / count)
    adv = np.where(v, (r - mean) / (std + eps), 0.0)
    return np.where(route_groups(r, v)[:, None], adv, 0.0)


def capped_policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    cap: float = 0.2,
) -> torch.Tensor:
    """RISER's policy loss with the per-token log-ratio capped at ``±cap``:
    ``-mean_t min(A * rho_t, A * clip(rho_t))`` with ``rho_t = exp(new_t - old_t)`` and the clip on
    ``log rho_t`` to ``[-cap, cap]``, averaged over the answer tokens of each rollout, then over
    rollouts.

    Parameters
    ----------
    new_logprobs : torch.Tensor
        ``(R, T)`` token log-probabilities under the policy being trained.
    old_logprobs : torch.Tensor
        ``(R, T)`` the same under the policy that sampled the rollouts (not differentiated).
    advantages : torch.Tensor
        ``(R,)`` one advantage per rollout.
    mask : torch.Tensor
        ``(R, T)`` 1 on answer tokens.
    cap : float
        The largest log-ratio a token may contribute a gradient beyond (default 0.2).

    Returns
    -------
    torch.Tensor
        The scalar loss.
    """
    import torch

    if cap <= 0:
        raise ConfigError(f"capped_policy_loss: cap must be > 0; got {cap}")
    log_ratio = new_logprobs - old_logprobs.detach()
    a = advantages.detach()[:, None].to(new_logprobs.dtype)
    ratio = torch.exp(log_ratio)
    clipped = torch.exp(log_ratio.clamp(-cap, cap))
    per_token = -torch.minimum(a * ratio, a * clipped)
    m = mask.to(new_logprobs.dtype)
    per_rollout = (per_token * m).sum(1) / m.sum(1).clamp(min=1.0)
    return per_rollout.mean()


def preference_pairs(held_out: npt.ArrayLike, sampled: npt.ArrayLike) -> np.ndarray:
    """``(P, 3)`` pairs ``(user row, chosen item, rejected item)``: the held-out item preferred
    over each distinct sampled item that is not it (RISER's non-learnable groups, and DPO).

    Parameters
    ----------
    held_out : array_like of int
        ``(n_users,)`` held-out item per user.
    sampled : array_like of int
        ``(n_users, G)`` sampled items (-1: none).

    Returns
    -------
    numpy.ndarray
        Int64 pairs in user order, then sample order.
    """
    target = np.asarray(held_out, dtype=np.int64)
    items = np.asarray(sampled, dtype=np.int64)
    if items.ndim != 2 or target.shape != (len(items),):
        raise DataError(f"preference_pairs: held_out {target.shape} and sampled {items.shape} do not match")
    keep = first_occurrences(items) & (items != target[:, None])
    users, slots = np.nonzero(keep)
    return np.stack([users, target[users], items[users, slots]], axis=1).astype(np.int64)


# -- loss terms for the LLM trainer ----------------------------------------------------------------
def _answers_of(rollout: Sequence[Any]) -> list[list[int]]:
    """A rollout's answers: itself when it is one answer (token ids), else its answers."""
    if len(rollout) and isinstance(rollout[0], (int, np.integer)):
        return [[int(t) for t in rollout]]
    answers = [[int(t) for t in answer] for answer in rollout]
    if not answers or any(not a for a in answers):
        raise DataError("BestOfNTargetLoss: a rollout has no answer, or an empty one")
    return answers


def _rollout_logprobs(trainer: Any, prompt: Sequence[int], answers: Sequence[Sequence[int]]) -> tuple:
    """``(R, T)`` token log-probabilities of each answer after ``prompt`` under the trainer's
    model, the ``(R, T)`` answer mask, and the batch (for a reference model)."""
    import torch

    from trustrec.models.training import IGNORE, collate_examples

    batch = trainer.to_device(collate_examples([(list(prompt), list(a)) for a in answers], trainer.pad_id))
    logits = trainer.forward(batch).logits
    return token_logprobs(logits, batch["labels"]), (batch["labels"][:, 1:] != IGNORE).to(torch.float32), batch


@dataclass
class BestOfNTargetLoss(LossTerm):
    """Static Best-of-N alignment or BLADE as a loss term: per example, ``sample(example)`` gives
    ``G`` rollouts (the same ``G`` for every example), each one answer (its token ids) or a list
    of answers (a list of token-id lists: a recommendation list, whose log-likelihood is the sum
    of its answers'; the example's prompt is run once for all of them,
    :func:`~trustrec.models.training.shared_prompt_logprobs`); ``reward(example, rollouts)`` gives one reward each; ``target`` maps the
    batch's ``(n, G)`` rewards to target weights (``functools.partial(bon_weights,
    reference=..., n=N)``, or a :class:`BladeTarget`'s ``weights``); the loss is
    :func:`weighted_nll` of the rollouts' log-likelihoods. ``supervision`` collects the batch's
    mean :func:`effective_supervision` per step.

    Parameters
    ----------
    sample : callable
        Maps an example to its rollouts' answer token ids.
    reward : callable
        Maps an example and its rollouts to one reward per rollout.
    target : callable
        Maps ``(n, G)`` rewards to ``(n, G)`` weights.
    weight : float
        Factor of the term in the summed loss.
    supervision : list of float
        Filled with the effective supervision of each step (default empty).
    """

    sample: Callable[[Any], list]
    reward: Callable[[Any, list], npt.ArrayLike]
    target: Callable[[np.ndarray], np.ndarray]
    weight: float = 1.0
    supervision: list[float] = field(default_factory=list)

    def compute(self, ctx: Any) -> torch.Tensor | None:
        import torch

        given = [list(self.sample(e)) for e in ctx.examples]  # the reward reads them as sampled
        rollouts = [[_answers_of(r) for r in group] for group in given]
        sizes = {len(r) for r in rollouts}
        if len(sizes) != 1 or 0 in sizes:
            raise DataError(
                f"BestOfNTargetLoss: every example needs the same, positive number of rollouts; got {sizes}"
            )
        rewards = np.array([self.reward(e, r) for e, r in zip(ctx.examples, given, strict=True)], dtype=np.float64)
        if rewards.shape != (len(rollouts), len(rollouts[0])) or not np.isfinite(rewards).all():
            raise DataError(f"BestOfNTargetLoss: rewards must be finite, shape {(len(rollouts), len(rollouts[0]))}")
        weights = np.asarray(self.target(rewards), dtype=np.float64)
        self.supervision.append(float(effective_supervision(weights).mean()))
        rows = []
        for example, group in zip(ctx.examples, rollouts, strict=True):
            answers = [a for rollout in group for a in rollout]
            owner = torch.as_tensor(np.repeat(np.arange(len(group)), [len(r) for r in group]))
            per_answer = shared_prompt_logprobs(ctx.model, example.variants[0].prompt_ids, answers, ctx.trainer.pad_id)
            row = torch.zeros(len(group), dtype=per_answer.dtype, device=per_answer.device)
            rows.append(row.index_add(0, owner.to(per_answer.device), per_answer))
        return weighted_nll(torch.stack(rows), weights)


@dataclass
class RiserLoss(LossTerm):
    """RISER as a loss term: per example, ``sample(example)`` gives item rollouts as ``(answer
    token ids, item)`` pairs, de-duplicated by item (:func:`first_occurrences`); ``reward(example,
    items)`` one reward per rollout. A learnable group (:func:`route_groups`) gets
    :func:`capped_policy_loss` with :func:`group_advantages`; the log-ratio is taken to
    ``old_policy(batch)``'s logits (the policy that sampled; None: the current model detached, so
    a single update per rollout batch starts at ratio 1). A non-learnable group becomes DPO pairs:
    the example's own answer (the held-out item) over each distinct sampled answer that differs
    from it, against ``reference(batch)``'s logits (:func:`~trustrec.models.training.preference_loss`);
    with ``pairwise=False`` it is skipped (plain GRPO, RISER's ablation). ``stats`` collects, per
    step, the share of non-learnable groups and the pairs used.

    Parameters
    ----------
    sample : callable
        Maps an example to ``(answer token ids, item)`` rollouts.
    reward : callable
        Maps an example and its rollouts' items to one reward per rollout.
    reference : callable or None
        Maps a batch to a frozen reference's logits (DPO's reference; None: no reference).
    old_policy : callable or None
        Maps a batch to the sampling policy's logits (None: the current model, detached).
    cap : float
        Per-token log-ratio cap (default 0.2).
    beta : float
        DPO's inverse temperature (default 0.1).
    pairwise : bool
        Turn non-learnable groups into preference pairs (default True; False: plain GRPO).
    weight : float
        Factor of the term in the summed loss.
    stats : list of dict
        Filled with ``non_learnable_share`` and ``pairs`` per step (default empty).
    """

    sample: Callable[[Any], list]
    reward: Callable[[Any, list[int]], npt.ArrayLike]
    reference: Callable[[dict], Any] | None = None
    old_policy: Callable[[dict], Any] | None = None
    cap: float = 0.2
    beta: float = 0.1
    pairwise: bool = True
    weight: float = 1.0
    stats: list[dict[str, float]] = field(default_factory=list)

    def compute(self, ctx: Any) -> torch.Tensor | None:
        import torch

        from trustrec.models.training import preference_loss

        terms, non_learnable, n_pairs = [], 0, 0
        for example in ctx.examples:
            rollouts = list(self.sample(example))
            if not rollouts:
                continue
            answers = [list(ids) for ids, _ in rollouts]
            items = np.array([[int(item) for _, item in rollouts]], dtype=np.int64)
            valid = first_occurrences(items)
            rewards = np.asarray(self.reward(example, items[0].tolist()), dtype=np.float64)[None, :]
            if rewards.shape != items.shape or not np.isfinite(rewards).all():
                raise DataError(f"RiserLoss: reward must give {items.shape[1]} finite rewards")
            prompt = example.variants[0].prompt_ids
            if route_groups(rewards, valid)[0]:
                keep = np.flatnonzero(valid[0])
                new, mask, batch = _rollout_logprobs(ctx.trainer, prompt, [answers[j] for j in keep])
                with torch.no_grad():
                    old = (
                        new.detach()
                        if self.old_policy is None
                        else token_logprobs(self.old_policy(batch), batch["labels"])
                    )
                adv = torch.as_tensor(group_advantages(rewards, valid)[0, keep], dtype=new.dtype, device=new.device)
                terms.append(capped_policy_loss(new, old, adv, mask, cap=self.cap))
                continue
            non_learnable += 1
            if not self.pairwise:
                continue
            chosen = list(example.variants[0].answer_ids)
            rejected = [answers[j] for j in np.flatnonzero(valid[0]) if answers[j] != chosen]
            if not rejected:
                continue
            n_pairs += len(rejected)
            logp, _, batch = _rollout_logprobs(ctx.trainer, prompt, [chosen, *rejected])
            seq = logp.sum(1)
            ref_c = ref_r = None
            if self.reference is not None:
                with torch.no_grad():
                    ref = token_logprobs(self.reference(batch), batch["labels"]).sum(1)
                ref_c, ref_r = ref[:1].expand(len(rejected)), ref[1:]
            terms.append(preference_loss(seq[:1].expand(len(rejected)), seq[1:], ref_c, ref_r, beta=self.beta))
        self.stats.append({"non_learnable_share": non_learnable / max(len(ctx.examples), 1), "pairs": float(n_pairs)})
        if not terms:
            return None
        return cast("torch.Tensor", sum(terms) / len(terms))
