"""Privacy audits: membership inference (with canary exposure and the randomised-response
defence), attribute inference (with history minimisation) and unlearning.

Per-user loss (:func:`next_item_losses`, one function for every model)
    The attack signal is how well the model predicts a user's own sequence. For each of the last
    ``positions`` items ``s[t]`` of a chronological sequence ``s`` (``t >= 1``), the model is asked
    about the prefix ``s[:t]`` as an *anonymous* query (user -1) and the loss is the negative
    log-likelihood of ``s[t]``: for a model with full-catalog ``score``, the log-softmax of the
    scores read as logits, over the items not in the prefix (as the model ranks them; a repeated
    target stays in); for the generative LLM recommender, its own mean per-token cross-entropy of
    the target's title (plus the end-of-sequence token) as the answer to the prompt of the prefix,
    exactly the fine-tuning loss. The user's loss is the mean over positions. Queries are
    anonymous so that a model with user embeddings does not give membership away by merely
    having a trained row for the user: what is measured is what the model learnt from the
    sequences (BPR folds an anonymous user in from the history; a model that reads only user ids
    is scored by its item side).

Membership inference (``membership_inference``, retrains)
    The users with at least 2 training interactions are split by seed into *members* (a fresh
    copy of the model is trained on their training sequences only), *non-members* (held out, same
    distribution) and, for a retrained reference, *reference users*. Two attacks score each
    member and non-member (higher = "member"): the **loss attack** ``-loss_target`` and the
    **reference-calibrated attack** ``loss_reference - loss_target`` (Carlini et al., S&P 2022:
    subtract the loss of a model that never saw the user), where the reference is a copy of the
    model trained on the disjoint reference users, or for the generative LLM the untuned base LLM
    (its LoRA adapters disabled, or the base checkpoint for a fully fine-tuned model). Reported:
    ROC-AUC with a stratified bootstrap CI, TPR at 1% and 0.1% FPR (the largest TPR at an FPR at
    most that; not reported, with a warning, when there are fewer than ``1/FPR`` non-members, since
    the threshold would rest on less than one non-member), the ROC curves, and the accuracy
    (NDCG@K) of the member-trained model on its members' held-out targets.
    **Canary exposure** (Carlini et al., USENIX Security 2019): ``n_canaries`` random item
    sequences (distinct items, ``canary_length``) are added to the member training data as new
    users (``canary_repeats`` copies each) and ``n_canaries`` more are drawn and never inserted
    (controls). Each canary is ranked by its loss among ``n_candidates`` random sequences of the
    same length (rank 1 = lowest loss, ties count half); exposure = ``log2(n_candidates + 1) -
    log2(rank)``, at most ``log2(n_candidates + 1)``, about 1.44 bits on average for a sequence
    the model never saw. **Randomised response** (``noise_epsilons``): for each epsilon the
    member (and canary) training items go through :func:`trustrec.mitigate.randomised_response`,
    the model is retrained, and the attacks are run again on the *true* sequences: the AUC drop,
    the canary exposure and the NDCG cost.

Attribute inference (``attribute_inference``)
    Can a sensitive attribute (every user attribute column, e.g. gender, age band, occupation;
    grouped as :func:`trustrec.data._groups.user_group_table` does) be predicted from what the
    model exposes about a user: its user embedding when it has one (``user_embeddings``), else its
    top-K list as a bag of items? A logistic regression (scikit-learn) is cross-validated
    (stratified ``n_folds``, seeded); the out-of-fold probabilities give the ROC-AUC (macro
    one-vs-rest for more than two values) with a bootstrap CI over users, and the accuracy against
    the majority-class accuracy (whose AUC is 0.5 by construction). The same pipeline on
    ``n_permutations`` seeded shuffles of the labels gives the shuffled-label baseline and the
    permutation p-value ``(1 + #{shuffled AUC >= AUC}) / (1 + n_permutations)``. Users whose
    attribute is missing are counted and reported, never silently dropped; values held by fewer
    than ``min_class_size`` users are merged into ``"(rare)"`` (and if that is still smaller than
    the number of folds, those users are left out and counted). With ``minimise`` the model is
    asked again with minimised histories (:func:`trustrec.mitigate.minimise_history`: the
    ``sensitive_items``, else the ``n_sensitive`` items whose consumption most reveals the
    attribute in training, dropped from the histories or shown by their generalised text): the
    AUC drop and the NDCG cost.

Unlearning (``unlearning``, retrains)
    Users with at least 2 training interactions give a held-out set (``heldout_share``, never
    trained on: the non-members) and a forget set (``forget_users``, else ``forget_share``); the
    rest are retained. The *original* model is trained on retained + forgotten users; the
    *exact* unlearning retrains it without the forgotten users (same seed,
    :func:`trustrec.mitigate.forget`); the *approximate* one runs gradient ascent on the forgotten
    sequences with a retain term, bounded by the held-out users' mean training loss under the
    original model (torch models with a per-sequence loss: SASRec, BPR-MF). For each: NDCG@K on
    retained users, the loss-attack membership AUC of the forgotten users against the held-out
    users (an exact unlearning is at 0.5 in expectation), and, against the exact model, the
    Jensen-Shannon divergence (base 2) and the L2 distance of the per-user output distributions
    (softmax of the scores over the items not in the history) for forgotten and retained users;
    the time of each, and the approximate method's speed-up over retraining (evidence and
    settings: timings are not estimates, so two runs with the same seed give equal estimates).
"""

from __future__ import annotations

import contextlib
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator

from trustrec.audit._base import (
    Audit,
    AuditConfig,
    AuditInputs,
    ModelSpecField,
    RetrainingAudit,
    fit_spec,
    register_audit,
)
from trustrec.audit._result import AuditResult, Estimate, Plot
from trustrec.data import Interactions, QueryBatch, Ragged, Split
from trustrec.errors import ConfigError, DataError
from trustrec.eval._classification import (  # roc_auc, macro_ovr_auc, tpr_at_fpr: re-exported, they lived here
    auc_rows,
    macro_ovr_auc,
    roc_auc,
    roc_points,
    tpr_at_fpr,
)
from trustrec.eval._stats import (
    bootstrap_rows,
    mean_estimate,
    paired_estimate,
    percentile_ci,
    stratified_bootstrap_rows,
)
from trustrec.models._protocols import has_capability

__all__ = ["next_item_losses", "roc_auc", "macro_ovr_auc", "tpr_at_fpr", "canary_exposure", "random_sequences",
           "js_divergence", "MembershipInferenceConfig", "MembershipInferenceAudit", "AttributeInferenceConfig",
           "AttributeInferenceAudit", "UnlearningConfig", "UnlearningAudit", "FPRS"]

FPRS = (0.01, 0.001)


def canary_exposure(canary_losses, candidate_losses) -> np.ndarray:
    """Exposure (Carlini et al. 2019) of each canary among ``candidate_losses`` of random
    sequences: ``log2(n_candidates + 1) - log2(rank)``, rank 1 = lower loss than every candidate,
    a candidate with an equal loss counting half."""
    c = np.asarray(canary_losses, np.float64)[:, None]
    cand = np.asarray(candidate_losses, np.float64)
    cand = cand[~np.isnan(cand)][None, :]
    rank = 1.0 + (cand < c).sum(1) + 0.5 * (cand == c).sum(1)
    out = np.log2(cand.shape[1] + 1) - np.log2(rank)
    return np.where(np.isnan(c[:, 0]), np.nan, out)


