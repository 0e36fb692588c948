"""``GenerativeRecommender``: a causal LM fine-tuned to write the title of the next item.

Training examples: for each user's chronological training sequence ``s`` the last
``targets_per_user`` positions ``t >= 1`` give one example each (history ``s[:t]`` -> title of
``s[t]``); users with a single interaction give none. When there are more than
``max_train_examples`` examples, that many are sampled without replacement with the fit seed.
The prompt is :func:`build_prompt` (history cut to ``max_history_tokens``); the answer is the
item's title followed by the eos token. Supervised fine-tuning uses the causal-LM cross-entropy
on the ANSWER tokens only (labels are -100 on prompt and padding); :func:`causal_lm_loss` also
takes optional per-token weights (for CFT-style training later) and subclasses may add terms in
:meth:`GenerativeRecommender._extra_loss`. With ``lora`` only LoRA adapters (peft) are trained
and saved; otherwise every weight is fine-tuned and saved. With ``FitOptions.validator`` the
trainer scores the model every ``eval_every`` epochs, stops after ``patience`` checks without
improvement and restores the best epoch's trainable weights (``history_["valid"]``).

Recommending: ``decoding="constrained"`` runs :func:`constrained_beam_search` over a
:class:`TitleTrie` of the catalog (scores are sequence log-probabilities) with ``max(num_beams,
k)`` beams; seen items, and for a query with candidates every other item, are excluded inside
the search (branches left without allowed items are never entered), so no beam is spent on them. ``decoding="unconstrained"`` generates free text (beam
search, ``num_beams`` sequences) and grounds each text to a catalog item: exact match after
normalisation (case, whitespace), else by ``grounding``: ``"tfidf"`` (character 3-gram TF-IDF
nearest title, cosine >= ``min_similarity``) or ``"embedding"`` (``load_text_encoder(encoder)``
nearest title). :meth:`recommend_with_stats` also returns ``n_generated``, ``n_exact``,
``n_near_miss`` (grounded by the fallback) and ``n_out_of_catalog`` (matched nothing); its
``decoding`` argument overrides the configured decoding for one call. The two halves of the
unconstrained path are public for audits (``trustrec.audit`` ``hallucination``):
:meth:`GenerativeRecommender.generate_titles` (the raw beam texts, whatever the configured
decoding) and :meth:`GenerativeRecommender.grounder` (``text -> (item, "exact"|"near"|"none")``
for any grounding mode).

Training runs on :class:`trustrec.models.training.LLMTrainer` (causal-LM term plus
:meth:`GenerativeRecommender._extra_loss`) under the shared epoch loop; generation (beam search,
constrained beam search) goes through :attr:`GenerativeRecommender.backend`: the fitted LM as a
:class:`~trustrec.models.llm.LocalBackend`, or the backend given to
:meth:`GenerativeRecommender.use_backend`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec.data import Dataset, QueryBatch
from trustrec.errors import ConfigError, DataError
from trustrec.models._base import FitOptions, Recommender, exclusion_mask
from trustrec.models._registry import register_model
from trustrec.models._topk import TopK
from trustrec.models.llm._generative_config import GenerativeConfig, LoraConfig
from trustrec.models.llm._prompts import PromptCatalog, ReadsItemText
from trustrec.models.llm._text_grounding import GROUNDINGS, make_grounder, normalise_title
from trustrec.models.training.llm import LossTerm
from trustrec.models.training.objectives import IGNORE, causal_lm_loss, collate_examples

if TYPE_CHECKING:
    from trustrec.models.llm._backend import LLMBackend
    from trustrec.models.llm._grounding import HiddenStateGrounder
    from trustrec.models.llm._loading import TextEncoder
    from trustrec.models.llm._prompts import PromptResult

__all__ = ["GenerativeConfig", "GenerativeRecommender", "LoraConfig", "causal_lm_loss", "collate_examples"]


@register_model
class GenerativeRecommender(ReadsItemText, Recommender):
    """Fine-tuned causal LM that generates the next item's title (see the module docstring).

    Parameters
    ----------
    config : GenerativeConfig, mapping or None
        Hyper-parameters (see :class:`GenerativeConfig`); None: the defaults.
    **kwargs
        The same hyper-parameters as keywords (not together with ``config``).
    """

    name = "llm_generative"
    config_class = GenerativeConfig
    config: GenerativeConfig
    capabilities = frozenset(
        {
            "uses_history",
            "stochastic_training",
            "text",
            "attributes",
            "prompt",
            "answer_likelihood",
            "sequence_likelihood",
            "llm_backend",
        }
    )
    devices = ("cpu", "cuda", "mps")
    #: Fitted models that travel with this one (fitted on the same data, saved under their own
    #: prefix): attribute -> the config field holding the model's spec (None: not used).
    sub_models: ClassVar[dict[str, str]] = {"assistant_": "assistant"}
    assistant_: Recommender  # D3's assistant, when configured (set by fit or load)

    # -- fitting ------------------------------------------------------------------------------
    def _fit(self, train: Dataset, options: FitOptions) -> None:
        import torch

        from trustrec.models.training import LLMTrainer, early_stopping_from, progress_from

        c = self.config
        if options.threads:
            torch.set_num_threads(options.threads)
        torch.manual_seed(options.seed)
        rng = options.rng()
        self.catalog_ = PromptCatalog.from_items(train.items, self._template().item_fields).columns
        self._load_lm(options.device, options.progress)
        self.popularity_ = np.bincount(train.interactions.item, minlength=train.n_items).astype(np.float64)
        for attribute, field in self.sub_models.items():
            spec = getattr(c, field)
            if spec is not None:
                from trustrec.models import make_model

                sub_model = make_model(spec["name"], **dict(spec.get("params") or {}))
                sub_model.fit(train, FitOptions(seed=options.seed, device=options.device, progress=options.progress))
                setattr(self, attribute, sub_model)
        if c.epochs == 0:  # zero-shot: the base LM as it is
            self.history_ = {"loss": [], "n_examples": 0, "epochs_run": 0, "valid": [], "best_epoch": 0}
            return
        examples = self.training_examples(train, rng)
        if not examples:
            raise DataError(f"{type(self).__name__}.fit: no training example (every user has a single interaction)")
        n_steps = c.epochs * math.ceil(len(examples) / c.batch_size)
        autocast = c.autocast
        if autocast == "auto":
            autocast = "bfloat16" if self._bfloat16_is_fast() else "off"
        trainer = LLMTrainer(
            self.lm_,
            pad_id=self._pad_id(),
            losses=[*self._loss_terms(), _ExtraLoss(self)],
            learning_rate=c.learning_rate,
            batch_size=c.batch_size,
            autocast=None if autocast == "off" else autocast,
            length_bucketing=c.length_bucketing,
            warmup_steps=c.warmup_steps,
            total_steps=n_steps if c.warmup_steps else None,
        )

        validator = options.validator

        def score() -> float:  # called only with a validator (early_stopping_from)
            self.lm_.eval()
            assert validator is not None
            return validator(self)

        stopper = early_stopping_from(
            options,
            score,
            eval_last=True,
            snapshot=lambda: {k: v.detach().clone() for k, v in self._trainable_state().items()},
            restore=self._load_trainable_state,
        )
        bar = progress_from(
            options, type(self).__name__, unit="batch", steps_per_epoch=trainer.n_batches(len(examples)), leave=True
        )
        loop = trainer.fit(examples, rng, c.epochs, [stopper, bar, *self._callbacks(options)])
        self.lm_.eval()
        self.history_ = {
            "loss": loop.losses,
            "n_examples": len(examples),
            "epochs_run": loop.epochs_run,
            "valid": [{"epoch": e, "score": s} for e, s in stopper.scores] if stopper is not None else [],
            "best_epoch": (stopper.best_epoch if stopper is not None else 0) or loop.epochs_run,
            "autocast": autocast,
        }

    def _loss_terms(self) -> list:
        """Hook: the trainer's loss terms (besides :meth:`_extra_loss`); default the causal-LM
        loss on the answer tokens."""
        from trustrec.models.training.llm import CausalLMLoss

        return [CausalLMLoss()]

    def _callbacks(self, options: FitOptions) -> list:
        """Hook: extra :class:`~trustrec.models.training.Callback` objects for the epoch loop."""
        return []

    def _trainable_state(self) -> dict:
        """What training changes: the LoRA adapters, or every weight."""
        if self.config.lora is not None:
            from peft import get_peft_model_state_dict

            return get_peft_model_state_dict(self.lm_)
        return self.lm_.state_dict()

    def _load_trainable_state(self, state: dict) -> None:
        if self.config.lora is not None:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.lm_, state)
        else:
            self.lm_.load_state_dict(state, strict=False)

    def _training_loss(self, batch):
        """Causal-LM loss on the answer tokens (weighted when the batch has ``weights``) plus
        :meth:`_extra_loss`."""
        out = self.lm_(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss = causal_lm_loss(out.logits, batch["labels"], batch.get("weights"))
        extra = self._extra_loss(batch, out)
        return loss if extra is None else loss + extra

    def _extra_loss(self, batch, outputs):
        """Hook for subclasses: an extra loss term (a scalar tensor) or None."""
        return

    def training_examples(self, train: Dataset, rng: np.random.Generator) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, answer ids) per training example (:meth:`training_queries`)."""
        queries, targets = self.training_queries(train, rng)
        prompt_ids = self.tokenizer_(self._prompts(queries), add_special_tokens=True)["input_ids"]
        return [(list(p), a) for p, a in zip(prompt_ids, self._answer_ids(targets))]

    def training_queries(
        self, train: Dataset, rng: np.random.Generator, *, targets_per_user: int | None = -1, limit: int | None = -1
    ) -> tuple[QueryBatch, np.ndarray]:
        """The training examples as queries and their target items: the last ``targets_per_user``
        positions (all with None) of every user's sequence, history cut to ``max_history_items``,
        at most ``limit`` of them (sampled with ``rng``); -1 (the default) takes each from the
        config (``targets_per_user``, ``max_train_examples``)."""
        from trustrec.data import Ragged

        c = self.config
        per_user = c.targets_per_user if targets_per_user == -1 else targets_per_user
        limit = c.max_train_examples if limit == -1 else limit
        sequences = train.histories()
        lengths = sequences.lengths
        first = 1 if per_user is None else np.maximum(1, lengths - per_user)
        n_per_user = np.maximum(0, lengths - first)
        # Flat index of every (user, position) example, in user order.
        user = np.repeat(np.arange(len(lengths)), n_per_user)
        offsets = np.r_[0, np.cumsum(n_per_user)]
        position = np.repeat(np.broadcast_to(first, lengths.shape), n_per_user) + (
            np.arange(offsets[-1]) - np.repeat(offsets[:-1], n_per_user)
        )
        if limit is not None and len(user) > limit:
            keep = np.sort(rng.choice(len(user), limit, replace=False))
            user, position = user[keep], position[keep]
        start = sequences.indptr[user]
        history_len = position if c.max_history_items is None else np.minimum(position, c.max_history_items)
        hist_offsets = np.r_[0, np.cumsum(history_len)]
        flat = np.repeat(start + position - history_len - hist_offsets[:-1], history_len) + np.arange(hist_offsets[-1])
        queries = QueryBatch(user, Ragged(hist_offsets, sequences.values[flat]))
        return queries, sequences.values[start + position]

    def _answer_ids(self, items: np.ndarray) -> list[list[int]]:
        """Token ids of each item's answer text, eos appended."""
        answers = self.answers()
        eos = self.tokenizer_.eos_token_id
        ids = self.tokenizer_([answers[int(i)] for i in items], add_special_tokens=False)["input_ids"]
        return [[*list(a), eos] for a in ids]

    # -- model pieces -----------------------------------------------------------------------------
    def _template(self):
        from trustrec.models.llm._prompts import PromptTemplate

        return PromptTemplate.from_dict(self.config.template)

    def _prompt_template(self):
        return self._template()

    def _item_text_changed(self) -> None:
        from trustrec.models.llm._trie import TitleTrie

        self.trie_ = TitleTrie(self.answers(), self.tokenizer_)
        self.__dict__.pop("_hidden_grounder", None)

    def titles(self) -> list[str]:
        """Each item's answer text (what the model is trained to write): its cleaned title or the
        template's placeholder."""
        titles_only = self._template().model_copy(update={"item_fields": (), "injection_guard": "off"})
        return PromptCatalog(self.catalog_).texts(titles_only)

    def answers(self) -> list[str]:
        """Each item's answer text: its title in ``answer_format`` (empty for an item without one)."""
        fmt = self.config.answer_format
        return [fmt.replace("{title}", t) if t.strip() else "" for t in self.titles()]

    def read_answer(self, text: str) -> str:
        """The title a free text states, read through ``answer_format`` (its fixed prefix and
        suffix removed where present, surrounding whitespace dropped)."""
        prefix, _, suffix = self.config.answer_format.partition("{title}")
        text = str(text)
        if prefix.strip() and text.lstrip().startswith(prefix.strip()):
            text = text.lstrip()[len(prefix.strip()) :]
        if suffix.strip() and text.rstrip().endswith(suffix.strip()):
            text = text.rstrip()[: -len(suffix.strip())]
        return text.strip()

    @property
    def backend(self):
        """The :class:`~trustrec.models.llm.LLMBackend` generation runs through: the one given to
        :meth:`use_backend`, else the fitted LM as a :class:`~trustrec.models.llm.LocalBackend`.
        Constrained decoding and beam search need a local backend; any backend samples
        (:class:`~trustrec.models.training.RolloutSampler`)."""
        self._check_fitted()
        given = self.__dict__.get("_backend")
        if given is not None:
            return given
        from trustrec.models.llm._backend import LocalBackend

        return LocalBackend.from_model(self.lm_, self.tokenizer_)

    @property
    def tokenizer(self):
        """The fitted LM's tokenizer (with :attr:`backend`, the ``llm_backend`` capability)."""
        self._check_fitted()
        return self.tokenizer_

    def use_backend(self, backend: LLMBackend | None) -> GenerativeRecommender:
        """Route generation through ``backend`` (e.g. an OpenAI-compatible endpoint serving the
        fine-tuned model; None goes back to the local LM); returns ``self``. Not saved."""
        self._backend = backend
        return self

    def _pad_id(self) -> int:
        tok = self.tokenizer_
        return int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

    def _load_lm(self, device: str = "cpu", progress: bool = False) -> None:
        from trustrec.models.llm._loading import load_causal_lm
        from trustrec.models.llm._trie import TitleTrie

        model, tokenizer = load_causal_lm(self.config.model, device=device, progress=progress, dtype=self.config.dtype)
        if self.config.lora is not None:
            from peft import LoraConfig as PeftLoraConfig
            from peft import get_peft_model

            lc = self.config.lora
            model = get_peft_model(
                model,
                PeftLoraConfig(
                    r=lc.r,
                    lora_alpha=lc.alpha,  # type: ignore[arg-type]  # peft annotates int; a float scales the same
                    lora_dropout=lc.dropout,
                    target_modules=list(lc.target_modules),
                    task_type="CAUSAL_LM",
                ),
            )
        model.eval()
        self.lm_, self.tokenizer_ = model, tokenizer
        self.trie_ = TitleTrie(self.answers(), tokenizer)

    #: Settings that change how a fitted model decodes, not what it learned.
    DECODING_SETTINGS = frozenset(
        {
            "decoding",
            "length_penalty",
            "guidance",
            "grounding",
            "grounding_gamma",
            "grounding_beams",
            "num_beams",
            "max_new_tokens",
            "inference_batch_size",
            "min_similarity",
            "encoder",
        }
    )

    def cast(self, dtype: Literal["float32", "bfloat16", "auto"]) -> GenerativeRecommender:
        """Cast the fitted LM to ``dtype`` for inference and return ``self`` (bf16 decodes about
        1.7x faster than float32 on an AMX CPU, and is far slower on an AVX2-only one; scores
        differ by bf16 rounding, see ``benchmarks/bf16_cpu.py``). ``"auto"``: bf16 where
        :func:`~trustrec._device.bfloat16_is_fast` holds on the LM's device, else float32.
        Train in float32 (with bf16 autocast where it is fast) and cast afterwards."""
        import torch

        self._check_fitted()
        if dtype not in ("float32", "bfloat16", "auto"):
            raise ConfigError(
                f"{type(self).__name__}.cast: dtype must be 'float32', 'bfloat16' or 'auto', got {dtype!r}"
            )
        if dtype == "auto":
            dtype = "bfloat16" if self._bfloat16_is_fast() else "float32"
        self.lm_.to(getattr(torch, dtype))
        self.__dict__.pop("_hidden_grounder", None)
        return self

    def _bfloat16_is_fast(self) -> bool:
        """What the ``"auto"`` precision settings decide on the LM's device."""
        from trustrec._device import bfloat16_is_fast

        return bfloat16_is_fast(str(next(self.lm_.parameters()).device))

    def with_decoding(self, **settings: Any) -> GenerativeRecommender:
        """This fitted model decoding differently: a copy that shares the fitted LM, catalog and
        assistant, with decoding settings (:attr:`DECODING_SETTINGS`) changed, so decoding switches
        are compared on one fine-tuned model without training it again."""
        self._check_fitted()
        unknown = set(settings) - self.DECODING_SETTINGS
        if unknown:
            raise ConfigError(
                f"{type(self).__name__}.with_decoding: {sorted(unknown)} are not decoding settings; "
                f"valid: {sorted(self.DECODING_SETTINGS)}"
            )
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        config = self.validate_config({**self.config.model_dump(), **settings})
        assert isinstance(config, GenerativeConfig)
        copy.config = config
        return copy

    # -- recommending -------------------------------------------------------------------------------
    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        return self.recommend_with_stats(queries, k, exclude_seen=exclude_seen)[0]

    def recommend_with_stats(
        self,
        queries: QueryBatch,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        decoding: Literal["constrained", "unconstrained"] | None = None,
    ) -> tuple[TopK, dict[str, int]]:
        """:meth:`recommend` and counts of the decoding: ``n_generated``, ``n_exact``,
        ``n_near_miss``, ``n_out_of_catalog`` (all 0 but ``n_generated`` when constrained).
        ``decoding`` overrides the configured decoding for this call (audits compare both)."""
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        decoding = decoding or self.config.decoding
        if decoding not in ("constrained", "unconstrained"):
            raise ConfigError(
                f"{type(self).__name__}.recommend_with_stats: decoding must be 'constrained' or "
                f"'unconstrained', got {decoding!r}"
            )
        queries = self._prepare(queries)
        k = min(k, self.n_items_)
        mask = exclusion_mask(queries, self.n_items_, exclude_seen)
        items = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf)
        stats = {"n_generated": 0, "n_exact": 0, "n_near_miss": 0, "n_out_of_catalog": 0}
        if k == 0 or not len(queries):
            return TopK(items, scores), stats
        prompts = self._prompts(queries)
        if decoding == "constrained":
            ranked = self._constrained(queries, prompts, k, mask, stats)
        else:
            ranked = self._unconstrained(prompts, k, stats)
        for i, pairs in enumerate(ranked):
            kept, seen = [], set()
            for item, score in pairs:
                if item in seen or (mask is not None and mask[i, item]):
                    continue
                seen.add(item)
                kept.append((item, score))
                if len(kept) == k:
                    break
            for j, (item, score) in enumerate(kept):
                items[i, j], scores[i, j] = item, score
        return TopK(items, scores), stats

    def _prompts(self, queries: QueryBatch) -> list[str]:
        return [p.text for p in self._prompt_results(queries)]

    def _prompt_results(self, queries: QueryBatch) -> list:
        """The generation prompts, with how many (most recent) history items each one shows."""
        from trustrec.models.llm._prompts import build_prompts

        limit = self.config.max_history_items
        if limit is not None and len(queries) and queries.histories.lengths.max() > limit:
            queries = queries.with_histories(queries.histories.tails(limit))
        return build_prompts(
            queries,
            PromptCatalog(self.catalog_),
            self._template(),
            self.tokenizer_,
            max_history_tokens=self.config.max_history_tokens,
        )

    # -- answers (capabilities ``answer_likelihood`` and ``sequence_likelihood``) ---------------
    @property
    def answer_backend(self):
        """A backend over the fitted LM itself (never a fresh load), batched as inference is."""
        from trustrec.models.llm._backend import LocalBackend

        self._check_fitted()
        return LocalBackend.from_model(self.lm_, self.tokenizer_, batch_size=self.config.inference_batch_size)

    answers_from_candidates = False
    answer_reduction = "sum"

    def answer_candidates(self, queries: QueryBatch, n: int) -> np.ndarray:
        """Its own top ``n``: a generator answers freely, so its recommendations are what it chose."""
        return self.recommend(queries, n).items

    def answer_prompts(self, queries: QueryBatch, candidates: np.ndarray | None = None) -> list[PromptResult]:
        """The generation prompts (candidates are not listed: the model answers freely)."""
        return self._prompt_results(queries)

    def answer_texts(self, items: Sequence[int] | np.ndarray) -> list[str]:
        answers = self.answers()
        return [answers[int(i)] for i in items]

    @property
    def loss_positions(self) -> int:
        """How many trailing positions of each user's sequence fine-tuning trained on (every
        position when ``targets_per_user`` is None: a count longer than any sequence)."""
        n = self.config.targets_per_user
        return int(n) if n is not None else 2**31 - 1

    def answer_losses(self, queries: QueryBatch, targets: npt.ArrayLike, *, base: bool = False) -> np.ndarray:
        """Mean per-token cross-entropy of each target's answer (title + eos) given the prompt of
        its query: the fine-tuning loss, under the fine-tuned LM or (``base=True``) the untuned
        base LLM (LoRA adapters disabled, or the base checkpoint loaded again)."""
        self._check_fitted()
        targets = np.asarray(targets, np.int64)
        if len(targets) != len(queries):
            raise ValueError(f"{type(self).__name__}.answer_losses: {len(targets)} targets for {len(queries)} queries")
        with self._base_lm() if base else contextlib.nullcontext(self.lm_) as lm:
            return self._answer_losses(lm, queries, targets)

    @contextlib.contextmanager
    def _base_lm(self):
        if self.config.lora is not None:
            with self.lm_.disable_adapter():
                yield self.lm_
            return
        from trustrec.models.llm._loading import load_causal_lm

        device = str(next(self.lm_.parameters()).device)
        lm, _ = load_causal_lm(self.config.model, device=device, progress=False, dtype=self.config.dtype)
        lm.eval()
        yield lm

    def _answer_losses(self, lm, queries: QueryBatch, targets: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        out = np.full(len(targets), np.nan)
        tok = self.tokenizer_
        size = self.config.inference_batch_size
        device = next(lm.parameters()).device
        for start in range(0, len(targets), size):
            stop = min(start + size, len(targets))
            prompts = self._prompts(queries[np.arange(start, stop)])
            prompt_ids = tok(prompts, add_special_tokens=True)["input_ids"]
            answers = self._answer_ids(targets[start:stop])
            batch = collate_examples([(list(p), a) for p, a in zip(prompt_ids, answers)], self._pad_id())
            with torch.inference_mode():
                logits = (
                    lm(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
                    .logits[:, :-1]
                    .float()
                )
                labels = batch["labels"][:, 1:].to(device)
                ce = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="none"
                ).view(labels.shape)
                valid = (labels != IGNORE).float()
                out[start:stop] = ((ce * valid).sum(1) / valid.sum(1).clamp(min=1)).double().cpu().numpy()
        return out

    def _constrained(self, queries, prompts, k, mask, stats):
        c = self.config
        beams = min(self.trie_.n_sequences, max(c.num_beams, k))
        switches: dict[str, Any] = {}
        if c.length_penalty:
            switches["length_penalty"] = c.length_penalty
        if c.guidance < 1 and c.assistant is not None:
            switches.update(assistant=self.assistant_probabilities(queries), guidance=c.guidance)
        ranked = (
            self.backend.constrained_beam_search(
                prompts,
                self.trie_,
                num_beams=beams,
                top_k=beams,
                batch_size=c.inference_batch_size,
                exclude=mask,
                **switches,
            )
            if beams
            else [[] for _ in prompts]
        )
        stats["n_generated"] = sum(len(r) for r in ranked)
        return ranked

    def generate_titles(self, queries: QueryBatch, n: int | None = None) -> list[list[tuple[str, float]]]:
        """Free text, whatever the configured decoding: per query, ``n`` (default ``num_beams``)
        beam-search outputs as ``(text, sequence log-probability)``, best first, ungrounded (they
        may be empty, off-catalog or malformed; :meth:`grounder` maps them to items)."""
        if n is not None and n < 1:
            raise ConfigError(f"{type(self).__name__}.generate_titles: n must be >= 1, got {n}")
        queries = self._prepare(queries)
        if not len(queries):
            return []
        return self._generate(self._prompts(queries), n or self.config.num_beams)

    def _generate(self, prompts: list[str], beams: int) -> list[list[tuple[str, float]]]:
        longest = self.trie_.max_length  # tokens of the longest answer, eos included
        if self.config.max_new_tokens < longest:
            raise ConfigError(
                f"{type(self).__name__}: max_new_tokens={self.config.max_new_tokens} cannot hold the longest "
                f"catalog answer ({longest} tokens with the end marker); free text would be cut short and "
                f"counted as hallucinated. Set max_new_tokens >= {longest}"
            )
        return self.backend.beam_search(
            prompts, beams, self.config.max_new_tokens, batch_size=self.config.inference_batch_size
        )

    def assistant_probabilities(self, queries: QueryBatch) -> np.ndarray:
        """D3's assistant: the fitted assistant model's softmax over the catalog per query."""
        self._check_fitted()
        if "assistant_" not in self.__dict__:
            raise ConfigError(
                f"{type(self).__name__}: no fitted assistant (none was configured; set assistant and fit again)"
            )
        from scipy.special import softmax

        scores = np.asarray(self.assistant_.score(queries), np.float64)
        return softmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1)

    def _unconstrained(self, prompts, k, stats):
        c = self.config
        rows = self._generate(prompts, max(c.num_beams, k))
        if c.grounding == "hidden_state":
            return self._hidden_state_ranking(rows, k, stats)
        ground = self.grounder()
        ranked = []
        for row in rows:
            pairs = []
            for text, score in row:
                stats["n_generated"] += 1
                item, how = ground(self.read_answer(text))
                stats[{"exact": "n_exact", "near": "n_near_miss", "none": "n_out_of_catalog"}[how]] += 1
                if item >= 0:
                    pairs.append((item, score))
            ranked.append(pairs)
        return ranked

    def _hidden_state_ranking(self, rows, k, stats):
        """BIGRec: the catalog ranked by hidden-state distance to the best beam's text (or the
        beams' rankings interleaved rank by rank), popularity re-weighted by ``grounding_gamma``."""
        c = self.config
        exact = {normalise_title(t): i for i, t in reversed(list(enumerate(self.titles())))}
        used = 1 if c.grounding_beams == "first" else max(1, max((len(r) for r in rows), default=1))
        texts, owner = [], []
        for i, row in enumerate(rows):
            for text, _ in row[:used]:
                title = self.read_answer(text)
                stats["n_generated"] += 1
                key = normalise_title(title)
                stats["n_exact" if key in exact else ("n_near_miss" if key else "n_out_of_catalog")] += 1
                texts.append(title)
                owner.append(i)
        from trustrec.models.llm._grounding import interleave_rankings

        return interleave_rankings(
            self.hidden_state_grounder(), texts, owner, len(rows), k, self.popularity_, c.grounding_gamma
        )

    def tune_grounding(
        self, queries: QueryBatch, targets: npt.ArrayLike, grid: Sequence[float] | None = None, k: int = 10
    ) -> pd.DataFrame:
        """Choose BIGRec's popularity ``grounding_gamma`` on validation queries: generate once,
        rank with every gamma of ``grid`` (:data:`~trustrec.models.llm._grounding.DEFAULT_GAMMAS`
        by default), keep the best NDCG@``k`` (ties: smallest gamma), set it on the config and
        return the table of scores per gamma."""
        from trustrec.models.llm._grounding import DEFAULT_GAMMAS

        queries = self._prepare(queries)
        texts = [self.read_answer(row[0][0]) if row else "" for row in self._generate(self._prompts(queries), 1)]
        gamma, table = self.hidden_state_grounder().tune_gamma(
            texts, np.asarray(targets, np.int64), self.popularity_, grid=tuple(grid or DEFAULT_GAMMAS), k=k
        )
        self.config = self.config.model_copy(update={"grounding_gamma": float(gamma)})
        return table

    def grounder(
        self,
        mode: Literal["exact", "tfidf", "embedding", "hidden_state"] | None = None,
        *,
        encoder: TextEncoder | None = None,
    ) -> Callable[[str], tuple[int, str]]:
        """``ground(text) -> (item, how)``: the catalog item a free text names and how it was found,
        ``how`` in ``"exact"`` (normalised title match), ``"near"`` (the ``mode`` fallback: at
        similarity >= ``min_similarity`` for ``"tfidf"`` / ``"embedding"``, the nearest title by
        the LM's last-token hidden state for ``"hidden_state"``) or ``"none"`` (item -1). ``mode``
        defaults to the configured ``grounding``; ``"embedding"`` uses ``encoder`` (a loaded text
        encoder) or loads the configured one."""
        self._check_fitted()
        c = self.config
        mode = mode or c.grounding
        if mode not in GROUNDINGS:
            raise ConfigError(f"{type(self).__name__}.grounder: mode must be one of {GROUNDINGS}, got {mode!r}")
        if mode == "embedding" and encoder is None:
            from trustrec.models.llm._loading import load_text_encoder

            encoder = load_text_encoder(c.encoder)
        nearest = None
        if mode == "hidden_state":
            grounder = self.hidden_state_grounder()

            def nearest(text: str) -> tuple[int, float]:
                items, _ = grounder.rank([text], 1)
                return int(items[0, 0]), 1.0

        return make_grounder(self.titles(), mode, c.min_similarity, encoder=encoder, nearest=nearest)

    def hidden_state_grounder(self) -> HiddenStateGrounder:
        """BIGRec's grounder over the fitted LM and the catalog titles (built once, cached)."""
        self._check_fitted()
        cached = self.__dict__.get("_hidden_grounder")
        if cached is None or cached.model is not self.lm_:
            from trustrec.models.llm._grounding import HiddenStateGrounder

            cached = HiddenStateGrounder(
                self.lm_, self.tokenizer_, self.titles(), batch_size=self.config.inference_batch_size
            )
            self._hidden_grounder = cached
        return cached

    _grounder = grounder  # the name earlier callers use

    # -- persistence -----------------------------------------------------------------------------------
    def _state(self):
        arrays, values = {}, {}
        for key, value in vars(self).items():
            if not key.endswith("_") or key in ("lm_", "tokenizer_", "trie_", *self.sub_models):
                continue
            if isinstance(value, np.ndarray):
                arrays[key] = value
            else:
                values[key] = value
        for attribute in self.sub_models:  # e.g. D3's assistant, under its own prefix
            if attribute in vars(self):
                sub_arrays, sub_values = getattr(self, attribute)._state()
                arrays.update({f"{attribute}/{key}": value for key, value in sub_arrays.items()})
                values[f"{attribute}fitted_"] = sub_values
        if hasattr(self, "lm_"):
            for name, tensor in self._trainable_state().items():
                # numpy has no bfloat16: saved as float32, cast back to the LM's dtype on load
                arrays[f"lm_/{name}"] = tensor.detach().float().cpu().numpy().copy()
        return arrays, values

    def _restore(self, arrays, values) -> None:
        import torch

        sub_values = {attribute: values.pop(f"{attribute}fitted_", None) for attribute in self.sub_models}
        for key, value in values.items():
            setattr(self, key, value)
        for key, value in arrays.items():
            if not key.startswith(("lm_/", *(f"{attribute}/" for attribute in self.sub_models))):
                setattr(self, key, value)
        for attribute, field in self.sub_models.items():
            if getattr(self.config, field) is not None:
                self._restore_sub_model(attribute, field, sub_values[attribute], arrays)
        self._load_lm()
        self._load_trainable_state(
            {k[len("lm_/") :]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("lm_/")}
        )
        self.lm_.eval()

    def _restore_sub_model(self, attribute: str, field: str, values: Any, arrays: dict[str, np.ndarray]) -> None:
        from trustrec.models import make_model

        if not isinstance(values, dict):
            raise DataError(f"the model is configured with {field!r} but its fitted state was not saved")
        spec = getattr(self.config, field)
        sub_model = make_model(spec["name"], **dict(spec.get("params") or {}))
        prefix = f"{attribute}/"
        sub_model._restore({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}, values)
        sub_model._check_restored()
        setattr(self, attribute, sub_model)


class _ExtraLoss(LossTerm):
    """The trainer's view of :meth:`GenerativeRecommender._extra_loss` (None adds nothing)."""

    def __init__(self, model: GenerativeRecommender):
        self.owner = model

    def compute(self, ctx):
        return self.owner._extra_loss(ctx.batch, ctx.outputs)
