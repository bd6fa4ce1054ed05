"""Deterministic generator of realistic raw Censored Planet Hyperquack archives.

The generator simulates a small world (countries, vantage points, test domains, censorship
policies, middlebox vendors, benign servers, network noise) and writes a scan archive in the
v1 or v2 Hyperquack format of ``docs/hyperquack.md``, plus a ground-truth sidecar with one
JSON object per non-control try. Same arguments give byte-identical output; nothing is
downloaded.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import random
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

from quackae.atomic import atomic_path

__all__ = [
    "BENIGN_PAGES",
    "FORMATS",
    "MECHANISMS",
    "SCANS",
    "VENDORS",
    "SynthResult",
    "add_synth_arguments",
    "run_synth",
    "write_archive",
]

Format = Literal["v1", "v2"]
Scan = Literal["echo", "discard", "http", "https"]

SCANS: tuple[str, ...] = ("echo", "discard", "http", "https")
FORMATS: tuple[str, ...] = ("v1", "v2")

#: Middlebox vendors whose blockpages the synthetic censors inject, mapped to whether the
#: project's default blockpage signatures cover them (False: "new" censorship to discover).
VENDORS: dict[str, bool] = {
    "netsentry": True,
    "clearpath": True,
    "bluewall": True,
    "ironveil": True,
    "safeharbor": True,
    "civicshield": True,
    "webguard": True,
    "orbitfilter": True,
    "trustnet": True,
    "gatewarden": False,
    "kestrel": False,
    "vigilnet": False,
}

#: Benign (non-censorship) page kinds, mapped to whether a default false-positive signature
#: matches them (False: they stay undetermined under the fingerprints).
BENIGN_PAGES: dict[str, bool] = {
    "nginx_welcome": True,
    "apache_default": True,
    "iis_default": True,
    "parked_parkcentral": True,
    "parked_domainmart": False,
    "cdn_challenge": True,
    "cdn_denied": True,
    "cdn_error": True,
    "cdn_redirect": True,
    "hosting_suspended": True,
    "plesk_default": True,
    "server_error": False,
    "maintenance": False,
    "redirect_https": False,
    "login_page": False,
}

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
    """One country's censorship policy: what is blocked, by which ISPs and how."""

    name: str
    code: str
    prefixes: tuple[str, ...]
    coverage: dict[str, float]
    isps: tuple[tuple[str, str | None], ...]  # (mechanism, vendor) per ISP
    stateful: str | None = None  # follow-up mechanism after a block: "timeout" | "refused"
    filtered_share: float = 0.85
    vps: int = 10


_COUNTRIES: tuple[_Country, ...] = (
    _Country(
        "Russia", "RU",
        ("31.173", "95.165", "178.176", "5.167", "37.79", "37.193", "46.61", "46.181", "77.41"),
        {"circumvention": 0.8, "gambling": 0.9, "lgbtq": 0.6, "news": 0.25, "filesharing": 0.6,
         "political": 0.3, "human_rights": 0.2},
        (("blockpage", "clearpath"), ("blockpage", "clearpath"), ("blockpage", "vigilnet"),
         ("blockpage", "vigilnet"), ("blockpage", "trustnet"), ("reset", None), ("status", None)),
        vps=12,
    ),
    _Country(
        "China", "CN",
        ("36.110", "59.110", "101.200", "106.75", "112.74", "119.29", "139.159", "1.70"),
        {"news": 0.7, "social": 0.9, "human_rights": 0.8, "circumvention": 0.9, "religion": 0.6,
         "political": 0.7, "lgbtq": 0.3, "filesharing": 0.4},
        (("reset", None), ("reset", None), ("timeout", None), ("garbled", None)),
        stateful="timeout",
        vps=11,
    ),
    _Country(
        "Iran", "IR",
        ("2.144", "5.72", "78.38", "85.185", "5.114", "2.187", "5.113", "5.115"),
        {"social": 0.9, "news": 0.6, "adult": 1.0, "lgbtq": 1.0, "circumvention": 0.9,
         "human_rights": 0.8, "gambling": 0.9, "political": 0.6, "religion": 0.3},
        (("blockpage", "kestrel"), ("blockpage", "kestrel"), ("blockpage", "ironveil"),
         ("blockpage", "ironveil"), ("reset", None), ("timeout", None)),
        vps=10,
    ),
    _Country(
        "Turkey", "TR",
        ("78.186", "81.214", "85.105", "88.247", "94.54", "176.41", "195.174", "213.74"),
        {"adult": 0.8, "gambling": 0.9, "news": 0.2, "lgbtq": 0.5, "filesharing": 0.3,
         "political": 0.2},
        (("blockpage", "gatewarden"), ("blockpage", "gatewarden"), ("blockpage", "bluewall"),
         ("blockpage", "civicshield"), ("timeout", None), ("status", None)),
        vps=12,
    ),
    _Country(
        "India", "IN",
        ("14.139", "49.204", "106.51", "117.239", "122.160", "182.74", "14.141", "27.60"),
        {"adult": 0.7, "filesharing": 0.7, "gambling": 0.4, "circumvention": 0.1},
        (("blockpage", "bluewall"), ("blockpage", "bluewall"), ("blockpage", "gatewarden"),
         ("blockpage", "gatewarden"), ("status", None), ("reset", None)),
        vps=12,
    ),
    _Country(
        "Indonesia", "ID",
        ("36.66", "114.4", "118.97", "125.160", "180.250", "36.73", "36.89", "39.217"),
        {"adult": 0.9, "gambling": 0.8, "lgbtq": 0.6, "circumvention": 0.4, "filesharing": 0.3,
         "social": 0.05},
        (("blockpage", "netsentry"), ("blockpage", "netsentry"), ("blockpage", "webguard"),
         ("blockpage", "webguard"), ("status", None), ("reset", None)),
        stateful="refused",
        vps=10,
    ),
    _Country(
        "Pakistan", "PK",
        ("39.32", "39.38", "119.155", "182.176", "39.34", "39.46", "39.55", "182.178"),
        {"adult": 0.8, "religion": 0.5, "political": 0.4, "lgbtq": 0.6, "human_rights": 0.3},
        (("blockpage", "kestrel"), ("blockpage", "safeharbor"), ("timeout", None), ("status", None),
         ("reset", None)),
        stateful="refused",
        vps=8,
    ),
    _Country(
        "Kazakhstan", "KZ",
        ("2.72", "37.150", "89.218", "92.46", "95.56", "178.88", "2.74", "95.59"),
        {"news": 0.3, "political": 0.5, "circumvention": 0.7, "social": 0.1, "gambling": 0.5},
        (("tls", None), ("tls", None), ("reset", None), ("blockpage", "vigilnet"),
         ("blockpage", "trustnet")),
        vps=8,
    ),
    _Country(
        "United States", "US",
        ("34.120", "50.116", "104.207", "167.207", "3.31", "3.86", "3.94"),
        {"adult": 0.6, "gambling": 0.6},
        (("blockpage", "netsentry"),),
        filtered_share=0.2,
        vps=11,
    ),
    _Country(
        "Saudi Arabia", "SA",
        ("2.88", "5.42", "37.224", "46.152", "51.36", "94.96", "188.48"),
        {"adult": 1.0, "gambling": 0.9, "lgbtq": 0.9, "religion": 0.4, "political": 0.5,
         "circumvention": 0.6},
        (("blockpage", "safeharbor"), ("blockpage", "safeharbor"), ("blockpage", "civicshield"),
         ("reset", None)),
        vps=10,
    ),
    _Country(
        "Vietnam", "VN",
        ("14.160", "27.72", "42.112", "113.160", "115.73", "171.224", "183.80"),
        {"news": 0.5, "political": 0.7, "human_rights": 0.6, "religion": 0.3, "gambling": 0.4},
        (("blockpage", "orbitfilter"), ("blockpage", "orbitfilter"), ("reset", None),
         ("timeout", None)),
        vps=8,
    ),
    _Country(
        "Thailand", "TH",
        ("1.46", "27.55", "49.228", "58.8", "110.164", "171.96", "182.52"),
        {"adult": 0.7, "gambling": 0.9, "political": 0.4, "filesharing": 0.3},
        (("blockpage", "orbitfilter"), ("blockpage", "webguard"), ("blockpage", "ironveil"),
         ("status", None)),
        vps=8,
    ),
)

