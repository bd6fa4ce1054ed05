"""Proposed signatures: cluster candidate pages by template, write a verified pattern per cluster.

Censored Planet's users work in a loop: find pages no signature names, write a signature, flatten
again. This module does the middle step. Candidate rows (the detector's ``candidate`` column)
that received a page start as (template, country) groups; for each, a literal line of its pages
(placeholders become "any text on the line", so the raw response matches) is chosen that occurs
in at least ``MIN_COVERAGE`` of the group's pages, in no labelled-negative or expected page and no
page of an accepted proposal, and mostly on pages the detector flagged: of the undetermined pages
the line matches, at least ``MIN_FLAGGED_SHARE`` are candidates (a censor's page the detector
missed on a few domains does not veto its family's line; a benign page flagged on a few does not
get a signature). Groups the line
covers as well merge with it (one page whose template split: a status line, a header, a title
cut by the token budget at a different point). Each proposal is then verified with the project's
own matcher (``quackae.ingest.signatures.Matcher``); one that fails is dropped, never written.
``proposed_signatures.json`` is Censored Planet's JSON-lines format: merge it into a signature
directory's ``blockpage_signatures.json`` and ``quackae flatten --signatures DIR`` labels the rows.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from quackae.detect.features import HEADER_LINE, RowFeatures
from quackae.ingest.signatures import Matcher, Signature
from quackae.ingest.tokens import PLACEHOLDERS
from quackae.io.atomic import atomic_write

PROPOSALS_FILE = "proposed_signatures.json"
PROPOSALS_MD = "proposals.md"
MIN_COVERAGE = 0.9
MIN_PAGES = 3
MIN_LINE = 8
MAX_LINE = 100
MAX_PAGES_PER_CLUSTER = 200
MAX_NEGATIVES = 50_000
# of the undetermined pages a line matches, the share the detector must have flagged
MIN_FLAGGED_SHARE = 0.75
# why a cluster got no proposal (``propose``'s ``rejected``)
NO_COMMON_LINE = f"no line in >= {MIN_COVERAGE:.0%} of its pages"
COMMON_LINES_AVOIDED = (
    "every common line is on a negative or another cluster's page, or mostly on unflagged pages"
)
VERIFY_FAILED = "the pattern failed verification"


@dataclass
class Proposal:
    """One cluster of candidate pages and the signature proposed for it."""

    fingerprint: str
    pattern: str
    template: str
    rows: np.ndarray  # row indices of the cluster
    coverage: float  # share of the cluster's pages the pattern matches (the project's matcher)
    negative_hits: int
    other_cluster_hits: int
    summary: dict[str, Any]


_PLACEHOLDER_RX = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
# a standard HTTP header's name (RFC 9110, 9111, 6265 and common ones) says nothing of the page:
# such a header line needs enough literal text in its value; a custom header's name may anchor
STANDARD_HEADERS = frozenset(
    [
        "accept-ranges",
        "access-control-allow-origin",
        "age",
        "alt-svc",
        "cache-control",
        "connection",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-security-policy",
        "content-type",
        "date",
        "etag",
        "expires",
        "keep-alive",
        "last-modified",
        "link",
        "location",
        "mime-version",
        "p3p",
        "pragma",
        "referrer-policy",
        "refresh",
        "retry-after",
        "server",
        "set-cookie",
        "strict-transport-security",
        "transfer-encoding",
        "upgrade",
        "vary",
        "via",
        "www-authenticate",
        "x-cache",
        "x-content-type-options",
        "x-frame-options",
        "x-powered-by",
        "x-xss-protection",
    ]
)


# a cookie's standard attributes (RFC 6265) name nothing either: ``expires=[DATE]`` is no anchor
_COOKIE_ATTRIBUTE = re.compile(
    r"\b(?:expires|max-age|domain|path|samesite)=|\b(?:secure|httponly)\b", re.I
)


def _literal(line: str) -> str:
    """A line's literal text: placeholders, a standard header's name, cookie attributes dropped."""
    head = HEADER_LINE.match(line)
    if head and head.group(1).lower() in STANDARD_HEADERS:
        line = line[head.end() :]
    return _PLACEHOLDER_RX.sub("", _COOKIE_ATTRIBUTE.sub("", line))


_BETWEEN_TAGS = re.compile(r"(?<=>)(?=<)")
_IN_ATTRIBUTE = re.compile(r"[\"'?&;]")
GAP = r"[^\r\n]*?"  # what a placeholder (domain, address, number, id) becomes in a pattern


def _lines(text: str) -> set[str]:
    """Lines of a normalised page with enough literal text to anchor a pattern, trimmed.

    Enough is ``MIN_LINE`` letters or digits; a standard header counts its value's only
    (``Expires: [DATE]`` anchors nothing).
    """
    out = set()
    for full in text.replace("\r", "").split("\n"):
        # the whole line, its pieces between HTML tags and within attributes and URLs (one
        # volatile attribute value, query parameter or refresh delay spoils a line)
        tagged = _BETWEEN_TAGS.split(full)
        for line in {
            full.strip(),
            *tagged,
            *(piece for part in tagged for piece in _IN_ATTRIBUTE.split(part)),
        }:
            line = line.strip()[:MAX_LINE]
            if sum(ch.isalnum() for ch in _literal(line)) >= MIN_LINE:
                out.add(line)
    return out


def line_pattern(line: str) -> str:
    """A regex for a normalised line on the raw response: literals escaped, placeholders any."""
    pieces = [re.escape(piece) for piece in _PLACEHOLDER_RX.split(line)]
    return GAP.join(pieces).removeprefix(GAP).removesuffix(GAP) if len(pieces) > 1 else pieces[0]


_TAG = re.compile(r"<[^>]*>|&[a-zA-Z]+;|&#\d+;")
# letters NFKD leaves whole (no combining mark to drop): their usual Latin spelling
_LATIN = str.maketrans({"ı": "i", "ø": "o", "ß": "ss", "æ": "ae", "œ": "oe", "đ": "d", "ł": "l"})
# words of page markup and protocol that name no page
_MARKUP = frozenset(
    [
        "http",
        "https",
        "www",
        "com",
        "html",
        "head",
        "body",
        "title",
        "meta",
        "div",
        "span",
        "class",
        "id",
        "content",
        "type",
        "text",
        "charset",
        "utf",
        "script",
        "style",
        "href",
        "src",
        "link",
        "rel",
        "lang",
        "name",
        "the",
        "a",
        "of",
        "to",
        "and",
    ]
)
NAME_WORDS = 4


def name_words(text: str) -> list[str]:
    """The words that name a page: markup, entities and placeholders dropped, ASCII spelling.

    ``<title>Erişim Engellendi</title>`` gives ``["erisim", "engellendi"]``; a line in a script
    without a Latin spelling gives none.
    """
    plain = _PLACEHOLDER_RX.sub(" ", _TAG.sub(" ", text)).lower().translate(_LATIN)
    ascii_text = unicodedata.normalize("NFKD", plain).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z][a-z0-9]*|[0-9]+", ascii_text)
    return [w for w in words if w not in _MARKUP and not w.isdigit()][:NAME_WORDS]


def proposal_name(line: str, country: str, template: str) -> str:
    """``proposed_<country>_<words>``: the distinctive line's words, else the template's.

    E.g. ``proposed_tr_erisim_engellendi`` for a Turkish page whose line is its title.
    """
    words = name_words(line) or name_words(template) or ["page"]
    return "_".join(["proposed", (country or "xx").lower(), *words])


def _matches(matcher: Matcher, texts: list[str]) -> np.ndarray:
    return np.array([matcher.match(t)[0] == 1 for t in texts], dtype=bool)


def _sample(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(rows) <= n:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))


def ranked_lines(pages: list[str]) -> list[tuple[str, int]]:
    """Lines in at least ``MIN_COVERAGE`` of ``pages``, with counts: most common, then longest."""
    counts: dict[str, int] = {}
    for text in pages:
        for line in _lines(text):
            counts[line] = counts.get(line, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], -len(kv[0]), kv[0]))
    return [(line, n) for line, n in ranked if n / len(pages) >= MIN_COVERAGE]


def _hits(pattern: str, line: str, texts: list[str]) -> np.ndarray:
    """Which of ``texts`` the line's pattern matches (a literal test first: most pages lack it)."""
    longest = max(_PLACEHOLDER_RX.split(line), key=len)
    rx = re.compile(pattern, re.DOTALL)
    return np.array([longest in t and rx.search(t) is not None for t in texts], dtype=bool)


