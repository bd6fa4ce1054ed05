"""``quackae report``: a folder of static HTML pages about what a detect run found.

``REPORT_DIR/index.html`` holds the overview and the drill-down tables (countries, domains,
vantage points, page clusters, proposals, time); ``country/``, ``cluster/`` and ``proposal/``
hold one page per country, per page cluster (the most flagged ``Limits.cluster_pages``
templates) and per proposed signature. Every page is self-contained (its own inline style and
script, no file loaded from anywhere) and opens from disk; links between pages are relative, so
the folder can be zipped and sent.

The numbers come from ``queries`` (DuckDB over the Parquet files); the HTML from ``html``,
which escapes everything (see its docstring for what a hostile page cannot do).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pycountry

from quackae.dataset import store
from quackae.io.atomic import atomic_write
from quackae.io.folders import check_output, claim_output
from quackae.report import html as h
from quackae.report import queries as q

MARKER = ".quackae-report"  # marks a folder as a report, which the next report may replace
SUBDIRS = ("country", "cluster", "proposal")
SUMMARY = "report.json"
LABELS = {1: "blocked (signature)", 0: "undetermined", -1: "uncensored"}
AS_NOTE = (
    "By AS: not available. The dataset stores no AS number for a vantage point, and quackae "
    "ships no offline IP-to-AS table (its offline geolocation, iptocc or a MaxMind country "
    "file, gives countries only), so this report cannot group by AS. Censored Planet's own "
    "tables add server_asn from CAIDA's routeviews data."
)


@dataclass(frozen=True)
class Limits:
    """Caps that keep every page small whatever the dataset's size."""

    rows: int = 500  # row-level rows per drill-down page
    groups: int = 2000  # rows of the index's domain / vantage point / page-cluster tables
    cluster_pages: int = 200  # page clusters that get their own page
    sub_groups: int = 200  # rows of a drill-down page's group tables
    bars: int = 25  # bars of a chart


@dataclass
class Built:
    """What ``build_report`` wrote."""

    index: Path
    pages: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    overview: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        """Total size of the pages."""
        return sum(p.stat().st_size for p in self.pages)


# --------------------------------------------------------------------------- names and links


def country_name(code: str) -> str:
    """``Iran, Islamic Republic of`` for ``IR`` (pycountry), the code itself when unknown."""
    if not code:
        return "unknown country"
    found = pycountry.countries.get(alpha_2=code) if re.fullmatch(r"[A-Z]{2}", code) else None
    return found.name if found else code


def country_page(code: str) -> str:
    """The country page's path in the report folder."""
    name = code if re.fullmatch(r"[A-Z]{2}", code) else h.slug(code or "unknown", code)
    return f"country/{name}.html"


def cluster_page(template: str) -> str:
    """The page cluster's path in the report folder (slug + hash of the template)."""
    return f"cluster/{h.slug(template, template)}.html"


def proposal_page(fingerprint: str) -> str:
    """The proposal's path in the report folder."""
    name = fingerprint if re.fullmatch(r"[A-Za-z0-9_]{1,80}", fingerprint) else None
    return f"proposal/{name or h.slug(fingerprint, fingerprint)}.html"


# --------------------------------------------------------------------------- tables


GROUP_FIELDS: dict[str, h.Column] = {
    "rows": h.Column("rows", True, "tries (rows of the dataset)"),
    "candidates": h.Column("candidates", True, "the detector's candidates (any label)"),
    "new_candidates": h.Column(
        "new candidates", True, "candidates no signature labelled (undetermined rows)"
    ),
    "blocked": h.Column("labelled blocks", True, "rows a blockpage signature labelled censored"),
    "domains": h.Column("domains", True, "distinct test domains of flagged rows"),
    "vantage_points": h.Column("vantage points", True, "distinct vantage points of flagged rows"),
    "countries": h.Column("countries", True, "distinct countries of flagged rows"),
    "max_probability": h.Column("max probability", True, "highest probability in the group"),
    "first_seen": h.Column("first seen (UTC)", False, "earliest flagged row"),
    "last_seen": h.Column("last seen (UTC)", False, "latest flagged row"),
}