_BENIGN_SETS: tuple[tuple[str, ...], ...] = (
    ("nginx_welcome", "server_error", "redirect_https", "cdn_redirect"),
    ("apache_default", "parked_parkcentral", "maintenance", "hosting_suspended"),
    ("iis_default", "parked_domainmart", "server_error", "cdn_error"),
    ("cdn_challenge", "cdn_denied", "cdn_error", "cdn_redirect"),
    ("parked_domainmart", "parked_parkcentral", "redirect_https", "plesk_default"),
    ("maintenance", "nginx_welcome", "cdn_denied", "login_page"),
    ("plesk_default", "hosting_suspended", "login_page", "server_error"),
    ("cdn_redirect", "apache_default", "cdn_challenge", "iis_default"),
)


@dataclass
class _Vantage:
    """One vantage point: address, country, the censor on its path and its flakiness."""

    ip: str
    country: _Country
    isp: int
    mechanism: str | None  # censorship mechanism on this path (None: unfiltered)
    vendor: str | None
    all_ports: bool  # the middlebox inspects echo/discard ports too
    https_inject: bool  # the middlebox injects blockpages into TLS (with its own certificate)
    noise: float
    down: float
    benign: dict[int, str] = field(default_factory=dict)  # domain index -> benign page kind
    blockpage_status: str = "403 Forbidden"


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


def _make_vantage(rng: random.Random, country: _Country, n_domains: int, nth: int) -> _Vantage:
    """Draw one vantage point of a country with its ISP, censor, noise and benign profile.

    ISPs are taken in turn (the ``nth`` vantage point of a country is on ISP ``nth % ISPs``), so
    every censoring ISP, and so every vendor, has vantage points.
    """
    ip = f"{rng.choice(country.prefixes)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    isp = nth % len(country.isps)
    filtered = rng.random() < country.filtered_share
    mechanism, vendor = country.isps[isp] if filtered else (None, None)
    kinds = rng.choice(_BENIGN_SETS)
    rate = rng.choice((0.02, 0.04, 0.08, 0.12))
    benign = {d: rng.choice(kinds) for d in range(n_domains) if rng.random() < rate}
    return _Vantage(
        ip=ip,
        country=country,
        isp=isp,
        mechanism=mechanism,
        vendor=vendor,
        all_ports=rng.random() < 0.7,
        https_inject=rng.random() < 0.5,
        noise=rng.choice((0.005, 0.01, 0.02, 0.04, 0.08)),
        down=rng.choice((0.0, 0.005, 0.01, 0.03)),
        benign=benign,
        blockpage_status=rng.choice(("403 Forbidden", "200 OK", "403 Forbidden")),
    )


@lru_cache(maxsize=1)
def _world() -> _World:
    """Build the fixed simulated world (domains, vantage points, blocklists)."""
    rng = random.Random(_WORLD_SEED)
    domains = _make_domains(rng)
    vantages: list[_Vantage] = []
    seen: set[str] = set()
    for country in _COUNTRIES:
        while sum(v.country is country for v in vantages) < country.vps:
            vp = _make_vantage(rng, country, len(domains), sum(v.country is country for v in vantages))
            if vp.ip not in seen:
                seen.add(vp.ip)
                vantages.append(vp)
    blocked = {
        (c.code, i): rng.random() < c.coverage.get(d.category, 0.0)
        for c in _COUNTRIES
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


def _html_headers(body: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """Typical headers of a small HTML response."""
    base = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body.encode()))),
            ("Connection", "close")]
    return tuple(base) + extra