def _avoided(pattern: str, line: str, avoid: str) -> bool:
    """Whether the line's pattern matches the avoided pages (newline-joined: no line spans two)."""
    longest = max(_PLACEHOLDER_RX.split(line), key=len)
    return longest in avoid and re.search(pattern, avoid) is not None


@dataclass
class Unflagged:
    """The undetermined pages the detector did not flag: distinct texts and their row counts.

    ``rows(pattern, line)`` counts the rows whose page a line's pattern matches, so a line can
    be weighed against the candidate pages it matches (``MIN_FLAGGED_SHARE``).
    """

    joined: str
    starts: np.ndarray  # offset of each distinct text in ``joined``
    texts: list[str]
    counts: np.ndarray
    weight: float = 1.0  # rows each sampled row stands for

    @classmethod
    def of(cls, texts: list[str], weight: float = 1.0) -> Unflagged:
        """From one text per (sampled) row; ``weight``: rows in all / rows sampled."""
        counted = Counter(texts)
        distinct = sorted(counted)
        lengths = np.array([len(t) + 1 for t in distinct], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if distinct else lengths
        counts = np.array([counted[t] for t in distinct], np.int64)
        return cls("\n".join(distinct), starts, distinct, counts, weight)

    def rows(self, pattern: str, line: str) -> float:
        """Rows whose page the pattern matches (a literal scan first: most pages lack it)."""
        longest = max(_PLACEHOLDER_RX.split(line), key=len)
        found: set[int] = set()
        at = self.joined.find(longest)
        while at >= 0:
            i = int(np.searchsorted(self.starts, at, side="right")) - 1
            found.add(i)
            nxt = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.joined)
            at = self.joined.find(longest, int(nxt))
        rx = re.compile(pattern, re.DOTALL)
        return self.weight * int(sum(self.counts[i] for i in found if rx.search(self.texts[i])))


