"""What several privacy audits share: the per-user loss and the accuracy of a model's top-K.

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
"""

from __future__ import annotations

import contextlib

import numpy as np

from trustrec.data import QueryBatch, Ragged
from trustrec.errors import ConfigError

__all__ = ["next_item_losses"]


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


def _recommend(model, queries: QueryBatch, k: int, batch_size: int) -> np.ndarray:
    parts = [model.recommend(b, k).items for b in queries.batches(batch_size)]
    return np.concatenate(parts) if parts else np.empty((0, k), np.int64)


def _ndcg(model, eval_set, k: int, batch_size: int) -> np.ndarray:
    from trustrec.eval import hits_matrix, ndcg
    from trustrec.eval import distinct_counts

    if not len(eval_set):
        return np.empty(0)
    top = _recommend(model, eval_set.queries, k, batch_size)
    return ndcg(hits_matrix(top, eval_set.targets, model.n_items_), distinct_counts(eval_set.targets))


def _sample(users: np.ndarray, n: int | None, rng) -> np.ndarray:
    if n is None or n >= len(users):
        return users
    return np.sort(rng.choice(users, n, replace=False))
