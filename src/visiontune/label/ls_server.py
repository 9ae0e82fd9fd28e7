"""Talk to a running Label Studio over its REST API, and start a local one.

The client covers what the label loop needs — create a project from a labelling config, add the
local-files storage, import tasks with predictions, read the project's JSON export, create
annotations (a scripted annotator) — with plain HTTP (``requests``) and a token header
(``Authorization: Token <token>``, Label Studio's legacy API token). ``label-studio-sdk`` pins
packages (numpy among them) that clash with visiontune's stack, so the project does not depend
on it; the endpoints used are the ones the SDK wraps.

:class:`LocalServer` starts ``label-studio start`` from its own virtual environment on
127.0.0.1 with an SQLite data folder, an admin user and a fixed token made non-interactively
(``LABEL_STUDIO_USERNAME`` / ``_PASSWORD`` / ``_USER_TOKEN``, legacy tokens enabled) and local
file serving from one document root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from visiontune.errors import ConfigError, OfflineError, VisiontuneError, require

ENV_EXECUTABLE = "VISIONTUNE_LABEL_STUDIO"
DEFAULT_VENV = Path("/work/venvs/labelstudio")


class LabelStudioError(VisiontuneError):
    """Label Studio answered with an error; the message has the endpoint and its reply."""


class LabelStudio:
    """A minimal Label Studio REST client: ``LabelStudio("http://127.0.0.1:8080", token)``."""

    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        self.requests = require("requests", "label", "talking to a Label Studio server")
        self.url = url.rstrip("/")
        self.session = self.requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self.timeout = timeout

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.session.request(method, self.url + path, timeout=self.timeout, **kw)
        except self.requests.ConnectionError as e:
            raise OfflineError(f"Label Studio at {self.url} is not reachable ({e}); is the server running?") from None
        if r.status_code >= 400:
            raise LabelStudioError(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else r.content

    # -- projects ------------------------------------------------------------------------------
    def whoami(self) -> dict:
        """The current Label Studio user."""
        return self._call("GET", "/api/current-user/whoami")

    def create_project(self, title: str, label_config: str, **fields: Any) -> dict:
        """A new project (title of 3+ characters) with the labelling config XML."""
        title = title if len(title) >= 3 else f"{title} (visiontune)"
        return self._call("POST", "/api/projects", json={"title": title, "label_config": label_config, **fields})

    def update_project(self, project: int, **fields: Any) -> dict:
        """Update project ``project`` with ``fields``; returns the project."""
        return self._call("PATCH", f"/api/projects/{int(project)}", json=fields)

    def add_local_storage(self, project: int, path: str, title: str = "visiontune images") -> dict:
        """Register ``path`` (a sub-folder of the server's document root) as the project's
        local-files source storage, so ``/data/local-files/?d=`` URLs under it are served.
        The storage is not synced: tasks are imported with their predictions instead."""
        body = {"project": int(project), "path": str(path), "use_blob_urls": False, "title": title}
        return self._call("POST", "/api/storages/localfiles", json=body)

    def import_tasks(self, project: int, tasks: list[dict]) -> dict:
        """Import ``tasks`` into project ``project``."""
        return self._call("POST", f"/api/projects/{int(project)}/import", json=tasks)

    def tasks(self, project: int, page_size: int = 1000) -> list[dict]:
        """Every task of a project (id, data, annotation counts)."""
        out: list[dict] = []
        page = 1
        while True:
            got = self._call(
                "GET", "/api/tasks", params={"project": int(project), "page": page, "page_size": page_size}
            )
            batch = got.get("tasks", []) if isinstance(got, dict) else got
            out += batch
            if len(batch) < page_size:
                return out
            page += 1

    def export(self, project: int) -> list[dict]:
        """The project's JSON export (every task with its annotations)."""
        got = self._call(
            "GET", f"/api/projects/{int(project)}/export", params={"exportType": "JSON", "download_all_tasks": "true"}
        )
        if not isinstance(got, list):
            raise LabelStudioError(
                f"export of project {project}: expected a JSON list of tasks, got {type(got).__name__}"
            )
        return got

    def annotate(self, task: int, result: list[dict], **fields: Any) -> dict:
        """Submit an annotation of ``task`` as the token's user (what the Submit button does)."""
        return self._call("POST", f"/api/tasks/{int(task)}/annotations", json={"result": result, **fields})

    def predictions(self, task: int) -> list[dict]:
        """The predictions attached to task ``task``."""
        return self._call("GET", "/api/predictions", params={"task": int(task)})

    def file(self, url_path: str) -> bytes:
        """Bytes of a served file (e.g. a task's ``/data/local-files/?d=...`` image URL)."""
        return self._call("GET", url_path)


# -- a local server -------------------------------------------------------------------------------
def find_executable(explicit: str | os.PathLike | None = None) -> str | None:
    """The ``label-studio`` command: ``explicit``, ``$VISIONTUNE_LABEL_STUDIO``, the default
    venv ``/work/venvs/labelstudio``, or PATH. None when there is none."""
    for cand in (explicit, os.environ.get(ENV_EXECUTABLE), DEFAULT_VENV / "bin" / "label-studio"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which("label-studio")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """``label-studio start`` on 127.0.0.1 with SQLite under ``data_dir``; use as a context
    manager (the server is stopped and its process group reaped on exit)::

        with LocalServer(document_root="/data") as srv:
            client = srv.client()
    """

    def __init__(
        self,
        document_root: str | os.PathLike,
        data_dir: str | os.PathLike,
        *,
        executable: str | None = None,
        port: int | None = None,
        username: str = "annotator@example.com",
        password: str = "visiontune-test",
        token: str = "visiontune0123456789token",
        start_timeout: float = 240.0,
    ) -> None:
        exe = find_executable(executable)
        if exe is None:
            raise ConfigError(
                f"label-studio not found: set {ENV_EXECUTABLE}=/path/to/venv/bin/label-studio "
                "(python3 -m venv /work/venvs/labelstudio && /work/venvs/labelstudio/bin/pip install label-studio==1.23.2)"
            )
        self.executable = exe
        self.document_root = str(Path(document_root).resolve())
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.username, self.password, self.token = username, password, token
        self.start_timeout = start_timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir / "label-studio.log"
        self.start_seconds: float | None = None

    def start(self) -> LocalServer:
        """Start the Label Studio server and wait until it answers; returns self."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            LABEL_STUDIO_USERNAME=self.username,
            LABEL_STUDIO_PASSWORD=self.password,
            LABEL_STUDIO_USER_TOKEN=self.token,
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
            LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
            LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=self.document_root,
            LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
            DJANGO_DB="sqlite",
        )
        env.pop("PYTHONPATH", None)  # the server runs in its own venv, not visiontune's
        cmd = [self.executable, "start", "--no-browser", "--internal-host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--data-dir", str(self.data_dir), "--enable-legacy-api-token"]
        t0 = time.perf_counter()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        client = self.client()
        requests = client.requests
        while time.perf_counter() - t0 < self.start_timeout:
            if self.proc.poll() is not None:
                raise LabelStudioError(f"label-studio exited with {self.proc.returncode}; log: {self._tail()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    client.whoami()
                    self.start_seconds = time.perf_counter() - t0
                    return self
            except (requests.RequestException, LabelStudioError, OfflineError):
                pass
            time.sleep(0.5)
        self.stop()
        raise LabelStudioError(
            f"label-studio did not answer on {self.url} within {self.start_timeout:.0f} s; log: {self._tail()}"
        )

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def client(self) -> LabelStudio:
        """An API client for this server."""
        return LabelStudio(self.url, self.token)

    def stop(self) -> None:
        """Stop the server (terminate, then kill if it does not exit)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
