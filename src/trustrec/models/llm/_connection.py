"""Where an LLM component's model runs: a local transformers model or an OpenAI-compatible server.

Every LLM component that reaches its model through an :class:`~trustrec.models.llm.LLMBackend`
(the LLM ranker, the FLOW agents) holds the same settings, so the rules for them live here once:
``api_key_env`` and ``max_concurrency`` need an endpoint, ``dtype`` applies to a local model only,
and the key is read from the environment when the backend is built, never stored.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from trustrec._config import Config
from trustrec.errors import ConfigError

__all__ = ["LLMConnection"]


class LLMConnection(Config):
    """The settings that choose and reach an LLM (a base for the configs of LLM components).

    Parameters
    ----------
    model : str
        A registered model name or a checkpoint folder, or the model name an OpenAI-compatible
        server serves when ``base_url`` is set (default ``"smollm2-135m-instruct"``).
    batch_size : int
        Sequences per forward pass of a local model, prompts per request to an endpoint
        (default 32).
    base_url : str or None
        Root of an OpenAI-compatible server (default None: a local model).
    timeout_s : float
        Endpoint read timeout in seconds (default 60.0); used only with ``base_url``.
    dtype : {"float32", "bfloat16", "float16"}
        Dtype of a local model's weights (default ``"float32"``); must stay ``"float32"`` with
        ``base_url``.
    api_key_env : str or None
        Name of the environment variable whose value is sent as ``Authorization: Bearer`` to
        ``base_url``'s host, and to no other host (default None). Only the name is part of the
        config; the key is read when the backend is built and is never saved or logged.
    max_concurrency : int or None
        Requests to the endpoint in flight at once (default None: 1); answers are the same
        whatever the value. Needs ``base_url``.
    """

    model: str = "smollm2-135m-instruct"
    batch_size: PositiveInt = 32
    base_url: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    max_concurrency: PositiveInt | None = None

    @model_validator(mode="after")
    def _check_connection(self):
        for name in ("api_key_env", "max_concurrency"):
            if getattr(self, name) is not None and not self.base_url:
                raise ValueError(
                    f"{name} applies to an OpenAI-compatible endpoint; set base_url to the server's root "
                    f"(e.g. 'http://localhost:8000') or leave {name} unset for a local model"
                )
        if self.base_url and self.dtype != "float32":
            raise ValueError(
                f"dtype={self.dtype!r} applies to a local model; the endpoint at base_url runs its "
                "model in its own precision (leave dtype at float32)"
            )
        return self

    def endpoint_settings(self, owner: str = "llm_ranker") -> dict[str, Any]:
        """The :class:`~trustrec.models.llm.OpenAIBackend` settings beyond ``base_url`` and
        ``model``: timeout, batch size, concurrency and, with ``api_key_env``, the key read from
        that variable now, allowed to ``base_url``'s host only.

        Parameters
        ----------
        owner : str
            The component named in the error (default ``"llm_ranker"``).

        Returns
        -------
        dict
            Keyword arguments of :class:`~trustrec.models.llm.OpenAIBackendConfig`.

        Raises
        ------
        ConfigError
            When ``api_key_env`` names a variable that is not set (or is empty).
        """
        settings: dict[str, Any] = {
            "timeout_s": self.timeout_s,
            "batch_size": self.batch_size,
            "max_concurrency": self.max_concurrency or 1,
        }
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env, "")
            if not key:
                raise ConfigError(
                    f"{owner}: api_key_env names the environment variable {self.api_key_env!r}, but it is "
                    "not set (or empty); export it with the endpoint's API key, or remove api_key_env"
                )
            settings.update(api_key=key, api_key_hosts=(self.base_url,))
        return settings

    def build_backend(self, device: str = "cpu", owner: str = "llm_ranker") -> Any:
        """The backend these settings describe: an :class:`~trustrec.models.llm.OpenAIBackend`
        with ``base_url``, else a :class:`~trustrec.models.llm.LocalBackend` on ``device``.

        Parameters
        ----------
        device : str
            Device of a local model (default ``"cpu"``).
        owner : str
            The component named in errors (default ``"llm_ranker"``).

        Returns
        -------
        LLMBackend
            The backend (a local model loads on first use).
        """
        if self.base_url:
            from trustrec.models.llm._http import OpenAIBackend

            return OpenAIBackend(base_url=self.base_url, model=self.model, **self.endpoint_settings(owner))
        from trustrec.models.llm._backend import LocalBackend

        return LocalBackend(self.model, batch_size=self.batch_size, dtype=self.dtype, device=device)