def group_table(
    table_id: str,
    groups: Sequence[dict[str, Any]],
    key_columns: Sequence[tuple[h.Column, Callable[[dict[str, Any]], Any]]],
    fields: Sequence[str],
    total: int | None = None,
    what: str = "groups",
) -> str:
    """A table of ``queries.grouped`` rows: key columns first, then the chosen count fields."""
    columns = [c for c, _ in key_columns] + [GROUP_FIELDS[f] for f in fields]
    rows = [[get(g) for _, get in key_columns] + [g[f] for f in fields] for g in groups]
    return h.table(table_id, columns, rows, total=total, what=what)


class Links:
    """Which pages exist, so a cell links only to a page that was written."""

    def __init__(self, countries: set[str], clusters: set[str], proposals: set[str]) -> None:
        self.countries, self.clusters, self.proposals = countries, clusters, proposals

    def country(self, page: h.Page, code: str) -> h.Cell:
        """A country cell: its name, linked to its page."""
        text = f"{country_name(code)} ({code})" if code else "unknown country"
        if code in self.countries:
            return h.Cell(h.link(page.root(country_page(code)), text), text)
        return h.Cell(h.esc(text), text)

    def cluster(self, page: h.Page, template: str | None) -> h.Cell:
        """A page-cluster cell: its template, linked to its page when it has one."""
        text = template or ""
        if text in self.clusters:
            return h.Cell(h.link(page.root(cluster_page(text)), text), text)
        return h.Cell(h.esc(text), text)

    def proposal(self, page: h.Page, fingerprint: str | None) -> h.Cell:
        """A proposal cell: its fingerprint, linked to its page."""
        if not fingerprint:
            return h.Cell("", "")
        if fingerprint in self.proposals:
            return h.Cell(h.link(page.root(proposal_page(fingerprint)), fingerprint), fingerprint)
        return h.Cell(h.esc(fingerprint), fingerprint)


ROW_COLUMNS = [
    h.Column("start (UTC)"),
    h.Column("country"),
    h.Column("vantage point"),
    h.Column("domain", wrap=True),
    h.Column("scan"),
    h.Column("label", tip="what the signatures said"),
    h.Column("signature", tip="the fingerprint that labelled the row"),
    h.Column("probability", True, "the detector's calibrated probability"),
    h.Column("candidate"),
    h.Column("reason", wrap=True, tip="the detector's evidence"),
    h.Column("page cluster", wrap=True),
    h.Column("proposal"),
]


def row_table(
    table_id: str, page: h.Page, rows: Sequence[dict[str, Any]], links: Links, total: int
) -> str:
    """A drill-down's flagged rows, most probable first; ``total`` is how many exist in all."""
    body = [
        [
            r["start_time"] or "unknown",
            links.country(page, r["country_code"]),
            r["ip"],
            r["domain"],
            r["scan"],
            LABELS.get(int(r["censored"]), str(r["censored"])),
            r["fingerprint"],
            float(r["probability"]),
            "yes" if r["candidate"] else "no",
            r["reason"],
            links.cluster(page, r["template"]),
            links.proposal(page, r["cluster"]),
        ]
        for r in rows
    ]
    return h.table(table_id, ROW_COLUMNS, body, total=total, what="flagged rows")


def figure_cards(g: dict[str, Any]) -> str:
    """The cards of a drill-down page: its rows and flagged counts, first and last seen."""
    return h.cards(
        [
            ("rows", h.fmt_int(g["rows"])),
            ("candidates", h.fmt_int(g["candidates"])),
            ("new candidates", h.fmt_int(g["new_candidates"])),
            ("labelled blocks", h.fmt_int(g["blocked"])),
            ("domains (flagged)", h.fmt_int(g["domains"])),
            ("vantage points (flagged)", h.fmt_int(g["vantage_points"])),
            ("countries (flagged)", h.fmt_int(g["countries"])),
            ("first seen (UTC)", g["first_seen"] or "n/a"),
            ("last seen (UTC)", g["last_seen"] or "n/a"),
        ]
    )


