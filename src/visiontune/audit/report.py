"""One self-contained HTML report: thumbnails as data URIs, inline CSS and JS (allowed by hash in
a strict Content-Security-Policy, so nothing external loads and no injected script runs),
sortable tables and a class filter. Every string from the data goes through `html.escape`."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:16px 24px}
header h1{margin:0 0 6px;font-size:20px}
.meta{opacity:.85;font-size:12px;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:12px}
.card{background:rgba(255,255,255,.12);border-radius:6px;padding:6px 12px}
.card b{display:block;font-size:18px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde;padding:8px 24px;z-index:2}
nav a{margin-right:14px;color:#1d3557}
main{padding:8px 24px 40px}
section{background:#fff;border:1px solid #e3e6ea;border-radius:8px;margin:16px 0;padding:12px 16px}
h2{font-size:17px;margin:4px 0 10px}
.note{color:#5a6570;font-size:12px;margin:0 0 8px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #eceef1;padding:4px 6px;text-align:left;vertical-align:middle}
th{background:#f0f2f5;cursor:pointer;user-select:none;white-space:nowrap}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.path{max-width:340px;word-break:break-all;font-size:11px;color:#444}
img.t{max-width:96px;max-height:96px;border-radius:3px;display:block}
.bad{color:#b00020;font-weight:600}.ok{color:#1b7f3b}
.empty{color:#5a6570;font-style:italic}
tr.hidden{display:none}
.cm{max-width:100%;height:auto}
.warn{background:#fff4e5;border:1px solid #f0c36d;border-radius:6px;padding:6px 10px;margin:6px 0}
#map{position:relative}
#map-svg{width:100%;height:auto;background:#fbfcfd;border:1px solid #e3e6ea;border-radius:6px;display:block}
circle.pt{stroke:#fff;stroke-width:.6;cursor:pointer}circle.pt.off{display:none}circle.pt.on{stroke:#000;stroke-width:2}
.tip{position:absolute;pointer-events:none;background:#fff;border:1px solid #c9ced6;border-radius:6px;padding:6px;
box-shadow:0 2px 8px rgba(0,0,0,.18);z-index:5;max-width:260px;font-size:12px;word-break:break-all}
.tip img{display:block;max-width:128px;max-height:128px;margin-bottom:4px}
.hidden{display:none}tr.hl td{background:#fff3b0}
.mapbar{margin:0 0 8px}.legend{font-size:12px;margin-top:6px}.legend .sw{display:inline-block;width:10px;height:10px;border-radius:50%;margin:0 4px 0 10px}
"""