# --- Blockpages: one generative family, many vendors ------------------------------------------
#
# Every middlebox vendor draws its pages from one shared vocabulary and set of layouts (titles,
# "blocked/restricted/denied ... by order of ..." sentences, authorities, local-language lines,
# reference ids, redirects and frames onto a notice host), with a vendor "house style" (a fixed
# subset of the vocabulary, its layouts, statuses and languages) and per-page variation. What
# tells vendors apart for the signatures is a vendor marker: a footer/class string in page
# bodies, the notice host of redirects and frames, sometimes a header.


@dataclass(frozen=True)
class _Style:
    """A vendor's house style within the blockpage family."""

    product: str  # product name as pages show it
    footer: str  # marker in every page body that is not a redirect/frame
    notice_host: str  # host of redirects, frames and meta refreshes ("{a}"/"{b}": random octets)
    layouts: tuple[str, ...]  # weighted choice of: plain, box, table, frame, redirect, meta
    statuses: tuple[str, ...]  # statuses of page layouts (weighted choice)
    langs: tuple[str, ...] = ()  # local-language lines mixed into pages
    header: tuple[str, str] | None = None  # vendor header on every response
    cert: str = ""


_TITLES = (
    "Access Denied", "Web Page Blocked", "This site is blocked", "Website Blocked",
    "Access Restricted", "Blocked", "Site Blocked", "Forbidden", "Restricted Content", "Notice",
    "Access Prohibited", "Page Blocked", "Blocked Website", "Access to this site is restricted",
    "Content Filtered", "Site Unavailable",
)
_SUBJECTS = (
    "Access to this website", "This website", "The page you requested", "The requested URL",
    "Access to {d}", "The site {d}", "This resource", "Your request for {d}", "The website {d}",
    "Access to the requested page",
)
_VERBS = (
    "has been blocked", "has been restricted", "is blocked", "is restricted", "has been denied",
    "is prohibited", "is forbidden", "has been suspended", "was blocked", "has been filtered",
    "is not permitted",
)
_CLAUSES = (
    "by order of the {auth}", "in accordance with {law}", "under the instructions of the {auth}",
    "as directed by the {auth}", "by your internet service provider", "under the policy of this network",
    "pursuant to a decision of the {auth}", "in compliance with the registry of prohibited resources",
    "following a court order", "by the {product} web filter", "on the orders of the {auth}",
    "according to the regulations of the {auth}",
)
_AUTHORITIES = (
    "Ministry of Communications", "Telecommunications Regulatory Authority", "competent authority",
    "National Communications Commission", "Information Technology Authority", "government",
    "Public Prosecutor", "Department of Telecommunications", "Cyber Crime Unit", "court",
    "Ministry of Information", "National Security Council", "Media Regulatory Board",
)
_LAWS = (
    "applicable law", "the Telecommunications Act", "national regulations",
    "the Information Technology Act", "Law No. {n}", "the Internet Content Regulation",
)
_EXTRAS = (
    "Category: {cat}", "Reference: {hex}", "Incident ID: {num}", "URL: {d}/", "Client: {ip}",
    "If you believe this page was blocked in error, please contact your administrator.",
    "For more information contact support@{host}", "Requested host: {d}", "Rule ID: {rule}",
    "Request {hex}", "Please contact your service provider for details.", "Ticket: {num}",
    "Time: {date}", "Policy: {cat}",
)
_LANG_LINES: dict[str, tuple[str, ...]] = {
    "ru": ("Доступ к ресурсу {d} ограничен по решению реестра запрещённых сайтов.", "Доступ ограничен",
           "Запрашиваемый ресурс {d} внесён в единый реестр и недоступен.",
           "Сайт заблокирован по требованию уполномоченного органа."),
    "tr": ("Bu siteye erişim mahkeme kararı ile engellenmiştir.", "Erişim engellendi",
           "Bu internet sitesi hakkında idari tedbir uygulanmaktadır."),
    "fa": ("دسترسی به این وب‌سایت امکان‌پذیر نیست", "دسترسی به این سایت مسدود شده است",
           "به دستور مقام قضایی"),
    "ar": ("عذراً، الموقع المطلوب محجوب", "تم حجب هذا الموقع بناءً على تعليمات الجهات المختصة",
           "الوصول مرفوض"),
    "id": ("Situs ini diblokir karena mengandung konten negatif.", "Akses ditolak",
           "Situs yang Anda tuju tidak dapat diakses."),
    "vi": ("Trang web này đã bị chặn theo quy định của pháp luật.", "Truy cập bị từ chối"),
    "th": ("เว็บไซต์นี้ถูกระงับการเข้าถึง", "ไม่สามารถเข้าถึงเว็บไซต์นี้ได้ตามคำสั่งศาล"),
    "kk": ("Бұл сайтқа кіру шектелген.", "Доступ к данному ресурсу ограничен."),
    "hi": ("यह वेबसाइट सक्षम प्राधिकारी के निर्देशों के तहत अवरुद्ध है।", "पहुँच अस्वीकृत"),
    "en": (),
}