def random_sequences(n: int, length: int, n_items: int, rng: np.random.Generator) -> Ragged:
    """``n`` sequences of ``length`` distinct items drawn uniformly from the catalog."""
    if length > n_items:
        raise ConfigError(f"random sequences of {length} distinct items need at least that many items; "
                          f"the catalog has {n_items}")
    if n_items <= 50 * length:                                             # small catalog: random top-length keys
        keys = rng.random((n, n_items))
        items = np.argpartition(keys, length - 1, axis=1)[:, :length] if length < n_items else \
            np.argsort(keys, axis=1)
        order = np.argsort(np.take_along_axis(keys, items, 1), axis=1)      # a random order within the row
        items = np.take_along_axis(items, order, 1)
    else:                                                                  # large catalog: redraw rows with repeats
        items = rng.integers(0, n_items, (n, length))
        while True:
            s = np.sort(items, axis=1)
            bad = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(1))
            if not len(bad):
                break
            items[bad] = rng.integers(0, n_items, (len(bad), length))
    return Ragged(np.arange(n + 1, dtype=np.int64) * length, items.ravel().astype(np.int64))


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise Jensen-Shannon divergence (base 2, in [0, 1]) of distributions ``p`` and ``q``."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = (p + q) / 2

    def kl(a):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * (np.log2(a) - np.log2(np.where(m > 0, m, 1.0))), 0.0).sum(1)

    return np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, 1.0)


def _softmax_rows(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    s = np.where(np.isnan(scores), -np.inf, np.asarray(scores, np.float64))
    if mask is not None:
        s = np.where(mask, -np.inf, s)
    top = s.max(1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(top), top, 0.0))
    z = e.sum(1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.where(z > 0, e / np.where(z > 0, z, 1.0), np.nan)


# -- per-user loss -----------------------------------------------------------------------------------
def _is_generative(model) -> bool:
    if getattr(model, "name", "") != "llm_generative":
        return False
    from trustrec.models.llm._generative import GenerativeRecommender

    return isinstance(model, GenerativeRecommender)


def _can_score(model) -> bool:
    return "score" in getattr(model, "capabilities", ()) or _is_generative(model)


def _default_positions(model, positions: int | None) -> int:
    if positions is not None:
        return int(positions)
    return int(model.config.targets_per_user) if _is_generative(model) else 10


def _prefix_pairs(histories: Ragged, positions: int | None) -> tuple[np.ndarray, Ragged, np.ndarray]:
    """(row of each pair, prefix histories, next items) for the last ``positions`` positions
    ``t >= 1`` of each row (all when None)."""
    lengths = histories.lengths
    n_pos = np.maximum(lengths - 1, 0) if positions is None else np.minimum(np.maximum(lengths - 1, 0), positions)
    rows = np.repeat(np.arange(len(histories)), n_pos)
    first = np.concatenate([[0], np.cumsum(n_pos)[:-1]])
    t = lengths[rows] - n_pos[rows] + (np.arange(len(rows)) - first[rows])      # prefix lengths, >= 1
    starts = histories.indptr[:-1][rows]
    indptr = np.concatenate([[0], np.cumsum(t)])
    offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], t)
    prefixes = Ragged(indptr, histories.values[np.repeat(starts, t) + offsets])
    return rows, prefixes, histories.values[starts + t]


