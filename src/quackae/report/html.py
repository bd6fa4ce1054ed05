"""Safe HTML for the report: every value escaped, one inline script and one style, both by hash.

Every byte of a measured page came from the network, and anyone can make a vantage point return
anything, so nothing from the data reaches a page unescaped:

- text and attribute values go through ``esc`` (``html.escape`` with quotes);
- links are only the report's own relative file names (``href`` refuses anything else, so no
  ``javascript:`` or remote URL can be written);
- a received page is shown as escaped text, and rendered only inside ``<iframe sandbox
  srcdoc=...>`` without ``allow-scripts`` (the srcdoc document inherits this page's policy);
- every page carries a Content-Security-Policy: scripts and styles only by the SHA-256 of the
  report's own inline code, images only ``data:``, no frames loaded from anywhere, no fonts,
  no connections, no ``<base>`` and no form targets.

Charts are inline SVG written here (bars and day lines), so the pages need no chart library.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from quackae.dataset.pages import STATUS_LINE

STYLE = """
:root{--fg:#1b1f24;--muted:#5b6570;--line:#d6dbe1;--bg:#fff;--band:#f4f6f8;--accent:#0b5cad}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg)}
header{background:#14263a;color:#fff;padding:10px 20px}
header a{color:#cfe3ff;margin-right:16px;text-decoration:none}
header a:hover{text-decoration:underline}
header .brand{font-weight:600;color:#fff}
main{padding:16px 20px;max-width:1400px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
var(--line);padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
p.lead{color:var(--muted);margin-top:0}
a{color:var(--accent)}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px;min-width:150px;
background:var(--band)}
.card .v{font-size:20px;font-weight:600}.card .k{color:var(--muted);font-size:12px}
.note{background:#fff8e1;border:1px solid #f0d48a;border-radius:6px;padding:8px 12px}
table.grid{border-collapse:collapse;width:100%;margin:4px 0}
table.grid th,table.grid td{border-bottom:1px solid var(--line);padding:3px 6px;text-align:left;
vertical-align:top}
table.grid th{background:var(--band);cursor:pointer;user-select:none;white-space:nowrap}
table.grid th.num,table.grid td.num{text-align:right;font-variant-numeric:tabular-nums}
table.grid td{overflow-wrap:anywhere}table.grid td.num{overflow-wrap:normal}
.table{overflow-x:auto}
table.grid th.asc::after{content:" \\25B2"}table.grid th.desc::after{content:" \\25BC"}
.tools{display:flex;gap:8px;align-items:center;margin:6px 0;flex-wrap:wrap}
.tools input{padding:3px 6px;min-width:260px}.tools .info{color:var(--muted)}
pre{background:var(--band);border:1px solid var(--line);padding:8px;white-space:pre-wrap;
overflow-wrap:anywhere;max-height:420px;overflow:auto;margin:4px 0}
iframe.page{width:100%;height:360px;border:1px solid var(--line);background:#fff}
svg{max-width:100%;height:auto}svg text{font:12px system-ui,sans-serif;fill:#1b1f24}
svg .axis{stroke:#8a949e}svg .grid{stroke:#e3e7eb}
footer{color:var(--muted);padding:16px 20px;border-top:1px solid var(--line);margin-top:30px}
"""

SCRIPT = """
(function(){
function val(td,num){var v=td.getAttribute('data-v');if(v===null){v=td.textContent;}
return num?parseFloat(v):v.toLowerCase();}
function grid(t){
var box=t.closest('.table'),body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
var size=parseInt(t.getAttribute('data-page'),10)||50,page=0,shown=rows,key=-1,dir=1;
var filter=box.querySelector('input.filter'),info=box.querySelector('.info');
var prev=box.querySelector('button.prev'),next=box.querySelector('button.next');
function render(){var pages=Math.max(1,Math.ceil(shown.length/size));page=Math.min(page,pages-1);
var lo=page*size,hi=lo+size;rows.forEach(function(r){r.hidden=true;});
shown.forEach(function(r,i){r.hidden=i<lo||i>=hi;});
info.textContent=(shown.length?(lo+1)+'\\u2013'+Math.min(hi,shown.length):'0')+' of '+
shown.length+(shown.length<rows.length?' matching':'')+' rows shown';
prev.disabled=page===0;next.disabled=page>=pages-1;}
function apply(){var q=filter.value.toLowerCase();
shown=rows.filter(function(r){return !q||r.textContent.toLowerCase().indexOf(q)>=0;});render();}
filter.addEventListener('input',function(){page=0;apply();});
prev.addEventListener('click',function(){page-=1;render();});
next.addEventListener('click',function(){page+=1;render();});
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){
th.addEventListener('click',function(){var num=th.classList.contains('num');
dir=(key===i)?-dir:(num?-1:1);key=i;
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(c){c.classList.remove('asc','desc');});
th.classList.add(dir>0?'asc':'desc');
rows.sort(function(a,b){var x=val(a.cells[i],num),y=val(b.cells[i],num);
if(num){x=isNaN(x)?-Infinity:x;y=isNaN(y)?-Infinity:y;}return x<y?-dir:x>y?dir:0;});
rows.forEach(function(r){body.appendChild(r);});page=0;apply();});});
apply();}
document.querySelectorAll('table.grid').forEach(grid);
document.querySelectorAll('button.copy').forEach(function(b){b.addEventListener('click',function(){
var el=document.getElementById(b.getAttribute('data-target'));
function done(){b.textContent='copied';}
function fallback(){var s=window.getSelection(),r=document.createRange();r.selectNodeContents(el);
s.removeAllRanges();s.addRange(r);try{document.execCommand('copy');done();}catch(e){}}
if(navigator.clipboard&&navigator.clipboard.writeText){
navigator.clipboard.writeText(el.textContent).then(done,fallback);}else{fallback();}});});
})();
"""


def sha256_source(text: str) -> str:
    """The CSP source expression allowing exactly this inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = "; ".join(
    [
        "default-src 'none'",
        f"script-src {sha256_source(SCRIPT)}",
        f"style-src {sha256_source(STYLE)}",
        "img-src data:",
        "frame-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)

_SAFE_HREF = re.compile(r"(?:\.\./)?(?:[A-Za-z0-9_-]+/)?[A-Za-z0-9_.-]+\.html(?:#[A-Za-z0-9_-]+)?")
_SLUG = re.compile(r"[^A-Za-z0-9]+")


def esc(value: Any) -> str:
    """Text or attribute value, escaped (``&``, ``<``, ``>``, both quotes)."""
    return html.escape("" if value is None else str(value), quote=True)


def href(target: str) -> str:
    """A link to another page of the report; anything but a relative report file is refused."""
    if not _SAFE_HREF.fullmatch(target):
        raise ValueError(f"not a report page: {target!r}")
    return target


def slug(text: str, digest_of: str | None = None, limit: int = 40) -> str:
    """A file-name-safe name for ``text``, with a short hash of ``digest_of`` to keep it unique."""
    base = _SLUG.sub("_", text).strip("_")[:limit] or "x"
    if digest_of is None:
        return base
    return f"{base}_{hashlib.blake2b(digest_of.encode(), digest_size=4).hexdigest()}"


def link(target: str, text: Any) -> str:
    """``<a>`` to a report page, text escaped."""
    return f'<a href="{esc(href(target))}">{esc(text)}</a>'


def fmt_int(n: Any) -> str:
    """A count with thousands separators ("n/a" when missing)."""
    return "n/a" if n is None else f"{int(n):,}"


def fmt_prob(p: Any) -> str:
    """A probability to three decimals."""
    return "" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{float(p):.3f}"


# --------------------------------------------------------------------------- page shell


@dataclass
class Page:
    """One HTML document of the report: its title, its depth below the index, its sections."""

    title: str
    depth: int = 0  # 0 for index.html, 1 for pages in a subfolder
    parts: list[str] = field(default_factory=list)

    def add(self, *html_parts: str) -> Page:
        """Append already-safe HTML."""
        self.parts.extend(html_parts)
        return self

    def root(self, target: str) -> str:
        """``target`` (relative to the report folder) as seen from this page."""
        return ("../" * self.depth) + target

    def render(self, footer: str = "") -> str:
        """The whole document: CSP first in the head, the one script last in the body."""
        nav = "".join(
            link(self.root(t), name)
            for t, name in (
                ("index.html", "Overview"),
                ("index.html#countries", "Countries"),
                ("index.html#domains", "Domains"),
                ("index.html#vantage-points", "Vantage points"),
                ("index.html#pages", "Page clusters"),
                ("index.html#proposals", "Proposals"),
                ("index.html#time", "Over time"),
            )
        )
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
            '<meta name="referrer" content="no-referrer">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(self.title)}</title><style>{STYLE}</style></head>\n<body>"
            f'<header><span class="brand">quackae report</span> &nbsp; {nav}</header>\n'
            f"<main>{''.join(self.parts)}</main>\n<footer>{footer}</footer>"
            f"<script>{SCRIPT}</script></body></html>\n"
        )


# --------------------------------------------------------------------------- building blocks


def cards(items: Sequence[tuple[str, Any]]) -> str:
    """A row of figure cards: (label, value) pairs, values escaped."""
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>'
            for k, v in items
        )
        + "</div>"
    )


@dataclass
class Column:
    """A table column: header, whether it is numeric (sorts as a number), a header tooltip."""

    name: str
    numeric: bool = False
    tip: str = ""
    wrap: bool = False


@dataclass
class Cell:
    """A cell whose shown HTML (already safe) differs from its sort value."""

    html: str
    sort: Any = None


def _cell(value: Any, col: Column) -> str:
    cls = "num" if col.numeric else ("wrap" if col.wrap else "")
    attr = f' class="{cls}"' if cls else ""
    if isinstance(value, Cell):
        sort = "" if value.sort is None else f' data-v="{esc(value.sort)}"'
        return f"<td{attr}{sort}>{value.html}</td>"
    if col.numeric and isinstance(value, (int, float)) and value is not None:
        shown = fmt_prob(value) if isinstance(value, float) else fmt_int(value)
        return f'<td{attr} data-v="{esc(value)}">{shown}</td>'
    return f"<td{attr}>{esc(value)}</td>"


def table(
    table_id: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    total: int | None = None,
    what: str = "rows",
    page_size: int = 25,
) -> str:
    """A sortable, filterable, paged table; ``total`` > ``len(rows)`` says the rows were capped."""
    head = "".join(
        f'<th class="{"num" if c.numeric else ""}"'
        + (f' title="{esc(c.tip)}"' if c.tip else "")
        + f">{esc(c.name)}</th>"
        for c in columns
    )
    body = "".join(
        "<tr>" + "".join(_cell(v, c) for v, c in zip(r, columns, strict=True)) + "</tr>"
        for r in rows
    )
    capped = ""
    if total is not None and total > len(rows):
        capped = (
            f'<span class="info-cap">the first {fmt_int(len(rows))} of {fmt_int(total)} {esc(what)}'
            " (in the order shown; the export has every row)</span>"
        )
    return (
        f'<div class="table" id="{esc(table_id)}"><div class="tools">'
        f'<input class="filter" type="search" placeholder="filter {esc(what)}" '
        f'aria-label="filter {esc(what)}"><button class="prev" type="button">previous</button>'
        f'<button class="next" type="button">next</button><span class="info"></span>{capped}'
        f'</div><table class="grid" data-page="{int(page_size)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


# --------------------------------------------------------------------------- charts (SVG)

PALETTE = (
    "#0b5cad",
    "#d1495b",
    "#edae49",
    "#00798c",
    "#6a4c93",
    "#3d9970",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#17becf",
)


def _nice_max(x: float) -> float:
    if x <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(x))
    for step in (1, 2, 2.5, 5, 10):
        if x <= step * mag:
            return step * mag
    return 10 * mag


def _ticks(top: float, n: int = 5) -> list[float]:
    return [top * i / n for i in range(n + 1)]


def _tick_label(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 or v == int(v) else f"{v:.2g}"


def _legend(series: Sequence[tuple[str, str]], x: float, y: float) -> str:
    out, pos = [], x
    for name, colour in series:
        out.append(
            f'<rect x="{pos:.0f}" y="{y - 10:.0f}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{pos + 16:.0f}" y="{y:.0f}">{esc(name)}</text>'
        )
        pos += 16 + 7.2 * len(name) + 18
    return "".join(out)


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    axis_label: str,
    links: Sequence[str | None] | None = None,
    chart_id: str = "",
) -> str:
    """Horizontal grouped bars, one group per label, with title, value axis label and legend.

    ``links`` (report pages) make a label clickable. Each bar has a tooltip with its value.
    """
    n, k = len(labels), max(len(series), 1)
    bar, gap, left, right, top = 12, 8, 260, 40, 56
    height = top + n * (k * bar + gap) + 46
    width = 860
    plot_w = width - left - right
    vmax = _nice_max(max([max(v, default=0) for _, v in series], default=0))
    colours = [(name, PALETTE[i % len(PALETTE)]) for i, (name, _) in enumerate(series)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{esc(title)}"'
        + (f' id="{esc(chart_id)}"' if chart_id else "")
        + ">",
        f'<text x="{left}" y="20" font-weight="600" font-size="14">{esc(title)}</text>',
        _legend(colours, left, 42),
    ]
    base = top + n * (k * bar + gap)
    for t in _ticks(vmax):
        x = left + plot_w * t / vmax
        parts.append(
            f'<line class="grid" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{base}"/>'
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle">{_tick_label(t)}</text>'
        )
    for i, label in enumerate(labels):
        y0 = top + i * (k * bar + gap)
        shown = label if len(label) <= 38 else label[:37] + "\u2026"
        text = (
            f'<text x="{left - 6}" y="{y0 + k * bar / 2 + 4:.0f}" text-anchor="end">'
            f"{esc(shown)}<title>{esc(label)}</title></text>"
        )
        target = links[i] if links else None
        parts.append(f'<a href="{esc(href(target))}">{text}</a>' if target else text)
        for j, (name, values) in enumerate(series):
            v = float(values[i])
            w = plot_w * v / vmax
            parts.append(
                f'<rect x="{left}" y="{y0 + j * bar}" width="{w:.1f}" height="{bar - 1}" '
                f'fill="{colours[j][1]}"><title>{esc(label)}: {esc(name)} '
                f"{_tick_label(v)}</title></rect>"
            )
    parts.append(
        f'<line class="axis" x1="{left}" y1="{top - 4}" x2="{left}" y2="{base}"/>'
        f'<text x="{left + plot_w / 2:.0f}" y="{base + 36}" text-anchor="middle">'
        f"{esc(axis_label)}</text></svg>"
    )
    return "".join(parts)


def day_chart(
    title: str,
    days: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    axis_label: str,
) -> str:
    """Lines of counts per day (x: UTC days, y: ``axis_label``), with title and legend."""
    width, height, left, right, top, bottom = 860, 320, 70, 20, 56, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    vmax = _nice_max(max([max(v, default=0) for _, v in series], default=0))
    n = len(days)
    colours = [(name, PALETTE[i % len(PALETTE)]) for i, (name, _) in enumerate(series)]

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (plot_w * (i + 0.5) / n if n else 0)
        return x, top + plot_h * (1 - v / vmax)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{esc(title)}">',
        f'<text x="{left}" y="20" font-weight="600" font-size="14">{esc(title)}</text>',
        _legend(colours, left, 42),
    ]
    for t in _ticks(vmax):
        y = top + plot_h * (1 - t / vmax)
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick_label(t)}</text>'
        )
    step = max(1, math.ceil(n / 10))
    for i in range(0, n, step):
        x, _ = xy(i, 0)
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{esc(days[i])}</text>'
        )
    for j, (name, values) in enumerate(series):
        pts = [xy(i, float(v)) for i, v in enumerate(values)]
        colour = colours[j][1]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        parts.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{esc(name)} '
            f"{esc(days[i])}: {_tick_label(float(values[i]))}</title></circle>"
            for i, (x, y) in enumerate(pts)
        )
    parts.append(
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>'
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
        f'y2="{top + plot_h}"/>'
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 12}" text-anchor="middle">'
        "day (UTC, of the measurement's start time)</text>"
        f'<text x="16" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 16 {top + plot_h / 2:.0f})">{esc(axis_label)}</text></svg>'
    )
    return "".join(parts)