#: House styles. Fingerprinted vendors' markers are covered by the default signatures; the
#: unfingerprinted ones (gatewarden, kestrel, vigilnet) use markers no signature knows.
_STYLES: dict[str, _Style] = {
    "netsentry": _Style("NetSentry", '<div class="ns-block-reason">NetSentry policy</div>', "block.netsentry-utm.com",
                        ("box", "box", "plain", "redirect"), ("403 Forbidden", "200 OK"), (),
                        ("Server", "NetSentry"), "NetSentry Appliance"),
    "clearpath": _Style("ClearPath", "<p>ClearPath Filter &middot; regional node</p>", "warning.clearpath-filter.net",
                        ("redirect", "box", "plain"), ("200 OK",), ("ru",), None, "ClearPath"),
    "bluewall": _Style("BlueWall", "<address>BlueWall Secure Gateway</address>", "notice.bluewall-gw.in",
                       ("plain", "plain", "table"), ("451 Unavailable For Legal Reasons", "403 Forbidden"),
                       ("hi",), ("X-Bluewall-Ref", "{hex}"), "BlueWall Gateway CA"),
    "ironveil": _Style("IronVeil", '<span id="iv-policy">IronVeil</span>', "10.10.{a}.{b}",
                       ("frame", "frame", "plain"), ("200 OK", "403 Forbidden"), ("fa",), None, "IronVeil"),
    "safeharbor": _Style("SafeHarbor", "<p><i>SafeHarbor Content Filter v2</i></p>", "filter.safeharbor-isp.net",
                         ("box", "meta", "redirect"), ("403 Forbidden", "200 OK"), ("ar",), None, "SafeHarbor"),
    "civicshield": _Style("CivicShield", '<div class="civic-shield-notice"></div>', "stop.civicshield.gov.example",
                          ("table", "plain", "frame"), ("200 OK", "451 Unavailable For Legal Reasons"),
                          ("tr",), ("X-Civic-Shield", "1"), "CivicShield"),
    "webguard": _Style("WebGuard", "<p>Powered by WebGuard DPI</p>", "wg-notice.webguard.io",
                       ("plain", "box", "meta"), ("403 Forbidden", "200 OK"), ("id",), None, "WebGuard"),
    "orbitfilter": _Style("OrbitFilter", "<!-- orbitfilter page -->", "portal.orbitfilter.net",
                          ("redirect", "redirect", "box"), ("200 OK",), ("vi", "th"), None, "OrbitFilter"),
    "trustnet": _Style("TrustNet", "<p>TrustNet Secure Web Gateway</p>", "blocked.trustnet-swg.com",
                       ("box", "table", "plain"), ("403 Forbidden",), ("kk", "ru"), ("Via", "trustnet-swg"),
                       "TrustNet SWG"),
    # Not fingerprinted: the same family, markers unknown to the default signatures.
    "gatewarden": _Style("GateWarden", "<address>gw-httpd</address>", "notice.gatewarden.net",
                         ("plain", "plain", "box"), ("403 Forbidden", "200 OK"), ("tr", "hi"),
                         ("Server", "gw-httpd"), "gw-httpd"),
    "kestrel": _Style("Kestrel", '<div id="kst-msg"></div>', "10.77.{a}.{b}",
                      ("frame", "frame", "frame", "plain"), ("200 OK",), ("fa",), None, "Kestrel"),
    "vigilnet": _Style("VigilNet", '<small class="vn-ref">VigilNet</small>', "stop.vigil-net.ru",
                       ("redirect", "box", "plain"), ("200 OK", "403 Forbidden"), ("ru", "kk"), None,
                       "VigilNet"),
}


@cache
def _vocab(vendor: str) -> dict[str, tuple[str, ...]]:
    """A vendor's fixed subset of the shared blockpage vocabulary (its house wording)."""
    rng = random.Random(f"quackae-vendor/{vendor}")
    return {
        "titles": tuple(rng.sample(_TITLES, 3)),
        "subjects": tuple(rng.sample(_SUBJECTS, 3)),
        "verbs": tuple(rng.sample(_VERBS, 3)),
        "clauses": tuple(rng.sample(_CLAUSES, 3)),
        "auths": tuple(rng.sample(_AUTHORITIES, 2)),
        "laws": tuple(rng.sample(_LAWS, 2)),
        "extras": tuple(rng.sample(_EXTRAS, 5)),
        "css": (f"body{{font-family:{rng.choice(('Arial', 'Verdana', 'Tahoma', 'Helvetica'))},sans-serif;"
                f"background:#{rng.choice(('f2f2f2', 'fff', 'eee', 'fafafa', '222'))}}}",),
    }


def _fill(text: str, rng: random.Random, domain: str, vp: _Vantage, category: str, style: _Style,
          voc: dict[str, tuple[str, ...]]) -> str:
    """Fill the placeholders of one phrase."""
    if "{auth}" in text:
        text = text.replace("{auth}", rng.choice(voc["auths"]))
    if "{law}" in text:
        text = text.replace("{law}", rng.choice(voc["laws"]))
    repl = {
        "{d}": domain, "{product}": style.product, "{cat}": _CATEGORY_LABELS[category],
        "{hex}": _hex(rng, rng.choice((8, 10, 12, 16))), "{num}": str(rng.randint(100000, 9999999)),
        "{ip}": _LOCAL_IPS[rng.getrandbits(1)], "{rule}": str(rng.randint(1, 999)),
        "{n}": str(rng.randint(100, 9999)), "{host}": style.product.lower() + ".net",
        "{date}": f"2021-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:"
                  f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
    }
    for key, value in repl.items():
        if key in text:
            text = text.replace(key, value)
    return text


def _notice_url(rng: random.Random, style: _Style, domain: str, category: str, vp: _Vantage) -> str:
    host = style.notice_host.format(a=rng.randint(0, 63), b=rng.randint(2, 250))
    path = rng.choice(("/", "/block", "/notice.html", "/blocked.php", "/index.html", "/warn"))
    query = rng.choice((f"?host={domain}", f"?u={domain}&r={_hex(rng, 10)}", f"?d={domain}",
                        f"?host={domain}&cat={category}&isp={vp.isp}&id={_hex(rng, 8)}"))
    return f"http://{host}{path}{query}"


