"""Audit a recommender trustrec did not train: adapters of your own model, each a registered
:class:`~trustrec.models.Recommender` that declares only what it can do.

=========================  ==============================================================
model name                 what it wraps
=========================  ==============================================================
``external_scorer``        a Python ``score(state, queries)`` over the whole catalog
``external_ranker``        a Python ``rank(state, queries)`` returning ranked raw item ids
``external_topk_file``     ranked lists your system wrote (CSV, parquet, JSON lines)
``external_endpoint``      an HTTP endpoint answering a small JSON contract
``external_generative``    a generative LLM behind an OpenAI-compatible endpoint (vLLM ...)
=========================  ==============================================================

The Python adapters take an optional ``fit(train, seed) -> state`` so retraining audits can
refit them; a model that cannot answer new queries or be retrained says so through
``audit_gap``, and the audits that need it come out not applicable with that reason. An
OpenAI-compatible LLM that ranks candidates needs no adapter: ``llm_ranker`` takes its
``base_url`` (and ``api_key_env``, ``max_concurrency``); one that writes item titles is
``external_generative`` (its answers are grounded to the catalog, so the hallucination audit
applies).
"""

from trustrec.models.external._common import ExternalQueries, check_import_path, import_function, lists_to_topk
from trustrec.models.external._endpoint import ENDPOINT_FIELDS, ExternalEndpoint, ExternalEndpointConfig
from trustrec.models.external._generative import ExternalGenerative, ExternalGenerativeConfig
from trustrec.models.external._python import (
    ExternalRanker,
    ExternalRankerConfig,
    ExternalScorer,
    ExternalScorerConfig,
)
from trustrec.models.external._topk_file import ExternalTopKFile, ExternalTopKFileConfig, read_topk_file

__all__ = [
    "ENDPOINT_FIELDS",
    "ExternalEndpoint",
    "ExternalEndpointConfig",
    "ExternalGenerative",
    "ExternalGenerativeConfig",
    "ExternalQueries",
    "ExternalRanker",
    "ExternalRankerConfig",
    "ExternalScorer",
    "ExternalScorerConfig",
    "ExternalTopKFile",
    "ExternalTopKFileConfig",
    "check_import_path",
    "import_function",
    "lists_to_topk",
    "read_topk_file",
]
