"""``trustrec serve``: an HTTP service (FastAPI, the 'serve' extra) for a finished run's model."""

from __future__ import annotations

from pathlib import Path

import typer

from trustrec.cli._app import app, err_console

__all__ = ["serve"]


def serve(
    run_dir: Path = typer.Argument(..., help="A finished run directory (from `trustrec run`)."),  # noqa: B008  # typer declares parameters by their defaults
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="Port to bind."),
    api_keys: Path | None = typer.Option(  # noqa: B008  # typer declares parameters by their defaults
        None, "--api-keys", help="File of API keys, one per line (also read: the TRUSTREC_API_KEYS variable)."
    ),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve without API keys (loopback addresses only)."),
    rate_limit: float = typer.Option(50.0, "--rate-limit", help="Requests per second per key (0: no limit)."),
    burst: int = typer.Option(100, "--burst", help="Requests a key may send at once (token bucket size)."),
    max_concurrency: int = typer.Option(4, "--max-concurrency", help="Requests served at once."),
    max_queue: int = typer.Option(64, "--max-queue", help="Requests waiting beyond those; more get 503."),
    max_body_bytes: int = typer.Option(65536, "--max-body-bytes", help="Largest request body (413 beyond)."),
    max_k: int = typer.Option(100, "--max-k", help="Largest k a request may ask for."),
    max_history: int = typer.Option(500, "--max-history", help="Most history items a request may give."),
    injection: str = typer.Option(
        "reject", "--injection", help="Constraint text with instruction-like content: reject (422) or flag (ignored)."
    ),
    blocked: Path | None = typer.Option(  # noqa: B008  # typer declares parameters by their defaults
        None, "--blocked", help="File of raw item ids never returned, one per line."
    ),
    max_exposure: float | None = typer.Option(
        None, "--max-exposure", help="No item in more than this share of the last --exposure-window responses."
    ),
    exposure_window: int = typer.Option(100, "--exposure-window", help="Responses the exposure cap counts over."),
    max_batch: int = typer.Option(
        32,
        "--max-batch",
        help="Requests answered by one model call (micro-batching); 1: one request at a time, each in a worker thread.",
    ),
    max_wait_ms: float = typer.Option(
        2.0, "--max-wait-ms", help="How long an idle batcher waits for more requests to join the first (ms)."
    ),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (off: /metrics counts them)."),
    torch_threads: int | None = typer.Option(
        None,
        "--torch-threads",
        help="torch's CPU threads in the server (default: 1, or every core for an LLM model).",
    ),
):
    """Serve RUN_DIR's model over HTTP: POST /v1/recommend, /health, /version, /metrics, /openapi.json."""
    from trustrec.errors import ConfigError
    from trustrec.serve import (
        GuardChain,
        InjectionGuard,
        InputLimits,
        RecommendationService,
        ServeSettings,
        check_bind,
        load_api_keys,
        run_server,
    )

    if injection not in ("reject", "flag"):
        raise ConfigError(f"--injection must be 'reject' or 'flag', got {injection!r}")
    settings = ServeSettings(
        api_keys=() if no_auth and api_keys is None else load_api_keys(api_keys),
        no_auth=no_auth,
        rate_limit=rate_limit,
        burst=burst,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        max_body_bytes=max_body_bytes,
        host=host,
        port=port,
    )
    check_bind(settings)  # before the (slower) model loading
    if torch_threads is not None and torch_threads < 1:
        raise ConfigError(f"--torch-threads must be >= 1, got {torch_threads}")
    blocked_ids: list[str] = []
    if blocked is not None:
        if not blocked.is_file():
            raise ConfigError(f"{blocked}: no such blocked-items file")
        lines = blocked.read_text(encoding="utf-8").splitlines()
        blocked_ids = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
    chain = GuardChain([InputLimits(max_k=max_k, max_history=max_history), InjectionGuard(mode=injection)])  # type: ignore[arg-type]  # checked above
    service = RecommendationService.from_run(
        run_dir,
        guards=chain,
        blocked_items=blocked_ids,
        max_exposure_share=max_exposure,
        exposure_window=exposure_window,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
    )
    err_console.print(
        f"serving {service.model_name} from {run_dir} on http://{host}:{port} "
        f"({'no authentication' if no_auth else f'{len(settings.api_keys)} API key(s)'}; "
        f"batches of up to {service.max_batch})",
        highlight=False,
        markup=False,
    )
    run_server(service, settings, access_log=access_log, torch_threads=torch_threads)


app.command("serve")(serve)
