"""Deterministic generator of realistic raw Censored Planet Hyperquack archives.

The generator simulates a small world (countries, vantage points, test domains, censorship
policies, middlebox vendors, benign servers, network noise) and writes a scan archive in the
v1 or v2 Hyperquack format of ``docs/hyperquack.md``, plus a ground-truth sidecar with one
JSON object per non-control try. Same arguments give byte-identical output; nothing is
downloaded.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import re
import tarfile
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from quackae.io.atomic import atomic_path, atomic_write

__all__ = [
    "BENIGN_KINDS",
    "BENIGN_PAGES",
    "DEFAULT_FALSE_POSITIVE_KINDS",
    "DEFAULT_FINGERPRINTED",
    "DOMAIN_KINDS",
    "FAMILIES",
    "FAMILY_MECHANISMS",
    "FORMATS",
    "HOST_KINDS",
    "MECHANISMS",
    "SCANS",
    "VENDORS",
    "Family",
    "SynthResult",
    "parse_fingerprinted",
    "write_archive",
    "write_signatures",
]

Format = Literal["v1", "v2"]
Scan = Literal["echo", "discard", "http", "https"]

SCANS: tuple[str, ...] = ("echo", "discard", "http", "https")
FORMATS: tuple[str, ...] = ("v1", "v2")

#: Ground-truth mechanisms. Censored: blockpage, reset, timeout, refused, status, tls, garbled.
#: Not censored: none (template match), benign (benign non-matching page), noise (network).
MECHANISMS: tuple[str, ...] = (
    "none",
    "blockpage",
    "reset",
    "timeout",
    "refused",
    "status",
    "tls",
    "garbled",
    "benign",
    "noise",
)

_PORTS = {"echo": 7, "discard": 9, "http": 80, "https": 443}
_V1_CONTROL = {
    "echo": "example5718349450314.com",
    "discard": "example5718349450314.com",
    "http": "rtyutgyhefdafioasfjhjhi.com",
    "https": "rtyutgyhefdafioasfjhjhi.com",
}
_LOCAL_IPS = ("141.212.123.210", "141.212.123.211")
_WORLD_SEED = 20211011
_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"))
_CHUNK = 512


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthResult:
    """Paths and counts of one generated archive."""

    archive: Path
    truth: Path
    measurements: int
    tries: int


# --------------------------------------------------------------------------------------------
# The simulated world
# --------------------------------------------------------------------------------------------

_CATEGORY_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], int]] = {
    # category: (prefixes, suffixes, tlds, count)
    "news": (
        ("daily", "free", "world", "metro", "nation", "east", "open", "global", "city", "north"),
        ("herald", "press", "ledger", "gazette", "report", "tribune", "voice", "dispatch", "post"),
        ("com", "net", "org", "news"),
        24,
    ),
    "social": (
        ("chat", "friend", "link", "buzz", "snap", "share", "talk", "meet"),
        ("hub", "space", "circle", "book", "wall", "feed", "zone"),
        ("com", "net", "app"),
        14,
    ),
    "adult": (
        ("hot", "xxx", "sexy", "adult", "naughty", "red", "night", "velvet"),
        ("tube", "cams", "videos", "pics", "club", "lounge", "zone"),
        ("com", "xxx", "net"),
        20,
    ),
    "gambling": (
        ("lucky", "royal", "jackpot", "golden", "ace", "mega", "vegas"),
        ("casino", "bet", "poker", "slots", "spin", "odds"),
        ("com", "bet", "net"),
        15,
    ),
    "human_rights": (
        ("rights", "justice", "liberty", "dignity", "witness", "amnesty"),
        ("watch", "now", "network", "alliance", "project", "forum"),
        ("org", "net"),
        14,
    ),
    "lgbtq": (
        ("rainbow", "pride", "queer", "equal", "out"),
        ("voices", "community", "center", "alliance", "youth", "life"),
        ("org", "com", "net"),
        12,
    ),
    "circumvention": (
        ("hide", "free", "open", "secure", "tunnel", "proxy", "stealth", "ghost"),
        ("vpn", "gate", "route", "way", "surf", "browse"),
        ("com", "net", "io", "org"),
        15,
    ),
    "religion": (
        ("faith", "spirit", "sacred", "light", "grace"),
        ("path", "fellowship", "teachings", "house"),
        ("org", "net"),
        8,
    ),
    "political": (
        ("citizens", "reform", "democracy", "opposition", "people"),
        ("movement", "party", "front", "union", "forum"),
        ("org", "net", "info"),
        12,
    ),
    "filesharing": (
        ("torrent", "file", "warez", "share", "upload", "mega"),
        ("bay", "box", "drop", "locker", "cloud"),
        ("to", "cc", "com", "net"),
        12,
    ),
    "commerce": (
        ("shop", "buy", "market", "deal", "store", "cart"),
        ("mart", "direct", "world", "plus", "express"),
        ("com", "net", "shop"),
        15,
    ),
    "tech": (
        ("code", "dev", "cloud", "byte", "data", "stack"),
        ("works", "labs", "base", "forge", "hub"),
        ("com", "io", "dev"),
        12,
    ),
    "search": (("find", "seek", "look", "query"), ("it", "er", "engine"), ("com",), 5),
    "education": (
        ("learn", "study", "campus", "open", "smart"),
        ("academy", "university", "school", "courses"),
        ("edu", "org", "com"),
        10,
    ),
    "sports": (
        ("goal", "score", "match", "team", "arena"),
        ("live", "center", "daily", "zone"),
        ("com", "net"),
        8,
    ),
    "entertainment": (
        ("movie", "show", "star", "fun", "game"),
        ("time", "world", "box", "planet"),
        ("com", "tv", "net"),
        8,
    ),
}

_CATEGORY_LABELS = {
    "news": "News and Media",
    "social": "Social Networking",
    "adult": "Pornography",
    "gambling": "Gambling",
    "human_rights": "Advocacy Organizations",
    "lgbtq": "LGBT",
    "circumvention": "Proxy Avoidance",
    "religion": "Religion",
    "political": "Political Organizations",
    "filesharing": "Peer-to-Peer File Sharing",
    "commerce": "Shopping",
    "tech": "Information Technology",
    "search": "Search Engines",
    "education": "Education",
    "sports": "Sports",
    "entertainment": "Entertainment",
}


@dataclass(frozen=True)
class _Country:
    """One country's censorship policy: what is blocked and how its non-blockpage ISPs block.

    The country's blockpage ISPs are the families deployed in it (``Family.countries``); two
    vantage points sit behind each ISP, ``clean`` more are unfiltered.
    """

    name: str
    code: str
    prefixes: tuple[str, ...]
    coverage: dict[str, float]
    mechanisms: tuple[str, ...]  # non-blockpage ISPs' mechanisms
    stateful: str | None = None  # follow-up mechanism after a block: "timeout" | "refused"
    clean: int = 2


COUNTRIES: tuple[_Country, ...] = (
    _Country(
        "Russia",
        "RU",
        ("31.173", "95.165", "178.176", "5.167", "37.79", "37.193", "46.61", "46.181", "77.41"),
        {
            "circumvention": 0.8,
            "gambling": 0.9,
            "lgbtq": 0.6,
            "news": 0.25,
            "filesharing": 0.6,
            "political": 0.3,
            "human_rights": 0.2,
        },
        ("reset", "status"),
    ),
    _Country(
        "China",
        "CN",
        ("36.110", "59.110", "101.200", "106.75", "112.74", "119.29", "139.159", "1.70"),
        {
            "news": 0.7,
            "social": 0.9,
            "human_rights": 0.8,
            "circumvention": 0.9,
            "religion": 0.6,
            "political": 0.7,
            "lgbtq": 0.3,
            "filesharing": 0.4,
        },
        ("reset", "reset", "timeout", "garbled"),
        stateful="timeout",
    ),
    _Country(
        "Iran",
        "IR",
        ("2.144", "5.72", "78.38", "85.185", "5.114", "2.187", "5.113", "5.115"),
        {
            "social": 0.9,
            "news": 0.6,
            "adult": 1.0,
            "lgbtq": 1.0,
            "circumvention": 0.9,
            "human_rights": 0.8,
            "gambling": 0.9,
            "political": 0.6,
            "religion": 0.3,
        },
        ("reset", "timeout"),
    ),
    _Country(
        "Turkey",
        "TR",
        ("78.186", "81.214", "85.105", "88.247", "94.54", "176.41", "195.174", "213.74"),
        {
            "adult": 0.8,
            "gambling": 0.9,
            "news": 0.2,
            "lgbtq": 0.5,
            "filesharing": 0.3,
            "political": 0.2,
        },
        ("timeout", "status"),
    ),
    _Country(
        "India",
        "IN",
        ("14.139", "49.204", "106.51", "117.239", "122.160", "182.74", "14.141", "27.60"),
        {"adult": 0.7, "filesharing": 0.7, "gambling": 0.4, "circumvention": 0.1},
        ("status", "reset"),
    ),
    _Country(
        "Indonesia",
        "ID",
        ("36.66", "114.4", "118.97", "125.160", "180.250", "36.73", "36.89", "39.217"),
        {
            "adult": 0.9,
            "gambling": 0.8,
            "lgbtq": 0.6,
            "circumvention": 0.4,
            "filesharing": 0.3,
            "social": 0.05,
        },
        ("status", "reset"),
        stateful="refused",
    ),
    _Country(
        "Pakistan",
        "PK",
        ("39.32", "39.38", "119.155", "182.176", "39.34", "39.46", "39.55", "182.178"),
        {"adult": 0.8, "religion": 0.5, "political": 0.4, "lgbtq": 0.6, "human_rights": 0.3},
        ("timeout", "status", "reset"),
        stateful="refused",
    ),
    _Country(
        "Kazakhstan",
        "KZ",
        ("2.72", "37.150", "89.218", "92.46", "95.56", "178.88", "2.74", "95.59"),
        {"news": 0.3, "political": 0.5, "circumvention": 0.7, "social": 0.1, "gambling": 0.5},
        ("tls", "tls", "reset"),
    ),
    _Country(
        "United States",
        "US",
        ("34.120", "50.116", "104.207", "167.207", "3.31", "3.86", "3.94"),
        {"adult": 0.6, "gambling": 0.6},
        (),
        clean=8,
    ),
    _Country(
        "Saudi Arabia",
        "SA",
        ("2.88", "5.42", "37.224", "46.152", "51.36", "94.96", "188.48"),
        {
            "adult": 1.0,
            "gambling": 0.9,
            "lgbtq": 0.9,
            "religion": 0.4,
            "political": 0.5,
            "circumvention": 0.6,
        },
        ("reset",),
    ),
    _Country(
        "Vietnam",
        "VN",
        ("14.160", "27.72", "42.112", "113.160", "115.73", "171.224", "183.80"),
        {"news": 0.5, "political": 0.7, "human_rights": 0.6, "religion": 0.3, "gambling": 0.4},
        ("reset", "timeout"),
    ),
    _Country(
        "Thailand",
        "TH",
        ("1.46", "27.55", "49.228", "58.8", "110.164", "171.96", "182.52"),
        {"adult": 0.7, "gambling": 0.9, "political": 0.4, "filesharing": 0.3},
        ("status",),
    ),
    _Country(
        "South Korea",
        "KR",
        ("1.209", "14.32", "58.120", "121.134", "175.223", "211.36"),
        {"adult": 0.9, "gambling": 0.9, "political": 0.1, "filesharing": 0.3},
        ("reset",),
    ),
    _Country(
        "Egypt",
        "EG",
        ("41.33", "41.178", "156.160", "196.205", "197.32", "105.196"),
        {"news": 0.5, "political": 0.6, "human_rights": 0.6, "circumvention": 0.4},
        ("reset", "timeout"),
    ),
    _Country(
        "United Arab Emirates",
        "AE",
        ("5.30", "31.215", "86.96", "94.200", "185.93"),
        {"adult": 1.0, "gambling": 0.9, "lgbtq": 0.9, "circumvention": 0.7, "religion": 0.2},
        ("reset",),
    ),
    _Country(
        "Belarus",
        "BY",
        ("37.17", "46.56", "86.57", "93.84", "178.124"),
        {"news": 0.6, "political": 0.8, "human_rights": 0.6, "circumvention": 0.5},
        ("reset",),
    ),
    _Country(
        "Germany",
        "DE",
        ("46.114", "62.155", "84.128", "91.64", "178.4"),
        {"filesharing": 0.5, "gambling": 0.2},
        (),
        clean=4,
    ),
    _Country(
        "France",
        "FR",
        ("37.59", "80.12", "82.64", "90.84", "176.31"),
        {"filesharing": 0.5, "gambling": 0.4, "adult": 0.1},
        (),
        clean=4,
    ),
    _Country(
        "Spain",
        "ES",
        ("2.136", "31.4", "77.224", "83.32", "88.26"),
        {"filesharing": 0.6, "gambling": 0.3},
        (),
        clean=4,
    ),
    _Country(
        "Mexico",
        "MX",
        ("177.224", "187.188", "189.203", "200.38", "201.141"),
        {"gambling": 0.6, "filesharing": 0.4, "adult": 0.3},
        ("status",),
        clean=3,
    ),
)

_BENIGN_SETS: tuple[tuple[str, ...], ...] = (
    ("cdn_challenge", "server_error", "same_site_redirect", "parking"),
    ("waf_block", "parking", "maintenance", "hosting_suspended"),
    ("cdn_error", "server_error", "same_site_redirect", "waf_block"),
    ("cdn_challenge", "cdn_error", "waf_block", "maintenance"),
    ("parking", "hosting_suspended", "same_site_redirect", "cdn_challenge"),
    ("maintenance", "server_error", "cdn_error", "hosting_suspended"),
)


@dataclass
class _Vantage:
    """One vantage point: address, country, the censor on its path and its flakiness."""

    ip: str
    country: _Country
    isp: int
    mechanism: str | None  # censorship mechanism on this path (None: unfiltered)
    vendor: str | None  # blockpage family of the path's censor
    all_ports: bool  # the middlebox inspects echo/discard ports too
    https_inject: bool  # the middlebox injects blockpages into TLS (with its own certificate)
    noise: float
    down: float
    benign: dict[int, str] = field(default_factory=dict)  # domain index -> benign domain kind
    host_kind: str | None = None  # the host is not a proper server: a benign host kind


@dataclass(frozen=True)
class _Domain:
    """One test domain and its category."""

    name: str
    category: str


@dataclass
class _World:
    """The whole simulated world, built once from a fixed seed."""

    domains: list[_Domain]
    vantages: list[_Vantage]
    blocked: dict[tuple[str, int], bool]  # (country code, domain index) -> on the blocklist


def _make_domains(rng: random.Random) -> list[_Domain]:
    """Build ~200 plausible test domains in categories, deterministically."""
    seen: set[str] = set()
    out: list[_Domain] = []
    for category, (prefixes, suffixes, tlds, count) in _CATEGORY_WORDS.items():
        made = 0
        while made < count:
            name = f"{rng.choice(prefixes)}{rng.choice(suffixes)}.{rng.choice(tlds)}"
            if rng.random() < 0.25:
                name = "www." + name
            if name.removeprefix("www.") in seen:
                continue
            seen.add(name.removeprefix("www."))
            out.append(_Domain(name, category))
            made += 1
    return out


def _isps(country: _Country) -> list[tuple[str, str | None]]:
    """A country's censoring ISPs: one per deployed blockpage family, then the others."""
    pages = [("blockpage", f.name) for f in _FAMILY_LIST if country.code in f.countries]
    return pages + [(m, None) for m in country.mechanisms]