# --------------------------------------------------------------------------- the data


@dataclass
class Data:
    """Everything the pages show, queried once."""

    inputs: q.Inputs
    overview: dict[str, Any]
    scans: list[dict[str, Any]]
    reasons: tuple[list, list]
    countries: list[dict[str, Any]]
    domains: list[dict[str, Any]]
    n_domains: int
    vps: list[dict[str, Any]]
    n_vps: int
    templates: list[dict[str, Any]]
    n_templates: int
    proposals: list[dict[str, Any]]  # grouped rows per cluster, in proposal-file order
    per_day: list[dict[str, Any]]
    days: list[str]
    sub: dict[
        str, dict[str, dict[Any, list[dict[str, Any]]]]
    ]  # page kind -> field -> parent -> rows
    rows: dict[str, dict[Any, list[dict[str, Any]]]]  # page kind -> parent -> rows
    flagged: dict[str, dict[Any, int]]  # page kind -> parent -> flagged rows
    texts: dict[int, str]


def _by_parent(rows: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["parent"], []).append(r)
    return out


def _flagged_counts(con, parent: str, where: str) -> dict[Any, int]:
    return dict(
        con.execute(
            f"SELECT {parent}, count(*) FROM r WHERE {q.FLAGGED} AND ({where}) GROUP BY 1"
        ).fetchall()
    )


def query(inputs: q.Inputs, limits: Limits, threads: int | None = None) -> Data:
    """Run every query of the report (DuckDB), and decode the example pages."""
    con = q.connect(inputs, threads)
    templates = q.grouped(con, "template", limit=limits.groups)
    chosen = [
        t["key"] for t in templates if t["candidates"] or t["blocked"] or t["new_candidates"]
    ][: limits.cluster_pages]
    con.register("chosen", pa.table({"key": pa.array(chosen, pa.string())}))
    in_chosen = "template IN (SELECT key FROM chosen)"
    in_proposal = "cluster IS NOT NULL"
    order = {p["fingerprint"]: i for i, p in enumerate(inputs.proposals)}
    proposals = sorted(
        q.grouped(con, "cluster", where=in_proposal),
        key=lambda g: (order.get(g["key"], len(order)), g["key"]),
    )
    kinds = {"country": ("country_code", "TRUE"), "cluster": ("template", in_chosen)}
    kinds["proposal"] = ("cluster", in_proposal)
    fields = ("country_code", "template", "cluster", "domain", "ip")
    sub: dict[str, dict[str, dict[Any, list[dict[str, Any]]]]] = {}
    rows: dict[str, dict[Any, list[dict[str, Any]]]] = {}
    counts: dict[str, dict[Any, int]] = {}
    for kind, (parent, where) in kinds.items():
        sub[kind] = {}
        for name in fields:
            if name == parent or (kind != "country" and name == "cluster"):
                continue
            cond = where if name != "cluster" else f"({where}) AND {in_proposal}"
            extra = "mode(country_code) AS country" if name == "ip" else ""
            sub[kind][name] = _by_parent(
                q.grouped(con, name, cond, parent=parent, limit=limits.sub_groups, extra=extra)
            )
        rows[kind] = q.top_rows(con, parent, where, limits.rows)
        counts[kind] = _flagged_counts(con, parent, where)
    examples = [r[0]["row_id"] for kind in ("cluster", "proposal") for r in rows[kind].values()]
    data = Data(
        inputs=inputs,
        overview=q.overview(con),
        scans=q.scans(con),
        reasons=q.reason_counts(con),
        countries=q.grouped(con, "country_code"),
        domains=q.grouped(con, "domain", limit=limits.groups),
        n_domains=q.count_groups(con, "domain"),
        vps=q.grouped(con, "ip", limit=limits.groups, extra="mode(country_code) AS country"),
        n_vps=q.count_groups(con, "ip"),
        templates=templates,
        n_templates=q.count_groups(con, "template"),
        proposals=proposals,
        per_day=q.per_day(con),
        days=q.days(con),
        sub=sub,
        rows=rows,
        flagged=counts,
        texts=q.fetch_texts(inputs, examples),
    )
    con.close()
    return data


