"""Options every command that takes a model shares: one name and one help text each."""

from __future__ import annotations

import typer

TrustPickle = typer.Option(
    False,
    "--trust-pickle",
    help="Allow unpickling the model or checkpoint files this command reads (runs code from them).",
)
TrustCode = typer.Option(
    False, "--trust-remote-code", help="Allow running a repository's code (torch.hub hubconf.py, HF custom models)."
)
WeightsOpt = typer.Option(None, "--weights", "-w", help="Local weights file (safetensors or tensors-only .pth).")
NoStrict = typer.Option(
    False, "--no-strict", help="Load weights even if some tensors do not match (a report is printed)."
)