def _make_vantage(
    rng: random.Random,
    country: _Country,
    n_domains: int,
    isp: int,
    censor: tuple[str | None, str | None],
    host_kind: str | None,
) -> _Vantage:
    """Draw one vantage point of a country behind a given censor, with noise and benign pages."""
    ip = f"{rng.choice(country.prefixes)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    kinds = rng.choice(_BENIGN_SETS)
    rate = rng.choice((0.02, 0.04, 0.08, 0.12))
    benign = {d: rng.choice(kinds) for d in range(n_domains) if rng.random() < rate}
    return _Vantage(
        ip=ip,
        country=country,
        isp=isp,
        mechanism=censor[0],
        vendor=censor[1],
        all_ports=isp % 3 != 2 or rng.random() < 0.5,
        https_inject=rng.random() < 0.5,
        noise=rng.choice((0.005, 0.01, 0.02, 0.04, 0.08)),
        down=rng.choice((0.0, 0.005, 0.01, 0.03)),
        benign=benign,
        host_kind=host_kind,
    )


def _vantage_plan() -> list[tuple[_Country, int, tuple[str | None, str | None], str | None]]:
    """Every vantage point to draw: (country, isp, censor, host kind), in a fixed order.

    Two per censoring ISP, the country's clean ones, and one per benign host kind spread over
    the countries, so every family and kind has vantage points.
    """
    plan: list[tuple[_Country, int, tuple[str | None, str | None], str | None]] = []
    for country in COUNTRIES:
        isps = _isps(country)
        for isp, censor in enumerate(isps):
            plan.extend([(country, isp, censor, None)] * 2)
        plan.extend([(country, len(isps) + k, (None, None), None) for k in range(country.clean)])
    for k, kind in enumerate(HOST_KINDS):
        country = COUNTRIES[(k * 7) % len(COUNTRIES)]
        plan.append((country, 99, (None, None), kind))
    return plan


@lru_cache(maxsize=1)
def build_world() -> _World:
    """Build the fixed simulated world (domains, vantage points, blocklists)."""
    rng = random.Random(_WORLD_SEED)
    domains = _make_domains(rng)
    vantages: list[_Vantage] = []
    seen: set[str] = set()
    for country, isp, censor, host_kind in _vantage_plan():
        while True:
            vp = _make_vantage(rng, country, len(domains), isp, censor, host_kind)
            if vp.ip not in seen:
                break
        seen.add(vp.ip)
        vantages.append(vp)
    blocked = {
        (c.code, i): rng.random() < c.coverage.get(d.category, 0.0)
        for c in COUNTRIES
        for i, d in enumerate(domains)
    }
    return _World(domains, vantages, blocked)


# --------------------------------------------------------------------------------------------
# Responses and pages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resp:
    """An HTTP response as the wire shows it (status line without the version)."""

    status: str
    headers: tuple[tuple[str, str], ...]
    body: str
    cert_owner: str = ""  # https: who presented the certificate


def _hex(rng: random.Random, n: int) -> str:
    """Random lowercase hex id of n characters."""
    return f"{rng.getrandbits(4 * n):0{n}x}"


# --- Generic HTTP parts, shared by every page kind ------------------------------------------
#
# Headers no censor's identity depends on (Date, Connection, Content-Length, Cache-Control, the
# charset spelling of Content-Type and of the page's <meta>) and their order are drawn from ONE
# distribution for blockpages and benign pages alike, so a model cannot tell the two apart by the
# generator's habits; only a page's own content and its deliberate identity headers (a vendor's
# Server, X-Powered-By, WWW-Authenticate, Location, ...) differ. ``benchmarks/synth_world.py
# --artefacts`` prints the rates per header line and token in both groups.

#: Content-Type values of an HTML page (the charset spelling is the generic part).
_HTML_TYPES = ("text/html", "text/html; charset=utf-8", "text/html; charset=UTF-8")
#: The page's own charset declaration inside <head>, drawn per response ("" for none).
_META_CHARSETS = (
    "",
    '<meta charset="utf-8">',
    '<meta charset="UTF-8">',
    '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">',
)
_META_CHARSET_RE = re.compile(
    r'<meta (?:charset="[^"]*"|http-equiv="Content-Type" content="[^"]*")>\n?', re.IGNORECASE
)
_HEAD_RE = re.compile(r"<head>\n?", re.IGNORECASE)
#: Where each header goes on the wire (one order for every kind); unknown names follow, as given.
_HEADER_ORDER = ("Server", "Date", "Content-Type", "Content-Length", "Connection", "Cache-Control")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _http_date(rng: random.Random) -> str:
    """An RFC 7231 date (the weekday need not match; nothing checks it)."""
    return (
        f"{rng.choice(_DAYS)}, {rng.randint(1, 28):02d} {rng.choice(_MONTHS)} 2021 "
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} GMT"
    )


def _shared_head(body: str, rng: random.Random) -> str:
    """The body with its <meta> charset declaration redrawn from the shared distribution."""
    if not _HEAD_RE.search(body):
        return body
    body = _META_CHARSET_RE.sub("", body)
    meta = rng.choice(_META_CHARSETS)
    return (
        _HEAD_RE.sub(lambda m: m.group(0) + (meta + "\n" if meta else ""), body, count=1)
        if meta
        else body
    )


def _generic_headers(
    rng: random.Random, body: str, content_type: str | None, own: tuple[tuple[str, str], ...] = ()
) -> tuple[tuple[str, str], ...]:
    """Every response's headers: the shared generic draw plus ``own`` ones, in the one order.

    ``content_type`` None means an HTML page (its charset spelling is drawn); an ``own`` header
    of a generic name (a vendor's Cache-Control or Content-Type) replaces the drawn one.
    """
    generic: dict[str, str] = {}
    if rng.random() < 0.5:
        generic["Date"] = _http_date(rng)
    generic["Content-Type"] = content_type or rng.choice(_HTML_TYPES)
    if not body or rng.random() < 0.85:
        generic["Content-Length"] = str(len(body.encode()))
    pick = rng.random()
    if pick < 0.45:
        generic["Connection"] = "close"
    elif pick < 0.7:
        generic["Connection"] = "keep-alive"
    if rng.random() < 0.3:
        generic["Cache-Control"] = rng.choice(("no-cache", "no-store", "max-age=0"))
    names = {k for k, _ in own}
    merged = [(k, v) for k, v in generic.items() if k not in names] + list(own)
    rank = {name: i for i, name in enumerate(_HEADER_ORDER)}
    return tuple(sorted(merged, key=lambda kv: rank.get(kv[0], len(rank))))


def _html_headers(
    rng: random.Random, body: str, *own: tuple[str, str]
) -> tuple[tuple[str, str], ...]:
    """Headers of an HTML response: the shared generic ones plus its own."""
    return _generic_headers(rng, body, None, own)


# --- Blockpage families ---------------------------------------------------------------------
#
# Each family is one censor's page template, written on its own: its own wording in its own
# language, its own layout (HTML table, div, card, right-to-left, plain text, JSON, XML, a
# frame, a redirect, a meta refresh or a near-empty answer), headers, server and CSS. A page
# varies per request (domain, reference numbers, client address, dates, optional lines), but
# every page of a family contains the family's ``pattern`` and no other family's or benign
# page does, so ``write_signatures`` can fingerprint any chosen subset of families.

#: Blockpage mechanisms of the families (the HTTP status of the page, or how it is delivered).
FAMILY_MECHANISMS: tuple[str, ...] = (
    "200",
    "403",
    "404",
    "451",
    "redirect",
    "iframe",
    "meta-refresh",
    "near-empty",
)

_STATUS = {
    "200": "200 OK",
    "403": "403 Forbidden",
    "404": "404 Not Found",
    "451": "451 Unavailable For Legal Reasons",
}


@dataclass(frozen=True)
class Family:
    """One blockpage family: a censor's template, where it is deployed, and its signature.

    ``lines`` are always on the page, ``extras`` are optional per-request lines; both may use
    the placeholders ``{d}`` (domain), ``{ref}``, ``{n}``, ``{ip}``, ``{date}`` and ``{cat}``.
    ``notice`` is the target of redirects, frames and meta refreshes (``{a}``/``{b}``: random
    numbers, ``{d}``: domain). ``pattern`` is a Python regex found in every page of the family.
    """

    name: str
    language: str
    script: str
    mechanism: str
    countries: tuple[str, ...]
    layout: str
    title: str
    lines: tuple[str, ...]
    pattern: str
    extras: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    notice: str = ""


def _fam(
    name: str,
    language: str,
    script: str,
    mechanism: str,
    countries: str,
    layout: str,
    title: str,
    lines: tuple[str, ...],
    pattern: str,
    extras: tuple[str, ...] = (),
    headers: tuple[tuple[str, str], ...] = (),
    notice: str = "",
) -> Family:
    """Shorthand constructor: ``countries`` is a comma-separated list of country codes."""
    return Family(
        name,
        language,
        script,
        mechanism,
        tuple(countries.split(",")),
        layout,
        title,
        lines,
        pattern,
        extras,
        headers,
        notice,
    )