def _family_page(rng: random.Random, vendor: str, domain: str, vp: _Vantage, category: str) -> _Resp:
    """One blockpage of a vendor: its house style, shared vocabulary, per-page variation."""
    style, voc = _STYLES[vendor], _vocab(vendor)
    fill = lambda s: _fill(s, rng, domain, vp, category, style, voc)  # noqa: E731
    layout = rng.choice(style.layouts)
    extra_headers: list[tuple[str, str]] = []
    if style.header is not None:
        extra_headers.append((style.header[0], fill(style.header[1])))
    title = rng.choice(voc["titles"])
    if layout in ("redirect", "meta"):
        target = _notice_url(rng, style, domain, category, vp)
        if layout == "redirect":
            status = rng.choice(("302 Found", "302 Moved Temporarily", "307 Temporary Redirect"))
            body = (f'<html><head><title>{status[4:]}</title></head><body><a href="{target}">'
                    f"{title}</a></body></html>\n")
            return _Resp(status, _html_headers(body, ("Location", target), *extra_headers), body,
                         style.cert)
        body = (f'<html><head><meta http-equiv="refresh" content="0;url={target}">'
                f"<title>{title}</title></head><body>{title}</body></html>\n")
        return _Resp("200 OK", _html_headers(body, *extra_headers), body, style.cert)
    sentence = fill(f"{rng.choice(voc['subjects'])} {rng.choice(voc['verbs'])} {rng.choice(voc['clauses'])}.")
    sentence = sentence[0].upper() + sentence[1:]
    local = [fill(line) for lang in style.langs if rng.random() < 0.7
             for line in rng.sample(_LANG_LINES[lang], 1)]
    extras = [fill(e) for e in rng.sample(voc["extras"], rng.randint(1, 3))]
    status = rng.choice(style.statuses) if rng.random() < 0.8 else vp.blockpage_status
    marker = style.footer
    if layout == "frame":
        src = _notice_url(rng, style, domain, category, vp)
        body = (
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            f"<title>{title}</title></head>\n<body style=\"margin:0\">\n"
            f'<iframe src="{src}" style="width:100%;height:100%;border:0" scrolling="no"></iframe>\n'
            f"<noscript>{(local or [sentence])[0]}</noscript>\n</body></html>\n"
        )
        return _Resp(status, _html_headers(body, *extra_headers), body, style.cert)
    paras = [sentence, *local, *extras]
    if layout == "table":
        rows = "".join(f"<tr><td>{p}</td></tr>\n" for p in paras)
        body = (f"<html><head><title>{title}</title></head>\n<body>\n<table align=\"center\" width=\"600\">\n"
                f"<tr><th>{title}</th></tr>\n{rows}</table>\n{marker}\n</body></html>\n")
    elif layout == "box":
        inner = "".join(f"<p>{p}</p>\n" for p in paras)
        body = (f'<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8"><title>{title}</title>\n'
                f"<style>{voc['css'][0]}</style></head>\n<body>\n<div class=\"box\">\n<h2>{title}</h2>\n"
                f"{inner}{marker}\n</div>\n</body></html>\n")
    else:
        inner = "".join(f"<p>{p}</p>\n" for p in paras)
        body = (f"<html><head><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n{inner}"
                f"<hr>{marker}\n</body></html>\n")
    return _Resp(status, _html_headers(body, ("Cache-Control", "no-cache"), *extra_headers), body,
                 style.cert)


def _page_status(rng: random.Random, domain: str, vp: _Vantage) -> _Resp:
    """A bare injected status response without any vendor page."""
    pick = rng.random()
    if pick < 0.4:
        return _Resp("403 Forbidden", (("Content-Length", "0"), ("Connection", "close")), "")
    if pick < 0.7:
        loc = f"http://{vp.ip.rsplit('.', 1)[0]}.1/"
        return _Resp("302 Found", (("Location", loc), ("Content-Length", "0")), "")
    return _Resp("404 Not Found", (("Connection", "close"),), "")


# --- Benign pages ------------------------------------------------------------------------------

_SERVERS = ("nginx", "Apache", "openresty", "LiteSpeed", "nginx/1.18.0", "Apache/2.4.41 (Ubuntu)",
            "Microsoft-IIS/8.5", "Caddy")


def _benign_nginx(rng: random.Random, domain: str) -> _Resp:
    """Default page of a fresh nginx installation."""
    body = (
        "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n"
        "<h1>Welcome to nginx!</h1>\n<p>" + rng.choice((
            "The web server works; further configuration is needed.",
            "If you see this page, the nginx web server is successfully installed and working.")) +
        "</p>\n</body>\n</html>\n"
    )
    return _Resp("200 OK", _html_headers(body, ("Server", f"nginx/1.{rng.randint(14, 24)}.0")), body,
                 "localhost")


def _benign_apache(rng: random.Random, domain: str) -> _Resp:
    """Default page of a fresh Apache installation on a Linux distribution."""
    distro = rng.choice(("Ubuntu", "Debian"))
    body = (
        "<html>\n<head>\n<title>Apache2 " + distro + " Default Page: It works</title>\n</head>\n"
        "<body>\n<div class=\"main_page\">\n<p>This is the default welcome page of the Apache2 "
        "server after installation.</p>\n</div>\n</body>\n</html>\n"
    )
    return _Resp("200 OK", _html_headers(body, ("Server", f"Apache/2.4.{rng.randint(29, 52)}")),
                 body, "localhost")


def _benign_iis(rng: random.Random, domain: str) -> _Resp:
    """Default page of a Windows IIS server."""
    body = (
        "<!DOCTYPE html>\n<html>\n<head>\n<title>IIS Windows Server</title>\n</head>\n<body>\n"
        '<div id="container"><img src="iisstart.png" alt="IIS"></div>\n</body>\n</html>\n'
    )
    return _Resp("200 OK", _html_headers(body, ("Server", "Microsoft-IIS/10.0")), body, "WIN-SRV")


