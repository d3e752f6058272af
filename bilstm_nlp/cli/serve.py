"""`bilstm-nlp serve`: the models over HTTP (FastAPI + uvicorn), micro-batched, with a web page."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import socket
import tempfile
from typing import Any

from ..errors import ConfigError
from ._util import Opt, check_threads, err_console, set_threads, setup_logging, user_errors


def serve_cli(
    models: list[str] = Opt(
        ["ner"], "--model", "-m", help="Shipped model name or model directory (repeat for more)"
    ),
    host: str = Opt("127.0.0.1", "--host", help="Address to listen on"),
    allowed_hosts: list[str] = Opt(
        None,
        "--allowed-host",
        help="A name requests' Host header may give (repeat for more; * any, *.example.org its "
        "subdomains). Default: localhost and loopback addresses when --host is one, else any",
    ),
    port: int = Opt(8080, "--port", "-p", help="Port to listen on"),
    workers: int = Opt(1, "--workers", help="Server processes, each with its models"),
    threads: int = Opt(
        1,
        "--threads",
        help="CPU threads per process, torch's or each ONNX session's (fixed: rounding)",
    ),
    max_wait_ms: float = Opt(
        5.0, "--max-wait-ms", help="How long a batch waits for requests still being read"
    ),
    max_batch_tokens: int = Opt(
        4096,
        "--max-batch-tokens",
        help="Tokens per batch (0: off); a larger request runs in pieces, taking turns",
    ),
    max_queue: int = Opt(1024, "--max-queue", help="Waiting requests before 503"),
    max_body_bytes: int = Opt(1_000_000, "--max-body-bytes", help="Larger bodies get 413"),
    max_texts: int = Opt(64, "--max-texts", help="Texts or sentences per request"),
    max_chars: int = Opt(20_000, "--max-chars", help="Characters per text"),
    timeout_s: float = Opt(
        10.0, "--timeout", help="Seconds a request waits for its answer (queued and run) before 503"
    ),
    verbose: bool = Opt(False, "--verbose", "-v", help="Debug logging"),
) -> None:
    """Serve models over HTTP: /v1/annotate, /v1/tag, /v1/models, /metrics, a page at /."""
    setup_logging(verbose)
    with user_errors():
        missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
        if missing:
            # The slim runtime (no torch) takes them beside it; its extra would pull in the
            # full distribution, which must not be installed with it.
            runtime = importlib.util.find_spec("torch") is None
            install = (
                "pip install fastapi uvicorn fastapi-offline"
                if runtime
                else "pip install 'bilstm-nlp[serve]'"
            )
            raise ConfigError(f"serve needs {' and '.join(missing)}: {install}")
        from ..integrations.serve.app import (
            ServeConfig,
            create_app,
            default_allowed_hosts,
            model_name,
        )
        from ..serialize import is_onnx_folder, read_meta, resolve_model_path

        for model in models:  # fail before binding the port, in one line
            read_meta(resolve_model_path(model))
        names = [model_name(m) for m in models]
        if len(set(names)) != len(names):
            raise ConfigError(f"two models share a name: {', '.join(names)}")
        if not 1 <= workers <= 256:
            raise ConfigError(f"--workers must be 1 to 256, got {workers}")
        check_threads(threads)
        config = ServeConfig(
            models=tuple(models),
            max_wait_ms=max_wait_ms,
            max_batch_tokens=max_batch_tokens,
            max_queue=max_queue,
            max_body_bytes=max_body_bytes,
            max_texts=max_texts,
            max_chars=max_chars,
            timeout_s=timeout_s,
            threads=threads,
            allowed_hosts=tuple(allowed_hosts or default_allowed_hosts(host)),
        )
        config.check()
        _check_address(host, port)
        torch_models = not all(is_onnx_folder(resolve_model_path(m)) for m in models)
    import uvicorn

    address = f"[{host}]" if ":" in host and not host.startswith("[") else host  # IPv6
    err_console.print(f"serving {', '.join(names)} on http://{address}:{port}/")
    if workers == 1:
        if torch_models:
            set_threads(threads)
        uvicorn.run(create_app(config), host=host, port=port, **_UVICORN, **_shutdown(config))
    else:
        # The workers' figures meet here, so that /metrics counts the whole service.
        with tempfile.TemporaryDirectory(prefix="bilstm-nlp-serve-metrics-") as folder:
            config = dataclasses.replace(config, metrics_folder=folder)
            os.environ["BILSTM_NLP_SERVE_CONFIG"] = config.to_json()
            os.environ["BILSTM_NLP_SERVE_THREADS"] = str(threads)
            uvicorn.run(
                "bilstm_nlp.integrations.serve.app:app_from_environment",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                **_UVICORN,
                **_shutdown(config),
            )


def _check_address(host: str, port: int) -> None:
    """Bind the address once before announcing it: a port in use or out of range, or a host
    that is no address here, is one error line instead of uvicorn's log and exit 3."""
    if not 1 <= port <= 65_535:
        raise ConfigError(f"--port must be 1 to 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:  # socket.gaierror included
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


# uvicorn's "auto" picks uvloop and httptools (the serve extra installs them) over asyncio and
# the pure-Python h11 parser; no access log line per request.
_UVICORN = {"log_level": "warning", "access_log": False, "loop": "auto", "http": "auto"}


def _shutdown(config: Any) -> dict[str, int]:
    """SIGTERM answers what was read, then exits: a request body still arriving gets --timeout
    (then 408), an answer in flight --timeout more; a client that never sends cannot hold the
    process past that."""
    return {"timeout_graceful_shutdown": math.ceil(2 * config.timeout_s) + 1}