# --------------------------------------------------------------------------- pages


def _footer(data: Data) -> str:
    s = data.inputs.summary
    threshold = s.get("threshold")
    return (
        f"quackae report of the dataset {h.esc(data.inputs.dataset)} scored by "
        f"{h.esc(data.inputs.detections)}"
        + (f" (threshold {float(threshold):.4f})" if threshold is not None else "")
        + ". Times are UTC. Pages of measured responses are shown as escaped text and in "
        "sandboxed frames; nothing on these pages loads from the network."
    )


DEFINITIONS = (
    '<p class="lead"><b>candidate</b>: the detector\'s probability is at or above its threshold;'
    " <b>new candidate</b>: a candidate no signature labelled; <b>labelled block</b>: a "
    "blockpage signature labelled the row censored; <b>flagged</b>: a candidate or a labelled "
    "block (first and last seen are over flagged rows). A <b>page cluster</b> is every row "
    "whose received page has one template (status line and title, or first body line; "
    "domains, addresses and numbers are placeholders). A <b>proposal</b> is a cluster of new "
    "candidates with a signature <code>quackae detect predict</code> proposed for it.</p>"
)


def _country_chart(data: Data, page: h.Page, groups: list[dict[str, Any]], limits: Limits) -> str:
    top = [g for g in groups if g["new_candidates"] or g["blocked"]][: limits.bars]
    if not top:
        return "<p>No country has a candidate or a labelled block.</p>"
    return h.bar_chart(
        f"Tries flagged per country (the {len(top)} with the most new candidates)",
        [f"{country_name(g['key'])} ({g['key']})" if g["key"] else "unknown" for g in top],
        [
            ("new candidates", [g["new_candidates"] for g in top]),
            ("labelled blocks", [g["blocked"] for g in top]),
        ],
        "tries (count)",
        links=[page.root(country_page(g["key"])) for g in top],
        chart_id="country-chart",
    )


def _time_series(data: Data, codes: list[str], value: str) -> list[tuple[str, list[float]]]:
    index = {d: i for i, d in enumerate(data.days)}
    series = {c: [0.0] * len(data.days) for c in codes}
    for r in data.per_day:
        if r["country_code"] in series:
            series[r["country_code"]][index[r["day"]]] = r[value]
    return [(c or "unknown", v) for c, v in series.items()]