def _score_losses(model, prefixes: Ragged, targets: np.ndarray, batch_size: int, budget: int = 20_000_000) -> np.ndarray:
    n_items = model.n_items_
    out = np.full(len(targets), np.nan)
    step = max(1, min(batch_size, budget // max(n_items, 1)))
    for start in range(0, len(targets), step):
        stop = min(start + step, len(targets))
        hist = prefixes.take(np.arange(start, stop))
        tgt = targets[start:stop]
        s = np.asarray(model.score(QueryBatch(np.full(stop - start, -1), hist)), np.float64)
        mask = hist.to_dense_mask(n_items)
        rows = np.arange(stop - start)
        mask[rows, tgt] = False
        s = np.where(mask | np.isnan(s), -np.inf, s)
        top = s.max(1)
        finite = np.isfinite(top)
        safe = np.where(finite, top, 0.0)
        lse = safe + np.log(np.exp(s - safe[:, None]).sum(1))
        ts = s[rows, tgt]
        out[start:stop] = np.where(finite & np.isfinite(ts), lse - ts, np.nan)
    return out


@contextlib.contextmanager
def _base_llm(model):
    """The untuned base LLM of a generative recommender: its LoRA adapters disabled, or the base
    checkpoint loaded again when every weight was fine-tuned."""
    if model.config.lora is not None:
        with model.lm_.disable_adapter():
            yield model.lm_
        return
    from trustrec.models.llm._loading import load_causal_lm

    device = str(next(model.lm_.parameters()).device)
    lm, _ = load_causal_lm(model.config.model, device=device, progress=False)
    lm.eval()
    yield lm


def _llm_losses(model, prefixes: Ragged, targets: np.ndarray, lm=None) -> np.ndarray:
    """Mean per-token cross-entropy of each target's answer (title + eos) given the prompt of
    its prefix, under ``lm`` (default the model's fine-tuned LM): the fine-tuning loss."""
    import torch
    import torch.nn.functional as F

    from trustrec.models.llm._generative import IGNORE, collate_examples

    lm = model.lm_ if lm is None else lm
    out = np.full(len(targets), np.nan)
    if not len(targets):
        return out
    tok = model.tokenizer_
    titles = model.titles()
    size = model.config.inference_batch_size
    device = next(lm.parameters()).device
    eos = tok.eos_token_id
    for start in range(0, len(targets), size):
        stop = min(start + size, len(targets))
        queries = QueryBatch(np.full(stop - start, -1), prefixes.take(np.arange(start, stop)))
        prompts = model._prompts(queries)
        prompt_ids = tok(prompts, add_special_tokens=True)["input_ids"]
        answers = tok([titles[i] for i in targets[start:stop]], add_special_tokens=False)["input_ids"]
        batch = collate_examples([(list(p), list(a) + [eos]) for p, a in zip(prompt_ids, answers)], model._pad_id())
        with torch.inference_mode():
            logits = lm(input_ids=batch["input_ids"].to(device),
                        attention_mask=batch["attention_mask"].to(device)).logits[:, :-1].float()
            labels = batch["labels"][:, 1:].to(device)
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE,
                                 reduction="none").view(labels.shape)
            valid = (labels != IGNORE).float()
            out[start:stop] = ((ce * valid).sum(1) / valid.sum(1).clamp(min=1)).double().cpu().numpy()
    return out


def next_item_losses(model, histories: Ragged, *, positions: int | None = 10, batch_size: int = 256,
                     lm=None) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``histories`` (chronological sequences), the model's mean next-item negative
    log-likelihood over its last ``positions`` positions (all when None), asked as anonymous
    queries (module docstring), and the number of positions scored. NaN (and 0) for rows shorter
    than 2 or that the model cannot score. Works for any fitted model with ``score`` and for the
    generative LLM recommender (``lm`` replaces its LM, e.g. the base LLM)."""
    model._check_fitted()
    if not _can_score(model):
        raise ConfigError(f"next_item_losses: {type(model).__name__} has neither full-catalog scores nor a "
                          "generative likelihood; the loss of a sequence is not defined for it")
    if positions is not None and positions < 1:
        raise ConfigError(f"next_item_losses: positions must be >= 1 or None, got {positions}")
    rows, prefixes, targets = _prefix_pairs(histories, positions)
    if _is_generative(model):
        pair_loss = _llm_losses(model, prefixes, targets, lm)
    else:
        pair_loss = _score_losses(model, prefixes, targets, batch_size)
    ok = ~np.isnan(pair_loss)
    n = np.bincount(rows[ok], minlength=len(histories))
    sums = np.bincount(rows[ok], weights=pair_loss[ok], minlength=len(histories))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, sums / np.maximum(n, 1), np.nan), n


# -- shared pieces ---------------------------------------------------------------------------------
def _train_only(split: Split, users: np.ndarray, note: str) -> Split:
    return split.with_train(split.train.select(np.isin(split.train.user, users)), note=note)


def _with_canaries(split: Split, canaries: Ragged, repeats: int) -> tuple[Split, np.ndarray]:
    """``split`` with each canary sequence added ``repeats`` times to the training part as new
    users ``__canary_<i>_<r>`` (after the dataset's users; timestamps in the training period).
    Returns the split and the canary users' indices."""
    ds = split.dataset
    n = len(canaries) * repeats
    if n == 0:
        return split, np.empty(0, np.int64)
    new_ids = [f"__canary_{i}_{r}" for i in range(len(canaries)) for r in range(repeats)]
    if set(ds.user_ids.tolist()) & set(new_ids):
        raise DataError("membership inference: the dataset already has users named '__canary_<i>_<r>'")
    seqs = canaries.take(np.repeat(np.arange(len(canaries)), repeats))
    new_users = ds.n_users + np.arange(n)
    rows = seqs.row_ids()
    t0 = int(split.train.timestamp.min()) if len(split.train) else 0
    ts = t0 + np.arange(len(seqs.values)) - seqs.indptr[:-1][rows]
    rating = None
    if split.train.rating is not None:
        rating = np.full(len(seqs.values), float(split.train.rating.max()), np.float32)
    inter = Interactions(new_users[rows], seqs.values, ts, rating)
    return split.with_added_train(inter, new_user_ids=new_ids, dataset_note=f"{n} canary users"), new_users


def _recommend(model, queries: QueryBatch, k: int, batch_size: int) -> np.ndarray:
    parts = [model.recommend(b, k).items for b in queries.batches(batch_size)]
    return np.concatenate(parts) if parts else np.empty((0, k), np.int64)


def _ndcg(model, eval_set, k: int, batch_size: int) -> np.ndarray:
    from trustrec.eval import hits_matrix, ndcg
    from trustrec.eval._evaluator import _unique_counts

    if not len(eval_set):
        return np.empty(0)
    top = _recommend(model, eval_set.queries, k, batch_size)
    return ndcg(hits_matrix(top, eval_set.targets, model.n_items_), _unique_counts(eval_set.targets))


def _sample(users: np.ndarray, n: int | None, rng) -> np.ndarray:
    if n is None or n >= len(users):
        return users
    return np.sort(rng.choice(users, n, replace=False))


# -- membership inference --------------------------------------------------------------------------
class MembershipInferenceConfig(AuditConfig):
    """``reference``: ``auto`` (the untuned base LLM for the generative recommender, else a
    retrained copy), ``retrain`` (``reference_spec``, default the target's spec, trained on the
    ``reference_share`` of users), ``base_llm`` or ``none`` (loss attack only); ``positions``:
    next-item predictions per user in its loss (``None``: the generative recommender's
    ``targets_per_user``, else 10); canaries: ``n_canaries`` inserted (0: none) plus as many
    controls, ``canary_length`` items, ``canary_repeats`` copies, ranked among ``n_candidates``
    random sequences; ``noise_epsilons``: randomised-response settings to retrain with;
    ``max_users``: attacked users (a seeded half from members, half from non-members; all
    members are trained on); ``model_spec``: what to train (``None``: the audited model's own
    name and config)."""

    model_spec: ModelSpecField = None
    reference: Literal["auto", "retrain", "base_llm", "none"] = "auto"
    reference_spec: ModelSpecField = None
    reference_share: float = Field(1 / 3, gt=0, lt=1)
    positions: PositiveInt | None = None
    n_canaries: int = Field(10, ge=0)
    canary_length: int = Field(10, ge=2)
    canary_repeats: PositiveInt = 1
    n_candidates: PositiveInt = 500
    noise_epsilons: tuple[float, ...] = ()
    batch_size: PositiveInt = 256

    @field_validator("noise_epsilons")
    @classmethod
    def _check_eps(cls, values):
        bad = [v for v in values if not v >= 0]
        if bad:
            raise ValueError(f"epsilons must be >= 0 (inf: no noise); got {bad}")
        return tuple(sorted({float(v) for v in values}))


def _attack_estimates(scores: dict[str, np.ndarray], labels: np.ndarray, n_boot: int, seed: int, what: str,
                      warnings: list, suffix: str = "") -> tuple[dict[str, Estimate], dict[str, np.ndarray]]:
    """AUC (CI), TPR at each FPR for each attack; returns estimates and the bootstrap AUCs."""
    rows = stratified_bootstrap_rows(labels, n_boot, seed) if n_boot > 0 else None
    n_neg, n_pos = int((~labels).sum()), int(labels.sum())
    out, boots = {}, {}
    for name, s in scores.items():
        auc = roc_auc(s, labels)
        boots[name] = auc_rows(s[rows], labels[rows]) if rows is not None else np.empty(0)
        lo, hi = percentile_ci(boots[name])
        out[f"auc [{name}{suffix}]"] = Estimate(
            auc, lo, hi, n_pos + n_neg,
            description=f"ROC-AUC of the {name} attack, {n_pos} members vs {n_neg} non-members "
                        f"(0.5 = no leak, stratified bootstrap CI); {what}")
        for fpr in FPRS:
            label = f"tpr@{fpr:.1%}fpr".replace(".0%", "%")
            if n_neg * fpr < 1:
                out[f"{label} [{name}{suffix}]"] = Estimate(
                    None, n=n_neg, description=f"not measured: {n_neg} non-members are too few for an FPR of "
                                               f"{fpr:g} (needs at least {round(1 / fpr)})")
                msg = (f"TPR at {fpr:g} FPR not reported: {n_neg} non-members are too few (at least "
                       f"{round(1 / fpr)} needed for the threshold to rest on one non-member)")
                if msg not in warnings:
                    warnings.append(msg)
                continue
            out[f"{label} [{name}{suffix}]"] = Estimate(
                tpr_at_fpr(s, labels, fpr), n=n_pos,
                description=f"share of members flagged at a threshold passing at most {fpr:g} of the {n_neg} "
                            f"non-members ({name} attack); {what}")
    return out, boots


def _roc_rows(scores: dict[str, np.ndarray], labels: np.ndarray, setting: str) -> pd.DataFrame:
    frames = []
    for name, s in scores.items():
        f, t = roc_points(s, labels)
        frames.append(pd.DataFrame({"attack": f"{name}{setting}", "fpr": f, "tpr": t}))
    return pd.concat(frames, ignore_index=True)


@register_audit
class MembershipInferenceAudit(RetrainingAudit):
    """Loss and reference-calibrated membership inference, canary exposure and randomised
    response (module docstring)."""

    name: ClassVar[str] = "membership_inference"
    dimension: ClassVar[str] = "privacy"
    description: ClassVar[str] = ("membership inference on a copy trained on half the users: loss and "
                                  "reference-calibrated attacks (AUC, TPR at 1% / 0.1% FPR), canary exposure, "
                                  "randomised-response training as a defence")
    needs: ClassVar[str] = ("a model that can be retrained from its spec, with full-catalog scores or the "
                            "generative LLM's likelihood")
    config_class = MembershipInferenceConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        if not _can_score(inputs.model):
            return (f"{type(inputs.model).__name__} exposes neither full-catalog scores nor a generative likelihood, "
                    "so a sequence's loss is not defined")
        if (inputs.train_counts >= 2).sum() < 4:
            return "fewer than 4 users with at least 2 training interactions"
        return None

    def _reference_kind(self, model) -> str:
        ref = self.config.reference
        if ref == "auto":
            return "base_llm" if _is_generative(model) else "retrain"
        if ref == "base_llm" and not _is_generative(model):
            raise ConfigError(f"{self.name}: reference='base_llm' needs the generative LLM recommender; "
                              f"{type(model).__name__} has no base LLM, use 'retrain'")
        return ref

    def _losses(self, model, hist: Ragged, positions: int, lm=None) -> np.ndarray:
        return next_item_losses(model, hist, positions=positions, batch_size=self.config.batch_size, lm=lm)[0]

    def _reference_losses(self, kind: str, target, ref_model, hist: Ragged, positions: int):
        if kind == "none":
            return None
        if kind == "base_llm":
            with _base_llm(target) as lm:
                return self._losses(target, hist, positions, lm=lm)
        return self._losses(ref_model, hist, positions)

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        k = c.k
        split, ds = inputs.split, inputs.dataset
        spec = self._spec(inputs.model)
        kind = self._reference_kind(inputs.model)
        rng = np.random.default_rng(c.seed)
        eligible = np.flatnonzero(inputs.train_counts >= 2)
        perm = rng.permutation(eligible)
        n_ref = round(c.reference_share * len(perm)) if kind == "retrain" else 0
        n_ref = min(max(n_ref, 1), len(perm) - 2) if kind == "retrain" else 0
        ref_users, rest = np.sort(perm[:n_ref]), perm[n_ref:]
        half = (len(rest) + 1) // 2
        members, nonmembers = np.sort(rest[:half]), np.sort(rest[half:])
        each = None if c.max_users is None else max(1, c.max_users // 2)
        att_m, att_n = _sample(members, each, rng), _sample(nonmembers, each, rng)
        attacked = np.concatenate([att_m, att_n])
        labels = np.r_[np.ones(len(att_m), bool), np.zeros(len(att_n), bool)]
        seqs = split.train.by_user(ds.n_users)
        hist = seqs.take(attacked)
        # canaries: inserted ones and never-inserted controls, and the random candidates
        n_can = c.n_canaries
        canaries = controls = candidates = None
        if n_can:
            length = min(c.canary_length, ds.n_items)
            crng = np.random.default_rng(c.seed + 7)
            canaries = random_sequences(n_can, length, ds.n_items, crng)
            controls = random_sequences(n_can, length, ds.n_items, crng)
            candidates = random_sequences(c.n_candidates, length, ds.n_items, crng)
        member_split = _train_only(split, members, f"membership inference: trained on {len(members)} member users")
        target_split, canary_users = _with_canaries(member_split, canaries, c.canary_repeats) if n_can else \
            (member_split, np.empty(0, np.int64))
        target, t_target = fit_spec(spec, target_split, seed=c.seed, progress=inputs.progress)
        positions = _default_positions(target, c.positions)
        fit_seconds = {"target": t_target}
        ref_model = None
        if kind == "retrain":
            from trustrec.models import ModelSpec

            ref_spec = ModelSpec.model_validate(c.reference_spec) if c.reference_spec is not None else spec
            ref_model, fit_seconds["reference"] = fit_spec(
                ref_spec, _train_only(split, ref_users, f"reference model trained on {len(ref_users)} users"),
                seed=c.seed, progress=inputs.progress)
        loss_t = self._losses(target, hist, positions)
        loss_r = self._reference_losses(kind, target, ref_model, hist, positions)
        scored = ~np.isnan(loss_t) & (np.ones(len(loss_t), bool) if loss_r is None else ~np.isnan(loss_r))
        warnings: list[str] = []
        if (~scored).any():
            warnings.append(f"{int((~scored).sum())} attacked users could not be scored (no scorable position) "
                            "and are left out of the attack")

        def attack_scores(lt, lr):
            s = {"loss": -lt[scored]}
            if lr is not None:
                s["calibrated"] = lr[scored] - lt[scored]
            return s

        y = labels[scored]
        scores = attack_scores(loss_t, loss_r)
        what = f"{spec.name} trained on {len(members)} members, {positions} next-item predictions per user"
        estimates, boots = _attack_estimates(scores, y, c.n_boot, c.seed, what, warnings)
        if "calibrated" in boots and len(boots["calibrated"]):
            lo, hi = percentile_ci(boots["calibrated"] - boots["loss"])
            estimates["auc_gain [calibrated - loss]"] = Estimate(
                estimates["auc [calibrated]"].value - estimates["auc [loss]"].value, lo, hi, len(y),
                description="AUC of the reference-calibrated attack minus the loss attack's (paired bootstrap CI); "
                            f"reference: {'the untuned base LLM' if kind == 'base_llm' else 'a copy trained on '}"
                            + ("" if kind == "base_llm" else f"{len(ref_users)} disjoint users"))
        # accuracy of the member-trained model on its members' held-out targets
        ev = inputs.eval_set
        member_rows = np.flatnonzero(np.isin(ev.queries.users, members))
        ndcg_clean = _ndcg(target, ev[member_rows], k, c.batch_size) if len(member_rows) else np.empty(0)
        estimates[f"ndcg@{k} [members]"] = mean_estimate(
            ndcg_clean, n_boot=c.n_boot, seed=c.seed + 3,
            description=f"NDCG@{k} of the member-trained model on its members' '{inputs.part}' targets")
        per_user = pd.DataFrame({"user": attacked, "user_id": ds.user_ids[attacked],
                                 "group": np.where(labels, "member", "non-member"), "loss_target": loss_t,
                                 "loss_reference": np.full(len(attacked), np.nan) if loss_r is None else loss_r})
        roc = _roc_rows(scores, y, "")
        noise_rows = [{"epsilon": np.inf, "keep_probability": 1.0, **{f"auc_{n}": estimates[f"auc [{n}]"].value
                                                                       for n in scores},
                       f"ndcg@{k}": float(np.nanmean(ndcg_clean)) if len(ndcg_clean) else np.nan}]
        evidence = {"per_user": per_user}
        if n_can:
            cand_loss = self._losses(target, candidates, positions)
            exp_in = canary_exposure(self._losses(target, canaries, positions), cand_loss)
            exp_ctl = canary_exposure(self._losses(target, controls, positions), cand_loss)
            max_exp = float(np.log2(c.n_candidates + 1))
            for label_, values, desc in (("canary_exposure", exp_in, f"canaries inserted {c.canary_repeats}x"),
                                         ("canary_exposure [control]", exp_ctl, "canaries never inserted")):
                estimates[label_] = mean_estimate(
                    values, n_boot=c.n_boot, seed=c.seed + 11,
                    description=f"mean exposure (bits) of {n_can} {desc}, ranked by loss among {c.n_candidates} "
                    f"random sequences "
                    f"of {canaries.lengths[0]} items (max {max_exp:.2f}; about 1.44 for an unseen sequence)")
            estimates["canary_exposure_max"] = Estimate(float(np.nanmax(exp_in)), n=n_can,
                                                        description="largest exposure of an inserted canary (bits)")
            evidence["canaries"] = pd.DataFrame({
                "canary": np.r_[np.arange(n_can), np.arange(n_can)],
                "inserted": np.r_[np.ones(n_can, bool), np.zeros(n_can, bool)],
                "exposure": np.r_[exp_in, exp_ctl]})
            noise_rows[0]["canary_exposure"] = float(np.nanmean(exp_in))
        # randomised response on the member (and canary) training items
        from trustrec.mitigate._privacy import keep_probability, noise_training

        for j, eps in enumerate(c.noise_epsilons):
            label = f"rr eps={eps:g}"
            noised = noise_training(target_split, eps, seed=c.seed + 101 + j,
                                    users=np.concatenate([members, canary_users]))
            model, fit_seconds[label] = fit_spec(spec, noised, seed=c.seed, progress=inputs.progress)
            lt = self._losses(model, hist, positions)
            s_eps = attack_scores(lt, loss_r)
            ok = ~np.isnan(s_eps["loss"])
            est, b_eps = _attack_estimates({n: v[ok] for n, v in s_eps.items()}, y[ok], c.n_boot, c.seed, what
                                           + f"; training items through randomised response, eps={eps:g}", warnings,
                                           suffix=f", {label}")
            estimates.update(est)
            for n in s_eps:
                if ok.all() and len(boots.get(n, ())) and len(b_eps[n]):
                    lo, hi = percentile_ci(boots[n] - b_eps[n])
                    estimates[f"auc_drop [{n}, {label}]"] = Estimate(
                        estimates[f"auc [{n}]"].value - est[f"auc [{n}, {label}]"].value, lo, hi, int(ok.sum()),
                        description=f"AUC without noise minus AUC with randomised response at eps={eps:g} (keep "
                                    f"probability {keep_probability(eps):.3f}); > 0 = the defence helps")
            nd = _ndcg(model, ev[member_rows], k, c.batch_size) if len(member_rows) else np.empty(0)
            estimates[f"ndcg@{k}_cost [{label}]"] = paired_estimate(
                ndcg_clean, nd, n_boot=c.n_boot, seed=c.seed + 13 + j,
                description=f"NDCG@{k} on members' targets without noise minus with it (accuracy cost)")
            row = {"epsilon": eps, "keep_probability": keep_probability(eps),
                   **{f"auc_{n}": est[f"auc [{n}, {label}]"].value for n in s_eps},
                   f"ndcg@{k}": float(np.nanmean(nd)) if len(nd) else np.nan}
            if n_can:
                cl = self._losses(model, candidates, positions)
                exp_eps = canary_exposure(self._losses(model, canaries, positions), cl)
                row["canary_exposure"] = float(np.nanmean(exp_eps))
                estimates[f"canary_exposure [{label}]"] = mean_estimate(
                    exp_eps, n_boot=c.n_boot, seed=c.seed + 17 + j,
                    description=f"mean exposure of the inserted canaries (noised like every member) with randomised "
                                f"response at eps={eps:g}")
            roc = pd.concat([roc, _roc_rows({n: v[ok] for n, v in s_eps.items()}, y[ok], f", {label}")],
                            ignore_index=True)
            noise_rows.append(row)
        evidence["roc"] = roc
        plots = [Plot("line", "roc", "fpr", "tpr", "membership inference ROC curves", series="attack",
                      x_label="false-positive rate (non-members flagged)", y_label="true-positive rate (members flagged)")]
        if c.noise_epsilons:
            noise = pd.DataFrame(noise_rows)
            evidence["noise"] = noise
            curve = noise[np.isfinite(noise.epsilon)].melt(id_vars=["epsilon"], value_vars=[f"auc_{n}" for n in scores],
                                                           var_name="attack", value_name="auc")
            evidence["noise_curve"] = curve.reset_index(drop=True)
            plots.append(Plot("line", "noise_curve", "epsilon", "auc", "membership AUC vs randomised-response epsilon",
                              series="attack", x_label="epsilon (keep probability e^eps/(e^eps+1))",
                              y_label="ROC-AUC"))
        auc_l = estimates["auc [loss]"]
        summary = (f"{spec.name} trained on {len(members)} members; {len(att_m)} members vs {len(att_n)} non-members: "
                   f"loss attack AUC {auc_l.value:.3f}")
        if "auc [calibrated]" in estimates:
            summary += f", reference-calibrated {estimates['auc [calibrated]'].value:.3f}"
        if n_can:
            summary += (f"; canary exposure {estimates['canary_exposure'].value:.2f} bits (controls "
                        f"{estimates['canary_exposure [control]'].value:.2f})")
        return self._result(estimates, evidence=evidence, plots=tuple(plots), warnings=tuple(warnings), summary=summary,
                            settings={"model_spec": spec.model_dump(mode="json"), "reference": kind,
                                      "n_members": len(members), "n_non_members": len(nonmembers),
                                      "n_reference_users": len(ref_users),
                                      "n_excluded_users": int(ds.n_users - len(eligible)),
                                      "n_attacked": len(attacked), "positions": positions,
                                      "fit_seconds": fit_seconds})


# -- attribute inference ---------------------------------------------------------------------------
class AttributeInferenceConfig(AuditConfig):
    """``attributes``: user columns to infer (``None``: every attribute column); ``features``:
    ``auto`` (user embeddings when the model has them, else the top-K list), ``embeddings`` or
    ``topk``; ``n_folds``: stratified CV folds; ``C``: the logistic regression's inverse
    regularisation; ``n_permutations``: shuffled-label runs; ``min_class_size``: smaller values
    merge into ``"(rare)"``; ``minimise``: ``drop`` or ``generalise`` the ``sensitive_items``
    (raw ids; ``None``: the ``n_sensitive`` items most revealing of each attribute) and ask
    again (``None``: no minimisation)."""

    attributes: tuple[str, ...] | None = None
    features: Literal["auto", "embeddings", "topk"] = "auto"
    n_folds: int = Field(5, ge=2)
    C: PositiveFloat = 1.0
    n_permutations: int = Field(20, ge=0)
    min_class_size: PositiveInt = 10
    minimise: Literal["drop", "generalise"] | None = None
    sensitive_items: tuple[str, ...] | None = None
    n_sensitive: PositiveInt = 50
    batch_size: PositiveInt = 512


def _cv_proba(x, codes: np.ndarray, n_classes: int, n_folds: int, C: float, seed: int, dense: bool) -> np.ndarray:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(C=C, max_iter=2000)
    if dense:
        clf = make_pipeline(StandardScaler(), clf)
    from threadpoolctl import threadpool_limits

    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    # one BLAS thread: these fits are small (users x items); on a busy 2-core machine two threads
    # made a 21-class fit on ml-100k 45x slower (45 s instead of 1 s)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        proba = cross_val_predict(clf, x, codes, cv=cv, method="predict_proba")
    if proba.shape[1] != n_classes:                            # a class absent from some training fold
        raise DataError("attribute inference: a class is missing from a training fold")
    return proba


@register_audit
class AttributeInferenceAudit(Audit):
    """Sensitive-attribute inference from user embeddings or top-K lists (module docstring)."""

    name: ClassVar[str] = "attribute_inference"
    dimension: ClassVar[str] = "privacy"
    description: ClassVar[str] = ("sensitive-attribute inference (gender, age band, occupation) from user embeddings "
                                  "or top-K lists: cross-validated AUC vs majority and shuffled-label baselines; "
                                  "history minimisation as the mitigation")
    needs: ClassVar[str] = "user attribute columns; any model (user embeddings used when it has them)"
    config_class = AttributeInferenceConfig

    def _attributes(self, inputs: AuditInputs) -> list[str]:
        groups = inputs.user_groups
        found = [col for col in groups.columns if col != "activity"]
        if self.config.attributes is None:
            return found
        users = inputs.dataset.users
        unknown = [a for a in self.config.attributes if a not in users.columns or a in ("user_id",)]
        if unknown:
            raise ConfigError(f"{self.name}: attributes {unknown} are not user columns of '{inputs.dataset.name}'; "
                              f"columns: {[col for col in users.columns if col != 'user_id']}")
        return list(self.config.attributes)

    def _why_not(self, inputs: AuditInputs) -> str | None:
        if not self._attributes(inputs):
            return "the dataset has no user attribute columns to infer"
        if self._use_embeddings(inputs.model) is None:
            return (f"features='embeddings' but {type(inputs.model).__name__} has no user embeddings; "
                    "use features='topk' or 'auto'")
        if len(inputs.eval_set) < 2 * self.config.n_folds:
            return f"fewer than {2 * self.config.n_folds} users to cross-validate on"
        return None

    def _use_embeddings(self, model) -> bool | None:
        has = has_capability(model, "user_embeddings")
        if self.config.features == "embeddings":
            return True if has else None
        return has and self.config.features == "auto"

    def _features(self, model, queries: QueryBatch, top: np.ndarray | None, embeddings: bool):
        import scipy.sparse as sp

        if embeddings:
            return np.asarray(model.user_embeddings(queries), np.float64), True
        if top is None:
            top = _recommend(model, queries, self.config.k, self.config.batch_size)
        rows = np.repeat(np.arange(len(top)), top.shape[1])
        items = top.ravel()
        ok = items >= 0
        x = sp.csr_matrix((np.ones(int(ok.sum())), (rows[ok], items[ok])), shape=(len(top), model.n_items_))
        return x, False

    def _labels(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
        """(rows kept, class codes, class names, counts) after merging rare values."""
        from trustrec.data._groups import MISSING_GROUP

        c = self.config
        values = np.asarray(values, dtype=object)
        missing = values == MISSING_GROUP
        counts = pd.Series(values[~missing]).value_counts()
        rare = set(counts[counts < c.min_class_size].index)
        merged = np.where(np.isin(values, list(rare)), "(rare)", values) if rare else values
        keep = ~missing
        n_rare_excluded = 0
        if rare and (merged[keep] == "(rare)").sum() < c.n_folds:
            drop = merged == "(rare)"
            n_rare_excluded = int(drop.sum())
            keep &= ~drop
        names = sorted(set(merged[keep]))
        codes = np.searchsorted(np.asarray(names, dtype=object), merged[keep]) if names else np.empty(0, int)
        info = {"n_missing": int(missing.sum()), "n_rare_values": len(rare), "n_rare_excluded": n_rare_excluded}
        return np.flatnonzero(keep), np.asarray(codes, np.int64), names, info

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.data._groups import MISSING_GROUP, user_group_table

        c = self.config
        k = c.k
        model, queries, ds = inputs.model, inputs.queries, inputs.dataset
        embeddings = bool(self._use_embeddings(model))
        feats, dense = self._features(model, queries, None if embeddings else np.asarray(inputs.topk)[:, :k],
                                      embeddings)
        groups = inputs.user_groups
        if c.attributes is not None:
            extra = [a for a in c.attributes if a not in groups.columns]
            if extra:
                table = user_group_table(ds.users, inputs.train_counts, list(extra))
                groups = groups.assign(**{a: table[a].to_numpy()[queries.users] for a in extra})
        attributes = self._attributes(inputs)
        what = (f"{'user embeddings' if embeddings else f'top-{k} lists (bag of items)'} of {len(queries)} users, "
                f"logistic regression, {c.n_folds}-fold stratified CV")
        estimates, rows, bars, warnings = {}, [], [], []
        base_ndcg = inputs.evaluation.per_user[f"ndcg@{k}"].to_numpy() if c.minimise else None
        full_groups = None
        for j, attr in enumerate(attributes):
            keep, codes, names, info = self._labels(groups[attr].to_numpy())
            seed = c.seed + 31 * j
            row = {"attribute": attr, "n_users": len(queries), "n_labelled": len(keep), **info,
                   "n_classes": len(names), "features": "embeddings" if embeddings else f"top-{k}"}
            if info["n_missing"]:
                warnings.append(f"{attr}: {info['n_missing']} of {len(queries)} users have no value; counted, not "
                                "used to train or score the classifier")
            if info["n_rare_excluded"]:
                warnings.append(f"{attr}: {info['n_rare_excluded']} users hold values too rare to cross-validate "
                                f"(fewer than {c.n_folds} even merged); left out and counted")
            class_counts = np.bincount(codes, minlength=len(names))
            if len(names) < 2 or class_counts.min() < c.n_folds:
                warnings.append(f"{attr}: fewer than 2 values with at least {c.n_folds} users; not measured")
                estimates[f"auc [{attr}]"] = Estimate(None, n=len(keep),
                                                      description=f"not measured: fewer than 2 usable values of {attr}")
                rows.append(row)
                continue
            x = feats[keep]
            proba = _cv_proba(x, codes, len(names), c.n_folds, c.C, seed, dense)
            auc = float(macro_ovr_auc(proba, codes)[0])
            boot_rows = bootstrap_rows(len(codes), c.n_boot, seed + 1) if c.n_boot > 0 else None
            boot = macro_ovr_auc(proba, codes, boot_rows) if boot_rows is not None else np.empty(0)
            prng = np.random.default_rng(seed + 2)
            shuffled = np.array([float(macro_ovr_auc(_cv_proba(x, perm_codes, len(names), c.n_folds, c.C, seed, dense),
                                                     perm_codes)[0])
                                 for perm_codes in (prng.permutation(codes) for _ in range(c.n_permutations))])
            p_value = (1 + int((shuffled >= auc).sum())) / (1 + len(shuffled)) if len(shuffled) else None
            lo, hi = percentile_ci(boot)
            kind = "binary" if len(names) == 2 else f"macro one-vs-rest over {len(names)} values"
            missing_note = f"; {info['n_missing']} users without a value counted, not used" if info["n_missing"] else ""
            estimates[f"auc [{attr}]"] = Estimate(
                auc, lo, hi, len(keep), p_value,
                description=f"out-of-fold ROC-AUC ({kind}) of predicting {attr} from {what}; p-value: permutation "
                            f"test over {len(shuffled)} label shuffles{missing_note}")
            s_lo, s_hi = percentile_ci(shuffled) if len(shuffled) >= 2 else (None, None)
            estimates[f"auc_shuffled [{attr}]"] = Estimate(
                float(shuffled.mean()) if len(shuffled) else None, s_lo, s_hi, len(shuffled),
                description="the same pipeline on shuffled labels: mean AUC and the 2.5-97.5% range of the shuffles")
            pred = proba.argmax(1)
            acc = float((pred == codes).mean())
            majority = float(class_counts.max() / class_counts.sum())
            estimates[f"accuracy [{attr}]"] = Estimate(acc, n=len(keep),
                                                       description=f"out-of-fold accuracy of the {attr} classifier")
            estimates[f"majority_accuracy [{attr}]"] = Estimate(
                majority, n=len(keep), description=f"share of the most common {attr} value (the majority "
                                                        "baseline; its AUC is 0.5)")
            row.update(auc=auc, auc_ci_low=lo, auc_ci_high=hi, p_value=p_value,
                       auc_shuffled=float(shuffled.mean()) if len(shuffled) else np.nan, accuracy=acc,
                       majority_accuracy=majority)
            bars += [{"attribute": attr, "predictor": "model", "auc": auc, "ci_low": lo, "ci_high": hi},
                     {"attribute": attr, "predictor": "shuffled labels",
                      "auc": float(shuffled.mean()) if len(shuffled) else np.nan, "ci_low": s_lo, "ci_high": s_hi},
                     {"attribute": attr, "predictor": "majority", "auc": 0.5, "ci_low": None, "ci_high": None}]
            if c.minimise:
                if full_groups is None:
                    full_groups = user_group_table(ds.users, inputs.train_counts, attributes)
                self._minimised(inputs, attr, full_groups[attr].to_numpy(), keep, codes, names, proba, boot_rows,
                                base_ndcg, embeddings, seed, estimates, row, warnings, MISSING_GROUP)
            rows.append(row)
        evidence = {"by_attribute": pd.DataFrame(rows)}
        plots = []
        if bars:
            evidence["auc_by_predictor"] = pd.DataFrame(bars)
            plots.append(Plot("bar", "auc_by_predictor", "attribute", "auc", "attribute inference AUC vs baselines",
                              series="predictor", ci_low="ci_low", ci_high="ci_high", y_label="ROC-AUC"))
        measured = [(r["attribute"], r["auc"]) for r in rows if "auc" in r]
        summary = f"{what}: " + (", ".join(f"{a} AUC {v:.3f}" for a, v in measured) if measured
                                 else "no attribute could be measured")
        return self._result(estimates, evidence=evidence, plots=tuple(plots), warnings=tuple(warnings),
                            summary=summary, settings={"attributes": attributes,
                                                       "features": "embeddings" if embeddings else f"top-{k}"})

    def _minimised(self, inputs, attr, all_labels, keep, codes, names, proba, boot_rows, base_ndcg, embeddings, seed,
                   estimates, row, warnings, missing_group):
        from trustrec.eval import hits_matrix, ndcg
        from trustrec.eval._evaluator import _unique_counts
        from trustrec.mitigate._privacy import minimise_history, revealing_items, sensitive_mask

        c = self.config
        ds, model, queries = inputs.dataset, inputs.model, inputs.queries
        if c.sensitive_items is not None:
            mask = sensitive_mask(ds, list(c.sensitive_items), f"{self.name}: sensitive_items")
            how = f"{int(mask.sum())} given sensitive items"
        else:
            labels = np.where(all_labels == missing_group, None, all_labels)
            mask = sensitive_mask(ds, revealing_items(inputs.split.train, labels, ds.n_items, c.n_sensitive))
            how = f"the {int(mask.sum())} items most revealing of {attr} (chi-square on training data)"
        try:
            m_model, m_queries = minimise_history(model, queries, mask, c.minimise, items=ds.items)
        except ConfigError as exc:
            msg = f"history minimisation not applied: {exc}"
            if msg not in warnings:
                warnings.append(msg)
            return
        removed = mask[queries.histories.values].mean() if len(queries.histories.values) else 0.0
        top = None if embeddings else _recommend(m_model, m_queries, c.k, c.batch_size)
        feats, dense = self._features(m_model, m_queries, top, embeddings)
        proba_m = _cv_proba(feats[keep], codes, len(names), c.n_folds, c.C, seed, dense)
        auc_m = float(macro_ovr_auc(proba_m, codes)[0])
        label = f"{attr}, minimised"
        lo = hi = None
        d_lo = d_hi = None
        if boot_rows is not None:
            b_m = macro_ovr_auc(proba_m, codes, boot_rows)
            lo, hi = percentile_ci(b_m)
            d_lo, d_hi = percentile_ci(macro_ovr_auc(proba, codes, boot_rows) - b_m)
        what = f"{c.minimise} {how} ({removed:.1%} of history items)"
        estimates[f"auc [{label}]"] = Estimate(auc_m, lo, hi, len(keep),
                                               description=f"attribute-inference AUC after history minimisation: {what}")
        estimates[f"auc_drop [{label}]"] = Estimate(
            row["auc"] - auc_m, d_lo, d_hi, len(keep),
            description=f"AUC before minus after minimisation (paired bootstrap); {what}")
        if top is None:
            top = _recommend(m_model, m_queries, c.k, c.batch_size)
        after = ndcg(hits_matrix(top, inputs.eval_set.targets, ds.n_items), _unique_counts(inputs.eval_set.targets))
        estimates[f"ndcg@{c.k}_cost [{label}]"] = paired_estimate(
            base_ndcg, after, n_boot=c.n_boot, seed=seed + 5,
            description=f"NDCG@{c.k} with full histories minus with minimised ones (accuracy cost); {what}")
        row.update(auc_minimised=auc_m, history_share_removed=float(removed), n_sensitive_items=int(mask.sum()),
                   ndcg_cost=float(np.nanmean(base_ndcg - after)))


# -- unlearning ------------------------------------------------------------------------------------
class UnlearningConfig(AuditConfig):
    """``forget_users``: raw user ids to forget (``None``: a seeded ``forget_share`` of the users
    with at least 2 training interactions); ``heldout_share``: users never trained on (the
    non-members of the attack on the forgotten users); ``steps``, ``learning_rate`` (``None``:
    a tenth of the model's), ``retain_weight``, ``unlearn_batch_size``: the approximate method
    (gradient ascent with a retain term, bounded by the held-out users' mean training loss);
    ``positions``: next-item predictions per user in the attack's loss; ``max_users``: retained
    users evaluated (seeded sample); ``model_spec``: what to train."""

    model_spec: ModelSpecField = None
    forget_users: tuple[str, ...] | None = None
    forget_share: float = Field(0.05, gt=0, lt=1)
    heldout_share: float = Field(0.2, gt=0, lt=1)
    steps: PositiveInt = 10
    learning_rate: PositiveFloat | None = None
    retain_weight: NonNegativeFloat = 1.0
    unlearn_batch_size: PositiveInt = 32
    positions: PositiveInt = 10
    batch_size: PositiveInt = 256

    @field_validator("forget_users")
    @classmethod
    def _check_users(cls, values):
        if values is not None and not values:
            raise ValueError("forget_users is empty; give raw user ids or leave it unset (forget_share)")
        return None if values is None else tuple(str(v) for v in dict.fromkeys(values))


@register_audit
class UnlearningAudit(RetrainingAudit):
    """Exact vs approximate unlearning of a forget set, verified (module docstring)."""

    name: ClassVar[str] = "unlearning"
    dimension: ClassVar[str] = "privacy"
    description: ClassVar[str] = ("forget requests: exact retraining vs approximate gradient-ascent unlearning; "
                                  "membership AUC on the forgotten users, accuracy on retained users, JS / L2 "
                                  "distance of outputs to the retrained model, time saved")
    needs: ClassVar[str] = ("a model that can be retrained from its spec and has full-catalog scores; approximate "
                            "unlearning needs a torch model with a per-sequence loss (sasrec, bpr_mf)")
    config_class = UnlearningConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        if "score" not in getattr(inputs.model, "capabilities", ()):
            return f"{type(inputs.model).__name__} has no full-catalog scores to compare output distributions"
        if (inputs.train_counts >= 2).sum() < 6:
            return "fewer than 6 users with at least 2 training interactions"
        return None

    def _partition(self, inputs: AuditInputs, rng):
        from trustrec.mitigate._unlearning import resolve_users

        c = self.config
        ds = inputs.dataset
        counts = inputs.train_counts
        eligible = np.flatnonzero(counts >= 2)
        if c.forget_users is not None:
            forget = resolve_users(ds, list(c.forget_users), owner=f"{self.name}: forget_users")
            no_data = forget[counts[forget] == 0]
            if len(no_data) == len(forget):
                raise ConfigError(f"{self.name}: none of the forget_users has training interactions "
                                  f"(e.g. {ds.user_ids[no_data[:5]].tolist()}); nothing to forget")
            pool = np.setdiff1d(eligible, forget)
            if len(pool) < 3:
                raise ConfigError(f"{self.name}: forgetting {len(forget)} users leaves {len(pool)} users with at "
                                  "least 2 training interactions; at least 3 are needed (held out and retained)")
            n_held = min(max(2, round(c.heldout_share * len(eligible))), len(pool) - 1)
            heldout = np.sort(rng.choice(pool, n_held, replace=False))
        else:
            n_held = max(2, round(c.heldout_share * len(eligible)))
            perm = rng.permutation(eligible)
            heldout = np.sort(perm[:n_held])
            n_forget = min(max(2, round(c.forget_share * len(eligible))), len(perm) - n_held - 1)
            forget = np.sort(perm[n_held:n_held + n_forget])
        retained = np.setdiff1d(np.flatnonzero(counts > 0), np.concatenate([forget, heldout]))
        return forget, heldout, retained

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.mitigate._unlearning import forget as forget_users
        from trustrec.mitigate._unlearning import remove_users

        c = self.config
        k = c.k
        split, ds = inputs.split, inputs.dataset
        spec = self._spec(inputs.model)
        rng = np.random.default_rng(c.seed)
        forget, heldout, retained = self._partition(inputs, rng)
        base = remove_users(split, heldout)
        original, t_orig = fit_spec(spec, base, seed=c.seed, progress=inputs.progress)
        exact = forget_users(original, base, forget, by="index", method="exact", seed=c.seed)
        models = {"original": original, "exact": exact}
        seconds = {"original_fit": t_orig, "exact": exact.unlearning_["seconds"]}
        warnings: list[str] = []
        seqs = split.train.by_user(ds.n_users)
        trace = None
        bound = None
        if hasattr(original, "can_unlearn") and original.can_unlearn():
            import torch

            with torch.no_grad():
                held = heldout[:512]
                bound = float(np.nanmean(original._sequence_losses(seqs.take(held), held,
                                                                   np.random.default_rng(c.seed)).numpy()))
            approx = forget_users(original, base, forget, by="index", method="gradient_ascent", seed=c.seed,
                                  steps=c.steps, learning_rate=c.learning_rate, retain_weight=c.retain_weight,
                                  batch_size=c.unlearn_batch_size, max_forget_loss=bound)
            models["approximate"] = approx
            seconds["approximate"] = approx.unlearning_["seconds"]
            trace = pd.DataFrame({"step": np.arange(1, len(approx.unlearning_["forget_loss"]) + 1),
                                  "forget_loss": approx.unlearning_["forget_loss"],
                                  "retain_loss": approx.unlearning_["retain_loss"]})
        else:
            warnings.append(f"{type(original).__name__} has no approximate unlearning; only exact retraining is "
                            "measured")
        estimates: dict[str, Estimate] = {}
        # membership inference on the forgotten users against the held-out users
        att_f, att_h = forget, _sample(heldout, max(len(forget) * 4, 200), np.random.default_rng(c.seed + 1))
        hist = seqs.take(np.concatenate([att_f, att_h]))
        labels = np.r_[np.ones(len(att_f), bool), np.zeros(len(att_h), bool)]
        losses = {name: next_item_losses(m, hist, positions=c.positions, batch_size=c.batch_size)[0]
                  for name, m in models.items()}
        ok = np.all([~np.isnan(v) for v in losses.values()], axis=0)
        y = labels[ok]
        rows = stratified_bootstrap_rows(y, c.n_boot, c.seed) if c.n_boot > 0 and y.any() and (~y).any() else None
        boots, table = {}, []
        for name, loss in losses.items():
            s = -loss[ok]
            auc = roc_auc(s, y)
            boots[name] = auc_rows(s[rows], y[rows]) if rows is not None else np.empty(0)
            lo, hi = percentile_ci(boots[name])
            estimates[f"forget_mia_auc [{name}]"] = Estimate(
                auc, lo, hi, len(y),
                description=f"loss-attack ROC-AUC of the {int(y.sum())} forgotten users vs {int((~y).sum())} never-seen "
                            f"users under the {name} model (0.5: indistinguishable from never seen)")
            table.append({"model": name, "forget_mia_auc": auc, "auc_ci_low": lo, "auc_ci_high": hi})
        if "approximate" in boots and len(boots["approximate"]):
            lo, hi = percentile_ci(boots["approximate"] - boots["exact"])
            estimates["forget_mia_auc_gap [approximate - exact]"] = Estimate(
                estimates["forget_mia_auc [approximate]"].value - estimates["forget_mia_auc [exact]"].value, lo, hi,
                len(y), description="forgotten users' membership AUC, approximate minus exact (paired bootstrap)")
        # accuracy on retained users
        ev = inputs.eval_set
        kept_rows = np.flatnonzero(np.isin(ev.queries.users, retained))
        ndcgs = {name: _ndcg(m, ev[kept_rows], k, c.batch_size) for name, m in models.items()}
        for name, values in ndcgs.items():
            estimates[f"ndcg@{k} [retained, {name}]"] = mean_estimate(
                values, n_boot=c.n_boot, seed=c.seed + 5,
                description=f"NDCG@{k} of the {name} model on retained users' '{inputs.part}' targets")
        if "approximate" in ndcgs:
            estimates[f"ndcg@{k}_gap [approximate - exact]"] = paired_estimate(
                ndcgs["approximate"], ndcgs["exact"], n_boot=c.n_boot, seed=c.seed + 6,
                description=f"NDCG@{k} on retained users, approximate minus exact (per user)")
        # distances of the output distributions to the exact retrain
        dist_rows = []
        groups = {"forgotten": np.flatnonzero(np.isin(ev.queries.users, forget)), "retained": kept_rows}
        for group, grows in groups.items():
            if not len(grows):
                continue
            q = ev.queries[grows]
            mask = q.seen_mask(ds.n_items)
            ref = _softmax_rows(exact.score(q), mask)
            for name in [n for n in models if n != "exact"]:
                p = _softmax_rows(models[name].score(q), mask)
                js = js_divergence(p, ref)
                l2 = np.sqrt(np.nansum((p - ref) ** 2, axis=1))
                for metric, values in (("js_divergence", js), ("l2_distance", l2)):
                    estimates[f"{metric} [{name} vs exact, {group}]"] = mean_estimate(
                        values, n_boot=c.n_boot, seed=c.seed + 9,
                        description="mean per-user "
                        f"{'Jensen-Shannon divergence (base 2)' if metric == 'js_divergence' else 'L2 distance'}"
                        f" between the {name} and the exact model's output distributions (softmax of the scores "
                        f"over unseen items), {group} users")
                dist_rows.append({"model": name, "group": group, "n_users": len(grows),
                                  "js_divergence": float(np.nanmean(js)), "l2_distance": float(np.nanmean(l2))})
        for row in table:
            row[f"ndcg@{k}"] = float(np.nanmean(ndcgs[row["model"]])) if len(ndcgs[row["model"]]) else np.nan
            row["seconds"] = seconds.get("original_fit" if row["model"] == "original" else row["model"])
        evidence = {"models": pd.DataFrame(table), "distances": pd.DataFrame(dist_rows),
                    "per_user": pd.DataFrame({"user": np.concatenate([att_f, att_h]),
                                              "group": np.where(labels, "forgotten", "never seen"),
                                              **{f"loss_{n}": v for n, v in losses.items()}})}
        plots = [Plot("bar", "models", "model", "forget_mia_auc", "membership AUC of the forgotten users",
                      ci_low="auc_ci_low", ci_high="auc_ci_high", y_label="ROC-AUC (0.5 = forgotten)")]
        if trace is not None:
            evidence["unlearning_trace"] = trace
            plots.append(Plot("line", "unlearning_trace", "step", "forget_loss", "forget-set loss during gradient ascent",
                              x_label="step", y_label="mean training loss of the forgotten users"))
        speedup = seconds["exact"] / seconds["approximate"] if "approximate" in seconds else None
        summary = (f"{spec.name}: forgot {len(forget)} users ({len(retained)} retained, {len(heldout)} held out); "
                   f"forget-set membership AUC original {estimates['forget_mia_auc [original]'].value:.3f}, "
                   f"exact {estimates['forget_mia_auc [exact]'].value:.3f}")
        if "approximate" in models:
            summary += (f", approximate {estimates['forget_mia_auc [approximate]'].value:.3f}; approximate is "
                        f"{speedup:.1f}x faster than retraining")
        return self._result(estimates, evidence=evidence, plots=tuple(plots), warnings=tuple(warnings),
                            summary=summary,
                            settings={"model_spec": spec.model_dump(mode="json"), "n_forget": len(forget),
                                      "n_heldout": len(heldout), "n_retained": len(retained),
                                      "forget_loss_bound": bound, "seconds": seconds, "speedup": speedup,
                                      "approximate": None if "approximate" not in models else
                                      {k_: v for k_, v in models["approximate"].unlearning_.items()
                                       if k_ not in ("forget_loss", "retain_loss", "seconds")}})
