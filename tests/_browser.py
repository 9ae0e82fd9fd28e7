"""Headless Chromium for the report tests: one-shot runs (``--dump-dom``, ``--screenshot``) and a
page driven over the DevTools protocol (websockets). Needs Debian's ``chromium``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once (e.g. ``--dump-dom URL``) with a private profile under ``tmp``."""
    cmd = [CHROMIUM, *FLAGS, "--disable-quic", f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


class DevTools:
    """A headless Chromium page on ``url`` driven over the DevTools protocol."""

    def __init__(self, tmp: Path, url: str, window: str = "1300,900"):
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                *FLAGS,
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--window-size={window}",
                f"--user-data-dir={tmp / 'cdp-profile'}",
                url,
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        port = None
        deadline = time.time() + 60
        while port is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = int(m.group(1)) if m else None
        assert port, "Chromium did not open its DevTools port"
        for _ in range(100):
            pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            pages = [p for p in pages if p.get("type") == "page" and p["url"].startswith("file:")]
            if pages:
                break
            time.sleep(0.1)
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=2**26, open_timeout=30)
        self.n = 0
        self.events: list[dict] = []
        self.call("Page.enable")

    def call(self, method: str, **params):
        """One DevTools command; events that arrive meanwhile are kept in ``events``."""
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.n:
                assert "error" not in msg, msg
                return msg.get("result", {})
            self.events.append(msg)

    def js(self, expr: str):
        """Evaluate ``expr`` in the page and return its value."""
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r["result"].get("value")

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait for the report's script to mark ``<body data-ready="1">``."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.js("document.body && document.body.getAttribute('data-ready')") == "1":
                return True
            time.sleep(0.05)
        return False

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """Save a PNG of the viewport (or the whole page) to ``path``."""
        import base64

        kw = {"captureBeyondViewport": True} if full_page else {}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            kw["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png", **kw)["data"]))
        return path

    def close(self):
        """Stop the browser."""
        self.ws.close()
        self.proc.kill()
        self.proc.wait(timeout=30)