def _benign_parkcentral(rng: random.Random, domain: str) -> _Resp:
    """A domain-parking page of the ParkCentral service."""
    body = (
        f"<html><head><title>{domain}</title></head>\n<body>\n<h1>{domain}</h1>\n"
        f"<p>{rng.choice(('This domain is parked free of charge.', 'This domain is registered.'))}</p>\n"
        f'<a href="https://parkcentral-domains.com/?d={domain}&amp;s={rng.randint(1, 9999)}">'
        "Related searches</a>\n</body></html>\n"
    )
    return _Resp("200 OK", _html_headers(body, ("Server", "Apache")), body, "parkcentral")


def _benign_domainmart(rng: random.Random, domain: str) -> _Resp:
    """A domain-for-sale page (no false-positive signature covers it)."""
    body = (
        f"<html><head><title>{domain} is for sale</title></head>\n<body>\n"
        f"<h1>The domain {domain} may be for sale!</h1>\n<p>Make an offer today. "
        f"Listing #{rng.randint(10000, 99999)}</p>\n</body></html>\n"
    )
    return _Resp("200 OK", _html_headers(body, ("Server", "openresty")), body, "domainmart")


def _benign_cdn_challenge(rng: random.Random, domain: str) -> _Resp:
    """A CDN bot check interstitial."""
    body = (
        "<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>\n<body>\n"
        f"<h2>Checking your browser before accessing {domain}.</h2>\n"
        f"<p>This process is automatic. Ray ID: {_hex(rng, 16)}</p>\n</body></html>\n"
    )
    headers = _html_headers(body, ("Server", "StratusEdge"), ("Cache-Control", "no-store"))
    return _Resp("503 Service Unavailable", headers, body, "StratusEdge Inc")


def _benign_cdn_denied(rng: random.Random, domain: str) -> _Resp:
    """A CDN's own geo/permission denial (looks like a blockpage; it is not censorship)."""
    body = (
        "<HTML><HEAD>\n<TITLE>Access Denied</TITLE>\n</HEAD><BODY>\n<H1>Access Denied</H1>\n"
        f"You are not authorized to view \"http://{domain}/\" on this server.<P>\n"
        f"Reference #{rng.randint(10, 99)}.{_hex(rng, 8)}.{rng.randint(1000000000, 1999999999)}\n"
        "</BODY>\n</HTML>\n"
    )
    headers = _html_headers(body, ("Server", "StratusEdge"), ("Mime-Version", "1.0"))
    return _Resp("403 Forbidden", headers, body, "StratusEdge Inc")


def _error_page(status: str, server: str) -> str:
    return (f"<html>\n<head><title>{status}</title></head>\n<body>\n<center><h1>{status}</h1>"
            f"</center>\n<hr><center>{server}</center>\n</body>\n</html>\n")


_ERRORS = ("502 Bad Gateway", "500 Internal Server Error", "503 Service Unavailable",
           "504 Gateway Time-out", "404 Not Found", "400 Bad Request")


def _benign_server_error(rng: random.Random, domain: str) -> _Resp:
    """A plain server error page of a common web server."""
    status, server = rng.choice(_ERRORS), rng.choice(_SERVERS)
    body = _error_page(status, server.split("/")[0])
    return _Resp(status, _html_headers(body, ("Server", server)), body, "localhost")


def _benign_cdn_error(rng: random.Random, domain: str) -> _Resp:
    """The CDN's origin-error page (a false-positive signature covers the CDN)."""
    status = rng.choice(("502 Bad Gateway", "504 Gateway Time-out", "520 Unknown Error", "404 Not Found"))
    body = (_error_page(status, "StratusEdge") if rng.random() < 0.5 else
            f"<!DOCTYPE html>\n<html><head><title>{domain} | {status}</title></head>\n<body>\n"
            f"<h1>Error {status[:3]}</h1>\n<p>The origin web server of {domain} is not reachable. "
            f"Ray ID: {_hex(rng, 16)}</p>\n</body></html>\n")
    return _Resp(status, _html_headers(body, ("Server", "StratusEdge")), body, "StratusEdge Inc")


def _benign_cdn_redirect(rng: random.Random, domain: str) -> _Resp:
    """The CDN redirecting to HTTPS (a false-positive signature covers the CDN)."""
    target = f"https://{domain}/" if rng.random() < 0.7 else f"https://www.{domain.removeprefix('www.')}/"
    code = rng.choice(("301 Moved Permanently", "302 Found", "307 Temporary Redirect"))
    body = (f"<html>\n<head><title>{code}</title></head>\n<body>\n<center><h1>{code}</h1></center>\n"
            "<hr><center>StratusEdge</center>\n</body>\n</html>\n")
    return _Resp(code, _html_headers(body, ("Location", target), ("Server", "StratusEdge")), body,
                 "StratusEdge Inc")


def _benign_maintenance(rng: random.Random, domain: str) -> _Resp:
    """A site-maintenance notice."""
    title, line = rng.choice((
        ("Site Maintenance", "We&rsquo;ll be back soon!"), ("Under Maintenance", "Scheduled maintenance"),
        ("Temporarily unavailable", "This site is temporarily down for maintenance")))
    body = (
        f"<!doctype html>\n<html><head><title>{title}</title></head>\n<body>\n"
        f"<article><h1>{line}</h1>\n<p>Sorry for the inconvenience; we are "
        "performing some maintenance at the moment.</p></article>\n</body></html>\n"
    )
    return _Resp("503 Service Unavailable", _html_headers(body, ("Retry-After", "3600")), body,
                 domain)