def index_page(data: Data, links: Links, limits: Limits) -> str:
    """The overview and every drill-down table."""
    ov, page = data.overview, h.Page("quackae report: overview")
    first, last = ov["first_day"] or "n/a", ov["last_day"] or "n/a"
    page.add(
        "<h1>What the detector found</h1>",
        f'<p class="lead">Dataset {h.esc(data.inputs.dataset)}; detections '
        f"{h.esc(data.inputs.detections)}.</p>",
        h.cards(
            [
                ("rows (tries)", h.fmt_int(ov["rows"])),
                ("scans (archives)", h.fmt_int(ov["scans"])),
                ("date range (UTC)", f"{first} to {last}"),
                ("countries", h.fmt_int(ov["countries"])),
                ("vantage points", h.fmt_int(ov["vantage_points"])),
                ("domains", h.fmt_int(ov["domains"])),
            ]
        ),
        h.cards(
            [
                ("labelled blocks (signatures)", h.fmt_int(ov["blocked"])),
                ("labelled uncensored", h.fmt_int(ov["uncensored"])),
                ("undetermined", h.fmt_int(ov["undetermined"])),
                ("candidates", h.fmt_int(ov["candidates"])),
                ("new candidates", h.fmt_int(ov["new_candidates"])),
                ("proposals", h.fmt_int(len(data.inputs.proposals))),
                ("new candidates in proposals", h.fmt_int(ov["in_proposals"])),
            ]
        ),
        DEFINITIONS,
        '<h2 id="scans">By scan type</h2>',
        group_table(
            "scans-table",
            data.scans,
            [(h.Column("scan"), lambda g: g["key"])],
            ["rows", "candidates", "new_candidates", "blocked", "first_seen", "last_seen"],
            what="scan types",
        ),
    )
    unflagged, evidence = data.reasons
    page.add(
        '<h2 id="reasons">How the detector decided</h2>',
        '<p class="lead">Evidence of its candidates (a candidate counts once per kind of '
        "evidence it has), and why the other rows are not candidates.</p>",
        h.bar_chart(
            "Evidence named by the detector's candidates",
            [k for k, _ in evidence[: limits.bars]],
            [("candidates", [n for _, n in evidence[: limits.bars]])],
            "candidate tries with this evidence (count)",
        )
        if evidence
        else "<p>No candidates.</p>",
        h.table(
            "evidence-table",
            [h.Column("evidence (numbers as N)", wrap=True), h.Column("candidates", True)],
            evidence,
            what="kinds of evidence",
        ),
        h.table(
            "unflagged-table",
            [h.Column("reason a row is not a candidate", wrap=True), h.Column("rows", True)],
            unflagged,
            what="reasons",
        ),
    )
    fields = ["rows", "candidates", "new_candidates", "blocked", "domains", "vantage_points"]
    page.add(
        '<h2 id="countries">Countries</h2>',
        _country_chart(data, page, data.countries, limits),
        group_table(
            "countries-table",
            data.countries,
            [(h.Column("country"), lambda g: links.country(page, g["key"]))],
            [*fields, "first_seen", "last_seen"],
            what="countries",
        ),
        '<h2 id="domains">Domains</h2>',
        group_table(
            "domains-table",
            data.domains,
            [(h.Column("domain", wrap=True), lambda g: g["key"])],
            ["rows", "candidates", "new_candidates", "blocked", "vantage_points", "countries"]
            + ["first_seen", "last_seen"],
            total=data.n_domains,
            what="domains",
        ),
        '<h2 id="vantage-points">Vantage points</h2>',
        group_table(
            "vps-table",
            data.vps,
            [
                (h.Column("vantage point"), lambda g: g["key"]),
                (h.Column("country"), lambda g: links.country(page, g["country"] or "")),
            ],
            ["rows", "candidates", "new_candidates", "blocked", "domains", "first_seen"]
            + ["last_seen"],
            total=data.n_vps,
            what="vantage points",
        ),
        '<h2 id="pages">Page clusters</h2>',
        f'<p class="lead">The {len(links.clusters)} clusters with the most new candidates '
        "have their own page.</p>",
        group_table(
            "clusters-table",
            data.templates,
            [(h.Column("page template", wrap=True), lambda g: links.cluster(page, g["key"]))],
            [*fields, "countries", "first_seen", "last_seen"],
            total=data.n_templates,
            what="page clusters",
        ),
        '<h2 id="proposals">Proposed signatures</h2>',
        _proposals_table(data, page, links),
        '<h2 id="time">Over time</h2>',
        _time_section(data, page, links, limits),
        f'<h2 id="as">By AS</h2><p class="note">{h.esc(AS_NOTE)}</p>',
    )
    return page.render(_footer(data))


