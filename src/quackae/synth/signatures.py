"""The synthetic world's signature files, and the check that generic page parts tell nothing.

``write_signatures`` writes Censored Planet's JSON-lines files for any chosen families and benign
kinds; ``sample_pages``/``artefact_rates`` compare generic header and markup rates between
blockpages and benign pages (``benchmarks/synth_world.py --artefacts``).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Collection
from pathlib import Path

from quackae.io.atomic import atomic_write
from quackae.synth.benign import (
    BANNER_KINDS,
    BENIGN_KINDS,
    BENIGN_PATTERNS,
    DEFAULT_FALSE_POSITIVE_KINDS,
    benign_http,
)
from quackae.synth.families import DEFAULT_FINGERPRINTED, FAMILIES, family_page, fingerprinted_set
from quackae.synth.responses import raw_http
from quackae.synth.variants import VARIANT_BENIGN_PATTERNS, VARIANT_FAMILIES

# --------------------------------------------------------------------------------------------
# Artefact check: generic parts must not tell blockpages from benign pages
# --------------------------------------------------------------------------------------------

#: Header names whose value is per-response noise (only their presence is compared).
_VALUELESS = frozenset({"Date", "Content-Length", "Location", "Retry-After"})
#: Markup and charset tokens compared between the groups (name -> regex on the raw response).
SKELETON_TOKENS: dict[str, str] = {
    "<!DOCTYPE html>": r"<!DOCTYPE html>",
    "<!doctype html>": r"<!doctype html>",
    '<meta charset="...">': r"<meta charset=",
    "<meta http-equiv=Content-Type>": r'<meta http-equiv="Content-Type"',
    "<style>": r"<style>",
    ' lang="..."': r' lang="',
    "CRLF in body": r"\r\n\r\n[^\x00]*\r\n",
    "Server first header": r"^HTTP/1\.1 [^\r]*\r\nServer: ",
}
#: Features that are generic (no censor's identity): their rates must match across the groups.
GENERIC_FEATURES: tuple[str, ...] = (
    "Date",
    "Content-Length",
    "Connection: close",
    "Connection: keep-alive",
    "Cache-Control: no-cache",
    "Cache-Control: max-age=0",
    "Content-Type: text/html",
    "Content-Type: text/html; charset=utf-8",
    "Content-Type: text/html; charset=UTF-8",
    "charset=utf-8",
    "charset=UTF-8",
    '<meta charset="...">',
    "<meta http-equiv=Content-Type>",
)


def sample_pages(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` raw HTTP responses per group ("blockpage", "benign"), drawn as the generator does.

    Families and benign page kinds are taken in turn, so every one weighs the same.
    """
    rng = random.Random(seed)
    kinds = [k for k in BENIGN_KINDS if k not in BANNER_KINDS and k != "noise"]
    names = sorted(FAMILIES)
    out = [
        ("blockpage", raw_http(family_page(rng, names[i % len(names)], "example.com", "news")))
        for i in range(n)
    ]
    out += [
        ("benign", raw_http(benign_http(kinds[i % len(kinds)], rng, "example.com")))
        for i in range(n)
    ]
    return out


def page_features(raw: str) -> set[str]:
    """Header lines (noise values dropped), charset spellings and skeleton tokens of a response."""
    head, _, _ = raw.partition("\r\n\r\n")
    feats: set[str] = set()
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(": ")
        feats.add(name if name in _VALUELESS else f"{name}: {value}")
    feats.update(f"charset={m}" for m in re.findall(r"charset=([\w-]+)", raw))
    feats.update(name for name, rx in SKELETON_TOKENS.items() if re.search(rx, raw))
    return feats


def artefact_rates(
    pages: list[tuple[str, str]], within: str = ""
) -> dict[str, tuple[float, float]]:
    """Per feature: (rate in blockpages, rate in benign pages), over the pages matching ``within``.

    ``within`` compares like with like: a <meta> charset can only be drawn on a page with <head>.
    """
    counts: dict[str, list[int]] = {}
    totals = {"blockpage": 0, "benign": 0}
    for group, raw in pages:
        if within and not re.search(within, raw):
            continue
        totals[group] += 1
        for feat in page_features(raw):
            counts.setdefault(feat, [0, 0])[group == "benign"] += 1
    return {
        f: (c[0] / max(totals["blockpage"], 1), c[1] / max(totals["benign"], 1))
        for f, c in counts.items()
    }


# --------------------------------------------------------------------------------------------
# Signatures of the synthetic world
# --------------------------------------------------------------------------------------------


def _signature_line(fingerprint: str, pattern: str) -> str:
    """One JSON line in Censored Planet's signature format."""
    return json.dumps({"fingerprint": fingerprint, "pattern": pattern}, ensure_ascii=False)


def write_signatures(
    out_dir: Path,
    fingerprinted: Collection[str] | None = None,
    false_positive_kinds: Collection[str] | None = None,
) -> Path:
    """Write the synthetic world's signature files (Censored Planet's JSON-lines format).

    ``blockpage_signatures.json`` gets one ``a_synth_<family>`` line per fingerprinted family
    (default ``DEFAULT_FINGERPRINTED``) and ``false_positive_signatures.json`` one
    ``x_fp_synth_<kind>`` line per benign kind (default ``DEFAULT_FALSE_POSITIVE_KINDS``).
    Variant families and kinds (``synth.variants``) may be named too; their lines follow.
    Each pattern matches every page of its family or kind and nothing else of this world.
    Returns ``out_dir``, ready for ``quackae flatten --signatures``.
    """
    families = fingerprinted_set(fingerprinted, VARIANT_FAMILIES.keys())
    patterns = {**BENIGN_PATTERNS, **VARIANT_BENIGN_PATTERNS}
    kinds = (
        DEFAULT_FALSE_POSITIVE_KINDS
        if false_positive_kinds is None
        else frozenset(false_positive_kinds)
    )
    unknown = sorted(kinds - patterns.keys())
    if unknown:
        raise ValueError(
            f"benign kinds without a signature: {unknown}; known: {', '.join(patterns)}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blockpages = [
        _signature_line(f"a_synth_{name}", FAMILIES[name].pattern)
        for name in FAMILIES
        if name in families
    ] + [
        _signature_line(f"a_synth_{name}", VARIANT_FAMILIES[name].pattern)
        for name in VARIANT_FAMILIES
        if name in families
    ]
    # the variant kinds first: a base pattern (``Location: https://``) also matches some of them
    order = [*VARIANT_BENIGN_PATTERNS, *BENIGN_PATTERNS]
    false_positives = [
        _signature_line(f"x_fp_synth_{kind}", patterns[kind]) for kind in order if kind in kinds
    ]
    for name, lines in (
        ("blockpage_signatures.json", blockpages),
        ("false_positive_signatures.json", false_positives),
    ):
        atomic_write(out_dir / name, "".join(line + "\n" for line in lines))
    return out_dir


def parse_fingerprinted(value: str) -> frozenset[str]:
    """The families named by ``--fingerprinted``: all, none, default or a comma-separated list."""
    if value == "all":
        return frozenset(FAMILIES)
    if value == "none":
        return frozenset()
    if value == "default":
        return DEFAULT_FINGERPRINTED
    return fingerprinted_set(name.strip() for name in value.split(",") if name.strip())