def mostly_flagged(flagged_rows: float, unflagged_rows: float) -> bool:
    """Whether the detector flagged at least ``MIN_FLAGGED_SHARE`` of the pages a line matches."""
    total = flagged_rows + unflagged_rows
    return total > 0 and flagged_rows >= MIN_FLAGGED_SHARE * total


@dataclass
class _Cluster:
    """Candidate pages with one template in one country (positions into the candidate list)."""

    key: str
    members: np.ndarray
    merged: list[str]  # the keys of the clusters merged into this one (itself first)


def _clusters(rf: RowFeatures, rows: np.ndarray) -> list[_Cluster]:
    """Candidate pages grouped by template and country, largest first (ties by name)."""
    keys = np.char.add(
        np.char.add(rf.template[rows].astype(str), " @ "),
        rf.column("country_code")[rows].astype(str),
    )
    names, counts = np.unique(keys, return_counts=True)
    order = sorted(
        zip(names.tolist(), counts.tolist(), strict=True), key=lambda kc: (-kc[1], kc[0])
    )
    return [_Cluster(k, np.flatnonzero(keys == k), [k]) for k, _ in order]


def propose(
    rf: RowFeatures,
    candidate: np.ndarray,
    negatives: np.ndarray,
    seed: int = 0,
    rejected: list[tuple[str, np.ndarray, str]] | None = None,
) -> list[Proposal]:
    """Cluster candidate rows that received a page by template; propose a verified pattern each.

    Clusters start as (template, country) groups, largest first. A group's line (in at least
    ``MIN_COVERAGE`` of its pages, on no negative page and no page of an accepted proposal) may
    also be on other groups' pages: groups it covers to ``MIN_COVERAGE`` are the same page (a
    status line, a header or a title cut at a different point split them) and merge whole. A line
    that covers other groups only in part is kept in reserve: such a group mixes several pages
    under one generic template (a bare status line), and only its matching pages join; the
    reserve line with the fewest such pages is used when no line merges whole groups.
    ``rejected``, when given, receives (group, rows, reason) for the pages left without a proposal.
    """
    cand = np.flatnonzero(candidate & rf.has_page)
    received = rf.template != "(nothing received)"
    # labelled negatives and expected pages veto a line; other unflagged pages are weighed
    hard = (negatives | ~rf.scored) & received & ~candidate
    neg_rows = _sample(np.flatnonzero(hard), MAX_NEGATIVES, seed)
    neg_joined = "\n".join(sorted(set(rf.tokens.texts(rf.row_ids[neg_rows]))))
    everyone = np.flatnonzero(received & ~candidate & ~hard)
    soft = _sample(everyone, MAX_NEGATIVES, seed)
    unflagged = Unflagged.of(rf.tokens.texts(rf.row_ids[soft]), len(everyone) / max(len(soft), 1))
    texts = rf.tokens.texts(rf.row_ids[cand])
    clusters = _clusters(rf, cand)
    group = np.zeros(len(cand), np.int64)
    for i, c in enumerate(clusters):
        group[c.members] = i
    owner = np.full(len(cand), -1, np.int64)  # the accepted proposal a page belongs to
    out: list[Proposal] = []
    reasons: dict[int, str] = {}
    for i, c in enumerate(clusters):
        if (owner[c.members] >= 0).all():
            continue
        found = _propose_one(
            rf, i, clusters, group, owner, texts, cand, (neg_joined, unflagged), len(out), seed
        )
        if isinstance(found, str):
            reasons[i] = found
            continue
        proposal, number = found
        owner[np.isin(cand, proposal.rows)] = number
        out[number : number + 1] = [proposal]
    _unique_names(out)
    if rejected is not None:
        for i, c in enumerate(clusters):
            left = c.members[owner[c.members] < 0]
            if len(left):
                rejected.append(
                    (c.key, cand[left], reasons.get(i, "left over after a partial merge"))
                )
    return out


