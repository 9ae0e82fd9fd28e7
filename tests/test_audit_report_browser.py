"""report.html in headless Chromium: the tables render, the script runs under the strict CSP,
and a class named `<script>alert(1)</script>` is shown as text (needs Debian's `chromium`)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.browser

EVIL = "<script>alert(1)</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp / 'profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


class _Dom(HTMLParser):
    """Counts <script> elements, rows of the mistakes table, and collects visible text."""

    def __init__(self):
        super().__init__()
        self.scripts = 0
        self.mistake_rows = 0
        self.hidden_rows = 0
        self.text: list[str] = []
        self.body_ready = False
        self._table = None
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
            self._in_script = True
        if tag == "body":
            self.body_ready = a.get("data-ready") == "1"
        if tag == "table":
            self._table = a.get("id")
        if tag == "tr" and self._table == "mistakes" and "data-classes" in a:
            self.mistake_rows += 1
            self.hidden_rows += "hidden" in (a.get("class") or "")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if not self._in_script:
            self.text.append(data)


@pytest.fixture(scope="module")
def report(assets, tmp_path_factory):
    import torch

    import visiontune as vt
    from visiontune.audit import audit

    root = tmp_path_factory.mktemp("browser")
    rows = ["path,label,split"]
    for cls, name in (("ants", "ants"), ("bees", EVIL)):
        files = sorted((assets / "hymenoptera" / "val" / cls).iterdir())
        for i, f in enumerate(files[:10]):
            rows.append(f'{f},"{name}",{"train" if i < 4 else "val"}')
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    p = vt.load("timm:mobilenetv3_small_050", pretrained=False, num_classes=2, class_names=["ants", EVIL])
    # a random head would make arbitrary mistakes; bias it so every image is called "ants"
    with torch.no_grad():
        p.model.get_classifier().bias.copy_(torch.tensor([10.0, -10.0]))
    r = audit(p, root / "data.csv", out=root / "audit", k_folds=3, quiet=True)
    assert r.metrics["n_mistakes"] == 6  # the 6 val images labelled EVIL
    return r.report_path


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: apt-get install chromium")
def test_report_renders_in_chromium_and_escapes_class_names(report, tmp_path):
    url = report.resolve().as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    d = _Dom()
    d.feed(dom.stdout)
    assert d.body_ready, "the report's script did not run (blocked by the CSP?)"
    assert d.mistake_rows == 6 and d.hidden_rows == 0
    assert d.scripts == 1, "a class name became a <script> element"
    text = "".join(d.text)
    assert EVIL in text, "the class name is not shown as text"
    assert "6 rows shown" in text  # written by the script (filter counter)

    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2000", "--hide-scrollbars", url)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1400, 2000)
        colours = im.convert("RGB").resize((140, 200)).getcolors(maxcolors=100000)
        assert colours is not None and len(colours) > 50, "the screenshot is blank"