_FAMILY_LIST: tuple[Family, ...] = (
    # --- Russia, Belarus, Kazakhstan (Cyrillic)
    _fam(
        "ru_registry_div",
        "ru",
        "Cyrillic",
        "200",
        "RU",
        "div",
        "Доступ ограничен",
        (
            "Доступ к ресурсу {d} ограничен на основании решения органа власти.",
            "Сведения о причинах ограничения размещены в едином реестре.",
        ),
        r"на основании решения органа власти",
        ("Номер записи в реестре: {n}", "Ваш IP-адрес: {ip}"),
        (("Server", "nginx"),),
    ),
    _fam(
        "ru_subscriber_table",
        "ru",
        "Cyrillic",
        "403",
        "RU,BY",
        "table",
        "Ресурс заблокирован",
        (
            "Уважаемый абонент! Запрошенная страница {d} заблокирована оператором связи.",
            "Блокировка выполнена во исполнение требований законодательства.",
        ),
        r"Уважаемый абонент! Запрошенная страница",
        ("Дата: {date}", "Код обращения: {ref}"),
        (("Server", "Apache"), ("X-Powered-By", "PHP/5.4.16")),
    ),
    _fam(
        "ru_warning_redirect",
        "ru",
        "Cyrillic",
        "redirect",
        "RU",
        "redirect",
        "Перенаправление",
        (),
        r"http://zapret\.uzel-svyazi\.net/",
        notice="http://zapret.uzel-svyazi.net/?site={d}",
    ),
    _fam(
        "ru_api_json",
        "ru",
        "Cyrillic",
        "451",
        "RU",
        "json",
        "Ресурс недоступен",
        ("Ресурс недоступен по требованию регулятора отрасли связи",),
        r"Ресурс недоступен по требованию регулятора отрасли связи",
        ("Идентификатор запроса {ref}",),
        (("Server", "envoy"), ("Content-Type", "application/json; charset=utf-8")),
    ),
    _fam(
        "ru_silent_dpi",
        "ru",
        "Cyrillic",
        "near-empty",
        "RU,BY",
        "empty",
        "",
        (),
        r"Server: kvant-dpi",
        headers=(("Server", "kvant-dpi"),),
    ),
    _fam(
        "by_ministry_plain",
        "ru",
        "Cyrillic",
        "451",
        "BY",
        "plain",
        "Доступ ограничен",
        (
            "Доступ к интернет-ресурсу {d} ограничен в соответствии с решением Министерства "
            "информации.",
        ),
        r"ограничен в соответствии с решением Министерства информации",
        ("Обращения принимаются по адресу info@{d}", "Время: {date}"),
        (("Server", "lighttpd/1.4.55"),),
    ),
    _fam(
        "kz_card",
        "kk",
        "Cyrillic",
        "200",
        "KZ",
        "card",
        "Ресурсқа кіру шектелген",
        (
            "Бұл интернет-ресурсқа кіру шектелген.",
            "Шектеу Қазақстан Республикасының заңнамасына сәйкес енгізілді.",
        ),
        r"Шектеу Қазақстан Республикасының заңнамасына",
        ("Сұрау нөмірі: {n}", "Санат: {cat}"),
        (("Server", "nginx/1.20.1"),),
    ),
    _fam(
        "kz_meta_refresh",
        "kk",
        "Cyrillic",
        "meta-refresh",
        "KZ",
        "meta",
        "Қайта бағыттау",
        ("Сіз ақпараттық бетке бағытталасыз.",),
        r"http://akparat\.shekteu-qyzmet\.kz/",
        notice="http://akparat.shekteu-qyzmet.kz/bet?r={d}&id={ref}",
    ),
    # --- Iran (Persian, Arabic script)
    _fam(
        "ir_frame_private",
        "fa",
        "Arabic",
        "iframe",
        "IR",
        "frame",
        "صفحه در دسترس نیست",
        ("دسترسی به این تارنما طبق مقررات کشور ممکن نیست.",),
        r"http://10\.66\.0\.\d{1,3}/masdood\.htm",
        notice="http://10.66.0.{b}/masdood.htm?d={d}",
    ),
    _fam(
        "ir_frame_filter",
        "fa",
        "Arabic",
        "iframe",
        "IR",
        "frame",
        "پالایش",
        ("این محتوا پالایش شده است.",),
        r"http://172\.20\.\d{1,3}\.1/palayesh/",
        notice="http://172.20.{a}.1/palayesh/index.php?url={d}",
    ),
    _fam(
        "ir_rtl_notice",
        "fa",
        "Arabic",
        "403",
        "IR",
        "rtl",
        "صفحه مسدود است",
        (
            "کاربر گرامی، دسترسی به {d} بر اساس فهرست مصادیق محتوای مجرمانه امکان‌پذیر نیست.",
            "برای طرح شکایت با پشتیبانی تماس بگیرید.",
        ),
        r"بر اساس فهرست مصادیق محتوای مجرمانه",
        ("شماره پیگیری: {n}",),
        (("Server", "Microsoft-IIS/7.5"), ("X-AspNet-Version", "4.0.30319")),
    ),
    # --- Turkey (Turkish)
    _fam(
        "tr_court_center",
        "tr",
        "Latin",
        "200",
        "TR",
        "center",
        "Bu siteye erişim durduruldu",
        (
            "{d} hakkında Sulh Ceza Hakimliği kararı ile erişimin engellenmesi tedbiri "
            "uygulanmaktadır.",
        ),
        r"kararı ile erişimin engellenmesi tedbiri uygulanmaktadır",
        ("Karar numarası: {n}", "Karar tarihi: {date}"),
        (("Server", "Apache/2.2.15 (CentOS)"),),
    ),
    _fam(
        "tr_admin_table",
        "tr",
        "Latin",
        "451",
        "TR",
        "table",
        "İdari tedbir",
        (
            "İdari tedbir kararı uyarınca bu adrese erişim sağlanamamaktadır.",
            "Ayrıntılı bilgi için hizmet sağlayıcınıza başvurunuz.",
        ),
        r"İdari tedbir kararı uyarınca bu adrese",
        ("Başvuru no: {ref}",),
        (("Server", "nginx"),),
    ),
    _fam(
        "tr_notice_redirect",
        "tr",
        "Latin",
        "redirect",
        "TR",
        "redirect",
        "Yönlendirme",
        (),
        r"http://uyari\.erisim-bildirim\.net/",
        notice="http://uyari.erisim-bildirim.net/{d}",
    ),
    _fam(
        "tr_fake_404",
        "tr",
        "Latin",
        "404",
        "TR",
        "pre",
        "404",
        ("Aradığınız sayfa bu ağda görüntülenemiyor (kod TRB-404).",),
        r"\(kod TRB-404\)",
        ("İstek: {ref}",),
        (("Server", "mini_httpd/1.30"),),
    ),
    # --- India (English, Hindi)
    _fam(
        "in_operator_plain",
        "en",
        "Latin",
        "200",
        "IN",
        "plain",
        "Link unavailable",
        (
            "The link you opened is unavailable on this network following instructions issued to "
            "licensed operators.",
            "Kindly reach out to your operator's helpline for assistance.",
        ),
        r"unavailable on this network following instructions issued to licensed operators",
        ("Ticket {n}",),
        (("Server", "Apache-Coyote/1.1"),),
    ),
    _fam(
        "in_hindi_div",
        "hi",
        "Devanagari",
        "451",
        "IN",
        "div",
        "वेबसाइट उपलब्ध नहीं",
        (
            "यह वेब पता सरकारी निर्देशों के अनुसार इस नेटवर्क पर उपलब्ध नहीं है।",
            "अधिक जानकारी के लिए अपने सेवा प्रदाता से संपर्क करें।",
        ),
        r"सरकारी निर्देशों के अनुसार इस नेटवर्क पर",
        ("संदर्भ संख्या: {n}",),
        (("Server", "openresty"),),
    ),
    _fam(
        "in_gateway_empty",
        "en",
        "Latin",
        "near-empty",
        "IN",
        "empty",
        "",
        (),
        r"Server: sanchar-gw/2",
        headers=(("Server", "sanchar-gw/2"), ("Pragma", "no-cache")),
    ),
    # --- Indonesia (Indonesian)
    _fam(
        "id_healthy_redirect",
        "id",
        "Latin",
        "redirect",
        "ID",
        "redirect",
        "Dialihkan",
        (),
        r"http://peringatan\.jaring-sehat\.id/",
        notice="http://peringatan.jaring-sehat.id/?situs={d}",
    ),
    _fam(
        "id_card",
        "id",
        "Latin",
        "200",
        "ID",
        "card",
        "Situs tidak dapat diakses",
        (
            "Mohon maaf, situs {d} tidak dapat dibuka karena termasuk dalam daftar situs "
            "bermuatan negatif.",
            "Gunakan internet secara sehat dan aman.",
        ),
        r"termasuk dalam daftar situs bermuatan negatif",
        ("Kategori: {cat}",),
        (("Server", "nginx/1.14.2"),),
    ),
    _fam(
        "id_meta_refresh",
        "id",
        "Latin",
        "meta-refresh",
        "ID",
        "meta",
        "Mengalihkan",
        ("Anda sedang dialihkan ke halaman pemberitahuan.",),
        r"http://blokir\.sahabat-net\.co\.id/",
        notice="http://blokir.sahabat-net.co.id/info.html?u={d}&s={n}",
    ),
    # --- Pakistan (Urdu, English)
    _fam(
        "pk_urdu_rtl",
        "ur",
        "Arabic",
        "200",
        "PK",
        "rtl",
        "ویب سائٹ بند ہے",
        (
            "یہ ویب سائٹ متعلقہ ادارے کی ہدایت پر بند کر دی گئی ہے۔",
            "مزید معلومات کے لیے اپنے انٹرنیٹ فراہم کنندہ سے رابطہ کریں۔",
        ),
        r"متعلقہ ادارے کی ہدایت پر بند کر دی گئی",
        ("حوالہ نمبر: {n}",),
        (("Server", "Apache"),),
    ),
    _fam(
        "pk_regulator_pre",
        "en",
        "Latin",
        "403",
        "PK",
        "pre",
        "Not accessible",
        (
            "This website is not accessible in your region under the direction of the telecom "
            "regulator.",
        ),
        r"under the direction of the telecom regulator",
        ("Reference {ref}", "Client {ip}"),
        (("Server", "squid/3.5.20"), ("X-Cache", "MISS from pk-gw")),
    ),
    # --- Arabic-speaking countries
    _fam(
        "sa_table",
        "ar",
        "Arabic",
        "200",
        "SA",
        "table",
        "الموقع محجوب",
        ("عفواً، لا يمكن الوصول إلى الصفحة المطلوبة لمخالفتها الأنظمة واللوائح.",),
        r"لا يمكن الوصول إلى الصفحة المطلوبة لمخالفتها",
        ("الفئة: {cat}",),
        (("Server", "Apache"),),
    ),
    _fam(
        "sa_frame_private",
        "ar",
        "Arabic",
        "iframe",
        "SA",
        "frame",
        "تنبيه",
        ("المحتوى غير متاح.",),
        r"http://192\.168\.251\.\d{1,3}/tanbih\.html",
        notice="http://192.168.251.{b}/tanbih.html#{d}",
    ),
    _fam(
        "ae_bilingual_card",
        "ar",
        "Arabic",
        "403",
        "AE",
        "card",
        "المحتوى محظور | Content blocked",
        (
            "المحتوى المطلوب محظور وفقاً لسياسة تنظيم الإنترنت.",
            "The content you requested is not permitted under the internet access policy of this "
            "country.",
        ),
        r"المحتوى المطلوب محظور وفقاً لسياسة",
        ("Ref: {ref}",),
        (("Server", "BigIP"),),
    ),
    _fam(
        "eg_fake_404",
        "ar",
        "Arabic",
        "404",
        "EG",
        "plain",
        "404",
        ("404 - الصفحة المطلوبة غير متوفرة على هذه الشبكة",),
        r"الصفحة المطلوبة غير متوفرة على هذه الشبكة",
        (),
        (("Server", "nginx/1.10.3"),),
    ),
    _fam(
        "eg_notice_redirect",
        "ar",
        "Arabic",
        "redirect",
        "EG",
        "redirect",
        "تحويل",
        (),
        r"http://tanbih\.shabaka-misr\.net/",
        notice="http://tanbih.shabaka-misr.net/p?h={d}",
    ),
    # --- Vietnam, Thailand, Korea, China
    _fam(
        "vn_div",
        "vi",
        "Latin",
        "200",
        "VN",
        "div",
        "Trang web bị ngăn chặn",
        ("Trang web {d} đã bị ngăn chặn theo yêu cầu của cơ quan quản lý.",),
        r"đã bị ngăn chặn theo yêu cầu của cơ quan quản lý",
        ("Mã tham chiếu: {ref}",),
        (("Server", "nginx"),),
    ),
    _fam(
        "vn_json",
        "vi",
        "Latin",
        "403",
        "VN",
        "json",
        "Truy cập bị từ chối",
        ("Truy cập bị từ chối do vi phạm quy định về nội dung thông tin trên mạng",),
        r"vi phạm quy định về nội dung thông tin trên mạng",
        ("Thời gian {date}",),
        (("Content-Type", "application/json"), ("Server", "gunicorn")),
    ),
    _fam(
        "th_center",
        "th",
        "Thai",
        "200",
        "TH",
        "center",
        "ไม่สามารถเข้าถึงเว็บไซต์",
        ("เว็บไซต์นี้ถูกปิดกั้นตามคำสั่งของหน่วยงานที่เกี่ยวข้อง",),
        r"ถูกปิดกั้นตามคำสั่งของหน่วยงานที่เกี่ยวข้อง",
        ("รหัสอ้างอิง {n}",),
        (("Server", "Apache/2.4.6"),),
    ),
    _fam(
        "th_court_table",
        "th",
        "Thai",
        "451",
        "TH",
        "table",
        "ระงับการเข้าถึง",
        ("การเข้าถึง {d} ถูกระงับตามคำสั่งศาล", "หากมีข้อสงสัยโปรดติดต่อผู้ให้บริการ"),
        r"ถูกระงับตามคำสั่งศาล",
        ("วันที่ {date}",),
        (("Server", "Microsoft-IIS/8.5"),),
    ),
    _fam(
        "kr_notice_redirect",
        "ko",
        "Hangul",
        "redirect",
        "KR",
        "redirect",
        "안내",
        (),
        r"http://annae\.jeopsok-chadan\.kr/",
        notice="http://annae.jeopsok-chadan.kr/index.jsp?u={d}",
    ),
    _fam(
        "kr_card",
        "ko",
        "Hangul",
        "200",
        "KR",
        "card",
        "불법·유해 정보 차단 안내",
        ("요청하신 사이트 {d}는 관련 법률에 따라 접속이 차단되었습니다.",),
        r"관련 법률에 따라 접속이 차단되었습니다",
        ("문의 번호: {n}",),
        (("Server", "Jetty(9.4.z)"),),
    ),
    _fam(
        "cn_policy_xml",
        "zh",
        "Han",
        "403",
        "CN",
        "xml",
        "禁止访问",
        ("该网站已被网络安全策略禁止访问",),
        r"该网站已被网络安全策略禁止访问",
        ("请求编号 {ref}",),
        (("Content-Type", "application/xml"), ("Server", "Tengine")),
    ),
    _fam(
        "cn_plain",
        "zh",
        "Han",
        "200",
        "CN",
        "plain",
        "无法显示",
        ("根据相关法律法规，您访问的网站暂时无法显示。",),
        r"根据相关法律法规，您访问的网站暂时无法显示",
        ("时间：{date}",),
        (("Server", "Tengine/2.3.2"),),
    ),
    # --- Western countries (English, German, French, Spanish)
    _fam(
        "us_gateway_json",
        "en",
        "Latin",
        "403",
        "US",
        "json",
        "Request blocked",
        ("Request blocked by the acceptable use policy of this network",),
        r"blocked by the acceptable use policy of this network",
        ("Category {cat}", "Transaction {ref}"),
        (("Content-Type", "application/json"), ("Server", "edge-proxy")),
    ),
    _fam(
        "us_school_div",
        "en",
        "Latin",
        "200",
        "US",
        "div",
        "Page not allowed",
        (
            "This page is not allowed on the district network.",
            "Ask a teacher if you need it for class work.",
        ),
        r"not allowed on the district network",
        ("Reason: {cat}", "Device: {ip}"),
        (("Server", "nginx"),),
    ),
    _fam(
        "us_silent_empty",
        "en",
        "Latin",
        "near-empty",
        "US",
        "empty",
        "",
        (),
        r"X-Filter-Verdict: deny",
        headers=(("X-Filter-Verdict", "deny"), ("Server", "Apache")),
    ),
    _fam(
        "de_court_plain",
        "de",
        "Latin",
        "451",
        "DE",
        "plain",
        "Zugang gesperrt",
        ("Der Zugang zu dieser Website wurde aufgrund einer gerichtlichen Anordnung gesperrt.",),
        r"aufgrund einer gerichtlichen Anordnung gesperrt",
        ("Aktenzeichen {n}",),
        (("Server", "nginx"),),
    ),
    _fam(
        "de_policy_xml",
        "de",
        "Latin",
        "403",
        "DE",
        "xml",
        "Zugriff verweigert",
        ("Der Zugriff wurde durch die Sicherheitsrichtlinie des Netzbetreibers verweigert",),
        r"durch die Sicherheitsrichtlinie des Netzbetreibers verweigert",
        ("Vorgang {ref}",),
        (("Content-Type", "text/xml; charset=utf-8"), ("Server", "Apache")),
    ),
    _fam(
        "fr_div",
        "fr",
        "Latin",
        "200",
        "FR",
        "div",
        "Site inaccessible",
        (
            "L'accès à ce site a été bloqué à la demande de l'autorité administrative compétente.",
            "Vous pouvez contester cette mesure auprès de la juridiction compétente.",
        ),
        r"bloqué à la demande de l'autorité administrative",
        ("Référence : {ref}",),
        (("Server", "nginx"),),
    ),
    _fam(
        "fr_meta_refresh",
        "fr",
        "Latin",
        "meta-refresh",
        "FR",
        "meta",
        "Redirection",
        ("Redirection vers la page d'information.",),
        r"http://information\.acces-restreint\.fr/",
        notice="http://information.acces-restreint.fr/?site={d}&ref={ref}",
    ),
    _fam(
        "es_card",
        "es",
        "Latin",
        "451",
        "ES,MX",
        "card",
        "Acceso bloqueado",
        ("El acceso a esta página ha sido bloqueado por orden judicial.",),
        r"ha sido bloqueado por orden judicial",
        ("Expediente {n}", "Fecha {date}"),
        (("Server", "Apache/2.4.29 (Ubuntu)"),),
    ),
    _fam(
        "mx_notice_redirect",
        "es",
        "Latin",
        "redirect",
        "MX",
        "redirect",
        "Redirección",
        (),
        r"http://aviso\.red-bloqueo\.mx/",
        notice="http://aviso.red-bloqueo.mx/sitio/{d}",
    ),
)

