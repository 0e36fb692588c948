"""Hyper-parameters of :class:`~trustrec.models.llm.GenerativeRecommender` (plain data)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from trustrec._config import Config

__all__ = ["GenerativeConfig", "LoraConfig"]


class LoraConfig(Config):
    """LoRA adapter settings of :class:`GenerativeRecommender` (passed to peft's ``LoraConfig``).

    Parameters
    ----------
    r : int
        Rank of the low-rank update matrices (default 8).
    alpha : float
        LoRA scaling ``lora_alpha``; the update is scaled by ``alpha / r`` (default 16.0).
    dropout : float
        Dropout probability on the adapters' input, in ``[0, 1)`` (default 0.05).
    target_modules : tuple of str
        Names of the modules that get adapters (default ``("q_proj", "v_proj")``, the attention
        query and value projections of Llama-style models).
    """

    r: PositiveInt = 8
    alpha: PositiveFloat = 16.0
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")


class GenerativeConfig(Config):
    """Hyper-parameters of :class:`GenerativeRecommender` (see the module docstring).

    Parameters
    ----------
    model : str
        Causal LM to fine-tune: a registered model name or a checkpoint folder (default
        ``"smollm2-135m-instruct"``).
    template : dict
        Prompt template fields replacing the default template's (default none); an invalid
        template is a validation error.
    max_history_tokens : int or None
        Token budget of the history block of every prompt, oldest items dropped first (default
        256; None: no budget).
    epochs : int
        Fine-tuning epochs over the training examples (default 1; 0: no fine-tuning, the base LM
        answers zero-shot).
    learning_rate : float
        AdamW learning rate (default 2e-4).
    batch_size : int
        Training examples per optimiser step (default 8).
    lora : LoraConfig or None
        LoRA adapters to train (only they are trained and saved); None (default) fine-tunes and
        saves every weight.
    targets_per_user : int or None
        Training examples per user: the last ``targets_per_user`` positions ``t >= 1`` of the
        user's sequence (default 1; None: every position, as the BIGRec / D3 protocol trains).
    max_history_items : int or None
        An example's history is at most the previous ``max_history_items`` items, in training
        and in prompts (default None: no limit; the BIGRec / D3 protocol uses 10).
    answer_format : str
        How an item is written as the answer, with the slot ``{title}`` (default ``"{title}"``;
        BIGRec / D3 write the quoted title and a newline, ``'"{title}"' + newline``). The constrained decoding trie holds these texts, and
        free text is read back through the same format.
    max_train_examples : int or None
        At most this many training examples, sampled without replacement with the fit seed
        (default 2000; None: all).
    num_beams : int
        Beams of the beam search (default 10); recommending ``k`` items uses
        ``max(num_beams, k)`` beams, constrained or not.
    decoding : {"constrained", "unconstrained"}
        Beam search restricted to catalog titles, or free generation grounded to items
        (default ``"constrained"``).
    length_penalty : float
        Constrained beams are scored by their summed log-probability divided by (generated tokens)
        ** ``length_penalty``: 0 is D3's sum (default), 1 BIGRec's mean.
    assistant : dict or None
        D3's text-free assistant: a model spec ``{"name": ..., "params": {...}}`` (e.g. SASRec)
        fitted on the same training data; its softmax over the catalog guides constrained
        decoding with ``guidance`` (default None: no assistant).
    guidance : float
        g in ``g * log p_LLM + (1 - g) * log p_assistant`` per token, in (0, 1] (default 1.0: the
        assistant is off).
    grounding : {"exact", "tfidf", "embedding", "hidden_state"}
        With unconstrained decoding: how a generated text that matches no title exactly is
        mapped to an item: not at all, by the nearest title in character 3-gram TF-IDF, by the
        nearest title embedding of ``encoder``, or (BIGRec) by ranking the catalog on the L2
        distance between the LM's last-token hidden states of the text and of every title
        (default ``"tfidf"``).
    grounding_gamma : float
        BIGRec's popularity re-weighting of hidden-state grounding, ``(1 + x) ** -gamma`` with
        ``x`` the min-max normalised training popularity (default 0.0: plain L2;
        :meth:`GenerativeRecommender.tune_grounding` picks it on validation data).
    grounding_beams : {"first", "interleave"}
        Hidden-state grounding ranks the catalog from the best beam's text (``"first"``, BIGRec,
        default) or interleaves the beams' rankings rank by rank (CFT's variant).
    encoder : str
        Text encoder (registered name or checkpoint folder) for ``grounding="embedding"``
        (default ``"all-minilm-l6-v2"``).
    min_similarity : float
        Smallest cosine similarity, in ``[0, 1]``, at which the ``"tfidf"`` or ``"embedding"``
        fallback grounds a text (default 0.3).
    max_new_tokens : int
        Longest generated text, in tokens, with unconstrained decoding (default 32).
    inference_batch_size : int
        Prompts per batch when recommending and scoring (default 8).
    dtype : {"float32", "bfloat16", "float16"}
        Dtype the LM is loaded in (default ``"float32"``).
    autocast : {"off", "bfloat16", "auto"}
        Train under ``torch.autocast`` in bfloat16 (weights stay float32; default ``"off"``;
        ``benchmarks/generative_training_speed.py`` measures it). ``"auto"``: bfloat16 where
        it is faster than float32 on the training device (measured once per process: AMX or
        AVX512-BF16 CPUs and bf16 GPUs yes, AVX2-only CPUs no); ``history_["autocast"]`` says
        which ran.
    length_bucketing : bool
        Batch training examples of similar length together (default False).
    warmup_steps : int
        Optimizer steps of linear learning-rate warm-up, then linear decay to 0 at the end of the
        last epoch (default 0: constant learning rate).
    """

    model: str = "smollm2-135m-instruct"
    template: dict[str, Any] = Field(default_factory=dict)
    max_history_tokens: PositiveInt | None = 256
    epochs: NonNegativeInt = 1
    learning_rate: PositiveFloat = 2e-4
    batch_size: PositiveInt = 8
    lora: LoraConfig | None = None
    targets_per_user: PositiveInt | None = 1
    max_history_items: PositiveInt | None = None
    answer_format: str = "{title}"
    max_train_examples: PositiveInt | None = 2000
    num_beams: PositiveInt = 10
    decoding: Literal["constrained", "unconstrained"] = "constrained"
    length_penalty: float = Field(0.0, ge=0)
    assistant: dict[str, Any] | None = None
    guidance: float = Field(1.0, gt=0, le=1)
    grounding: Literal["exact", "tfidf", "embedding", "hidden_state"] = "tfidf"
    grounding_gamma: float = Field(0.0, ge=0)
    grounding_beams: Literal["first", "interleave"] = "first"
    encoder: str = "all-minilm-l6-v2"
    min_similarity: float = Field(0.3, ge=0, le=1)
    max_new_tokens: PositiveInt = 32
    inference_batch_size: PositiveInt = 8
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    autocast: Literal["off", "bfloat16", "auto"] = "off"
    length_bucketing: bool = False
    warmup_steps: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self):
        from trustrec.models.llm._prompts import PromptTemplate

        PromptTemplate.from_dict(self.template)  # raises ConfigError on a bad template
        if self.answer_format.count("{title}") != 1:
            raise ValueError(f"answer_format must hold the slot {{title}} exactly once, got {self.answer_format!r}")
        if self.assistant is not None and "name" not in self.assistant:
            raise ValueError(
                f"assistant must be a model spec {{'name': ..., 'params': {{...}}}}, got {self.assistant!r}"
            )
        return self
