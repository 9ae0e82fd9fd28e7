"""report.html in headless Chromium: the tables render, the script runs under the strict CSP,
classes named `<script>alert(1)</script>` and `<img src=x onerror=alert(1)>` are shown as text
in the tables and on the embedding map, and hovering a map point shows its thumbnail (driven
over the DevTools protocol: a real mouse event, a real screenshot). Needs Debian's `chromium`."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from _browser import CHROMIUM, DevTools, chromium

pytestmark = pytest.mark.browser

EVIL = "<script>alert(1)</script>"
IMG_EVIL = "<img src=x onerror=alert(1)>"


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
    for cls, name in (("ants", IMG_EVIL), ("bees", EVIL)):
        files = sorted((assets / "hymenoptera" / "val" / cls).iterdir())
        for i, f in enumerate(files[:10]):
            rows.append(f'{f},"{name}",{"train" if i < 4 else "val"}')
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    p = vt.load("timm:mobilenetv3_small_050", pretrained=False, num_classes=2, class_names=[IMG_EVIL, EVIL])
    # a random head would make arbitrary mistakes; bias it so every image is called IMG_EVIL ("ants")
    with torch.no_grad():
        p.model.get_classifier().bias.copy_(torch.tensor([10.0, -10.0]))
    # PCA coordinates: the same map widget without UMAP's one-off numba compilation (~1 min here)
    r = audit(
        p, root / "data.csv", out=root / "audit", k_folds=3, quiet=True, cache_dir=root / "cache", map_method="pca"
    )
    assert r.metrics["n_mistakes"] == 6  # the 6 val images labelled EVIL
    return r.report_path


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: apt-get install chromium")
def test_report_renders_in_chromium_and_escapes_class_names(report, tmp_path):
    url = report.resolve().as_uri()
    dom = chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    d = _Dom()
    d.feed(dom.stdout)
    assert d.body_ready, "the report's script did not run (blocked by the CSP?)"
    assert d.mistake_rows == 6 and d.hidden_rows == 0
    assert d.scripts == 1, "a class name became a <script> element"
    text = "".join(d.text)
    assert EVIL in text and IMG_EVIL in text, "a class name is not shown as text"
    assert "6 rows shown" in text  # written by the script (filter counter)

    shot = tmp_path / "report.png"
    res = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2000", "--hide-scrollbars", url)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1400, 2000)
        colours = im.convert("RGB").resize((140, 200)).getcolors(maxcolors=100000)
        assert colours is not None and len(colours) > 50, "the screenshot is blank"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: apt-get install chromium")
def test_embedding_map_hover_shows_the_thumbnail_and_class_names_as_text(report, tmp_path):
    import base64
    import json
    import time

    page = DevTools(tmp_path, report.resolve().as_uri())
    try:
        for _ in range(200):
            if page.js("document.body && document.body.getAttribute('data-ready')") == "1":
                break
            time.sleep(0.05)
        assert page.js("document.body.getAttribute('data-ready')") == "1", "the report's script did not run"
        assert page.js("document.querySelectorAll('circle.pt').length") == 12  # the 12 val images
        page.js("document.getElementById('sec-map').scrollIntoView()")
        time.sleep(0.2)
        # a point of the class named like an <img> tag: hover it with a real mouse event
        target = page.js(
            """(function(){var pts=JSON.parse(document.getElementById('map').getAttribute('data-points'));
            var i=pts.findIndex(function(p){return p.label===LABEL && p.mistake===false;});
            var c=document.querySelector('circle.pt[data-i="'+i+'"]');c.scrollIntoView({block:'center'});
            var r=c.getBoundingClientRect();
            return [r.x+r.width/2, r.y+r.height/2, pts[i].path];})()""".replace("LABEL", json.dumps(IMG_EVIL))
        )
        page.call("Input.dispatchMouseEvent", type="mouseMoved", x=5, y=5)  # from outside the point...
        page.call("Input.dispatchMouseEvent", type="mouseMoved", x=target[0], y=target[1])  # ...onto it
        time.sleep(0.2)
        tip = page.js(
            """(function(){var t=document.getElementById('map-tip'),im=document.getElementById('map-tip-img');
            var r=im.getBoundingClientRect();
            return [!t.classList.contains('hidden'), im.src.slice(0,23), im.naturalWidth, r.width,
                    document.getElementById('map-tip-text').textContent];})()"""
        )
        visible, src, natural, shown, text = tip
        assert visible and src == "data:image/jpeg;base64," and natural > 0 and shown > 20
        assert text.startswith(IMG_EVIL) and target[2] in text  # the class name as text, and the path
        legend = page.js("document.getElementById('map-legend').textContent")
        assert IMG_EVIL in legend and EVIL in legend
        # nothing from the data became an element or ran
        assert page.js("document.querySelectorAll('script').length") == 1
        assert page.js("document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert not [e for e in page.events if e.get("method") == "Page.javascriptDialogOpening"]
        shot = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
        (tmp_path / "map-hover.png").write_bytes(shot)
        keep = os.environ.get("VISIONTUNE_SCREENSHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / "map-hover.png").write_bytes(shot)
        with Image.open(tmp_path / "map-hover.png") as im:
            assert im.size[0] >= 1200
            colours = im.convert("RGB").resize((130, 90)).getcolors(maxcolors=100000)
            assert colours is not None and len(colours) > 50
        # colour by mistake, filter by class, and a click finds the image's row
        page.js("var s=document.getElementById('map-colour');s.value='mistake';s.dispatchEvent(new Event('change'))")
        assert "mistake" in page.js("document.getElementById('map-legend').textContent")
        mistake = page.js(
            """(function(){var pts=JSON.parse(document.getElementById('map').getAttribute('data-points'));
            var i=pts.findIndex(function(p){return p.mistake;});
            var c=document.querySelector('circle.pt[data-i="'+i+'"]');c.scrollIntoView({block:'center'});
            var r=c.getBoundingClientRect();return [r.x+r.width/2, r.y+r.height/2, pts[i].path];})()"""
        )
        for kind in ("mousePressed", "mouseReleased"):
            page.call("Input.dispatchMouseEvent", type=kind, x=mistake[0], y=mistake[1], button="left", clickCount=1)
        time.sleep(0.2)
        assert (
            page.js(
                "(document.querySelector('tr.hl')||{}).getAttribute ? "
                "document.querySelector('tr.hl').getAttribute('data-path') : null"
            )
            == mistake[2]
        )
        page.js(
            "var f=document.getElementById('class-filter');f.value=LABEL;f.dispatchEvent(new Event('change'))".replace(
                "LABEL", json.dumps(EVIL)
            )
        )
        assert page.js("document.querySelectorAll('circle.pt.off').length") > 0
        assert "6 of 12 images shown" in page.js("document.getElementById('map-count').textContent")
    finally:
        page.close()