#: All blockpage families by name.
FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILY_LIST}

#: Families without a signature by default (about a quarter, spread over mechanisms and scripts).
_DEFAULT_UNFINGERPRINTED = frozenset(
    {
        "ru_api_json",
        "kz_meta_refresh",
        "ir_frame_filter",
        "tr_admin_table",
        "in_hindi_div",
        "id_card",
        "pk_urdu_rtl",
        "eg_fake_404",
        "th_court_table",
        "kr_card",
        "de_policy_xml",
        "us_silent_empty",
    }
)

#: The families fingerprinted by default.
DEFAULT_FINGERPRINTED: frozenset[str] = frozenset(FAMILIES) - _DEFAULT_UNFINGERPRINTED

#: Compatibility view: family name -> fingerprinted by default.
VENDORS: dict[str, bool] = {name: name in DEFAULT_FINGERPRINTED for name in FAMILIES}


_CSS_CLASSES = ("box", "wrap", "main", "notice", "msg", "content", "panel", "block", "info", "page")


def _family_class(name: str) -> str:
    """The class of a family's main container (its own word and number)."""
    digest = hashlib.sha256(name.encode()).digest()
    return f"{_CSS_CLASSES[digest[17] % len(_CSS_CLASSES)]}{digest[8] % 90 + 10}"


def _family_css(name: str) -> str:
    """A family's own stylesheet, derived from its name.

    Fonts, colours, sizes, the font's quoting, property order and whitespace all differ per family,
    so no "house style" is shared by every censor's pages.
    """
    digest = hashlib.sha256(name.encode()).digest()
    font = ("Tahoma", "Verdana", "Georgia", "Arial", "Trebuchet MS", "Segoe UI", "Courier New")[
        digest[0] % 7
    ]
    quote = ("", "'", '"')[digest[18] % 3] if " " not in font else ("'", '"')[digest[18] % 2]
    body = [
        f"font-family:{quote}{font}{quote},sans-serif",
        f"font-size:{12 + digest[1] % 6}px",
        f"background:#{digest[2:5].hex()}",
        f"color:#{digest[5:8].hex()}",
    ]
    box = [
        f"margin:{digest[9] % 40}px auto",
        f"max-width:{500 + digest[10] % 400}px",
        f"padding:{digest[11] % 30}px",
        f"border:{digest[12] % 4}px solid #{digest[13:16].hex()}",
    ]
    if digest[19] % 2:
        body.reverse()
    if digest[20] % 2:
        box.reverse()
    rules = (("body", body), (f".{_family_class(name)}", box))
    if digest[16] % 2:  # pretty-printed
        return "\n" + "".join(
            f"{sel} {{\n" + "".join(f"  {d.replace(':', ': ', 1)};\n" for d in decls) + "}\n"
            for sel, decls in rules
        )
    return "".join(f"{sel}{{{';'.join(decls)}}}" for sel, decls in rules)


def _fill(text: str, rng: random.Random, domain: str, category: str) -> str:
    """Fill the placeholders of one phrase with per-request values."""
    if "{" not in text:
        return text
    return (
        text.replace("{d}", domain)
        .replace("{cat}", _CATEGORY_LABELS[category])
        .replace("{ref}", _hex(rng, rng.choice((8, 10, 12, 16))))
        .replace("{n}", str(rng.randint(1000, 9999999)))
        .replace("{ip}", _LOCAL_IPS[rng.getrandbits(1)])
        .replace("{a}", str(rng.randint(0, 255)))
        .replace("{b}", str(rng.randint(2, 250)))
        .replace(
            "{date}",
            f"2021-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        )
    )


def _render_html(family: Family, title: str, paras: list[str]) -> str:
    """A family's HTML page in its layout."""
    lang, css = family.language, _family_css(family.name)
    cls = _family_class(family.name)
    if family.layout == "table":
        rows = "".join(
            f'<tr><td align="center"><font size="3">{p}</font></td></tr>\n' for p in paras
        )
        return (
            f'<HTML><HEAD><TITLE>{title}</TITLE>\n<META HTTP-EQUIV="Pragma" '
            'CONTENT="no-cache"></HEAD>\n'
            f'<BODY><TABLE border="0" cellpadding="6" width="{560 + len(family.name) * 4}">\n'
            "<tr><th "
            f'bgcolor="#{hashlib.sha256(family.name.encode()).hexdigest()[:6]}">{title}</th></tr>\n'
            f"{rows}</TABLE></BODY></HTML>\n"
        )
    if family.layout == "center":
        inner = "<br>\n".join(paras)
        return (
            f"<html><head><title>{title}</title></head>\n<body><center>\n<h2>{title}</h2>\n"
            f"<p>{inner}</p>\n</center></body></html>\n"
        )
    if family.layout == "card":
        inner = "".join(f'<p class="card-text">{p}</p>\n' for p in paras)
        return (
            f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, '
            f'initial-scale=1">\n<title>{title}</title>\n'
            f'<style>{css}</style>\n</head>\n<body>\n<div class="container {cls}">\n<div '
            'class="card">\n'
            f'<div class="card-header">{title}</div>\n<div '
            f'class="card-body">\n{inner}</div>\n</div>\n'
            "</div>\n</body>\n</html>\n"
        )
    if family.layout == "rtl":
        inner = "".join(f"<p>{p}</p>\n" for p in paras)
        return (
            f'<html dir="rtl" lang="{lang}"><head><meta http-equiv="Content-Type" '
            'content="text/html; '
            f'charset=utf-8"><title>{title}</title><style>{css}</style></head>\n'
            f'<body><div class="{cls}" style="direction:rtl;text-align:right">\n<h3>{title}</h3>\n'
            f"{inner}</div></body></html>\n"
        )
    if family.layout == "pre":
        return f"<html><body><pre>\n{title}\n\n" + "\n".join(paras) + "\n</pre></body></html>\n"
    inner = "".join(f"<p>{p}</p>\n" for p in paras)  # "div"
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta '
        f'charset="utf-8">\n<title>{title}</title>\n'
        f"<style>{css}</style>\n</head>\n<body>\n<div "
        f'class="{cls}">\n<h1>{title}</h1>\n{inner}</div>\n'
        "</body>\n</html>\n"
    )