def _unique_names(proposals: list[Proposal]) -> None:
    """Number the second and later proposals of one name (``..._2``): fingerprints are keys."""
    seen: Counter[str] = Counter()
    for p in proposals:
        seen[p.fingerprint] += 1
        if seen[p.fingerprint] > 1:
            p.fingerprint = f"{p.fingerprint}_{seen[p.fingerprint]}"


def _propose_one(
    rf: RowFeatures,
    index: int,
    clusters: list[_Cluster],
    group: np.ndarray,
    owner: np.ndarray,
    texts: list[str],
    cand: np.ndarray,
    negatives: tuple[str, Unflagged],
    number: int,
    seed: int,
) -> tuple[Proposal, int] | str:
    """A verified proposal for one group (and the pages it merges) and its number, or why none.

    A line on the pages of one accepted proposal that covers at least ``MIN_COVERAGE`` of them
    is the same page (a shorter cut of its title): that proposal is replaced, keeping its number.
    ``negatives``: the vetoing pages (newline-joined) and the weighed unflagged ones.
    """
    neg_joined, unflagged = negatives
    taken = owner >= 0
    own = clusters[index].members[~taken[clusters[index].members]]
    lines = ranked_lines([texts[j] for j in _sample(own, MAX_PAGES_PER_CLUSTER, seed).tolist()])
    if not lines:
        return NO_COMMON_LINE
    reason = COMMON_LINES_AVOIDED
    reserve: list[tuple[int, int, str, np.ndarray, list[int], int]] = []
    for rank, (line, _) in enumerate(lines):
        pattern = line_pattern(line)
        if _avoided(pattern, line, neg_joined):
            continue
        hit = _hits(pattern, line, texts)
        if not mostly_flagged(int(hit.sum()), unflagged.rows(pattern, line)):
            continue
        owners = set(owner[hit & taken].tolist())
        replaces = owners.pop() if len(owners) == 1 else None
        if len(owners) or (replaces is not None and hit[owner == replaces].mean() < MIN_COVERAGE):
            continue  # on pages of accepted proposals it does not cover as one page
        groups = sorted(set(group[hit & ~taken].tolist()) | {index})
        free = {g: clusters[g].members[~taken[clusters[g].members]] for g in groups}
        whole = [g for g in groups if g == index or hit[free[g]].mean() >= MIN_COVERAGE]
        merged = np.flatnonzero(owner == replaces) if replaces is not None else own[:0]
        members = np.unique(
            np.concatenate([own, merged, *(free[g] for g in whole), np.flatnonzero(hit & ~taken)])
        )
        at = number if replaces is None else replaces
        if len(whole) < len(groups):
            reserve.append((len(groups) - len(whole), rank, line, members, groups, at))
            continue
        found = _accept(rf, clusters, groups, members, line, texts, cand, neg_joined, seed)
        if isinstance(found, str):
            reason = found
            continue
        return found, at
    for _, _, line, members, groups, at in sorted(reserve, key=lambda r: r[:2]):
        found = _accept(rf, clusters, groups, members, line, texts, cand, neg_joined, seed)
        if not isinstance(found, str):
            return found, at
        reason = found
    return reason


