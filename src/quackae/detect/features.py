"""Per-row evidence for the detector, read from a dataset: CP flags, contrast, clusters.

Everything here is unsupervised (no label is read), so it may use every row of the dataset:

- the measurement flags Censored Planet stores for every try (``success``, ``anomaly``,
  ``controls_failed``, ``stateful_block``), decoded from the row's static tokens;
- the page *template* a try received (status line + title, or + the first body line, else the
  first line of the normalised text; a redirect by its target host), where domains, addresses,
  numbers and ids are already placeholders;
- cluster evidence per template (ICLab, S&P 2020): distinct test domains and vantage points
  showing it within the row's country, the number of countries, and the URL-to-country ratio;
- contrast: the share of the domains tested at the row's vantage point that got the same template.
  A censor answers only for blocked domains; a host that is not a proper server answers every
  domain (and its control) alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from quackae.dataset import store
from quackae.dataset.pages import STATUS_LINE, page_signature
from quackae.ingest.tokens import STATIC_FIELDS

FLAGS = ("success", "anomaly", "controls_failed", "stateful_block")
COLUMNS = (
    "row_id",
    "source",
    "line",
    "try_index",
    "ip",
    "domain",
    "country_code",
    "timestamp",
    "scan",
    "censored",
    "fingerprint",
    "outcome",
)
NUMERIC = (
    "log_domains_in_country",
    "log_vps_in_country",
    "log_countries",
    "log_url_country_ratio",
    "share_at_vp",
    "has_page",
)


@dataclass
class RowFeatures:
    """Metadata, flags, templates and cluster evidence of every row of one dataset (row order)."""

    table: pa.Table  # COLUMNS
    flags: dict[str, np.ndarray]  # FLAGS -> bool per row
    template: np.ndarray  # str per row
    numeric: np.ndarray  # (rows, len(NUMERIC)) float64
    tokens: store.DatasetTokens
    same_site: np.ndarray | None = None  # bool per row: a redirect to the tested site itself
    site_bound: np.ndarray | None = None  # bool per row: its site got this page in many countries

    @property
    def row_ids(self) -> np.ndarray:
        """Stable row ids, in row order."""
        return self.table.column("row_id").to_numpy()

    def column(self, name: str) -> np.ndarray:
        """One metadata column as a numpy array (strings as object)."""
        col = self.table.column(name)
        if pa.types.is_string(col.type):
            return np.asarray(col.fill_null("").to_pylist(), dtype=object)
        return col.to_numpy()

    @property
    def scored(self) -> np.ndarray:
        """Rows that are candidates at all: the try did not match the expected response."""
        return self.flags["success"] != 1

    @property
    def has_page(self) -> np.ndarray:
        """Rows that received an HTTP page (a status line), not only an error or a bare banner."""
        return self.numeric[:, NUMERIC.index("has_page")] > 0

    @property
    def controls_ok(self) -> np.ndarray:
        """Censored Planet's rule: a try whose controls failed is no evidence, unless stateful."""
        return ~self.flags["controls_failed"] | self.flags["stateful_block"]

    def _mask(self, values: np.ndarray | None) -> np.ndarray:
        return values if values is not None else np.zeros(len(self.template), bool)

    @property
    def evidence_allowed(self) -> np.ndarray:
        """Controls fine; not a redirect to the tested site; not a page that follows the site.

        ``same_site``: ``same_site_redirect``; ``site_bound``: the row's domain got the same
        page (template) in at least ``SITE_COUNTRIES`` countries (a hosting network's page).
        """
        return self.controls_ok & ~self._mask(self.same_site) & ~self._mask(self.site_bound)


def static_flags(tokens: store.DatasetTokens, row_ids: np.ndarray) -> dict[str, np.ndarray]:
    """``success`` (0 unknown, 1 false, 2 true: 1 where true) and the bool flags, per row."""
    static = tokens.dataset.manifest["layout"]["static"]
    names = [name for name, _ in STATIC_FIELDS]  # sequence order (the manifest's dict is sorted)
    values, indptr = tokens.flat(row_ids)
    out: dict[str, np.ndarray] = {}
    for name in FLAGS:
        start = int(static[name][0])
        pos = indptr[:-1] + 1 + names.index(name)
        v = (
            values[np.minimum(pos, len(values) - 1)] - start
            if len(values)
            else np.zeros(len(row_ids), np.int64)
        )
        out[name] = (v == 2).astype(np.int8) if name == "success" else v == 1
    return out