def _render_structured(family: Family, title: str, paras: list[str], rng: random.Random) -> str:
    """A family's plain-text, JSON or XML body."""
    if family.layout == "plain":
        return "\n".join(paras) + "\n"
    if family.layout == "json":
        obj = {
            "status": int(_STATUS[family.mechanism][:3]),
            "error": title,
            "message": paras[0],
            "details": paras[1:],
            "id": _hex(rng, 12),
        }
        return json.dumps(obj, ensure_ascii=False, indent=1 + len(family.name) % 3) + "\n"
    items = "".join(f"  <detail>{p}</detail>\n" for p in paras[1:])  # "xml"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  '
        f"<code>{_STATUS[family.mechanism][:3]}</code>\n"
        f"  <title>{title}</title>\n  <reason>{paras[0]}</reason>\n{items}</response>\n"
    )


def _content_type(family: Family) -> str | None:
    """A family's own Content-Type (JSON, XML, plain text); None for HTML (drawn per response)."""
    for name, value in family.headers:
        if name == "Content-Type":
            return value
    return "text/plain" if family.layout == "plain" else None


def _headers(
    rng: random.Random, family: Family, body: str, *extra: tuple[str, str]
) -> tuple[tuple[str, str], ...]:
    """A family's response headers: the shared generic ones plus its own identity headers."""
    own = tuple((k, v) for k, v in family.headers if k != "Content-Type")
    content_type = _content_type(family)
    if content_type == "text/plain":
        content_type = rng.choice(_HTML_TYPES).replace("html", "plain")
    return _generic_headers(rng, body, content_type, own + extra)


def _family_page(rng: random.Random, family_name: str, domain: str, category: str) -> _Resp:
    """One blockpage of a family for a request of ``domain``."""
    family = FAMILIES[family_name]
    cert = family.name.replace("_", "-") + "-gw"
    if family.mechanism in ("redirect", "meta-refresh", "iframe"):
        target = _fill(family.notice.replace("{d}", domain), rng, domain, category)
        if family.mechanism == "redirect":
            status = rng.choice(
                (
                    "302 Found",
                    "302 Moved Temporarily",
                    "301 Moved Permanently",
                    "307 Temporary Redirect",
                )
            )
            body = rng.choice(
                (
                    "",
                    f'<a href="{target}">{status[4:]}</a>.\n',
                    f"<html><body>{status[4:]}</body></html>\n",
                )
            )
            return _Resp(status, _headers(rng, family, body, ("Location", target)), body, cert)
        if family.mechanism == "meta-refresh":
            note = family.lines[0] if family.lines else ""
            body = (
                '<html><head><meta http-equiv="refresh" '
                f'content="{rng.choice((0, 0, 1, 3))};url={target}">'
                f"<title>{family.title}</title></head><body>{note}</body></html>\n"
            )
            body = _shared_head(body, rng)
            return _Resp("200 OK", _headers(rng, family, body), body, cert)
        body = (
            f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            f'<title>{family.title}</title></head>\n<body style="margin:0">'
            f'<iframe src="{target}" style="width:100%;height:100%" frameborder="0" '
            'scrolling="no"></iframe>'
            f"<noscript>{family.lines[0]}</noscript></body></html>\n"
        )
        body = _shared_head(body, rng)
        return _Resp("200 OK", _headers(rng, family, body), body, cert)
    if family.mechanism == "near-empty":
        status = rng.choice(("200 OK", "403 Forbidden"))
        body = rng.choice(("", "", "\n", "<html></html>\n", "<html><body></body></html>"))
        return _Resp(status, _headers(rng, family, body), body, cert)
    lines = [_fill(p, rng, domain, category) for p in family.lines]
    extras = [_fill(p, rng, domain, category) for p in family.extras if rng.random() < 0.6]
    paras = lines + extras
    if family.layout in ("plain", "json", "xml"):
        body = _render_structured(family, family.title, paras, rng)
    else:
        body = _shared_head(_render_html(family, family.title, paras), rng)
    return _Resp(_STATUS[family.mechanism], _headers(rng, family, body), body, cert)


def _page_status(rng: random.Random, domain: str, vp: _Vantage) -> _Resp:
    """A bare injected status response without any vendor page."""
    pick = rng.random()
    if pick < 0.4:
        return _Resp("403 Forbidden", _generic_headers(rng, "", None), "")
    if pick < 0.7:
        loc = f"http://{vp.ip.rsplit('.', 1)[0]}.1/"
        return _Resp("302 Found", _generic_headers(rng, "", None, (("Location", loc),)), "")
    return _Resp("404 Not Found", _generic_headers(rng, "", None), "")


# --- Benign anomalies ---------------------------------------------------------------------------
#
# Two sorts. Host kinds: the vantage point is not the echo/discard/web server it should be (an
# SSH, SMTP, FTP, telnet or Redis daemon, a router, a fresh web server, a captive portal, a
# device spewing bytes). It answers the control probe the same way as the test, so Censored
# Planet sees the controls fail. Domain kinds: a normal server answers this test domain with a
# benign non-template page (CDN challenge or WAF, parking, a same-site redirect, errors), while
# its controls succeed.

#: Benign kinds whose host is not a proper echo/web server (all its tries, controls too, fail).
HOST_KINDS: tuple[str, ...] = (
    "ssh_banner",
    "smtp_banner",
    "ftp_banner",
    "telnet_banner",
    "redis_banner",
    "http_banner",
    "router_login",
    "router_default",
    "nginx_welcome",
    "apache_default",
    "iis_default",
    "captive_portal",
    "binary_garbage",
)
#: Benign kinds served by a proper server for some test domains (controls succeed).
DOMAIN_KINDS: tuple[str, ...] = (
    "cdn_challenge",
    "waf_block",
    "cdn_error",
    "parking",
    "same_site_redirect",
    "server_error",
    "hosting_suspended",
    "maintenance",
)
#: Every benign anomaly kind; "noise" is network noise (timeouts, resets of the path).
BENIGN_KINDS: tuple[str, ...] = (*HOST_KINDS, *DOMAIN_KINDS, "noise")

#: Kinds that are not HTTP: on a web scan the client sees a malformed response, no page.
_BANNER_KINDS = frozenset(
    {"ssh_banner", "smtp_banner", "ftp_banner", "telnet_banner", "redis_banner", "binary_garbage"}
)

#: False-positive patterns per benign kind (those a signature can catch). Each matches every
#: received text of its kind and no blockpage.
_BENIGN_PATTERNS: dict[str, str] = {
    "ssh_banner": r"^SSH-2\.0-",
    "smtp_banner": r"^220 [\w.-]+ E?SMTP",
    "ftp_banner": r"^220[ -].{0,80}FTP",
    "telnet_banner": r"^\ufffd\ufffd\x01\ufffd\ufffd\x03.{0,40}login: ",
    "redis_banner": r"^-(?:ERR unknown command|NOAUTH Authentication required)",
    "http_banner": r"<title>400 Bad Request</title>.{0,200}plain HTTP request",
    "router_login": r"WWW-Authenticate: Basic realm=\"[^\"]*(?:Router|Gateway|AP)",
    "router_default": r"<title>(?:Router|Wireless Gateway) (?:Status|Setup)</title>",
    "nginx_welcome": r"<title>Welcome to nginx!</title>",
    "apache_default": r"<title>Apache2 \w+ Default Page: It works</title>",
    "iis_default": r"<title>IIS Windows Server</title>",
    "captive_portal": r"Location: http://(?:portal|hotspot|login)\.[\w.-]+/(?:login|auth)",
    "cdn_challenge": r"<title>Just a moment\.\.\.</title>.{0,200}Checking your browser",
    "waf_block": r"Server: StratusEdge.{0,900}(?:Web Application Firewall|Request ID)",
    "cdn_error": r"<hr><center>StratusEdge</center>|<h1>Error \d{3}</h1>\n<p>The origin web server",
    "parking": r"https://parkcentral-domains\.com/\?d=",
    "same_site_redirect": r"Location: https://",
    "server_error": (
        r"<hr><center>(?:nginx|Apache|openresty|LiteSpeed|Microsoft-IIS|Caddy)</center>"
    ),
    "hosting_suspended": r"/cgi-sys/suspendedpage\.cgi",
    "maintenance": r"performing some maintenance at the moment",
}

#: Benign kinds given a false-positive signature by default (common servers and CDN pages).
DEFAULT_FALSE_POSITIVE_KINDS: frozenset[str] = frozenset(
    {
        "nginx_welcome",
        "apache_default",
        "iis_default",
        "cdn_challenge",
        "cdn_error",
        "parking",
        "hosting_suspended",
        "ssh_banner",
    }
)

#: Compatibility view: benign page kind -> covered by a default false-positive signature.
BENIGN_PAGES: dict[str, bool] = {
    k: k in DEFAULT_FALSE_POSITIVE_KINDS for k in BENIGN_KINDS if k != "noise"
}

_SERVERS = (
    "nginx",
    "Apache",
    "openresty",
    "LiteSpeed",
    "nginx/1.18.0",
    "Apache/2.4.41 (Ubuntu)",
    "Microsoft-IIS/8.5",
    "Caddy",
)


def _banner(kind: str, rng: random.Random) -> str:
    """The first bytes a non-HTTP daemon sends (or garbage), as the client reads them."""
    if kind == "ssh_banner":
        return rng.choice(
            (
                "SSH-2.0-OpenSSH_7.4\r\n",
                "SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.3\r\n",
                "SSH-2.0-dropbear_2019.78\r\n",
                "SSH-2.0-ROSSSH\r\n",
            )
        )
    if kind == "smtp_banner":
        host = rng.choice(("mail", "mx1", "smtp")) + f".host{rng.randint(1, 999)}.net"
        return f"220 {host} {rng.choice(('ESMTP Postfix', 'ESMTP Exim 4.94', 'ESMTP ready'))}\r\n"
    if kind == "ftp_banner":
        return rng.choice(
            (
                "220 (vsFTPd 3.0.3)\r\n",
                "220 ProFTPD Server (FTP) ready.\r\n",
                "220-FileZilla Server 0.9.60 beta FTP\r\n",
                "220 Microsoft FTP Service\r\n",
            )
        )
    if kind == "telnet_banner":
        return (
            "\ufffd\ufffd\x01\ufffd\ufffd\x03\ufffd\ufffd\x18\r\n"
            + rng.choice(("", "BusyBox v1.19\r\n"))
            + rng.choice(("login: ", "DVR login: ", "router login: "))
        )
    if kind == "redis_banner":
        return rng.choice(
            (
                "-ERR unknown command 'GET', with args beginning with: '/' \r\n",
                "-NOAUTH Authentication required.\r\n",
            )
        )
    # Bytes that are not UTF-8 reach the JSON as U+FFFD, as Go's encoder writes them.
    return "".join(chr(c) if c < 128 else "\ufffd" for c in rng.randbytes(rng.randint(4, 40)))


def _page(
    rng: random.Random,
    status: str,
    body: str,
    server: str | None,
    cert: str,
    *extra: tuple[str, str],
) -> _Resp:
    """A benign HTML response with a server header."""
    head = (("Server", server),) if server else ()
    body = _shared_head(body, rng)
    return _Resp(status, _html_headers(rng, body, *head, *extra), body, cert)