def _benign_redirect(rng: random.Random, domain: str) -> _Resp:
    """A redirect to the HTTPS version of the site."""
    target = f"https://{domain}/" if rng.random() < 0.7 else f"https://{domain}/index.php"
    body = ('<html><head><title>301 Moved Permanently</title></head><body><h1>Moved Permanently'
            f'</h1><p>The document has moved <a href="{target}">here</a>.</p></body></html>\n')
    return _Resp("301 Moved Permanently",
                 _html_headers(body, ("Location", target), ("Server", rng.choice(_SERVERS))), body, domain)


def _benign_suspended(rng: random.Random, domain: str) -> _Resp:
    """A shared host's suspended-account page (covered by a false-positive signature)."""
    body = (
        "<html><head><title>Account Suspended</title></head>\n<body>\n"
        "<h1>This Account has been suspended.</h1>\n"
        f"<p>{rng.choice(('Contact your hosting provider for more information.', 'Please contact the billing department.'))}</p>\n"
        '<a href="/cgi-sys/suspendedpage.cgi">details</a>\n</body></html>\n'
    )
    return _Resp("200 OK", _html_headers(body, ("Server", rng.choice(("Apache", "LiteSpeed")))), body,
                 "cpanel")


def _benign_plesk(rng: random.Random, domain: str) -> _Resp:
    """A Plesk default domain page (covered by a false-positive signature)."""
    body = (
        "<!DOCTYPE html>\n<html><head><title>Domain Default page</title></head>\n<body>\n"
        f"<h2>{domain}</h2>\n<p>This page is generated by Plesk, the leading hosting automation "
        "software.</p>\n</body></html>\n"
    )
    return _Resp("200 OK", _html_headers(body, ("Server", "nginx"), ("X-Powered-By", "PleskLin")), body,
                 "Plesk")


def _benign_login(rng: random.Random, domain: str) -> _Resp:
    """A login form in front of a private site (no false-positive signature)."""
    body = (
        f"<!DOCTYPE html>\n<html><head><title>{rng.choice(('Sign in', 'Login', 'Members area'))}</title></head>\n"
        "<body>\n<form method=\"post\" action=\"/login\">\n<input name=\"user\"><input type=\"password\" "
        "name=\"pass\">\n<button>Sign in</button>\n</form>\n"
        f"<p>{rng.choice(('Please log in to continue.', 'Authorised users only.'))}</p>\n</body></html>\n"
    )
    return _Resp(rng.choice(("200 OK", "401 Unauthorized")), _html_headers(body, ("Server", rng.choice(_SERVERS))),
                 body, domain)


_BENIGN_BUILDERS: dict[str, Callable[[random.Random, str], _Resp]] = {
    "nginx_welcome": _benign_nginx,
    "apache_default": _benign_apache,
    "iis_default": _benign_iis,
    "parked_parkcentral": _benign_parkcentral,
    "parked_domainmart": _benign_domainmart,
    "cdn_challenge": _benign_cdn_challenge,
    "cdn_denied": _benign_cdn_denied,
    "cdn_error": _benign_cdn_error,
    "cdn_redirect": _benign_cdn_redirect,
    "hosting_suspended": _benign_suspended,
    "plesk_default": _benign_plesk,
    "server_error": _benign_server_error,
    "maintenance": _benign_maintenance,
    "redirect_https": _benign_redirect,
    "login_page": _benign_login,
}


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
    error: str = ""  # error kind: timeout | dial_timeout | reset | refused | malformed | eof
    success: bool = False
    duration_ms: float = 100.0


def _censored_outcome(
    rng: random.Random, vp: _Vantage, mech: str, domain: _Domain, scan: str
) -> _Outcome:
    """One censored try on this path with the given mechanism."""
    if mech == "blockpage":
        assert vp.vendor is not None
        resp = _family_page(rng, vp.vendor, domain.name, vp, domain.category)
        return _Outcome("blockpage", True, vp.vendor, vp.vendor, resp=resp,
                        duration_ms=rng.uniform(80, 900))
    if mech == "reset":
        return _Outcome("reset", True, detail="rst", error="reset", duration_ms=rng.uniform(40, 400))
    if mech == "timeout":
        return _Outcome("timeout", True, detail="drop", error="timeout",
                        duration_ms=rng.uniform(30000, 30400))
    if mech == "refused":
        return _Outcome("refused", True, detail="stateful", error="refused",
                        duration_ms=rng.uniform(20, 300))
    if mech == "status":
        return _Outcome("status", True, detail="injected_status",
                        resp=_page_status(rng, domain.name, vp), duration_ms=rng.uniform(40, 500))
    if mech == "tls":
        body = "<html><body></body></html>\n"
        resp = _Resp("200 OK", _html_headers(body, ("Server", "nginx")), body,
                     "Security Certificate")
        return _Outcome("tls", True, detail="wrong_cert", resp=resp, duration_ms=rng.uniform(80, 600))
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
        return _Outcome("garbled", True, detail="malformed", error="malformed",
                        duration_ms=rng.uniform(40, 400))
    body = "<html><head><title>"
    resp = _Resp("200 OK", (("Content-Length", "1536"), ("Content-Type", "text/html")), body,
                 domain.name)
    return _Outcome("garbled", True, detail="truncated", resp=resp, error="eof",
                    duration_ms=rng.uniform(40, 400))


