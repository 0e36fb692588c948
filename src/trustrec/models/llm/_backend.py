"""The local transformers backend (:class:`LocalBackend`); the interface every backend
implements is :class:`LLMBackend` (``_backend_base``), re-exported here.

LLM backends: one small interface for scoring continuations and generating text.

Every model call in trustrec (LLM rankers, generative recommenders, user simulators, audits)
goes through an :class:`LLMBackend`, so it can be routed to a local transformers model
(:class:`LocalBackend`) or to an OpenAI-compatible endpoint (:class:`~trustrec.models.llm.OpenAIBackend`)
without changing the caller. Every backend scores continuations, generates and samples
(``sample``: ``n`` seeded completions per prompt); beam search, trie-constrained beam search and
trie-constrained sampling need the model's logits, so only :class:`LocalBackend` has them (other
backends raise a :class:`~trustrec.errors.ConfigError` that says so).

The base class validates inputs once for every backend:

- an empty prompt list gives an empty result (no model is loaded);
- ``prompts`` and ``continuations`` of different lengths raise ``ValueError`` naming both;
- an empty continuation scores log-probability 0 over 0 tokens (its mean is 0 too).

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import PositiveInt

from trustrec._config import Config, validate_config
from trustrec.errors import ConfigError
from trustrec.models.llm._backend_base import ContextLengthError, LLMBackend, _check_strings
from trustrec.models.llm._kv_cache import cache_kwargs, forward_after_prefix, output_cache

if TYPE_CHECKING:
    from trustrec.models.llm._trie import TitleTrie

__all__ = ["ContextLengthError", "LLMBackend", "LocalBackend", "LocalBackendConfig"]


def _sum_logprobs(logits, ids, rows: np.ndarray, cols: np.ndarray, n_rows: int, offset: int = 0) -> np.ndarray:
    """Per row, the summed log-probability of tokens ``ids[rows, cols]`` under the logits one
    position earlier (``logits`` start at position ``offset``); the softmax runs over those
    positions only, not the whole batch."""
    import torch

    r = torch.from_numpy(rows).to(ids.device)
    c = torch.from_numpy(cols).to(ids.device)
    lp = torch.log_softmax(logits[r, c - 1 - offset].float(), dim=-1).gather(-1, ids[r, c].unsqueeze(-1)).squeeze(-1)
    return np.bincount(rows, weights=lp.double().cpu().numpy(), minlength=n_rows)


def _shared_stems(contexts: list[tuple[int, ...]], min_stem: int) -> list[tuple[int, list[tuple[int, ...]]]]:
    """Distinct token contexts grouped by a shared leading stem: ``(stem length, contexts)`` per
    group, ``0`` for a context that shares none worth running once. Sorted contexts are walked in
    order; one joins the current group while the tokens saved (stem x (members - 1)) do not shrink
    and the stem stays at least ``min_stem`` long. Each context keeps at least one token of its own
    (the one whose logits predict its continuations)."""
    out: list[tuple[int, list[tuple[int, ...]]]] = []
    members: list[tuple[int, ...]] = []
    stem = 0
    for ctx in sorted(contexts):
        if members:
            prev = members[-1]
            n = min(len(prev), len(ctx))
            diff = np.flatnonzero(np.asarray(prev[:n]) != np.asarray(ctx[:n]))
            shared = int(diff[0]) if len(diff) else n
            joined = min(stem if len(members) > 1 else len(prev) - 1, shared, len(ctx) - 1)
            if joined >= min_stem and joined * len(members) >= stem * (len(members) - 1):
                members.append(ctx)
                stem = joined
                continue
            out.append((stem if len(members) > 1 else 0, members))
        members, stem = [ctx], 0
    if members:
        out.append((stem if len(members) > 1 else 0, members))
    return out


# -- local transformers backend ---------------------------------------------------------------
class LocalBackendConfig(Config):
    """Settings of :class:`LocalBackend`.

    ``max_length``: context window in tokens (default: the model's ``max_position_embeddings``).
    ``truncation``: what to do when a prompt does not fit: ``"left"`` drops the prompt's oldest
    (leftmost) tokens (when scoring, as many as its longest continuation needs, so all its
    continuations are scored on the same context), ``"error"`` raises :class:`ContextLengthError`. A continuation is never
    truncated: one longer than ``max_length - 1`` tokens always raises.
    ``prefix_cache``: when one prompt has several continuations (an LLM ranker scoring its
    candidates), run the prompt once and score its continuations in batches on copies of its KV
    cache, instead of re-reading the prompt for every continuation. Same log-probabilities (up
    to float rounding); much faster when prompts are long and continuations short. With it,
    prompts of one call that have several continuations each and share a token prefix of at
    least ``min_shared_prefix`` tokens (the same user's history under several candidate orders,
    or edited histories that agree up to the edit) run that stem once too, and each prompt only
    its own remainder on a copy of it. Prompts with a single continuation are read in full, in
    batches.

    Parameters
    ----------
    model_name_or_path : str
        A registered model name (``trustrec models list``) or a checkpoint folder; loaded with
        :func:`~trustrec.models.llm.load_causal_lm` on first use.
    dtype : {"float32", "float16", "bfloat16"}
        Dtype the weights are loaded in (default ``"float32"``).
    device : str
        Device the model runs on (default ``"cpu"``).
    batch_size : int
        Sequences per forward pass: (prompt, continuation) pairs when scoring, prompts when
        generating (default 8).
    max_length : int or None
        Context window in tokens (default None: the model's ``max_position_embeddings``).
    truncation : {"left", "error"}
        What to do when a prompt does not fit: drop its oldest tokens, or raise
        :class:`ContextLengthError` (default ``"left"``).
    prefix_cache : bool
        Whether a prompt with several continuations is run once and its continuations scored on
        copies of its KV cache (default True).
    min_shared_prefix : int
        With ``prefix_cache``: shortest shared token prefix, in tokens, that prompts of one call
        run once as a common stem (default 32).
    """

    model_name_or_path: str
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = "cpu"
    batch_size: PositiveInt = 8
    max_length: PositiveInt | None = None
    truncation: Literal["left", "error"] = "left"
    prefix_cache: bool = True
    min_shared_prefix: PositiveInt = 32


class BeamStepRecorder:
    """A logits processor that records, per prompt and generated prefix, the log-probabilities
    of the tokens beam search can pick next (HF's beam search picks from the ``2 * num_beams``
    best of each beam), so a finished sequence's summed log-probability is read back without
    keeping the full-vocabulary scores of every step. Rows are ``prompt * num_beams + beam``,
    in the input and in the returned sequences alike (``num_return_sequences == num_beams``)."""

    def __init__(self, prompt_length: int, num_beams: int):
        self.prompt_length, self.num_beams = prompt_length, num_beams
        self.steps: dict[tuple[int, ...], dict[int, float]] = {}

    def __call__(self, input_ids, scores):
        import torch

        values, tokens = torch.topk(scores.float(), min(2 * self.num_beams, scores.shape[-1]), dim=-1)
        generated = input_ids[:, self.prompt_length :].tolist()
        for row, (prefix, toks, vals) in enumerate(zip(generated, tokens.tolist(), values.tolist())):
            self.steps.setdefault((row // self.num_beams, *prefix), dict(zip(toks, vals)))
        return scores

    def sequence_scores(self, sequences, eos_id: int | None, pad_id: int) -> np.ndarray:
        """The summed log-probability of each generated sequence (up to and including eos)."""
        out = np.zeros(len(sequences), np.float64)
        for row, seq in enumerate(sequences.tolist()):
            prompt = row // self.num_beams
            for t, token in enumerate(seq):
                step = self.steps.get((prompt, *seq[:t]))
                if step is None or token not in step:
                    if token == pad_id and t > 0 and seq[t - 1] in (eos_id, pad_id):
                        break  # padding after a finished answer
                    raise RuntimeError(f"beam step {t}: token {token} was not among the recorded candidates")
                out[row] += step[token]
                if token == eos_id:
                    break
        return out


class LocalBackend(LLMBackend):
    """A local transformers causal LM (loaded with :func:`trustrec.models.llm.load_causal_lm`).

    The model is loaded on first use. Scoring runs one forward pass per batch of ``batch_size``
    (prompt, continuation) pairs, right-padded with attention masks (pairs sorted by length, so
    little padding); generation left-pads prompts and uses the KV cache. Prompt and continuation
    are tokenized separately and concatenated (no special tokens added), so the continuation's
    tokens are exactly ``tokenizer(continuation)``; an empty prompt is replaced by the
    tokenizer's BOS token (EOS if it has none), so the first continuation token has a context.

    >>> backend = LocalBackend("tiny-smollm2-random", batch_size=16)  # doctest: +SKIP
    >>> backend.score_continuations(["I like"], [[" cats", " dogs"]])  # doctest: +SKIP

    Parameters
    ----------
    model_name_or_path : str, path-like or None
        A registered model name or a checkpoint folder; required unless ``config`` is given.
    config : LocalBackendConfig, mapping or None
        All settings at once (see :class:`LocalBackendConfig`); not together with
        ``model_name_or_path`` or keywords.
    **kwargs
        The other :class:`LocalBackendConfig` fields as keywords.

    Raises
    ------
    ConfigError
        When both ``config`` and arguments are given, neither is, or a setting is invalid.
    """

    config: LocalBackendConfig

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        *,
        config: LocalBackendConfig | Mapping | None = None,
        **kwargs: Any,
    ):
        if config is not None and (model_name_or_path is not None or kwargs):
            raise ConfigError("LocalBackend: pass either config or keyword arguments, not both")
        if config is None:
            if model_name_or_path is None:
                raise ConfigError(
                    "LocalBackend: model_name_or_path is required (a registered name, "
                    "see `trustrec models list`, or a checkpoint folder)"
                )
            config = {"model_name_or_path": os.fspath(model_name_or_path), **kwargs}
        validated = validate_config(LocalBackendConfig, config, "LocalBackend")
        assert isinstance(validated, LocalBackendConfig)  # validate_config returns an instance of its class
        self.config = validated
        self._model = None
        self._tokenizer = None

    def __repr__(self) -> str:
        return f"LocalBackend({self.config.model_dump_json()})"

    @classmethod
    def from_model(cls, model, tokenizer, **kwargs) -> LocalBackend:
        """A backend over an already loaded ``model`` and ``tokenizer`` (e.g. a fine-tuned one;
        nothing is loaded or copied), on the model's device."""
        name = str(
            getattr(model, "name_or_path", "")
            or getattr(getattr(model, "config", None), "_name_or_path", "")
            or "in-memory"
        )
        device = str(next(model.parameters()).device)
        backend = cls(name, **{"device": device, **kwargs})
        backend._model, backend._tokenizer = model, tokenizer
        return backend

    # -- lazy loading ------------------------------------------------------------------------
    def _load(self) -> None:
        if self._model is None:
            from trustrec.models.llm._loading import load_causal_lm

            model, tokenizer = load_causal_lm(
                self.config.model_name_or_path, dtype=self.config.dtype, device=self.config.device
            )
            self._model, self._tokenizer = model, tokenizer

    @property
    def model(self):
        self._load()
        return self._model

    @property
    def tokenizer(self):
        self._load()
        return self._tokenizer

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    @property
    def max_length(self) -> int:
        if self.config.max_length is not None:
            return self.config.max_length
        n = getattr(self.model.config, "max_position_embeddings", None)
        return int(n) if n else 2048

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0  # pragma: no cover

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            raise ConfigError(
                f"LocalBackend: the tokenizer of {self.config.model_name_or_path!r} has no chat "
                "template; build the prompt as plain text instead"
            )
        return tok.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _context_ids(self, ids: list[int]) -> list[int]:
        if ids:
            return ids
        tok = self.tokenizer
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if start is None:
            raise ConfigError("LocalBackend: an empty prompt needs a BOS or EOS token, and the tokenizer has neither")
        return [int(start)]

    # -- scoring -----------------------------------------------------------------------------
    def _score_pairs(self, prompts: list[str], continuations: list[str]):
        limit = self.max_length
        unique_prompts = list(dict.fromkeys(prompts))
        prompt_ids = dict(zip(unique_prompts, self._encode(unique_prompts)))
        cont_ids = self._encode(continuations)
        longest: dict[str, int] = {}
        for k, (p, c) in enumerate(zip(prompts, cont_ids)):
            if len(c) + 1 > limit:
                raise ContextLengthError(
                    f"LocalBackend.score_continuations: continuation {continuations[k][:60]!r} has {len(c)} "
                    f"tokens; with at least one prompt token it does not fit max_length={limit}"
                )
            longest[p] = max(longest.get(p, 0), len(c))
        for p, ids in prompt_ids.items():
            ctx = self._context_ids(ids)
            if len(ctx) + longest[p] > limit:  # one cut per prompt: its continuations share the context
                if self.config.truncation == "error":
                    raise ContextLengthError(
                        f"LocalBackend.score_continuations: prompt ({len(ctx)} tokens) + continuation "
                        f"({longest[p]} tokens) exceed max_length={limit}; shorten the prompt or use "
                        "truncation='left'"
                    )
                ctx = ctx[len(ctx) + longest[p] - limit :]
            prompt_ids[p] = ctx
        contexts = [prompt_ids[p] for p in prompts]
        out = np.zeros(len(prompts), dtype=np.float64)
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, ctx in enumerate(contexts):
            groups.setdefault(tuple(ctx), []).append(k)
        single = []
        if self.config.prefix_cache:
            # a context with one continuation is read in full, in batches: on a CPU that beats running
            # its own remainder alone on a stem (measured in benchmarks/llm_shared_stems.py)
            shared = [ctx for ctx, rows in groups.items() if len(rows) > 1]
            single = [k for rows in groups.values() if len(rows) == 1 for k in rows]
            for stem, members in _shared_stems(shared, self.config.min_shared_prefix):
                if stem == 0:
                    rows = groups[members[0]]
                    out[rows] = self._score_shared_prefix(list(members[0]), [cont_ids[k] for k in rows])
                    continue
                stem_cache = self._prefill(list(members[0][:stem]))
                for member in members:
                    rows = groups[member]
                    out[rows] = self._score_shared_prefix(
                        list(member), [cont_ids[k] for k in rows], stem=(stem, stem_cache)
                    )
        else:
            single = list(range(len(prompts)))
        if single:
            out[single] = self._score_full(
                [contexts[k] + cont_ids[k] for k in single], [len(cont_ids[k]) for k in single]
            )
        return out, [len(c) for c in cont_ids]

    def _score_full(self, seqs: list[list[int]], n_cont: list[int]) -> np.ndarray:
        """Continuation log-probabilities, each sequence (prompt + continuation) read in full."""
        import torch

        order = np.argsort([-len(s) for s in seqs], kind="stable")
        out = np.zeros(len(seqs), dtype=np.float64)
        model, device, pad = self.model, self.config.device, self.pad_token_id
        with torch.inference_mode():
            for start in range(0, len(order), self.config.batch_size):
                idx = order[start : start + self.config.batch_size]
                width = max(len(seqs[i]) for i in idx)
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):  # right padding: real tokens keep positions 0..len-1
                    ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
                    mask[r, : len(seqs[i])] = 1
                # token t is predicted at t - 1; only continuation tokens are scored, so the LM head
                # runs on the positions from the earliest continuation start on
                rows = np.repeat(np.arange(len(idx)), [n_cont[i] for i in idx])
                cols = np.concatenate([np.arange(len(seqs[i]) - n_cont[i], len(seqs[i])) for i in idx])
                first = int(cols.min()) - 1
                logits = model(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    use_cache=False,
                    logits_to_keep=width - first,
                ).logits
                out[idx] = _sum_logprobs(logits, ids.to(device), rows, cols, len(idx), offset=first)
        return out

    def _prefill(self, ids: list[int]):
        """The KV cache of ``ids`` (a stem several prompts start with)."""
        import torch

        with torch.inference_mode():
            return output_cache(
                self.model(input_ids=torch.tensor([ids], device=self.config.device), use_cache=True, logits_to_keep=1)
            )

    def _score_shared_prefix(self, context: list[int], conts: list[list[int]], stem=None) -> np.ndarray:
        """Log-probabilities of several continuations of ONE context: the context is run once and
        its KV cache copied for each batch of continuations (right padded, positions continuing
        after the context). ``stem``: ``(n, cache)``, the KV cache of the context's first ``n``
        tokens (shared with other contexts, left intact): only the rest of the context is run."""
        import copy

        import torch

        model, device, pad = self.model, self.config.device, self.pad_token_id
        n_ctx = len(context)
        out = np.zeros(len(conts), dtype=np.float64)
        order = np.argsort([-len(c) for c in conts], kind="stable")
        n_stem, stem_cache = stem if stem is not None else (0, None)
        with torch.inference_mode():
            if stem_cache is None:
                first = model(input_ids=torch.tensor([context], device=device), use_cache=True, logits_to_keep=1)
            else:
                first = model(
                    input_ids=torch.tensor([context[n_stem:]], device=device),
                    position_ids=torch.arange(n_stem, n_ctx, device=device)[None],
                    use_cache=True,
                    logits_to_keep=1,
                    **cache_kwargs(model, copy.deepcopy(stem_cache)),
                )
            prompt_cache = output_cache(first)
            first_lp = torch.log_softmax(first.logits[0, -1].float(), dim=-1).cpu()
            del first
            for start in range(0, len(order), self.config.batch_size):
                idx = order[start : start + self.config.batch_size]
                logits, ids, _ = forward_after_prefix(model, prompt_cache, n_ctx, [conts[i] for i in idx], pad)
                # token 0 is predicted by the context's last position, token t by continuation t - 1
                rows = np.repeat(np.arange(len(idx)), [len(conts[i]) - 1 for i in idx])
                cols = np.concatenate([np.arange(1, len(conts[i])) for i in idx])
                first = first_lp[[conts[i][0] for i in idx]].double().numpy()
                out[idx] = first + _sum_logprobs(logits, ids, rows, cols, len(idx))
        return out

    # -- generation --------------------------------------------------------------------------
    def _generate(
        self, prompts: list[str], max_new_tokens: int, *, temperature: float, top_p: float, seed: int
    ) -> list[str]:
        import torch

        limit = self.max_length
        if max_new_tokens >= limit:
            raise ContextLengthError(
                f"LocalBackend.generate: max_new_tokens={max_new_tokens} leaves no room for "
                f"the prompt in max_length={limit}"
            )
        room = limit - max_new_tokens
        encoded = []
        for k, ids in enumerate(self._encode(prompts)):
            ids = self._context_ids(ids)
            if len(ids) > room:
                if self.config.truncation == "error":
                    raise ContextLengthError(
                        f"LocalBackend.generate: prompts[{k}] has {len(ids)} tokens; with max_new_tokens="
                        f"{max_new_tokens} at most {room} fit max_length={limit}"
                    )
                ids = ids[len(ids) - room :]
            encoded.append(ids)
        model, tok, device, pad = self.model, self.tokenizer, self.config.device, self.pad_token_id
        sample = temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sample,
            "use_cache": True,
            "pad_token_id": pad,
            "num_beams": 1,
        }
        if tok.eos_token_id is not None:
            kwargs["eos_token_id"] = tok.eos_token_id
        if sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        texts: list[str] = [""] * len(encoded)
        with torch.inference_mode(), torch.random.fork_rng(devices=[] if device == "cpu" else None):
            torch.manual_seed(seed)
            for start in range(0, len(encoded), self.config.batch_size):
                batch = encoded[start : start + self.config.batch_size]
                width = max(len(x) for x in batch)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for r, x in enumerate(batch):  # left padding: every prompt ends at the last column
                    input_ids[r, width - len(x) :] = torch.tensor(x)
                    mask[r, width - len(x) :] = 1
                out = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)
                new = out[:, width:].cpu()
                for r in range(len(batch)):
                    row = new[r].tolist()
                    if tok.eos_token_id is not None and tok.eos_token_id in row:
                        row = row[: row.index(tok.eos_token_id)]
                    texts[start + r] = tok.decode(row, skip_special_tokens=True)
        return texts

    def beam_search(
        self, prompts: Sequence[str], num_beams: int, max_new_tokens: int, *, batch_size: int = 8
    ) -> list[list[tuple[str, float]]]:
        """Per prompt, ``num_beams`` beam-search completions (no sampling, ``length_penalty=0``,
        ``early_stopping="never"``) as ``(text, sequence log-probability)``, best first (ties
        keep beam order). Prompts are left padded in batches of ``batch_size`` and tokenized
        with the tokenizer's special tokens. One beam is greedy search (its score summed from
        the per-step scores)."""
        import torch

        owner = f"{type(self).__name__}.beam_search"
        prompts = _check_strings(prompts, "prompts", owner)
        if num_beams < 1 or max_new_tokens < 1 or batch_size < 1:
            raise ConfigError(f"{owner}: num_beams, max_new_tokens and batch_size must be >= 1")
        model, tok = self.model, self.tokenizer
        pad = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        device = next(model.parameters()).device
        texts: list[list[tuple[str, float]]] = []
        old_side = tok.padding_side
        tok.padding_side = "left"
        try:
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start : start + batch_size]
                enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=True)
                enc = {key: v.to(device) for key, v in enc.items()}
                # HF reports beam scores only with output_scores, which keeps a full-vocabulary copy
                # per step and beam (gigabytes over a long answer); the recorder keeps each step's
                # few candidate tokens and sums the chosen ones instead.
                recorder = BeamStepRecorder(enc["input_ids"].shape[1], num_beams)
                with torch.inference_mode():
                    out = model.generate(
                        **enc,
                        num_beams=num_beams,
                        num_return_sequences=num_beams,
                        do_sample=False,
                        max_new_tokens=max_new_tokens,
                        length_penalty=0.0,
                        early_stopping="never",
                        output_scores=num_beams == 1,
                        return_dict_in_generate=True,
                        pad_token_id=pad,
                        eos_token_id=tok.eos_token_id,
                        logits_processor=[recorder] if num_beams > 1 else None,
                    )
                new = out.sequences[:, enc["input_ids"].shape[1] :]
                decoded = tok.batch_decode(new, skip_special_tokens=True)
                if num_beams > 1:
                    seq_scores = recorder.sequence_scores(new, tok.eos_token_id, pad)
                else:  # greedy search reports per-step scores, not a sequence score
                    steps = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
                    kept = new != pad
                    seq_scores = torch.where(kept[:, : steps.shape[1]], steps, 0.0).sum(1).float().cpu().numpy()
                for b in range(len(chunk)):
                    row = [(decoded[b * num_beams + j], float(seq_scores[b * num_beams + j])) for j in range(num_beams)]
                    texts.append(sorted(row, key=lambda p: -p[1]))  # stable: ties keep beam order
        finally:
            tok.padding_side = old_side
        return texts

    def constrained_beam_search(
        self,
        prompts: Sequence[str],
        trie: TitleTrie,
        *,
        num_beams: int,
        top_k: int,
        batch_size: int = 8,
        exclude: np.ndarray | None = None,
        length_penalty: float = 0.0,
        assistant: np.ndarray | None = None,
        guidance: float = 1.0,
    ) -> list[list[tuple[int, float]]]:
        """Beam search of this model constrained to a title trie (see
        :func:`~trustrec.models.llm._constrained.constrained_beam_search`).

        Parameters
        ----------
        prompts : sequence of str
            The prompts.
        trie : TitleTrie
            Catalog titles in this backend's token ids.
        num_beams : int
            Beams per prompt.
        top_k : int
            Items returned per prompt, at most ``num_beams``.
        batch_size : int
            Prompts run together (default 8).
        exclude : numpy.ndarray or None
            ``(n_prompts, n_items)`` bool mask of items each prompt must not get (default None).
        length_penalty : float
            Exponent of the generated length (end marker included, prompt not counted) that
            divides a finished answer's score (default 0.0: summed log-probability, D3, arXiv
            2406.14900; 1.0: mean log-probability, BIGRec, arXiv 2308.08434).
        assistant : numpy.ndarray or None
            ``(n_prompts, n_items)`` non-negative item probabilities of D3's text-free assistant
            (e.g. a SASRec softmax; default None).
        guidance : float
            D3's LLM weight ``g`` in ``(0, 1]``: tokens score ``g * log p_LLM + (1 - g) * log
            p_assist`` (default 1.0: no assistant).

        Returns
        -------
        list of list of (int, float)
            Per prompt, up to ``top_k`` ``(item_index, score)`` pairs, best first.

        Raises
        ------
        ValueError
            On bad beam settings, a mis-shaped ``exclude`` / ``assistant``, a negative or
            non-finite ``assistant``, ``guidance`` outside ``(0, 1]`` or a non-finite
            ``length_penalty``.
        """
        from trustrec.models.llm._constrained import constrained_beam_search

        return constrained_beam_search(
            self.model,
            self.tokenizer,
            prompts,
            trie,
            num_beams=num_beams,
            top_k=top_k,
            batch_size=batch_size,
            exclude=exclude,
            length_penalty=length_penalty,
            assistant=assistant,
            guidance=guidance,
        )

    def sample_constrained(
        self,
        prompts: Sequence[str],
        trie: TitleTrie,
        n: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 8,
    ) -> list[list[tuple[list[int], int]]]:
        """Seeded sampling (``temperature``, nucleus ``top_p``; ``temperature=0`` is greedy)
        where every step may only take a token the trie allows after the tokens so far, up to
        the trie's end marker; same seed, prompts and batch size give the same samples.
        Prompts are left padded and tokenized with the tokenizer's special tokens."""

        owner = f"{type(self).__name__}.sample_constrained"
        prompts = _check_strings(prompts, "prompts", owner)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 or batch_size < 1:
            raise ConfigError(f"{owner}: n and batch_size must be positive integers; got {n!r}, {batch_size!r}")
        if not temperature >= 0 or not 0 < top_p <= 1:
            raise ConfigError(f"{owner}: temperature must be >= 0 and top_p in (0, 1]; got {temperature}, {top_p}")
        if not prompts or trie.n_sequences == 0:
            return [[] for _ in prompts]
        from trustrec.models.llm._constrained_sampling import constrained_sample

        return constrained_sample(
            self.model,
            self.tokenizer,
            prompts,
            trie,
            int(n),
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            batch_size=batch_size,
        )