def _error_page(status: str, server: str) -> str:
    return (
        f"<html>\n<head><title>{status}</title></head>\n<body>\n<center><h1>{status}</h1>"
        f"</center>\n<hr><center>{server}</center>\n</body>\n</html>\n"
    )


#: Benign kinds whose real pages carry a stylesheet and a language attribute, as real ones do
#: (the default pages of nginx, Apache and IIS, CDN and WAF pages, parking and maintenance pages).
_BENIGN_DRESS: dict[str, tuple[str, str]] = {
    "nginx_welcome": (
        "",
        "html{color-scheme:light dark}body{width:35em;margin:0 "
        "auto;font-family:Tahoma,Verdana,Arial,sans-serif}",
    ),
    "apache_default": (
        "",
        "*{margin:0;padding:0}body,html{padding:3px 3px 3px "
        "3px;background-color:#D8DBE2;font-family:Verdana}",
    ),
    "iis_default": (
        "en",
        "body{color:#000000;background-color:#0072C6;margin:0}#container{margin-left:auto;margin-right:auto;text-align:center}",
    ),
    "cdn_challenge": (
        "en-US",
        "html,body{width:100%;height:100%;margin:0;padding:0}body{background-color:#ffffff;color:#000000;font-family:system-ui}",
    ),
    "waf_block": (
        "en-US",
        "body{font-family:-apple-system,system-ui,sans-serif;margin:2em}h1{font-size:1.6em}",
    ),
    "parking": ("en", "body{background:#f2f2f2;font-family:Arial,sans-serif}a{color:#0066cc}"),
    "maintenance": (
        "en",
        "body{text-align:center;padding:150px;font:20px "
        "Helvetica,sans-serif;color:#333}article{display:block;width:650px;margin:0 auto}",
    ),
}


def _dress(kind: str, body: str) -> str:
    """A benign page with its kind's stylesheet (after <head>) and language attribute, if any."""
    lang, css = _BENIGN_DRESS.get(kind, ("", ""))
    if css:
        body = _HEAD_RE.sub(lambda m: m.group(0) + f"<style>{css}</style>\n", body, count=1)
    if lang:
        body = body.replace("<html>", f'<html lang="{lang}">', 1)
    return body


def _benign_http(kind: str, rng: random.Random, domain: str) -> _Resp:
    """One benign HTTP response of a kind (host or domain kind with a page)."""
    if kind == "http_banner":
        body = (
            "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 "
            "Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port"
            "</center>\r\n</body>\r\n</html>\r\n"
        )
        return _page(rng, "400 Bad Request", body, "nginx", "localhost")
    if kind == "router_login":
        realm = rng.choice(("Broadband Router", "Home Gateway", "Wireless AP", "DSL Router"))
        body = (
            "<HTML><HEAD><TITLE>401 Unauthorized</TITLE></HEAD>\n<BODY><H1>401 Unauthorized</H1>\n"
            "Authorization required to access this device.</BODY></HTML>\n"
        )
        return _page(
            rng,
            "401 Unauthorized",
            body,
            rng.choice(("micro_httpd", "GoAhead-Webs", "httpd")),
            "router",
            ("WWW-Authenticate", f'Basic realm="{realm}"'),
        )
    if kind == "router_default":
        title = rng.choice(("Router Status", "Wireless Gateway Setup", "Router Setup"))
        body = (
            f"<html><head><title>{title}</title>\n<script>var "
            f"fw='V{rng.randint(1, 4)}.0.{rng.randint(0, 99)}';"
            '</script></head>\n<body onload="init()"><div id="menu"></div>\n<form name="login">'
            'Password <input type="password" name="pw"></form></body></html>\n'
        )
        return _page(
            rng, "200 OK", body, rng.choice(("lighttpd", "mini_httpd/1.19", None)), "router"
        )
    if kind == "nginx_welcome":
        body = (
            "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n"
            "<h1>Welcome to nginx!</h1>\n<p>"
            + rng.choice(
                (
                    "The web server works; further configuration is needed.",
                    "If you see this page, the nginx web server is successfully installed and "
                    "working.",
                )
            )
            + "</p>\n</body>\n</html>\n"
        )
        body = _dress(kind, body)
        return _page(rng, "200 OK", body, f"nginx/1.{rng.randint(14, 24)}.0", "localhost")
    if kind == "apache_default":
        distro = rng.choice(("Ubuntu", "Debian"))
        body = (
            f"<html>\n<head>\n<title>Apache2 {distro} Default Page: It works</title>\n</head>\n"
            '<body>\n<div class="main_page">\n<p>This is the default welcome page of the Apache2 '
            "server after installation.</p>\n</div>\n</body>\n</html>\n"
        )
        body = _dress(kind, body)
        return _page(rng, "200 OK", body, f"Apache/2.4.{rng.randint(29, 52)}", "localhost")
    if kind == "iis_default":
        body = (
            "<!DOCTYPE html>\n<html>\n<head>\n<title>IIS Windows Server</title>\n</head>\n<body>\n"
            '<div id="container"><img src="iisstart.png" alt="IIS"></div>\n</body>\n</html>\n'
        )
        body = _dress(kind, body)
        return _page(rng, "200 OK", body, "Microsoft-IIS/10.0", "WIN-SRV")
    if kind == "captive_portal":
        host = (
            rng.choice(("portal", "hotspot", "login"))
            + "."
            + rng.choice(("guestwifi.net", "cafe-net.com", "hotel-wlan.de"))
        )
        target = f"http://{host}/{rng.choice(('login', 'auth'))}?orig={domain}&mac={_hex(rng, 12)}"
        body = f'<html><body>Redirecting to <a href="{target}">the sign-in page</a></body></html>\n'
        return _page(rng, "302 Found", body, None, "portal", ("Location", target))
    if kind == "cdn_challenge":
        body = (
            "<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>\n<body>\n"
            f"<h2>Checking your browser before accessing {domain}.</h2>\n"
            f"<p>This process is automatic. Ray ID: {_hex(rng, 16)}</p>\n</body></html>\n"
        )
        body = _dress(kind, body)
        return _page(
            rng,
            "503 Service Unavailable",
            body,
            "StratusEdge",
            "StratusEdge Inc",
            ("Cache-Control", "no-store"),
        )
    if kind == "waf_block":
        body = (
            "<!DOCTYPE html>\n<html><head><title>Request rejected</title></head>\n<body>\n"
            "<h1>Sorry, you have been blocked</h1>\n<p>The Web Application Firewall of this site "
            "stopped a request it considered unsafe.</p>\n<p>Request ID: "
            f"{_hex(rng, 20)}</p>\n</body></html>\n"
        )
        body = _dress(kind, body)
        return _page(rng, "403 Forbidden", body, "StratusEdge", "StratusEdge Inc")
    if kind == "cdn_error":
        status = rng.choice(
            ("502 Bad Gateway", "504 Gateway Time-out", "520 Unknown Error", "404 Not Found")
        )
        body = (
            _error_page(status, "StratusEdge")
            if rng.random() < 0.5
            else f"<!DOCTYPE html>\n<html><head><title>{domain} | {status}</title></head>\n<body>\n"
            f"<h1>Error {status[:3]}</h1>\n<p>The origin web server of {domain} is not reachable. "
            f"Ray ID: {_hex(rng, 16)}</p>\n</body></html>\n"
        )
        return _page(rng, status, body, "StratusEdge", "StratusEdge Inc")
    if kind == "parking":
        offer = rng.choice(
            ("This domain is parked free of charge.", "This domain may be for sale.")
        )
        body = (
            f"<html><head><title>{domain}</title></head>\n<body>\n<h1>{domain}</h1>\n"
            f"<p>{offer}</p>\n"
            f'<a href="https://parkcentral-domains.com/?d={domain}&amp;s={rng.randint(1, 9999)}">'
            "Related searches</a>\n</body></html>\n"
        )
        body = _dress(kind, body)
        return _page(rng, "200 OK", body, "Apache", "parkcentral")
    if kind == "same_site_redirect":
        target = rng.choice(
            (
                f"https://{domain}/",
                f"https://{domain}/index.php",
                f"https://www.{domain.removeprefix('www.')}/",
            )
        )
        body = (
            "<html><head><title>301 Moved Permanently</title></head><body><h1>Moved Permanently"
            f'</h1><p>The document has moved <a href="{target}">here</a>.</p></body></html>\n'
        )
        status = rng.choice(("301 Moved Permanently", "302 Found", "308 Permanent Redirect"))
        return _page(rng, status, body, rng.choice(_SERVERS), domain, ("Location", target))
    if kind == "server_error":
        status, server = (
            rng.choice(
                (
                    "502 Bad Gateway",
                    "500 Internal Server Error",
                    "503 Service Unavailable",
                    "504 Gateway Time-out",
                )
            ),
            rng.choice(_SERVERS),
        )
        return _page(rng, status, _error_page(status, server.split("/")[0]), server, "localhost")
    if kind == "hosting_suspended":
        contact = rng.choice(
            (
                "Contact your hosting provider for more information.",
                "Please contact the billing department.",
            )
        )
        body = (
            "<html><head><title>Account Suspended</title></head>\n<body>\n"
            "<h1>This Account has been suspended.</h1>\n"
            f"<p>{contact}</p>\n"
            '<a href="/cgi-sys/suspendedpage.cgi">details</a>\n</body></html>\n'
        )
        return _page(rng, "200 OK", body, rng.choice(("Apache", "LiteSpeed")), "cpanel")
    title, line = rng.choice(
        (
            ("Site Maintenance", "We&rsquo;ll be back soon!"),
            ("Under Maintenance", "Scheduled maintenance"),
            ("Temporarily unavailable", "This site is temporarily down for maintenance"),
        )
    )
    body = (
        f"<!doctype html>\n<html><head><title>{title}</title></head>\n<body>\n"
        f"<article><h1>{line}</h1>\n<p>Sorry for the inconvenience; we are "
        "performing some maintenance at the moment.</p></article>\n</body></html>\n"
    )
    body = _dress(kind, body)
    return _page(rng, "503 Service Unavailable", body, None, domain, ("Retry-After", "3600"))


def _benign_outcome(kind: str, rng: random.Random, domain: str, scan: str) -> _Outcome:
    """One try answered by a benign kind, as the scan's client records it."""
    duration = rng.uniform(60, 900)
    if kind in _BANNER_KINDS:
        banner = _banner(kind, rng)
        if scan in ("echo", "discard"):
            return _Outcome(
                "benign", False, family=kind, detail=kind, raw=banner, duration_ms=duration
            )
        error = (
            "tls: first record does not look like a TLS handshake"
            if scan == "https"
            else "malformed HTTP response " + json.dumps(banner[:40])
        )
        return _Outcome(
            "benign",
            False,
            family=kind,
            detail=kind,
            error="custom",
            error_text=error,
            duration_ms=duration,
        )
    return _Outcome(
        "benign",
        False,
        family=kind,
        detail=kind,
        resp=_benign_http(kind, rng, domain),
        duration_ms=duration,
    )


def _raw_http(resp: _Resp) -> str:
    """The response as raw HTTP/1.1 text (what an echo/discard server path returns)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in resp.headers)
    return f"HTTP/1.1 {resp.status}\r\n{head}\r\n{resp.body}"


@lru_cache(maxsize=4096)
def _cert_b64(owner: str) -> str:
    """Base64 of synthetic certificate-like bytes for an owner (stable, not a real DER)."""
    digest = hashlib.sha256(owner.encode()).digest()
    payload = b"\x30\x82\x02\x10synthetic-cert CN=" + owner.encode() + b" " + digest * 3
    return base64.b64encode(payload).decode()


def _resp_object(resp: _Resp, scan: str, fmt: str, rng: random.Random) -> dict[str, Any]:
    """The object form of a received response, with the format's TLS fields for https."""
    headers: dict[str, list[str]] = {}
    for name, value in sorted(resp.headers):
        headers.setdefault(name, []).append(value)
    obj: dict[str, Any] = {"status_line": resp.status, "headers": headers, "body": resp.body}
    if scan == "https":
        version = 772 if rng.random() < 0.3 else 771
        cipher = 4865 if version == 772 else rng.choice((49199, 49195, 49200))
        cert = _cert_b64(resp.cert_owner or "unknown")
        if fmt == "v1":
            obj["tls"] = {"version": version, "cipher_suite": cipher, "cert": cert}
        else:
            obj.update({"TlsVersion": version, "CipherSuite": cipher, "Certificate": cert})
    return obj


