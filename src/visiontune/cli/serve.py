"""serve command: any visiontune model behind an HTTP server with dynamic batching."""

from __future__ import annotations

from pathlib import Path

import typer

from visiontune.cli.options import TrustCode, TrustPickle, WeightsOpt


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
    """Add the ``serve`` command to ``app``."""
    app.command("serve")(serve_cmd)


def predict_extended(
    model_id: str,
    images: list[Path],
    server: str | None,
    out: Path | None,
    topk: int,
    batch_size: int,
    weights: Path | None,
    trust_pickle: bool,
    as_json: bool,
    devices: int,
    num_nodes: int,
    num_workers: int,
    chunk_size: int = 1024,
) -> None:
    """`visiontune predict --server URL` and `visiontune predict MODEL DATA --out DIR` (batch mode)."""
    import json

    from rich.console import Console

    console = Console()
    if server:
        from visiontune.data import list_images
        from visiontune.serve import Client

        files = [str(f) for f in list_images([Path(model_id), *(images or [])])]  # with --server MODEL is an image
        with Client(server) as client:
            task = (client.info().get("model") or {}).get("task")  # None: a server that does not say
            results = client.predict(files, **({"topk": topk} if task in (None, "classification") else {}))
        if as_json:
            typer.echo(json.dumps(results, indent=1))
            return
        for r in results:
            if r.get("task") == "segmentation":
                areas = sorted(r["class_areas"].items(), key=lambda kv: -kv[1])
                shown = ", ".join(f"{n} {v:.1%}" for n, v in areas[:6])
                inst = f"{len(r['instances'])} instances " if r["instances"] else ""
                console.print(f"{r['source']}: {inst}{shown}", highlight=False)
            elif r.get("task") == "detection":
                dets = ", ".join(f"{d['name']} {d['score']:.2f}" for d in r["detections"])
                console.print(f"{r['source']}: {len(r['detections'])} objects {dets}", highlight=False)
            else:
                tops = "  ".join(f"{d['label']} [bold]{d['prob']:.3f}[/]" for d in r["top"])
                console.print(f"{r['source']}: {tops}", highlight=False)
        return
    if out is None:
        raise typer.BadParameter("--devices / --num-nodes need --out (a Parquet folder)")
    from visiontune.serve import predict_batch

    if not images:
        raise typer.BadParameter("give image folders, files or a manifest after MODEL")
    data = [str(p) for p in images]
    result = predict_batch(
        model_id,
        data,
        out,
        batch_size=batch_size,
        num_workers=num_workers,
        chunk_size=chunk_size,
        devices=devices,
        num_nodes=num_nodes,
        weights=weights,
        trust_pickle=trust_pickle,
        options_for_task={"classification": {"topk": topk}},
    )
    if result.metrics.get("rank", 0) != 0:
        return
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
    else:
        console.print(result.summary(), highlight=False)