def _proposals_table(data: Data, page: h.Page, links: Links) -> str:
    if not data.inputs.proposals:
        return "<p>The detect run proposed no signature.</p>"
    stats = {g["key"]: g for g in data.proposals}
    empty = dict.fromkeys(GROUP_FIELDS, None)
    rows = []
    for p in data.inputs.proposals:
        g = stats.get(p["fingerprint"], empty)
        rows.append(
            [
                links.proposal(page, p["fingerprint"]),
                g["rows"] or 0,
                g["domains"] or 0,
                g["vantage_points"] or 0,
                g["countries"] or 0,
                g["first_seen"] or "",
                g["last_seen"] or "",
                h.Cell(f"<code>{h.esc(p['pattern'])}</code>", p["pattern"]),
            ]
        )
    columns = [
        h.Column("proposal"),
        h.Column("rows covered", True),
        h.Column("domains", True),
        h.Column("vantage points", True),
        h.Column("countries", True),
        h.Column("first seen (UTC)"),
        h.Column("last seen (UTC)"),
        h.Column("pattern (Python regex)", wrap=True),
    ]
    return h.table("proposals-table", columns, rows, what="proposals")


def _time_section(data: Data, page: h.Page, links: Links, limits: Limits) -> str:
    if not data.days:
        return "<p>No row has a start time.</p>"
    top = [g["key"] for g in data.countries if g["new_candidates"]][:8]
    chart = (
        h.day_chart(
            f"New candidates per day, the {len(top)} countries with the most",
            data.days,
            _time_series(data, top, "new_candidates"),
            "new candidate tries per day (count)",
        )
        if top
        else "<p>No new candidates.</p>"
    )
    seen = [
        [
            links.country(page, g["key"]),
            g["first_seen"] or "",
            g["last_seen"] or "",
            sum(1 for r in data.per_day if r["country_code"] == g["key"] and r["new_candidates"]),
            g["new_candidates"],
            g["blocked"],
        ]
        for g in data.countries
        if g["candidates"] or g["blocked"]
    ]
    per_day = [
        [
            r["day"],
            links.country(page, r["country_code"]),
            r["candidates"],
            r["new_candidates"],
            r["blocked"],
        ]
        for r in data.per_day
        if r["candidates"] or r["blocked"]
    ]
    return (
        chart
        + "<h3>First and last seen per country</h3>"
        + h.table(
            "seen-table",
            [
                h.Column("country"),
                h.Column("first seen (UTC)"),
                h.Column("last seen (UTC)"),
                h.Column("days with new candidates", True),
                h.Column("new candidates", True),
                h.Column("labelled blocks", True),
            ],
            seen,
            what="countries",
        )
        + "<h3>Per day and country</h3>"
        + h.table(
            "days-table",
            [
                h.Column("day (UTC)"),
                h.Column("country"),
                h.Column("candidates", True),
                h.Column("new candidates", True),
                h.Column("labelled blocks", True),
            ],
            per_day,
            what="country-days",
        )
    )


def _sub_tables(data: Data, kind: str, parent: Any, page: h.Page, links: Links) -> str:
    """The drill-down page's group tables (countries, page clusters, domains, ...)."""
    sub = data.sub[kind]
    counts = ["rows", "candidates", "new_candidates", "blocked"]
    out = []
    if "country_code" in sub:
        out.append("<h2>Countries</h2>")
        out.append(
            group_table(
                f"{kind}-countries",
                sub["country_code"].get(parent, []),
                [(h.Column("country"), lambda g: links.country(page, g["key"]))],
                [*counts, "domains", "vantage_points", "first_seen", "last_seen"],
                what="countries",
            )
        )
    if "template" in sub:
        out.append("<h2>Page clusters</h2>")
        out.append(
            group_table(
                f"{kind}-clusters",
                sub["template"].get(parent, []),
                [(h.Column("page template", wrap=True), lambda g: links.cluster(page, g["key"]))],
                [*counts, "domains", "vantage_points", "first_seen", "last_seen"],
                what="page clusters",
            )
        )
    if "cluster" in sub:
        out.append("<h2>Proposals</h2>")
        out.append(
            group_table(
                f"{kind}-proposals",
                sub["cluster"].get(parent, []),
                [(h.Column("proposal"), lambda g: links.proposal(page, g["key"]))],
                ["rows", "domains", "vantage_points", "first_seen", "last_seen"],
                what="proposals",
            )
        )
    out.append("<h2>Domains</h2>")
    out.append(
        group_table(
            f"{kind}-domains",
            sub["domain"].get(parent, []),
            [(h.Column("domain", wrap=True), lambda g: g["key"])],
            [*counts, "vantage_points", "first_seen", "last_seen"],
            what="domains",
        )
    )
    out.append("<h2>Vantage points</h2>")
    out.append(
        group_table(
            f"{kind}-vps",
            sub["ip"].get(parent, []),
            [
                (h.Column("vantage point"), lambda g: g["key"]),
                (h.Column("country"), lambda g: links.country(page, g["country"] or "")),
            ],
            [*counts, "domains", "first_seen", "last_seen"],
            what="vantage points",
        )
    )
    return "".join(out)