# --------------------------------------------------------------------------------------------
# Try outcomes
# --------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    """What happened on one try, and its ground truth."""

    mechanism: str
    censored: bool
    vendor: str | None = None
    detail: str = ""
    resp: _Resp | None = None  # a received HTTP response
    raw: str | None = None  # a received raw string (echo/discard garbage)
    error: str = (
        ""  # error kind: timeout | dial_timeout | reset | refused | malformed | eof | custom
    )
    success: bool = False
    duration_ms: float = 100.0
    family: str = ""  # blockpage family or benign kind ("noise" for network noise)
    error_text: str = ""  # the error string of a "custom" error


def _censored_outcome(
    rng: random.Random, vp: _Vantage, mech: str, domain: _Domain, scan: str
) -> _Outcome:
    """One censored try on this path with the given mechanism."""
    if mech == "blockpage":
        assert vp.vendor is not None
        resp = _family_page(rng, vp.vendor, domain.name, domain.category)
        return _Outcome(
            "blockpage",
            True,
            vp.vendor,
            vp.vendor,
            resp=resp,
            duration_ms=rng.uniform(80, 900),
            family=vp.vendor,
        )
    if mech == "reset":
        return _Outcome(
            "reset", True, detail="rst", error="reset", duration_ms=rng.uniform(40, 400)
        )
    if mech == "timeout":
        return _Outcome(
            "timeout", True, detail="drop", error="timeout", duration_ms=rng.uniform(30000, 30400)
        )
    if mech == "refused":
        return _Outcome(
            "refused", True, detail="stateful", error="refused", duration_ms=rng.uniform(20, 300)
        )
    if mech == "status":
        return _Outcome(
            "status",
            True,
            detail="injected_status",
            resp=_page_status(rng, domain.name, vp),
            duration_ms=rng.uniform(40, 500),
        )
    if mech == "tls":
        body = "<html><body></body></html>\n"
        resp = _Resp(
            "200 OK", _html_headers(rng, body, ("Server", "nginx")), body, "Security Certificate"
        )
        return _Outcome(
            "tls", True, detail="wrong_cert", resp=resp, duration_ms=rng.uniform(80, 600)
        )
    return _garbled_outcome(rng, vp, domain, scan)


def _garbled_outcome(rng: random.Random, vp: _Vantage, domain: _Domain, scan: str) -> _Outcome:
    """A censor's truncated or mangled response."""
    if scan in ("echo", "discard"):
        if rng.random() < 0.5:
            raw = f"GET / HTTP/1.1\r\nHost: {'X' * len(domain.name)}\r\n\r\n"
            detail = "masked_host"
        else:
            raw = f"GET / HTTP/1.1\r\nHost: {domain.name[: rng.randint(1, len(domain.name) - 1)]}"
            detail = "truncated"
        return _Outcome("garbled", True, detail=detail, raw=raw, duration_ms=rng.uniform(40, 400))
    if rng.random() < 0.5:
        return _Outcome(
            "garbled", True, detail="malformed", error="malformed", duration_ms=rng.uniform(40, 400)
        )
    body = "<html><head><title>"
    resp = _Resp(
        "200 OK", _generic_headers(rng, "", None, (("Content-Length", "1536"),)), body, domain.name
    )
    return _Outcome(
        "garbled",
        True,
        detail="truncated",
        resp=resp,
        error="eof",
        duration_ms=rng.uniform(40, 400),
    )


def _noise_outcome(rng: random.Random) -> _Outcome:
    """A non-censorship network failure."""
    pick = rng.random()
    if pick < 0.55:
        return _Outcome(
            "noise",
            False,
            family="noise",
            detail="timeout",
            error="timeout",
            duration_ms=rng.uniform(30000, 30400),
        )
    if pick < 0.7:
        return _Outcome(
            "noise",
            False,
            family="noise",
            detail="dial_timeout",
            error="dial_timeout",
            duration_ms=rng.uniform(20000, 130000),
        )
    if pick < 0.88:
        return _Outcome(
            "noise",
            False,
            family="noise",
            detail="reset",
            error="reset",
            duration_ms=rng.uniform(40, 900),
        )
    return _Outcome(
        "noise",
        False,
        family="noise",
        detail="refused",
        error="refused",
        duration_ms=rng.uniform(5, 200),
    )


def _effective_mechanism(vp: _Vantage, scan: str) -> str | None:
    """The path's censorship mechanism as seen by a scan type."""
    mech = vp.mechanism
    if mech is None:
        return None
    if scan in ("echo", "discard") and not vp.all_ports:
        return None
    if scan == "https":
        if mech == "status" or (mech == "blockpage" and not vp.https_inject):
            return "reset"
        return mech
    return "reset" if mech == "tls" else mech


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


