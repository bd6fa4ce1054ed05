"""The simulated world: countries and their policies, test domains, vantage points, blocklists.

Built once from a fixed seed (``build_world``); archives sample measurements from it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

from quackae.synth.benign import HOST_KINDS
from quackae.synth.categories import CATEGORY_WORDS
from quackae.synth.families import FAMILY_LIST
from quackae.synth.variants import VARIANT_LIST

_WORLD_SEED = 20211011


@dataclass(frozen=True)
class Country:
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


COUNTRIES: tuple[Country, ...] = (
    Country(
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
    Country(
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
    Country(
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
    Country(
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
    Country(
        "India",
        "IN",
        ("14.139", "49.204", "106.51", "117.239", "122.160", "182.74", "14.141", "27.60"),
        {"adult": 0.7, "filesharing": 0.7, "gambling": 0.4, "circumvention": 0.1},
        ("status", "reset"),
    ),
    Country(
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
    Country(
        "Pakistan",
        "PK",
        ("39.32", "39.38", "119.155", "182.176", "39.34", "39.46", "39.55", "182.178"),
        {"adult": 0.8, "religion": 0.5, "political": 0.4, "lgbtq": 0.6, "human_rights": 0.3},
        ("timeout", "status", "reset"),
        stateful="refused",
    ),
    Country(
        "Kazakhstan",
        "KZ",
        ("2.72", "37.150", "89.218", "92.46", "95.56", "178.88", "2.74", "95.59"),
        {"news": 0.3, "political": 0.5, "circumvention": 0.7, "social": 0.1, "gambling": 0.5},
        ("tls", "tls", "reset"),
    ),
    Country(
        "United States",
        "US",
        ("34.120", "50.116", "104.207", "167.207", "3.31", "3.86", "3.94"),
        {"adult": 0.6, "gambling": 0.6},
        (),
        clean=8,
    ),
    Country(
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
    Country(
        "Vietnam",
        "VN",
        ("14.160", "27.72", "42.112", "113.160", "115.73", "171.224", "183.80"),
        {"news": 0.5, "political": 0.7, "human_rights": 0.6, "religion": 0.3, "gambling": 0.4},
        ("reset", "timeout"),
    ),
    Country(
        "Thailand",
        "TH",
        ("1.46", "27.55", "49.228", "58.8", "110.164", "171.96", "182.52"),
        {"adult": 0.7, "gambling": 0.9, "political": 0.4, "filesharing": 0.3},
        ("status",),
    ),
    Country(
        "South Korea",
        "KR",
        ("1.209", "14.32", "58.120", "121.134", "175.223", "211.36"),
        {"adult": 0.9, "gambling": 0.9, "political": 0.1, "filesharing": 0.3},
        ("reset",),
    ),
    Country(
        "Egypt",
        "EG",
        ("41.33", "41.178", "156.160", "196.205", "197.32", "105.196"),
        {"news": 0.5, "political": 0.6, "human_rights": 0.6, "circumvention": 0.4},
        ("reset", "timeout"),
    ),
    Country(
        "United Arab Emirates",
        "AE",
        ("5.30", "31.215", "86.96", "94.200", "185.93"),
        {"adult": 1.0, "gambling": 0.9, "lgbtq": 0.9, "circumvention": 0.7, "religion": 0.2},
        ("reset",),
    ),
    Country(
        "Belarus",
        "BY",
        ("37.17", "46.56", "86.57", "93.84", "178.124"),
        {"news": 0.6, "political": 0.8, "human_rights": 0.6, "circumvention": 0.5},
        ("reset",),
    ),
    Country(
        "Germany",
        "DE",
        ("46.114", "62.155", "84.128", "91.64", "178.4"),
        {"filesharing": 0.5, "gambling": 0.2},
        (),
        clean=4,
    ),
    Country(
        "France",
        "FR",
        ("37.59", "80.12", "82.64", "90.84", "176.31"),
        {"filesharing": 0.5, "gambling": 0.4, "adult": 0.1},
        (),
        clean=4,
    ),
    Country(
        "Spain",
        "ES",
        ("2.136", "31.4", "77.224", "83.32", "88.26"),
        {"filesharing": 0.6, "gambling": 0.3},
        (),
        clean=4,
    ),
    Country(
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
class Vantage:
    """One vantage point: address, country, the censor on its path and its flakiness."""

    ip: str
    country: Country
    isp: int
    mechanism: str | None  # censorship mechanism on this path (None: unfiltered)
    vendor: str | None  # blockpage family of the path's censor
    all_ports: bool  # the middlebox inspects echo/discard ports too
    https_inject: bool  # the middlebox injects blockpages into TLS (with its own certificate)
    noise: float
    down: float
    benign: dict[int, str] = field(default_factory=dict)  # domain index -> benign domain kind
    host_kind: str | None = None  # the host is not a proper server: a benign host kind
    notice: float = 0.0  # share of HTTP measurements its ISP's notice answers (controls too)


@dataclass(frozen=True)
class Domain:
    """One test domain and its category."""

    name: str
    category: str


@dataclass
class World:
    """The whole simulated world, built once from a fixed seed."""

    domains: list[Domain]
    vantages: list[Vantage]
    blocked: dict[tuple[str, int], bool]  # (country code, domain index) -> on the blocklist


def _make_domains(rng: random.Random) -> list[Domain]:
    """Build ~200 plausible test domains in categories, deterministically."""
    seen: set[str] = set()
    out: list[Domain] = []
    for category, (prefixes, suffixes, tlds, count) in CATEGORY_WORDS.items():
        made = 0
        while made < count:
            name = f"{rng.choice(prefixes)}{rng.choice(suffixes)}.{rng.choice(tlds)}"
            if rng.random() < 0.25:
                name = "www." + name
            if name.removeprefix("www.") in seen:
                continue
            seen.add(name.removeprefix("www."))
            out.append(Domain(name, category))
            made += 1
    return out


def _isps(country: Country) -> list[tuple[str, str | None]]:
    """A country's censoring ISPs: one per deployed blockpage family, then the others."""
    pages = [("blockpage", f.name) for f in FAMILY_LIST if country.code in f.countries]
    return pages + [(m, None) for m in country.mechanisms]


