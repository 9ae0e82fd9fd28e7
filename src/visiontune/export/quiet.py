"""Silence the exporters and the quantizer: they print progress, deprecation warnings and whole
tensor protos that the user did not ask for."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings


@contextlib.contextmanager
def quiet(*loggers: str):
    """Capture stdout / stderr, ignore warnings and raise ``torch.onnx`` (and ``loggers``) to ERROR
    for the duration of the block."""
    names = ("torch.onnx", *loggers)
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        levels = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
        for log, _ in levels:
            log.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for log, level in levels:
                log.setLevel(level)