# --------------------------------------------------------------------------- a received page

_HEADER = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:\s")


@dataclass
class Received:
    """A row's normalised text cut into the request sent, status line, headers and body."""

    sent: str
    status: str
    headers: list[tuple[str, str]]
    body: str


def split_received(text: str) -> Received:
    """Request, status line, headers and body of a decoded row text (``sent`` then ``received``).

    The text is ``try_text``'s: the request sent, the received response (status line, one
    ``Name: value`` line per header value, body) and the error, joined by newlines. Without a
    status line (echo/discard, errors) everything is the body.
    """
    lines = text.split("\n")
    at = next((i for i, ln in enumerate(lines) if STATUS_LINE.match(ln.strip())), None)
    if at is None:
        return Received("", "", [], text)
    headers: list[tuple[str, str]] = []
    i = at + 1
    while i < len(lines) and _HEADER.match(lines[i]):
        name, _, value = lines[i].partition(":")
        headers.append((name, value.strip()))
        i += 1
    return Received("\n".join(lines[:at]), lines[at].strip(), headers, "\n".join(lines[i:]))


def page_view(text: str, view_id: str) -> str:
    """A received page shown safely: status, headers, body as escaped text and sandboxed render.

    The render is ``<iframe sandbox srcdoc>`` with no permission at all: no script runs, no
    form submits, no navigation of this page; the srcdoc document inherits this page's CSP, so
    it loads no image, style, font or frame from anywhere either.
    """
    r = split_received(text)
    parts = []
    if r.status:
        parts.append(f"<h3>Status line</h3><pre>{esc(r.status)}</pre>")
    if r.headers:
        parts.append(
            "<h3>Headers</h3>"
            + table(
                f"{view_id}-headers",
                [Column("header"), Column("value", wrap=True)],
                r.headers,
                what="headers",
                page_size=50,
            )
        )
    if r.sent:
        parts.append(f"<h3>Request sent</h3><pre>{esc(r.sent)}</pre>")
    parts.append(
        f'<h3>Body as text</h3><pre id="{esc(view_id)}-body">{esc(r.body) or "(empty)"}</pre>'
        "<h3>Body rendered</h3>"
        '<p class="lead">In a sandboxed frame: scripts, forms, navigation, and every load of an '
        "image, style, font or frame are blocked, so it shows the page's text and layout only.</p>"
        f'<iframe class="page" sandbox="" referrerpolicy="no-referrer" title="received page" '
        f'srcdoc="{esc(r.body)}"></iframe>'
    )
    return "".join(parts)