def _rows_section(data: Data, kind: str, parent: Any, page: h.Page, links: Links) -> str:
    rows = data.rows[kind].get(parent, [])
    total = data.flagged[kind].get(parent, 0)
    return (
        f'<h2 id="rows">Flagged rows</h2><p class="lead">{h.fmt_int(total)} rows are candidates '
        "or labelled blocks; the most probable first.</p>"
        + row_table(f"{kind}-rows", page, rows, links, total)
    )


def country_html(data: Data, g: dict[str, Any], links: Links) -> str:
    """A country's page: its figures, candidates per day, clusters, domains, vantage points."""
    code = g["key"]
    page = h.Page(f"quackae report: {country_name(code)}", depth=1)
    series = _time_series(data, [code], "candidates")[0][1]
    new = _time_series(data, [code], "new_candidates")[0][1]
    blocked = _time_series(data, [code], "blocked")[0][1]
    page.add(
        f"<h1>{h.esc(country_name(code))} ({h.esc(code or 'no code')})</h1>",
        figure_cards(g),
        h.day_chart(
            f"Flagged tries per day in {country_name(code)}",
            data.days,
            [("candidates", series), ("new candidates", new), ("labelled blocks", blocked)],
            "tries per day (count)",
        )
        if data.days
        else "",
        _sub_tables(data, "country", code, page, links),
        _rows_section(data, "country", code, page, links),
    )
    return page.render(_footer(data))


def _example(data: Data, kind: str, parent: Any, view_id: str) -> str:
    rows = data.rows[kind].get(parent, [])
    if not rows or rows[0]["row_id"] not in data.texts:
        return "<p>No example page.</p>"
    r = rows[0]
    return (
        '<h2 id="page">The page as received</h2><p class="lead">The most probable row '
        f"({h.esc(r['domain'])} from {h.esc(r['ip'])}, {h.esc(r['start_time'] or '')} UTC), as "
        "the dataset keeps it: normalised (the test domain, addresses, dates and numbers are "
        "placeholders such as [DOMAIN]) and cut at the dataset's token limit.</p>"
        + h.page_view(data.texts[r["row_id"]], view_id)
    )


def cluster_html(data: Data, g: dict[str, Any], links: Links) -> str:
    """A page cluster's page: its template, an example page, where it was seen, its rows."""
    page = h.Page("quackae report: page cluster", depth=1)
    page.add(
        "<h1>Page cluster</h1>",
        f'<p class="lead">Template: <code>{h.esc(g["key"])}</code></p>',
        figure_cards(g),
        _example(data, "cluster", g["key"], "example"),
        _sub_tables(data, "cluster", g["key"], page, links),
        _rows_section(data, "cluster", g["key"], page, links),
    )
    return page.render(_footer(data))


