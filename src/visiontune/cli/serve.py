"""serve command: any visiontune model behind an HTTP server with dynamic batching."""

from __future__ import annotations

from pathlib import Path

import typer

from visiontune.cli.hub import TrustCode, TrustPickle, WeightsOpt


def serve_cmd(
    model: str = typer.Argument(..., help="Hub id, saved model directory, or exported .onnx/.pt with its sidecar."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", "-p"),
    workers: int = typer.Option(1, "--workers", help="Server processes, each with its own copy of the model."),
    max_batch_size: int = typer.Option(16, "--max-batch-size", help="Most images per model call."),
    max_wait: float = typer.Option(0.01, "--max-wait", help="Seconds a request waits for others to batch with."),
    max_queue: int = typer.Option(1024, "--max-queue", help="Waiting requests per worker before 503s."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds before a request is answered 504."),
    max_body_mb: float = typer.Option(20.0, "--max-body-mb", help="Larger request bodies are answered 413."),
    threads: int | None = typer.Option(None, "--threads", help="torch / ONNX Runtime threads per worker."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ..."),
    backend: str = typer.Option("fastapi", "--backend", help="fastapi (default) or litserve; see docs/deploy.md."),
    weights: Path | None = WeightsOpt,
    no_pretrained: bool = typer.Option(False, "--no-pretrained", help="Random weights (smoke tests)."),
    trust_pickle: bool = TrustPickle,
    trust_remote_code: bool = TrustCode,
    log_level: str = typer.Option("warning", "--log-level"),
):
    """Serve MODEL over HTTP: POST /predict (JSON base64, multipart or image/*), /health, /ready,
    /metrics (Prometheus), /info, /docs. Requests are batched dynamically."""
    from visiontune.serve import ServeConfig, serve

    config = ServeConfig.make(
        model,
        host=host,
        port=port,
        workers=workers,
        max_batch_size=max_batch_size,
        max_wait=max_wait,
        max_queue=max_queue,
        timeout=timeout,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        threads=threads,
        device=device,
        backend=backend,
        weights=str(weights) if weights else None,
        pretrained=not no_pretrained,
        trust_pickle=trust_pickle,
        trust_remote_code=trust_remote_code,
        log_level=log_level,
    )
    typer.echo(
        f"visiontune serve: {model} on http://{host}:{port} ({backend}, {workers} worker(s), "
        f"batch <= {max_batch_size}, wait <= {max_wait * 1000:g} ms)",
        err=True,
    )
    serve(config)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