def _noise_outcome(rng: random.Random) -> _Outcome:
    """A non-censorship network failure."""
    pick = rng.random()
    if pick < 0.55:
        return _Outcome("noise", False, detail="timeout", error="timeout",
                        duration_ms=rng.uniform(30000, 30400))
    if pick < 0.7:
        return _Outcome("noise", False, detail="dial_timeout", error="dial_timeout",
                        duration_ms=rng.uniform(20000, 130000))
    if pick < 0.88:
        return _Outcome("noise", False, detail="reset", error="reset",
                        duration_ms=rng.uniform(40, 900))
    return _Outcome("noise", False, detail="refused", error="refused",
                    duration_ms=rng.uniform(5, 200))


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
        self.suffix = "Z" if minutes == 0 else f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
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
        return _Outcome("benign", False, detail=kind, resp=_BENIGN_BUILDERS[kind](rng, domain.name),
                        duration_ms=rng.uniform(60, 900))
    if rng.random() < vp.noise:
        return _noise_outcome(rng)
    return _success(rng)


def _plan_down(rng: random.Random, fmt: str, max_tries: int) -> _Plan:
    """A measurement whose vantage point is unreachable: controls fail, nothing is learnt."""
    kind = rng.choice(("refused", "dial_timeout", "timeout"))
    fail = _Outcome("noise", False, detail="vp_down", error=kind,
                    duration_ms=30000.0 if kind != "refused" else 20.0)
    tries = [(False, fail)] * max_tries + [(True, fail)]
    if fmt == "v2":
        tries = [(True, fail), *tries]
    return _Plan(tries, anomaly=False, controls_failed=True, stateful=False)


def _plan(
    rng: random.Random, vp: _Vantage, domain: _Domain, d_index: int, blocked: bool, scan: str,
    fmt: str,
) -> _Plan:
    """Plan the tries of one measurement in the format's retry/control structure."""
    max_tries = 5 if fmt == "v1" else 4
    if rng.random() < vp.down:
        return _plan_down(rng, fmt, max_tries)
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
            tries.append((True, _Outcome("noise", False, detail="stateful_control", error="timeout",
                                         duration_ms=rng.uniform(30000, 30400))))
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
    ctx: _Context, rng: random.Random, vp: _Vantage, domain: str, control: str | None,
    out: _Outcome, start_ns: int, swapped: bool,
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
    error = _error_text(out.error, rng, vp.ip, ctx.port) if out.error else ""
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
    ctx: _Context, domain: str, control: str | None, out: _Outcome,
    received: str | dict[str, Any] | None, error: str, start_ns: int, end_ns: int, swapped: bool,
) -> dict[str, Any]:
    """One v1 Results entry."""
    name = control if control is not None else domain
    if out.error in ("dial_timeout", "refused"):
        sent = ""
    elif ctx.scan in ("echo", "discard"):
        sent = (f"GET {name} HTTP/1.1\r\nHost: /\r\n\r\n" if swapped and control is None
                else ctx.sent_template.format(name))
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
    ctx: _Context, rng: random.Random, vp: _Vantage, domain: _Domain, d_index: int,
    blocked: bool, start_ns: int,
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
            "Server": vp.ip, "Keyword": domain, "Retries": retries, "Results": entries,
            "Blocked": plan.anomaly, "FailSanity": plan.controls_failed,
            "StatefulBlock": plan.stateful,
        }
    return {
        "vp": vp.ip,
        "location": {"country_name": vp.country.name, "country_code": vp.country.code},
        "service": ctx.scan, "test_url": domain, "response": entries, "anomaly": plan.anomaly,
        "controls_failed": plan.controls_failed, "stateful_block": plan.stateful, "tag": ctx.tag,
    }


def _truth_line(line: int, index: int, vp: _Vantage, domain: str, out: _Outcome) -> str:
    """One ground-truth JSON line."""
    return json.dumps({
        "line": line, "try_index": index, "ip": vp.ip, "domain": domain,
        "censored": out.censored, "mechanism": out.mechanism, "vendor": out.vendor,
        "fingerprinted": VENDORS.get(out.vendor, False) if out.vendor else False,
        "detail": out.detail,
    }, ensure_ascii=False, separators=(",", ":"))


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
    path: Path, truth_path: Path, measurements: int, seed: int, fmt: str, scan: str, start: datetime
) -> tuple[int, list[str]]:
    """Write results lines to path and the truth sidecar; return (tries, vantage IPs used)."""
    world = _world()
    rng = random.Random(f"quackae-synth/{seed}/{fmt}/{scan}")
    ctx = _Context(
        scan=scan, fmt=fmt, port=_PORTS[scan], clock=_Clock(start),
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
            truths.extend(_truth_line(line_no, i, vp, domain.name, o) for i, o in outcomes)
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
            tries, ips = _generate(results, truth_tmp, measurements, seed, fmt, scan, start)
        ips_bytes = ("\n".join(ips) + "\n").encode()
        partial = archive.with_name(archive.name + ".part")
        with partial.open("wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            tar.addfile(_tarinfo(f"{stem}/", 0, mtime, directory=True))
            with results.open("rb") as fh:
                tar.addfile(_tarinfo(f"{stem}/results.json", results.stat().st_size, mtime), fh)
            tar.addfile(_tarinfo(f"{stem}/ips.txt", len(ips_bytes), mtime), io.BytesIO(ips_bytes))
        partial.replace(archive)
    return SynthResult(archive=archive, truth=truth, measurements=measurements, tries=tries)


# --------------------------------------------------------------------------------------------
# CLI helpers
# --------------------------------------------------------------------------------------------


def add_synth_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``quackae synth`` options to a parser."""
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--measurements", type=int, default=2000, help="measurement lines")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--format", dest="format", choices=FORMATS, default="v2",
                        help="Hyperquack format")
    parser.add_argument("--scan", choices=SCANS, default="http", help="scan type")
    return parser


def run_synth(args: argparse.Namespace) -> int:
    """Run ``quackae synth``: write the archive and print one summary line."""
    result = write_archive(args.out, args.measurements, args.seed, args.format, args.scan)
    print(f"synth: archive {result.archive} truth {result.truth} "
          f"measurements {result.measurements} tries {result.tries}")
    return 0