_LOCATION = re.compile(r"^Location:\s*((?:[a-z]+://)?[^/\s?#]*)", re.IGNORECASE | re.MULTILINE)
_REDIRECT = re.compile(r"^(?:HTTP/\S+\s+)?3\d\d\b")
#: A header line ("Name: value"); group 1 is the name.
HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\s")


def template_of(text: str) -> str:
    """A page's template: ``pages.page_signature``; a redirect is named by where it points.

    A censor's redirect keeps its target host while its status line varies (301/302/307), so
    redirects group by the Location's scheme and host instead of by the status line. A page cut
    before its body by the token budget (long headers) is named by its headers' product
    (``| cut: <Server>; <header names>``), not lumped with every bare status line.
    """
    sig = page_signature(text)
    if _REDIRECT.match(sig):
        where = _LOCATION.search(text)
        if where:
            return f"redirect to {where.group(1)}"
    if "| title:" not in sig and STATUS_LINE.match(sig):
        body = _first_body_line(text)
        if body:
            return f"{sig} | body: {body[:60]}"
        return f"{sig} | cut: {_header_kind(text)}" if _declares_body(text) else sig
    return sig


_CONTENT_LENGTH = re.compile(r"^Content-Length:\s*(\d+|\[NUM\])", re.IGNORECASE | re.MULTILINE)
_SERVER = re.compile(r"^Server:\s*(\S[^\r\n]{0,30})", re.IGNORECASE | re.MULTILINE)


def _declares_body(text: str) -> bool:
    """Whether the headers announce a body the text does not show (the token budget cut it)."""
    length = _CONTENT_LENGTH.search(text)
    chunked = re.search(r"^Transfer-Encoding:\s*chunked", text, re.IGNORECASE | re.MULTILINE)
    if chunked or length is None:
        return bool(chunked)
    return length.group(1) == "[NUM]" or int(length.group(1)) > 0


def _header_kind(text: str) -> str:
    """A cut page's product, by its headers: the ``Server`` value and the sorted header names."""
    heads = (HEADER_LINE.match(ln) for ln in text.splitlines())
    names = sorted({h.group(1).lower() for h in heads if h})
    server = _SERVER.search(text)
    return f"{server.group(1).strip() if server else '-'}; {','.join(names)}"[:120]