def _accept(
    rf: RowFeatures,
    clusters: list[_Cluster],
    groups: list[int],
    members: np.ndarray,
    line: str,
    texts: list[str],
    cand: np.ndarray,
    neg_joined: str,
    seed: int,
) -> Proposal | str:
    """The proposal for ``members``, the project's own matcher checked on every page, or why not."""
    if len(members) < MIN_PAGES:
        return f"cluster under {MIN_PAGES} pages"
    first = clusters[groups[0]]  # the largest of the merged groups names the proposal
    template = first.key.rsplit(" @ ", 1)[0]
    countries = Counter(rf.column("country_code")[cand[members]].tolist())
    country = min(countries, key=lambda c: (-countries[c], c)) if countries else ""
    sig = Signature(proposal_name(line, country, template), line_pattern(line))
    matcher = Matcher([], [sig])
    coverage = float(
        _matches(
            matcher, [texts[j] for j in _sample(members, MAX_PAGES_PER_CLUSTER, seed).tolist()]
        ).mean()
    )
    neg_hits = int(bool(re.search(sig.pattern, neg_joined)))
    others = np.setdiff1d(np.arange(len(texts)), members)
    cross = int(_matches(matcher, [texts[j] for j in others.tolist()]).sum())
    if coverage < MIN_COVERAGE or neg_hits or cross:
        return (
            f"{VERIFY_FAILED} (coverage {coverage:.2f}, negatives {neg_hits}, "
            f"other clusters {cross})"
        )
    summary = cluster_summary(rf, cand[members], texts[int(members[0])], line)
    summary["templates"] = len({clusters[g].key.rsplit(" @ ", 1)[0] for g in groups})
    return Proposal(
        sig.fingerprint,
        sig.pattern,
        template,
        cand[members],
        round(coverage, 4),
        neg_hits,
        cross,
        summary,
    )


def _when(ts: int) -> str:
    return (
        datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        if ts
        else "?"
    )


EXAMPLES = 3  # example domains and vantage points listed per proposal


def _most_common(values: list[str], k: int = EXAMPLES) -> list[str]:
    """The ``k`` most frequent values, ties by value (deterministic)."""
    counts = Counter(v for v in values if v)
    return [v for v, _ in sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))[:k]]