def _make_vantage(
    rng: random.Random,
    country: Country,
    n_domains: int,
    isp: int,
    censor: tuple[str | None, str | None],
    host_kind: str | None,
) -> Vantage:
    """Draw one vantage point of a country behind a given censor, with noise and benign pages."""
    ip = f"{rng.choice(country.prefixes)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    kinds = rng.choice(_BENIGN_SETS)
    rate = rng.choice((0.02, 0.04, 0.08, 0.12))
    benign = {d: rng.choice(kinds) for d in range(n_domains) if rng.random() < rate}
    return Vantage(
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


def _vantage_plan() -> list[tuple[Country, int, tuple[str | None, str | None], str | None]]:
    """Every vantage point to draw: (country, isp, censor, host kind), in a fixed order.

    Two per censoring ISP, the country's clean ones, and one per benign host kind spread over
    the countries, so every family and kind has vantage points.
    """
    plan: list[tuple[Country, int, tuple[str | None, str | None], str | None]] = []
    for country in COUNTRIES:
        isps = _isps(country)
        for isp, censor in enumerate(isps):
            plan.extend([(country, isp, censor, None)] * 2)
        plan.extend([(country, len(isps) + k, (None, None), None) for k in range(country.clean)])
    for k, kind in enumerate(HOST_KINDS):
        country = COUNTRIES[(k * 7) % len(COUNTRIES)]
        plan.append((country, 99, (None, None), kind))
    return plan


@lru_cache(maxsize=2)
def build_world(variants: bool = False) -> World:
    """Build the fixed simulated world (domains, vantage points, blocklists).

    ``variants`` adds the families and benign habits of ``synth.variants`` (their own vantage
    points and habits, drawn from a second seed after the default world, which stays as it is).
    """
    rng = random.Random(_WORLD_SEED)
    domains = _make_domains(rng)
    vantages: list[Vantage] = []
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
    world = World(domains, vantages, blocked)
    if variants:
        add_variants(world)
    return world


#: Countries whose ISPs inject a notice page (data allowance, billing) at one clean vantage point.
NOTICE_COUNTRIES = ("US", "MX", "DE", "ES", "IN", "TH")


def add_variants(world: World) -> None:
    """Deploy the variant families (two vantage points per country each) and benign habits.

    A hosting network (VeloxEdge) serves its bot check for its customers' domains (15% of the
    domains) at 40% of the proper vantage points of every country; 3% of the domains at each
    vantage point answer with a same-site redirect in one of many spellings; one clean vantage
    point in each of ``NOTICE_COUNTRIES`` gets its ISP's notice for 20% of HTTP measurements.
    """
    rng = random.Random(_WORLD_SEED + 23)
    seen = {vp.ip for vp in world.vantages}
    by_code = {c.code: c for c in COUNTRIES}
    n = len(world.domains)
    for k, fam in enumerate(VARIANT_LIST):
        for code in fam.countries:
            for _ in range(2):
                while True:
                    vp = _make_vantage(rng, by_code[code], n, 60 + k, ("blockpage", fam.name), None)
                    if vp.ip not in seen:
                        break
                seen.add(vp.ip)
                world.vantages.append(vp)
    hosted = [d for d in range(n) if rng.random() < 0.15]
    for vp in world.vantages:
        if vp.host_kind is not None:
            continue
        for d in hosted:
            if rng.random() < 0.4:
                vp.benign[d] = "cdn_bot_check"
        for d in range(n):
            if d not in vp.benign and rng.random() < 0.03:
                vp.benign[d] = "site_redirect_variants"
    for code in NOTICE_COUNTRIES:
        clean = [vp for vp in world.vantages if vp.country.code == code and vp.mechanism is None]
        clean = [vp for vp in clean if vp.host_kind is None]
        rng.choice(clean).notice = 0.2
