"""Runs README commands through the ``visiontune`` entry point in ONE Python process.

tests/test_readme.py starts this once, in the README workspace and with its environment (the hub
caches are read from the environment when torch / huggingface_hub are imported, so they must be set
before this process starts), then sends one JSON line per command on stdin::

    {"argv": ["visiontune", "train", ...], "log": "/path/to/log"}

and reads one JSON line per command back: ``{"code": <exit code>, "seconds": <float>}``. Each
command runs exactly as the console script does (``visiontune.cli.main.main`` with ``sys.argv`` set),
its stdout and stderr — Python's and the C level's — redirected to ``log``. What it saves over a
fresh process per command is the interpreter start and the imports (torch, Lightning, timm, …: ~5 s
per command on this 2-core machine) and JIT caches (numba's UMAP compile, once instead of per audit).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def _run(argv: list[str]) -> int:
    from visiontune.cli.main import main

    sys.argv = list(argv)
    try:
        main()
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:  # what the interpreter would print before exiting 1
        traceback.print_exc()
        return 1
    return 0


def serve() -> None:
    results = os.fdopen(os.dup(1), "w", buffering=1)
    import visiontune.cli.main  # noqa: F401  (the imports, once)

    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        with open(req["log"], "w") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            t0 = time.time()
            try:
                code = _run(req["argv"])
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        results.write(json.dumps({"code": code, "seconds": round(time.time() - t0, 2)}) + "\n")


if __name__ == "__main__":
    serve()