class _Clock:
    """Formats nanosecond offsets from a start time as Go RFC 3339 timestamps, cached by second."""

    def __init__(self, start: datetime) -> None:
        offset = start.utcoffset() or timedelta(0)
        minutes = int(offset.total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        self.suffix = (
            "Z" if minutes == 0 else f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        )
        self.local = start.replace(tzinfo=None, microsecond=0)
        self.cache: dict[int, str] = {}

    def format(self, ns: int) -> str:
        """Timestamp of ns nanoseconds after the start."""
        sec, frac = divmod(ns, 1_000_000_000)
        head = self.cache.get(sec)
        if head is None:
            head = (self.local + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
            if len(self.cache) > 100_000:
                self.cache.clear()
            self.cache[sec] = head
        if frac:
            return f"{head}.{f'{frac:09d}'.rstrip('0')}{self.suffix}"
        return f"{head}{self.suffix}"


def _error_text(kind: str, rng: random.Random, ip: str, port: int) -> str:
    """A Go network error string for an error kind, with addresses in it."""
    local = f"{_LOCAL_IPS[rng.getrandbits(1)]}:{rng.randint(1024, 65535)}"
    if kind == "timeout":
        return f"read tcp {local}->{ip}:{port}: i/o timeout"
    if kind == "dial_timeout":
        return f"dial tcp 0.0.0.0:0->{ip}:{port}: connect: connection timed out"
    if kind == "reset":
        return f"read tcp {local}->{ip}:{port}: read: connection reset by peer"
    if kind == "refused":
        return f"dial tcp 0.0.0.0:0->{ip}:{port}: connect: connection refused"
    if kind == "malformed":
        return 'malformed HTTP response "\\x15\\x03\\x01\\x00\\x02\\x02\\n"'
    return "unexpected EOF"


_V1_MISMATCH = {
    "echo": "Incorrect echo response",
    "discard": "Incorrect discard response",
    "http": "Incorrect web response: status lines don't match",
    "https": "Incorrect web response: status lines don't match",
}


def _dumps(obj: dict[str, Any]) -> str:
    """Compact JSON like Go's encoder (HTML characters escaped, UTF-8 kept)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in _GO_ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return text


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """The planned tries of one measurement (controls marked by a None outcome kind)."""

    tries: list[tuple[bool, _Outcome]]  # (is_control, outcome)
    anomaly: bool
    controls_failed: bool
    stateful: bool


def _success(rng: random.Random) -> _Outcome:
    """A try that matched the template."""
    return _Outcome("none", False, detail="", success=True, duration_ms=rng.uniform(20, 450))


def _test_outcome(
    rng: random.Random, vp: _Vantage, domain: _Domain, d_index: int, mech: str | None, scan: str
) -> _Outcome:
    """One test try's outcome: censorship, benign page, noise or success."""
    if mech is not None and rng.random() > 0.03:
        return _censored_outcome(rng, vp, mech, domain, scan)
    kind = vp.benign.get(d_index)
    if kind is not None and (scan in ("http", "https") or d_index % 4 == 0):
        return _benign_outcome(kind, rng, domain.name, scan)
    if rng.random() < vp.noise:
        return _noise_outcome(rng)
    return _success(rng)


def _plan_down(rng: random.Random, fmt: str, max_tries: int) -> _Plan:
    """A measurement whose vantage point is unreachable: controls fail, nothing is learnt."""
    kind = rng.choice(("refused", "dial_timeout", "timeout"))
    fail = _Outcome(
        "noise",
        False,
        family="noise",
        detail="vp_down",
        error=kind,
        duration_ms=30000.0 if kind != "refused" else 20.0,
    )
    tries = [(False, fail)] * max_tries + [(True, fail)]
    if fmt == "v2":
        tries = [(True, fail), *tries]
    return _Plan(tries, anomaly=False, controls_failed=True, stateful=False)


def _plan_host(
    rng: random.Random, kind: str, domain: _Domain, fmt: str, scan: str, max_tries: int
) -> _Plan:
    """A measurement of a host that is not a proper server: tests and controls get its answer."""
    tests = [(False, _benign_outcome(kind, rng, domain.name, scan)) for _ in range(max_tries)]
    control = (True, _benign_outcome(kind, rng, domain.name, scan))
    tries = [*tests, control]
    if fmt == "v2":
        tries = [(True, _benign_outcome(kind, rng, domain.name, scan)), *tries]
    return _Plan(tries, anomaly=False, controls_failed=True, stateful=False)


def _plan(
    rng: random.Random,
    vp: _Vantage,
    domain: _Domain,
    d_index: int,
    blocked: bool,
    scan: str,
    fmt: str,
) -> _Plan:
    """Plan the tries of one measurement in the format's retry/control structure."""
    max_tries = 5 if fmt == "v1" else 4
    if rng.random() < vp.down:
        return _plan_down(rng, fmt, max_tries)
    if vp.host_kind is not None:
        return _plan_host(rng, vp.host_kind, domain, fmt, scan, max_tries)
    mech = _effective_mechanism(vp, scan) if blocked else None
    stateful_mode = vp.country.stateful if mech in ("reset", "blockpage") else None
    tests: list[_Outcome] = []
    stateful = False
    while len(tests) < max_tries:
        if stateful and stateful_mode is not None:
            follow = "timeout" if stateful_mode == "timeout" else "refused"
            out = _censored_outcome(rng, vp, follow, domain, scan)
            out.detail = "stateful"
        else:
            out = _test_outcome(rng, vp, domain, d_index, mech, scan)
            stateful = out.censored and stateful_mode is not None and rng.random() < 0.5
        tests.append(out)
        if out.success:
            break
    tries: list[tuple[bool, _Outcome]] = [(False, t) for t in tests]
    failed = not tests[-1].success
    if fmt == "v2":
        tries.insert(0, (True, _success(rng)))
    if failed:
        if stateful:
            tries.append(
                (
                    True,
                    _Outcome(
                        "noise",
                        False,
                        family="noise",
                        detail="stateful_control",
                        error="timeout",
                        duration_ms=rng.uniform(30000, 30400),
                    ),
                )
            )
            if fmt == "v2":
                tries.append((True, _success(rng)))
        else:
            tries.append((True, _success(rng)))
    return _Plan(tries, anomaly=failed, controls_failed=False, stateful=stateful and failed)


@dataclass
class _Context:
    """Per-archive constants of the generator."""

    scan: str
    fmt: str
    port: int
    clock: _Clock
    tag: str
    sent_template: str


def _render_try(
    ctx: _Context,
    rng: random.Random,
    vp: _Vantage,
    domain: str,
    control: str | None,
    out: _Outcome,
    start_ns: int,
    swapped: bool,
) -> dict[str, Any]:
    """One Results/response entry in the archive's format."""
    end_ns = start_ns + int(out.duration_ms * 1_000_000) + rng.randrange(1000)
    received: str | dict[str, Any] | None = None
    if out.resp is not None:
        if ctx.scan in ("echo", "discard"):
            received = _raw_http(out.resp)
        else:
            received = _resp_object(out.resp, ctx.scan, ctx.fmt, rng)
    elif out.raw is not None:
        received = out.raw
    error = out.error_text or (_error_text(out.error, rng, vp.ip, ctx.port) if out.error else "")
    if ctx.fmt == "v1":
        return _render_v1(ctx, domain, control, out, received, error, start_ns, end_ns, swapped)
    entry: dict[str, Any] = {"matches_template": out.success}
    if received is not None:
        entry["response"] = received
    elif out.error in ("timeout", "reset") and ctx.scan in ("echo", "discard"):
        entry["response"] = ""
    if error:
        entry["error"] = error
    if control is not None:
        entry["control_url"] = control
    entry["start_time"] = ctx.clock.format(start_ns)
    entry["end_time"] = ctx.clock.format(end_ns)
    return entry


def _render_v1(
    ctx: _Context,
    domain: str,
    control: str | None,
    out: _Outcome,
    received: str | dict[str, Any] | None,
    error: str,
    start_ns: int,
    end_ns: int,
    swapped: bool,
) -> dict[str, Any]:
    """One v1 Results entry."""
    name = control if control is not None else domain
    if out.error in ("dial_timeout", "refused"):
        sent = ""
    elif ctx.scan in ("echo", "discard"):
        sent = (
            f"GET {name} HTTP/1.1\r\nHost: /\r\n\r\n"
            if swapped and control is None
            else ctx.sent_template.format(name)
        )
    else:
        sent = name
    entry: dict[str, Any] = {"Sent": sent}
    if received is not None:
        entry["Received"] = received
    entry["Success"] = out.success
    if not out.success:
        entry["Error"] = error or _V1_MISMATCH[ctx.scan]
    entry["StartTime"] = ctx.clock.format(start_ns)
    entry["EndTime"] = ctx.clock.format(end_ns)
    return entry


def _measurement(
    ctx: _Context,
    rng: random.Random,
    vp: _Vantage,
    domain: _Domain,
    d_index: int,
    blocked: bool,
    start_ns: int,
) -> tuple[dict[str, Any], list[tuple[int, _Outcome]]]:
    """One measurement line's object and its (try_index, outcome) for non-control tries."""
    plan = _plan(rng, vp, domain, d_index, blocked, ctx.scan, ctx.fmt)
    swapped = ctx.fmt == "v1" and ctx.scan in ("echo", "discard") and rng.random() < 0.02
    entries: list[dict[str, Any]] = []
    truth: list[tuple[int, _Outcome]] = []
    t = start_ns
    gap = 3_000_000_000 if ctx.fmt == "v2" else 6_000_000_000
    for index, (is_control, out) in enumerate(plan.tries):
        control: str | None = None
        if is_control:
            control = _V1_CONTROL[ctx.scan] if ctx.fmt == "v1" else f"control-{_hex(rng, 16)}.com"
        else:
            truth.append((index, out))
        entries.append(_render_try(ctx, rng, vp, domain.name, control, out, t, swapped))
        t += int(out.duration_ms * 1_000_000) + (gap if not out.success else 1000)
    return _measurement_object(ctx, vp, domain.name, entries, plan), truth


def _measurement_object(
    ctx: _Context, vp: _Vantage, domain: str, entries: list[dict[str, Any]], plan: _Plan
) -> dict[str, Any]:
    """Wrap try entries into a v1 or v2 measurement object."""
    if ctx.fmt == "v1":
        retries = sum(1 for is_control, _ in plan.tries if not is_control) - 1
        return {
            "Server": vp.ip,
            "Keyword": domain,
            "Retries": retries,
            "Results": entries,
            "Blocked": plan.anomaly,
            "FailSanity": plan.controls_failed,
            "StatefulBlock": plan.stateful,
        }
    return {
        "vp": vp.ip,
        "location": {"country_name": vp.country.name, "country_code": vp.country.code},
        "service": ctx.scan,
        "test_url": domain,
        "response": entries,
        "anomaly": plan.anomaly,
        "controls_failed": plan.controls_failed,
        "stateful_block": plan.stateful,
        "tag": ctx.tag,
    }


def _truth_line(
    line: int, index: int, vp: _Vantage, domain: str, out: _Outcome, fingerprinted: frozenset[str]
) -> str:
    """One ground-truth JSON line (``family``: blockpage family, benign kind, "noise" or "")."""
    family = out.family if out.mechanism in ("blockpage", "benign", "noise") else ""
    return json.dumps(
        {
            "line": line,
            "try_index": index,
            "ip": vp.ip,
            "domain": domain,
            "censored": out.censored,
            "mechanism": out.mechanism,
            "vendor": out.vendor,
            "fingerprinted": out.vendor in fingerprinted if out.vendor else False,
            "detail": out.detail,
            "family": family,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _pairs(rng: random.Random, world: _World) -> Iterator[tuple[int, int]]:
    """Endless (vantage index, domain index) order: shuffled passes over all pairs."""
    n_d = len(world.domains)
    order = list(range(len(world.vantages) * n_d))
    while True:
        rng.shuffle(order)
        for k in order:
            yield divmod(k, n_d)


# --------------------------------------------------------------------------------------------
# Archive writing
# --------------------------------------------------------------------------------------------


def _default_start(fmt: str) -> datetime:
    """The default scan start of a format (v1 scans predate mid-2021)."""
    if fmt == "v1":
        return datetime(2021, 3, 7, 1, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    return datetime(2021, 10, 11, 1, 1, 1, tzinfo=timezone(timedelta(hours=-4)))


def _tarinfo(name: str, size: int, mtime: int, directory: bool = False) -> tarfile.TarInfo:
    """A tar member header with fixed ownership and time, for byte-identical archives."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if directory else 0o644
    if directory:
        info.type = tarfile.DIRTYPE
    return info


def _generate(
    path: Path,
    truth_path: Path,
    measurements: int,
    seed: int,
    fmt: str,
    scan: str,
    start: datetime,
    fingerprinted: frozenset[str],
) -> tuple[int, list[str]]:
    """Write results lines to path and the truth sidecar; return (tries, vantage IPs used)."""
    world = build_world()
    rng = random.Random(f"quackae-synth/{seed}/{fmt}/{scan}")
    ctx = _Context(
        scan=scan,
        fmt=fmt,
        port=_PORTS[scan],
        clock=_Clock(start),
        tag=start.strftime("%Y-%m-%dT%H:%M:%S"),
        sent_template="GET / HTTP/1.1\r\nHost: {}\r\n\r\n",
    )
    pairs = _pairs(rng, world)
    tries = 0
    used: set[str] = set()
    with path.open("wb") as results, truth_path.open("w", encoding="utf-8", newline="\n") as truth:
        lines: list[str] = []
        truths: list[str] = []
        for line_no in range(1, measurements + 1):
            v_index, d_index = next(pairs)
            vp, domain = world.vantages[v_index], world.domains[d_index]
            used.add(vp.ip)
            blocked = world.blocked[(vp.country.code, d_index)]
            start_ns = line_no * 37_000_000 + rng.randrange(2_000_000_000)
            obj, outcomes = _measurement(ctx, rng, vp, domain, d_index, blocked, start_ns)
            lines.append(_dumps(obj))
            truths.extend(
                _truth_line(line_no, i, vp, domain.name, o, fingerprinted) for i, o in outcomes
            )
            tries += len(outcomes)
            if len(lines) >= _CHUNK:
                results.write(("\n".join(lines) + "\n").encode())
                truth.write("\n".join(truths) + "\n")
                lines, truths = [], []
        if lines:
            results.write(("\n".join(lines) + "\n").encode())
        if truths:
            truth.write("\n".join(truths) + "\n")
    return tries, sorted(used)


def write_archive(
    out: Path,
    measurements: int,
    seed: int = 0,
    fmt: Format = "v2",
    scan: Scan = "http",
    start: datetime | None = None,
    fingerprinted: Collection[str] | None = None,
) -> SynthResult:
    """Write a synthetic Hyperquack scan archive and its ground-truth sidecar into ``out``.

    The archive ``CP_Quack-<scan>-<start>.tar.gz`` holds ``<stem>/results.json`` (one
    measurement per line, v1 or v2 format) and ``<stem>/ips.txt``; the sidecar
    ``<stem>.truth.jsonl`` has one JSON object per non-control try. Same arguments give
    byte-identical files.

    Parameters
    ----------
    out : Path
        Output directory (created if missing).
    measurements : int
        Number of measurement lines.
    seed : int
        Random seed of the measurement sampling (the simulated world itself is fixed).
    fmt : {"v1", "v2"}
        Hyperquack format.
    scan : {"echo", "discard", "http", "https"}
        Scan type.
    start : datetime, optional
        Scan start (names the archive, first timestamps); naive means the format's default
        UTC offset. Default: 2021-03-07 (v1) or 2021-10-11 (v2), 01:01:01.
    fingerprinted : collection of str, optional
        Families the truth's ``fingerprinted`` field refers to (default ``DEFAULT_FINGERPRINTED``).

    Returns
    -------
    SynthResult
        Archive and truth paths, measurement and non-control try counts.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if scan not in SCANS:
        raise ValueError(f"scan must be one of {SCANS}, not {scan!r}")
    if measurements < 0:
        raise ValueError("measurements must be >= 0")
    start = start or _default_start(fmt)
    if start.tzinfo is None:
        start = start.replace(tzinfo=_default_start(fmt).tzinfo)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"CP_Quack-{scan}-{start.strftime('%Y-%m-%d-%H-%M-%S')}"
    archive = out / f"{stem}.tar.gz"
    truth = out / f"{stem}.truth.jsonl"
    mtime = int(start.timestamp())
    with tempfile.TemporaryDirectory(dir=out, prefix=".synth-") as tmp:
        results = Path(tmp) / "results.json"
        with atomic_path(truth) as truth_tmp:  # the sidecar appears whole or not at all
            tries, ips = _generate(
                results,
                truth_tmp,
                measurements,
                seed,
                fmt,
                scan,
                start,
                _fingerprinted_set(fingerprinted),
            )
        ips_bytes = ("\n".join(ips) + "\n").encode()
        partial = archive.with_name(archive.name + ".part")
        with (
            partial.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            tar.addfile(_tarinfo(f"{stem}/", 0, mtime, directory=True))
            with results.open("rb") as fh:
                tar.addfile(_tarinfo(f"{stem}/results.json", results.stat().st_size, mtime), fh)
            tar.addfile(_tarinfo(f"{stem}/ips.txt", len(ips_bytes), mtime), io.BytesIO(ips_bytes))
        partial.replace(archive)
    return SynthResult(archive=archive, truth=truth, measurements=measurements, tries=tries)


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
    kinds = [k for k in BENIGN_KINDS if k not in _BANNER_KINDS and k != "noise"]
    names = sorted(FAMILIES)
    out = [
        ("blockpage", _raw_http(_family_page(rng, names[i % len(names)], "example.com", "news")))
        for i in range(n)
    ]
    out += [
        ("benign", _raw_http(_benign_http(kinds[i % len(kinds)], rng, "example.com")))
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


def _fingerprinted_set(fingerprinted: Collection[str] | None) -> frozenset[str]:
    """The chosen fingerprinted families (None: the default), checked against ``FAMILIES``."""
    if fingerprinted is None:
        return DEFAULT_FINGERPRINTED
    chosen = frozenset(fingerprinted)
    unknown = sorted(chosen - FAMILIES.keys())
    if unknown:
        raise ValueError(f"unknown blockpage families {unknown}; known: {', '.join(FAMILIES)}")
    return chosen


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
    Each pattern matches every page of its family or kind and nothing else of this world.
    Returns ``out_dir``, ready for ``quackae flatten --signatures``.
    """
    families = _fingerprinted_set(fingerprinted)
    kinds = (
        DEFAULT_FALSE_POSITIVE_KINDS
        if false_positive_kinds is None
        else frozenset(false_positive_kinds)
    )
    unknown = sorted(kinds - _BENIGN_PATTERNS.keys())
    if unknown:
        raise ValueError(
            f"benign kinds without a signature: {unknown}; known: {', '.join(_BENIGN_PATTERNS)}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blockpages = [
        _signature_line(f"a_synth_{name}", FAMILIES[name].pattern)
        for name in FAMILIES
        if name in families
    ]
    false_positives = [
        _signature_line(f"x_fp_synth_{kind}", _BENIGN_PATTERNS[kind])
        for kind in _BENIGN_PATTERNS
        if kind in kinds
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
    return _fingerprinted_set(name.strip() for name in value.split(",") if name.strip())