JS = """
(function(){
  function cellValue(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent;
    var f=parseFloat(v);return (v!==''&&!isNaN(f)&&isFinite(v))?f:v.toLowerCase();}
  document.querySelectorAll('table.sortable').forEach(function(t){
    t.querySelectorAll('th').forEach(function(th,ci){
      th.addEventListener('click',function(){
        var asc=!th.classList.contains('asc');
        t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
        th.classList.add(asc?'asc':'desc');
        var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(a,b){var x=cellValue(a.cells[ci]),y=cellValue(b.cells[ci]);
          if(typeof x!==typeof y){x=String(x);y=String(y);}
          return (x<y?-1:x>y?1:0)*(asc?1:-1);});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var sel=document.getElementById('class-filter');
  function applyFilter(){
    var c=sel.value;
    document.querySelectorAll('table.filterable').forEach(function(t){
      var shown=0;
      Array.prototype.forEach.call(t.tBodies[0].rows,function(r){
        var cls=JSON.parse(r.getAttribute('data-classes')||'[]');
        var show=(c==='')||cls.indexOf(c)>=0;
        r.classList.toggle('hidden',!show);if(show)shown++;});
      var out=document.getElementById(t.id+'-count');if(out)out.textContent=shown+(shown===1?' row':' rows')+' shown';
    });
  }
  if(sel){sel.addEventListener('change',applyFilter);applyFilter();}
  var map=document.getElementById('map');
  if(map){
    var pts=JSON.parse(map.getAttribute('data-points')||'[]');
    var classes=JSON.parse(map.getAttribute('data-classes')||'[]');
    var svg=document.getElementById('map-svg'),tip=document.getElementById('map-tip');
    var tipImg=document.getElementById('map-tip-img'),tipText=document.getElementById('map-tip-text');
    var mode=document.getElementById('map-colour'),legend=document.getElementById('map-legend');
    var NS=svg.namespaceURI,W=1000,H=640,P=16;
    var pal=['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22','#17becf'];
    var cidx={};classes.forEach(function(c,i){cidx[c]=i;});
    function ext(k){var lo=Infinity,hi=-Infinity;pts.forEach(function(p){lo=Math.min(lo,p[k]);hi=Math.max(hi,p[k]);});
      return [lo,(hi>lo)?hi:lo+1];}
    var ex=ext('x'),ey=ext('y');
    pts.forEach(function(p,i){
      var c=document.createElementNS(NS,'circle');
      c.setAttribute('cx',(P+(p.x-ex[0])/(ex[1]-ex[0])*(W-2*P)).toFixed(1));
      c.setAttribute('cy',(H-P-(p.y-ey[0])/(ey[1]-ey[0])*(H-2*P)).toFixed(1));
      c.setAttribute('r','5');c.setAttribute('class','pt');c.setAttribute('data-i',String(i));
      svg.appendChild(c);p.el=c;
      c.addEventListener('mouseenter',function(ev){show(p,ev);});
      c.addEventListener('mousemove',function(ev){place(ev);});
      c.addEventListener('mouseleave',function(){tip.classList.add('hidden');c.classList.remove('on');});
      c.addEventListener('click',function(){jump(p);});
    });
    function colour(p){var m=mode.value;
      if(m==='class')return pal[(cidx[p.label]||0)%pal.length];
      if(m==='mistake')return p.mistake?'#d62728':'#c3c8cf';
      if(m==='issue')return p.issue?'#ff7f0e':'#c3c8cf';
      if(m==='dup')return p.dup?'#9467bd':'#c3c8cf';
      var t=Math.max(0,Math.min(1,p.outlier_q||0));return 'hsl('+Math.round(220-220*t)+',75%,'+Math.round(60-15*t)+'%)';}
    function sw(col,text){var s=document.createElement('span');s.className='sw';s.style.background=col;
      legend.appendChild(s);legend.appendChild(document.createTextNode(text));}
    function paint(){pts.forEach(function(p){p.el.setAttribute('fill',colour(p));});
      legend.textContent='';var m=mode.value;
      if(m==='class'){classes.forEach(function(c,i){sw(pal[i%pal.length],c);});}
      else if(m==='outlier'){sw('hsl(220,75%,60%)','typical');sw('hsl(0,75%,45%)','far from every other image');}
      else{sw({mistake:'#d62728',issue:'#ff7f0e',dup:'#9467bd'}[m],{mistake:'mistake',issue:'label issue',dup:'duplicate'}[m]);
        sw('#c3c8cf','other');}}
    function place(ev){var r=map.getBoundingClientRect();
      tip.style.left=Math.min(ev.clientX-r.left+14,r.width-270)+'px';tip.style.top=(ev.clientY-r.top+14)+'px';}
    function show(p,ev){
      if(typeof p.thumb==='string'&&p.thumb.indexOf('data:image/')===0){tipImg.src=p.thumb;tipImg.classList.remove('hidden');}
      else{tipImg.classList.add('hidden');}
      tipText.textContent=p.label+(p.pred!==p.label?' \u2192 predicted '+p.pred:'')+
        (p.issue?' \u00b7 label issue':'')+(p.dup?' \u00b7 duplicate':'')+' \u00b7 '+p.path;
      tip.classList.remove('hidden');p.el.classList.add('on');place(ev);}
    function jump(p){var hit=null;
      document.querySelectorAll('tr[data-path]').forEach(function(r){
        if(!hit&&r.getAttribute('data-path')===p.path&&!r.classList.contains('hidden'))hit=r;});
      document.querySelectorAll('tr.hl').forEach(function(r){r.classList.remove('hl');});
      var note=document.getElementById('map-count');
      if(hit){hit.classList.add('hl');hit.scrollIntoView({block:'center'});}
      else if(note){note.textContent=p.path+' is in no table of this report (see predictions.csv)';}}
    function filt(){var c=sel?sel.value:'',shown=0;
      pts.forEach(function(p){var on=(c==='')||p.label===c||p.pred===c;p.el.classList.toggle('off',!on);if(on)shown++;});
      var note=document.getElementById('map-count');if(note)note.textContent=shown+' of '+pts.length+' images shown';}
    mode.addEventListener('change',paint);if(sel)sel.addEventListener('change',filt);paint();filt();
  }
  document.body.setAttribute('data-ready','1');
})();
"""


