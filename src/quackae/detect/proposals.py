"""Proposed signatures: cluster candidate pages by template and write a verified pattern per cluster.

Censored Planet's users work in a loop: find pages no signature names, write a signature, flatten
again. This module does the middle step. Candidate rows (the detector's ``candidate`` column)
that received a page are grouped by page template; for each cluster, a literal line of its
pages (no placeholder, so the raw response holds it unchanged) is chosen that occurs in at least
``MIN_COVERAGE`` of the cluster's pages, in no labelled-negative or expected page, no other page the detector
did not flag, and no page of another cluster. Each proposal is then verified with the project's own matcher
(``quackae.signatures.Matcher``) on those same pages; one that fails is dropped, never written.
``proposed_signatures.json`` is Censored Planet's JSON-lines format: merge it into a signature
directory's ``blockpage_signatures.json`` and ``quackae flatten --signatures DIR`` labels the rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from quackae.atomic import atomic_write
from quackae.detect.features import RowFeatures
from quackae.signatures import Matcher, Signature
from quackae.tokens import PLACEHOLDERS

PROPOSALS_FILE = "proposed_signatures.json"
PROPOSALS_MD = "proposals.md"
MIN_COVERAGE = 0.9
MIN_PAGES = 3
MIN_LINE = 8
MAX_LINE = 100
MAX_PAGES_PER_CLUSTER = 200
MAX_NEGATIVES = 50_000


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
_BETWEEN_TAGS = re.compile(r"(?<=>)(?=<)")
GAP = r"[^\r\n]*?"  # what a placeholder (domain, address, number, id) becomes in a pattern


def _lines(text: str) -> set[str]:
    """Lines of a normalised page with enough literal text to anchor a pattern, trimmed."""
    out = set()
    for full in text.replace("\r", "").split("\n"):
        # the whole line, and its pieces between HTML tags (one volatile attribute spoils a line)
        for line in {full.strip(), *_BETWEEN_TAGS.split(full)}:
            line = line.strip()[:MAX_LINE]
            if len(_PLACEHOLDER_RX.sub("", line)) >= MIN_LINE:
                out.add(line)
    return out


def line_pattern(line: str) -> str:
    """A regex for a normalised line on the raw response: literal parts escaped, placeholders any text."""
    pieces = [re.escape(piece) for piece in _PLACEHOLDER_RX.split(line)]
    return GAP.join(pieces).removeprefix(GAP).removesuffix(GAP) if len(pieces) > 1 else pieces[0]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "page"


def _matches(matcher: Matcher, texts: list[str]) -> np.ndarray:
    return np.array([matcher.match(t)[0] == 1 for t in texts], dtype=bool)


def _sample(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(rows) <= n:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))


def choose_line(pages: list[str], avoid: str) -> tuple[str, float] | None:
    """The most common line of ``pages`` (longest on ties) whose pattern matches nothing in ``avoid``.

    ``avoid`` is the avoided pages joined by newlines (a pattern never crosses a line).
    """
    counts: dict[str, int] = {}
    for text in pages:
        for line in _lines(text):
            counts[line] = counts.get(line, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], -len(kv[0]), kv[0]))
    for line, n in ranked:
        if n / len(pages) < MIN_COVERAGE:
            return None
        longest = max(_PLACEHOLDER_RX.split(line), key=len)
        if longest not in avoid or not re.search(line_pattern(line), avoid):
            return line, n / len(pages)
    return None


def _clusters(rf: RowFeatures, rows: np.ndarray, by_country: bool) -> dict[str, np.ndarray]:
    keys = rf.template[rows].astype(str)
    if by_country:
        keys = np.char.add(np.char.add(keys, " @ "), rf.column("country_code")[rows].astype(str))
    names, counts = np.unique(keys, return_counts=True)
    return {k: rows[keys == k] for k, c in zip(names.tolist(), counts.tolist(), strict=True) if c >= MIN_PAGES}


def propose(rf: RowFeatures, candidate: np.ndarray, negatives: np.ndarray, seed: int = 0) -> list[Proposal]:
    """Cluster the candidate rows that received a page by template and propose a verified pattern each.

    Clusters are page templates; a template no single line covers (one status line used by
    several censors) is split by country and tried again, as per-country pages.
    """
    cand = np.flatnonzero(candidate & rf.has_page)
    # every page the detector does not flag counts against a line too, not only labelled negatives
    unflagged = ~candidate & (rf.template != "(nothing received)")
    neg_rows = _sample(np.flatnonzero((negatives | unflagged) & ~candidate), MAX_NEGATIVES, seed)
    neg_joined = "\n".join(sorted(set(rf.tokens.texts(rf.row_ids[neg_rows]))))
    all_texts = dict(zip(cand.tolist(), rf.tokens.texts(rf.row_ids[cand]), strict=True))
    out: list[Proposal] = []
    pending = _clusters(rf, cand, by_country=False)
    for by_country in (False, True):
        failed: list[np.ndarray] = []
        for template, rows in sorted(pending.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            found = _propose_one(rf, template, rows, all_texts, cand, neg_joined, len(out), seed)
            if found is None:
                failed.append(rows)
            else:
                out.append(found)
        if not failed or by_country:
            break
        pending = _clusters(rf, np.concatenate(failed), by_country=True)
    return out


def _propose_one(rf: RowFeatures, template: str, rows: np.ndarray, all_texts: dict[int, str], cand: np.ndarray,
                 neg_joined: str, index: int, seed: int) -> Proposal | None:  # fmt: skip
    """A verified proposal for one cluster, or None."""
    pages = [all_texts[r] for r in _sample(rows, MAX_PAGES_PER_CLUSTER, seed).tolist()]
    in_cluster = set(rows.tolist())
    others = [t for r, t in all_texts.items() if r not in in_cluster]
    chosen = choose_line(pages, neg_joined + "\n" + "\n".join(others))
    if chosen is None:
        return None
    sig = Signature(f"proposed_{index:03d}_{_slug(template)}", line_pattern(chosen[0]))
    matcher = Matcher([], [sig])
    coverage = float(_matches(matcher, pages).mean())
    neg_hits = int(bool(re.search(sig.pattern, neg_joined)))
    cross = int(_matches(matcher, others).sum())
    if coverage < MIN_COVERAGE or neg_hits or cross:
        return None
    return Proposal(sig.fingerprint, sig.pattern, template, rows, round(coverage, 4), neg_hits, cross,
                    cluster_summary(rf, rows, pages[0]))  # fmt: skip


def _when(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ts else "?"


def cluster_summary(rf: RowFeatures, rows: np.ndarray, example: str) -> dict[str, Any]:
    """Pages, domains, vantage points, countries and first/last seen of one cluster."""
    ts = rf.column("timestamp")[rows]
    ts = ts[ts > 0]
    return {
        "pages": int(len(rows)),
        "domains": int(len(set(rf.column("domain")[rows].tolist()))),
        "vantage_points": int(len(set(rf.column("ip")[rows].tolist()))),
        "countries": sorted(set(rf.column("country_code")[rows].tolist()) - {""}),
        "first_seen": _when(int(ts.min())) if len(ts) else "?",
        "last_seen": _when(int(ts.max())) if len(ts) else "?",
        "excerpt": example[:240].encode("unicode_escape").decode("ascii"),
    }


def write_proposals(out: Path, proposals: list[Proposal]) -> Path:
    """``proposed_signatures.json`` (CP JSON lines) and ``proposals.md`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROPOSALS_FILE
    atomic_write(path, "".join(json.dumps({"fingerprint": p.fingerprint, "pattern": p.pattern}) + "\n" for p in proposals))
    lines = ["# Proposed signatures", "",
             f"{len(proposals)} clusters of candidate pages, one verified pattern each (matches >= "
             f"{MIN_COVERAGE:.0%} of its cluster, no labelled-negative page, no page of another cluster). "
             f"Merge `{PROPOSALS_FILE}` into `blockpage_signatures.json` and flatten again with `--signatures`.", "",
             "| fingerprint | pages | domains | vantage points | countries | first seen | last seen | coverage | pattern | excerpt |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for p in proposals:
        s = p.summary
        cells = [p.fingerprint, s["pages"], s["domains"], s["vantage_points"], ", ".join(s["countries"]),
                 s["first_seen"], s["last_seen"], f"{p.coverage:.2f}", f"`{p.pattern}`", f"`{s['excerpt'][:120]}`"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    atomic_write(out / PROPOSALS_MD, "\n".join(lines) + "\n")
    return path


def merge_signatures(base: Path, proposals_file: Path, out: Path) -> Path:
    """A signature directory: ``base``'s two files with the proposals appended to the blockpages."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("false_positive_signatures.json", "blockpage_signatures.json"):
        text = (Path(base) / name).read_text(encoding="utf-8")
        if name.startswith("blockpage"):
            text = text + ("" if not text or text.endswith("\n") else "\n") + Path(proposals_file).read_text()
        atomic_write(out / name, text)
    return out