def _first_body_line(text: str) -> str:
    """The first line after the status line that is not a header (a title-less page's start)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    status = next((i for i, ln in enumerate(lines) if STATUS_LINE.match(ln)), None)
    if status is None:
        return ""
    return next((ln for ln in lines[status + 1 :] if not HEADER_LINE.match(ln)), "")


_LOCATION_TARGET = re.compile(r"^Location:\s*(\S*)", re.IGNORECASE | re.MULTILINE)


def same_site_redirect(text: str, domain: str) -> bool:
    """Whether a redirect points at the tested site itself: a principle, not a learned page.

    A censor sends the browser elsewhere (a notice host, a portal); a site sends it to itself: a
    path on the same host (a relative ``Location``), the ``https://`` twin, or the ``www.`` twin.
    The text is normalised, so the tested domain reads ``[DOMAIN]``.
    """
    if not _REDIRECT.match(page_signature(text)):
        return False
    found = _LOCATION_TARGET.search(text)
    if not found:
        return False
    target = found.group(1)
    if target.startswith("/") and not target.startswith("//"):
        return True
    host = re.sub(r"^(?:[a-z]+:)?//", "", target, flags=re.IGNORECASE).split("/")[0]
    host = host.split("?")[0].split("#")[0].split(":")[0].lower()
    bare = domain.lower().removeprefix("www.")
    return host in ("[domain]", "www.[domain]") or host in (bare, "www." + bare)


def same_site_rows(
    tokens: store.DatasetTokens, row_ids: np.ndarray, template: np.ndarray, domain: np.ndarray
) -> np.ndarray:
    """``same_site_redirect`` of every row (only redirects' texts are read)."""
    out = np.zeros(len(row_ids), bool)
    rows = np.flatnonzero(np.char.startswith(template.astype(str), "redirect to "))
    for lo in range(0, len(rows), 4096):
        part = rows[lo : lo + 4096]
        texts = tokens.texts(row_ids[part])
        out[part] = [same_site_redirect(x, d) for x, d in zip(texts, domain[part], strict=True)]
    return out


def templates(tokens: store.DatasetTokens, row_ids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """The page template each row received (``template_of`` its normalised text)."""
    out: list[str] = []
    for lo in range(0, len(row_ids), chunk):
        out.extend(template_of(t) for t in tokens.texts(row_ids[lo : lo + chunk]))
    return np.asarray(out, dtype=object)


def _distinct_counts(group: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Per row: how many distinct ``member`` values share the row's ``group`` value."""
    pairs = np.unique(np.stack([group, member]).T.astype(str), axis=0)
    g, counts = np.unique(pairs[:, 0], return_counts=True)
    lookup = dict(zip(g.tolist(), counts.tolist(), strict=True))
    return np.array([lookup[k] for k in group.astype(str).tolist()], dtype=np.float64)


def cluster_evidence(
    template: np.ndarray,
    domain: np.ndarray,
    ip: np.ndarray,
    country: np.ndarray,
    page: np.ndarray,
    consider: np.ndarray,
) -> np.ndarray:
    """The ``NUMERIC`` features; clusters count only rows in ``consider`` that received a page."""
    n = len(template)
    out = np.zeros((n, len(NUMERIC)), dtype=np.float64)
    out[:, NUMERIC.index("has_page")] = page & consider
    use = consider & page
    if not use.any():
        return out
    t, d, v, c = template[use], domain[use], ip[use], country[use]
    tc = np.char.add(np.char.add(t.astype(str), "\x00"), c.astype(str))
    domains_cc = _distinct_counts(tc, d)
    vps_cc = _distinct_counts(tc, v)
    countries = _distinct_counts(t, c)
    domains_all = _distinct_counts(t, d)
    vp_key = np.char.add(np.char.add(t.astype(str), "\x00"), v.astype(str))
    at_vp = _distinct_counts(vp_key, d)
    tested = _distinct_counts(ip, domain)[use]  # domains tested at the vantage point (every row)
    out[use, NUMERIC.index("log_domains_in_country")] = np.log1p(domains_cc)
    out[use, NUMERIC.index("log_vps_in_country")] = np.log1p(vps_cc)
    out[use, NUMERIC.index("log_countries")] = np.log1p(countries)
    out[use, NUMERIC.index("log_url_country_ratio")] = np.log1p(domains_all / countries)
    out[use, NUMERIC.index("share_at_vp")] = at_vp / np.maximum(tested, 1)
    return out


def site_countries(
    template: np.ndarray, domain: np.ndarray, country: np.ndarray, consider: np.ndarray
) -> np.ndarray:
    """Per row: in how many countries the row's domain got the row's template (rows considered).

    A censor's page follows the network path (one country); a hosting network's page (a CDN bot
    check, a WAF block) follows the site, whichever country asks.
    """
    out = np.zeros(len(template))
    if consider.any():
        key = np.char.add(
            np.char.add(template[consider].astype(str), "\x00"), domain[consider].astype(str)
        )
        out[consider] = _distinct_counts(key, country[consider])
    return out


SITE_COUNTRIES = 3  # a page a site gets in this many countries follows the site, not the path


def has_content(template: np.ndarray) -> np.ndarray:
    """Templates with a title or body line, or a body the token budget cut: a page that says
    something, not a bare status."""
    return np.array(["| title:" in s or "| body:" in s or "| cut:" in s for s in template.tolist()])


def received_page(template: np.ndarray) -> np.ndarray:
    """Whether a row's template is an HTTP page (a status line), not an error or a bare banner."""
    return np.array(
        [s.startswith("redirect to ") or bool(STATUS_LINE.match(s)) for s in template.tolist()]
    )


def row_features(dataset: Path | str) -> RowFeatures:
    """Read a dataset once and compute every row's flags, template and cluster evidence."""
    tokens = store.DatasetTokens(dataset)
    table = tokens.dataset.read_columns(list(COLUMNS))
    ids = table.column("row_id").to_numpy()
    flags = static_flags(tokens, ids)
    template = templates(tokens, ids)
    rf = RowFeatures(table, flags, template, np.zeros((len(ids), len(NUMERIC))), tokens)
    domains = rf.column("domain")
    rf.same_site = same_site_rows(tokens, ids, template, domains)
    consider = rf.scored & rf.evidence_allowed
    counts = site_countries(template, domains, rf.column("country_code"), consider)
    rf.site_bound = (counts >= SITE_COUNTRIES) & has_content(template)
    consider = rf.scored & rf.evidence_allowed
    rf.numeric = cluster_evidence(
        template,
        rf.column("domain"),
        rf.column("ip"),
        rf.column("country_code"),
        received_page(template),
        consider,
    )
    return rf