def thumbnail_uri(path: str, size: int = 96, quality: int = 75) -> str | None:
    """A small JPEG of the image as a data URI, or None if it cannot be read."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale, much faster
            im = ImageOps.exif_transpose(opened).convert("RGB")
            im.thumbnail((size, size), Image.Resampling.BILINEAR)
            if max(im.size) < size // 2:  # tiny images (e.g. 8x8 scans): enlarge, keep the pixels sharp
                k = (size // 2) // max(im.size)
                im = im.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality)
    except (OSError, ValueError, ImportError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class Column:
    """One column of a report table: its title, data key and how cells render."""

    title: str
    key: str
    kind: str = "text"  # text | num | pct | path | img | bool | link
    fmt: str = "{:.3f}"


@dataclass
class Table:
    """One sortable table of the HTML report."""

    id: str
    title: str
    df: pd.DataFrame
    columns: list[Column]
    note: str = ""
    class_keys: Sequence[str] = ()  # columns whose values are class names (for the filter)
    empty: str = "nothing found"
    extra: str = ""  # trusted HTML placed under the title (built by this module only)


@dataclass
class MapData:
    """The embedding map: one dict per point (x, y, label, pred, path, mistake, issue, dup,
    outlier_q in [0, 1]); thumbnails are added by :func:`render_report`."""

    method: str
    points: list[dict]
    note: str = ""


@dataclass
class ReportData:
    """Everything the HTML report shows: title, metadata, headline cards, tables and images."""

    title: str
    meta: dict[str, Any]
    cards: list[tuple[str, str]]
    classes: list[str]
    tables: list[Table] = field(default_factory=list)
    confusion_png: Path | None = None
    warnings: list[str] = field(default_factory=list)
    embedding_map: MapData | None = None


def _cell(col: Column, value: Any, thumbs: Callable[[str], str | None]) -> str:
    if col.kind == "img":
        uri = thumbs(str(value)) if isinstance(value, str) and value else None
        return f'<td><img class="t" alt="" src="{escape(uri)}"></td>' if uri else "<td>–</td>"
    if value is None or (isinstance(value, float) and value != value):
        return '<td class="num" data-v="">–</td>'
    if col.kind in ("num", "pct"):
        v = float(value)
        text = f"{100 * v:.1f}%" if col.kind == "pct" else col.fmt.format(v)
        return f'<td class="num" data-v="{v!r}">{escape(text)}</td>'
    if col.kind == "link":  # "<relative href>#task-N": a link to the exported label task
        return f'<td><a href="{escape(str(value))}">{escape(str(value).rsplit("#", 1)[-1].replace("-", " "))}</a></td>'
    if col.kind == "bool":
        return f'<td class="{"bad" if value else "ok"}">{"yes" if value else "no"}</td>'
    if isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))
    cls = ' class="path"' if col.kind == "path" else ""
    return f"<td{cls}>{escape(str(value))}</td>"


def _table_html(t: Table, thumbs: Callable[[str], str | None]) -> str:
    parts = [f'<section id="sec-{escape(t.id)}"><h2>{escape(t.title)}</h2>']
    if t.note:
        parts.append(f'<p class="note">{escape(t.note)}</p>')
    parts.append(t.extra)
    if t.df is None or len(t.df) == 0:
        parts.append(f'<p class="empty">{escape(t.empty)}</p></section>')
        return "".join(parts)
    filt = " filterable" if t.class_keys else ""
    if t.class_keys:
        parts.append(f'<p class="note" id="{escape(t.id)}-count"></p>')
    parts.append(f'<table id="{escape(t.id)}" class="sortable{filt}"><thead><tr>')
    parts += [f"<th>{escape(c.title)}</th>" for c in t.columns]
    parts.append("</tr></thead><tbody>")
    path_key = next((c.key for c in t.columns if c.kind == "path"), None)
    for row in t.df.to_dict("records"):
        attr = ""
        if path_key is not None and isinstance(row.get(path_key), str):
            attr += f' data-path="{escape(row[path_key])}"'
        if t.class_keys:
            cls = sorted({str(row[k]) for k in t.class_keys if row.get(k) is not None})
            attr += f' data-classes="{escape(json.dumps(cls))}"'
        parts.append(f"<tr{attr}>" + "".join(_cell(c, row.get(c.key), thumbs) for c in t.columns) + "</tr>")
    parts.append("</tbody></table></section>")
    return "".join(parts)


MAP_COLOURS = (
    ("class", "class"),
    ("mistake", "mistake"),
    ("issue", "label issue"),
    ("dup", "duplicate"),
    ("outlier", "outlier score"),
)


def _map_html(m: MapData, classes: list[str], thumb_size: int) -> str:
    """The map section: points (with thumbnails) as escaped JSON in an attribute, drawn by JS."""
    size = max(48, min(thumb_size, 80))
    pts = []
    for p in m.points:
        q = {k: v for k, v in p.items() if k != "thumb"}
        q["thumb"] = thumbnail_uri(str(p["path"]), size) or ""
        pts.append(q)
    return (
        '<section id="sec-map"><h2>Embedding map</h2>'
        f'<p class="note">{escape(m.note)}</p><div class="mapbar"><label>colour by: <select id="map-colour">'
        + "".join(f'<option value="{v}">{escape(t)}</option>' for v, t in MAP_COLOURS)
        + '</select></label> <span class="note" id="map-count"></span></div>'
        f'<div id="map" data-points="{escape(json.dumps(pts, allow_nan=False))}" '
        f'data-classes="{escape(json.dumps(list(classes)))}">'
        '<svg id="map-svg" viewBox="0 0 1000 640" role="img" aria-label="embedding map"></svg>'
        '<div id="map-tip" class="tip hidden"><img id="map-tip-img" alt=""><div id="map-tip-text"></div></div>'
        '</div><div class="legend" id="map-legend"></div></section>'
    )


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def render_report(data: ReportData, *, thumb_size: int = 96) -> str:
    """The report as one HTML string."""
    cache: dict[str, str | None] = {}

    def thumbs(p: str) -> str | None:
        if p not in cache:
            cache[p] = thumbnail_uri(p, thumb_size)
        return cache[p]

    csp = (
        "default-src 'none'; img-src data:; "
        f"style-src {_csp_hash(CSS)}; script-src {_csp_hash(JS)}; "
        "base-uri 'none'; form-action 'none'"
    )
    h = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(csp)}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(data.title)}</title><style>{CSS}</style></head><body>",
        f'<header><h1>{escape(data.title)}</h1><div class="meta">',
        " · ".join(f"{escape(str(k))}: {escape(str(v))}" for k, v in data.meta.items() if v not in (None, "")),
        '</div><div class="cards">',
        "".join(f'<div class="card"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in data.cards),
        "</div></header><nav>",
        '<a href="#sec-map">embedding map</a>' if data.embedding_map is not None else "",
        "".join(f'<a href="#sec-{escape(t.id)}">{escape(t.title)}</a>' for t in data.tables),
        '<a href="#sec-confusion">confusion matrix</a>' if data.confusion_png else "",
        '<label>class: <select id="class-filter"><option value="">all classes</option>',
        "".join(f'<option value="{escape(c)}">{escape(c)}</option>' for c in data.classes),
        "</select></label></nav><main>",
        "".join(f'<div class="warn">{escape(w)}</div>' for w in data.warnings),
    ]
    if data.embedding_map is not None:
        h.append(_map_html(data.embedding_map, data.classes, thumb_size))
    for t in data.tables:
        h.append(_table_html(t, thumbs))
    if data.confusion_png is not None and Path(data.confusion_png).is_file():
        b64 = base64.b64encode(Path(data.confusion_png).read_bytes()).decode("ascii")
        h.append(
            '<section id="sec-confusion"><h2>Confusion matrix</h2>'
            f'<img class="cm" alt="confusion matrix" src="data:image/png;base64,{b64}"></section>'
        )
    h.append(f"</main><script>{JS}</script></body></html>")
    return "".join(h)