def proposal_html(data: Data, proposal: dict[str, str], g: dict[str, Any], links: Links) -> str:
    """A proposal's page: the signature ready to copy, an example page, its rows."""
    fp = proposal["fingerprint"]
    page = h.Page(f"quackae report: {fp}", depth=1)
    line = json.dumps({"fingerprint": fp, "pattern": proposal["pattern"]})
    page.add(
        f"<h1>Proposed signature {h.esc(fp)}</h1>",
        figure_cards(g),
        "<h2>The signature</h2>",
        '<p class="lead">One line of Censored Planet\'s signature format: append it to '
        "<code>blockpage_signatures.json</code> of a signature folder and run "
        "<code>quackae flatten --signatures DIR</code> again to label these rows.</p>",
        f'<pre id="signature">{h.esc(line)}</pre>',
        '<button class="copy" type="button" data-target="signature">copy the line</button>',
        f'<h3>Pattern</h3><pre id="pattern">{h.esc(proposal["pattern"])}</pre>',
        _example(data, "proposal", fp, "example"),
        _sub_tables(data, "proposal", fp, page, links),
        _rows_section(data, "proposal", fp, page, links),
    )
    return page.render(_footer(data))


# --------------------------------------------------------------------------- the folder


#: What marks an earlier report's folder (the folder rule's proof, ``quackae.io.folders``).
REPORT_PROOF = (MARKER, "index.html")


def prepare_folder(out: Path) -> None:
    """Create ``out`` or empty a previous report there; refuse any other non-empty folder.

    The folder rule every writing command follows (``quackae.io.folders``): new, empty, or made
    by an earlier ``quackae report`` (its marker or ``index.html``).
    """
    claim_output(out, "--storage_path", "quackae report", proof=REPORT_PROOF)
    for sub in SUBDIRS:
        shutil.rmtree(out / sub, ignore_errors=True)
    atomic_write(out / MARKER, "written by `quackae report`: the next report here replaces it\n")


def build_report(
    data_dir: store.Root,
    detections: Path,
    storage_path: Path,
    limits: Limits = Limits(),
    threads: int | None = None,
) -> Built:
    """Query the dataset and detections, write every page; what was written and how long it took."""
    started = time.perf_counter()
    out = Path(storage_path)
    check_output(out, "--storage_path", "quackae report", proof=REPORT_PROOF)  # before reading
    inputs = q.open_inputs(data_dir, detections)
    prepare_folder(out)
    data = query(inputs, limits, threads)
    chosen = {g["key"]: g for g in data.templates if g["key"] in data.rows["cluster"]}
    props = {g["key"]: g for g in data.proposals}
    links = Links(
        {g["key"] for g in data.countries},
        set(chosen),
        {p["fingerprint"] for p in inputs.proposals},
    )
    built = Built(index=out / "index.html", overview=data.overview)
    pages: list[tuple[str, str]] = [("index.html", index_page(data, links, limits))]
    pages += [(country_page(g["key"]), country_html(data, g, links)) for g in data.countries]
    pages += [(cluster_page(k), cluster_html(data, g, links)) for k, g in chosen.items()]
    empty = {**dict.fromkeys(GROUP_FIELDS, 0), "first_seen": None, "last_seen": None}
    pages += [
        (
            proposal_page(p["fingerprint"]),
            proposal_html(data, p, props.get(p["fingerprint"], {**empty, "key": ""}), links),
        )
        for p in inputs.proposals
    ]
    for sub in SUBDIRS:
        (out / sub).mkdir(exist_ok=True)
    for name, text in pages:
        atomic_write(out / name, text)
        built.pages.append(out / name)
    built.seconds = time.perf_counter() - started
    summary = {
        "kind": "quackae_report",
        "dataset": str(inputs.dataset),
        "detections": str(inputs.detections),
        "overview": data.overview,
        "proposals": len(inputs.proposals),
        "pages": {name: len(text.encode()) for name, text in pages},
        "limits": limits.__dict__,
    }
    atomic_write(out / SUMMARY, json.dumps(summary, indent=1, default=str))
    return built
