"""The one trust gate: every code path that can unpickle a file or run a repository's code asks here.

* :func:`torch_load` is the only place visiontune calls ``torch.load``. It reads with
  ``weights_only=True`` (tensors, containers and plain values only — Lightning checkpoints,
  torchvision and timm state dicts all load this way); a file that needs full unpickling is
  refused with :class:`~visiontune.errors.UnsafeCheckpointError` unless the caller passed
  ``trust_pickle=True``.
* :func:`require_pickle_trust` guards files that a third-party library unpickles itself
  (Ultralytics ``.pt`` checkpoints inside ``YOLO()``): visiontune refuses before the library sees them.
* :func:`require_code_trust` guards running a repository's Python code (torch.hub's ``hubconf.py``).

The trust flags come from the person running visiontune (a function argument or ``--trust-pickle``
/ ``--trust-remote-code`` on the command line), never from a config file or a run folder, which
may have been written by someone else.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from visiontune.errors import UnsafeCheckpointError, VisiontuneError

PICKLE_HOW = "pass trust_pickle=True (CLI: --trust-pickle) if you trust where it came from"
CODE_HOW = "pass trust_remote_code=True (CLI: --trust-remote-code) if you trust it"


def _is_refusal(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, pickle.UnpicklingError) or "weights_only" in text or "Unsupported global" in text


def pickle_refusal(path: str | os.PathLike, what: str, reason: str = "") -> UnsafeCheckpointError:
    """The error for a file that needs unpickling and was not trusted: what it is and how to allow it."""
    why = f" ({reason})" if reason else ""
    article = "an" if what[:1].lower() in "aeiou" else "a"
    return UnsafeCheckpointError(
        f"{path} is {article} {what} that holds Python objects, not only tensors{why}; loading it would run code "
        f"from the file. visiontune refuses pickle by default: {PICKLE_HOW}; better, convert it once to "
        "safetensors."
    )


def torch_load(
    path: str | os.PathLike, *, trust_pickle: bool = False, what: str = "checkpoint", map_location: Any = "cpu"
) -> Any:
    """``torch.load`` through the gate: ``weights_only=True``, or full unpickling only when trusted."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    try:
        return torch.load(str(p), map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError) as e:
        if not _is_refusal(e):
            raise VisiontuneError(f"cannot read {what} {p}: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from e
        if not trust_pickle:
            first = str(e).splitlines()
            detail = next((ln.strip() for ln in first if "global" in ln.lower()), "")
            raise pickle_refusal(p, what, detail[:200]) from None
    return torch.load(str(p), map_location=map_location, weights_only=False)  # noqa: S614 - the user trusts it


def require_pickle_trust(path: str | os.PathLike, *, trust_pickle: bool, what: str, note: str = "") -> None:
    """Refuse a file that a third-party library will unpickle itself, unless the user trusts it."""
    if not trust_pickle:
        err = pickle_refusal(path, what)
        if note:
            err = UnsafeCheckpointError(f"{err} {note}")
        raise err


def require_code_trust(what: str, *, trust_remote_code: bool, trusted: bool = False) -> None:
    """Refuse running ``what`` (a repository's code) unless the user trusts it (or already did,
    e.g. through torch.hub's own trusted list)."""
    if not (trust_remote_code or trusted):
        raise UnsafeCheckpointError(
            f"{what} runs that repository's Python code on this machine. visiontune does not run code from "
            f"a repository you have not trusted: {CODE_HOW}."
        )