def excerpt(page: str, line: str, limit: int = 200) -> str:
    """The page's line that holds ``line`` (the body's distinctive text), else its head; escaped.

    Non-ASCII text stays as it is, so a Turkish or Persian page reads as the page does.
    """
    longest = max(_PLACEHOLDER_RX.split(line), key=len) if line else ""
    shown = next(
        (
            full.strip()
            for full in page.replace("\r", "").split("\n")
            if longest and longest in full
        ),
        page[:limit],
    )
    return shown[:limit].replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def cluster_summary(
    rf: RowFeatures, rows: np.ndarray, example: str, line: str = ""
) -> dict[str, Any]:
    """Pages, domains, vantage points, countries, first/last seen and examples of one cluster."""
    ts = rf.column("timestamp")[rows]
    ts = ts[ts > 0]
    ips = rf.column("ip")[rows].tolist()
    codes = rf.column("country_code")[rows].tolist()
    where = dict(zip(ips, codes, strict=True))
    return {
        "pages": int(len(rows)),
        "domains": int(len(set(rf.column("domain")[rows].tolist()))),
        "vantage_points": int(len(set(ips))),
        "countries": sorted(set(codes) - {""}),
        "first_seen": _when(int(ts.min())) if len(ts) else "?",
        "last_seen": _when(int(ts.max())) if len(ts) else "?",
        "distinctive_line": line,
        "excerpt": excerpt(example, line),
        "example_domains": _most_common(rf.column("domain")[rows].tolist()),
        "example_vantage_points": [f"{ip} ({where[ip] or '?'})" for ip in _most_common(ips)],
    }


def _code(text: str) -> str:
    """Inline Markdown code that survives backticks in the text."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def _proposal_section(p: Proposal) -> list[str]:
    """One proposal for a reader: where it was seen, its distinctive line, pattern and examples."""
    s = p.summary
    countries = ", ".join(s["countries"]) or "unknown countries"
    return [
        f"## {p.fingerprint}",
        "",
        f"- {counted_pages(s)} in {countries}, {s['first_seen']} to {s['last_seen']} (UTC)",
        f"- distinctive line: {_code(s['excerpt'])}",
        f"- pattern: {_code(p.pattern)} (matches {p.coverage:.0%} of its pages and, as "
        "verified, no labelled-negative page and no page of another cluster)",
        f"- example domains: {', '.join(s['example_domains']) or 'none'}",
        f"- example vantage points: {', '.join(s['example_vantage_points']) or 'none'}",
        "",
    ]


def counted_pages(s: dict[str, Any]) -> str:
    """``12 pages for 5 domains on 2 vantage points``, singulars where a count is 1."""
    words = [("page", s["pages"]), ("domain", s["domains"]), ("vantage point", s["vantage_points"])]
    (a, na), (b, nb), (c, nc) = [(w if n == 1 else w + "s", n) for w, n in words]
    return f"{na} {a} for {nb} {b} on {nc} {c}"


def write_proposals(out: Path, proposals: list[Proposal]) -> Path:
    """``proposed_signatures.json`` (CP JSON lines) and ``proposals.md`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROPOSALS_FILE
    atomic_write(
        path,
        "".join(
            json.dumps({"fingerprint": p.fingerprint, "pattern": p.pattern}) + "\n"
            for p in proposals
        ),
    )
    lines = [
        "# Proposed signatures",
        "",
        f"{len(proposals)} clusters of candidate pages, one verified pattern each (matches >= "
        f"{MIN_COVERAGE:.0%} of its cluster, no labelled-negative page, no page of another "
        "cluster). "
        f"Merge `{PROPOSALS_FILE}` into `blockpage_signatures.json` and flatten again with "
        "`--signatures`.",
        "",
    ]
    for p in proposals:
        lines += _proposal_section(p)
    atomic_write(out / PROPOSALS_MD, "\n".join(lines) + "\n")
    return path


def merge_signatures(base: Path, proposals_file: Path, out: Path) -> Path:
    """A signature directory: ``base``'s two files with the proposals appended to the blockpages."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("false_positive_signatures.json", "blockpage_signatures.json"):
        text = (Path(base) / name).read_text(encoding="utf-8")
        if name.startswith("blockpage"):
            text = (
                text
                + ("" if not text or text.endswith("\n") else "\n")
                + Path(proposals_file).read_text()
            )
        atomic_write(out / name, text)
    return out
