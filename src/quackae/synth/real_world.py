"""The real-page corpus served as one more archive of a generated world (``evaluate --real_pages``).

Every page of ``synth.real_pages`` is written the way the network that serves it would be seen
by Hyperquack, into one v2 HTTP archive with a ground-truth sidecar in the generator's format:

- a **censor's page** from its own country (``DEFAULT_COUNTRY`` for a product with none), at 2-3
  vantage points of that country behind it, for 6-10 of the world's domains, controls passing;
  each of those vantage points also tests ``PASSING`` other domains and gets what was expected;
- a **CDN's, hosting network's or server's page** (benign) for 2-4 domains, each from one
  vantage point in each of 3-5 countries (the page follows the site, not the path);
- an **ISP's page** (benign: a captive portal, a payment notice) from 2 vantage points of its
  country for 3-5 domains; it answers the control too, so the controls fail, as Censored
  Planet records such a host.

Truth: ``family`` is ``real_<name>`` (the page's ``name`` as a slug), mechanism ``blockpage``
and censored for censors, ``benign`` for the rest; ``detail`` is the page's id. None of these
pages has a signature in the world's signature set: they are what the detector must find.
Everything is drawn from ``random.Random`` seeded by the world's seed, so the same seed gives
byte-identical files.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import tarfile
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pycountry

from quackae.io.atomic import atomic_path
from quackae.synth.archive import SynthResult, dump_line, tar_entry
from quackae.synth.real_pages import (
    RealPage,
    control_url_for,
    load_real_pages,
    render_measurement,
    rfc3339,
)
from quackae.synth.world import COUNTRIES, build_world

PREFIX = "real_"  # truth family / kind of a real page: ``real_<name slug>``
DEFAULT_COUNTRY = "US"  # where a product's page with no country is served
START = datetime(2021, 6, 1, tzinfo=timezone.utc)
STEM = f"CP_Quack-http-{START.strftime('%Y-%m-%d-%H-%M-%S')}"
TRIES = 2  # test tries that receive the page, per measurement
CENSOR_VPS = (2, 3)  # vantage points behind one censor's page (drawn from these)
CENSOR_DOMAINS = (6, 10)  # domains it serves the page for (at least, at most)
PASSING = 6  # other domains each vantage point tests and gets the expected response for
_FIRST_OCTETS = tuple(a for a in range(11, 224) if a not in (100, 127, 169, 172, 192, 198, 203))


def real_name(page: RealPage) -> str:
    """The truth family (censor) or kind (benign) of a page: ``real_`` + its name as a slug."""
    return PREFIX + re.sub(r"[^a-z0-9]+", "_", page.name.lower()).strip("_")


def real_families(pages: Sequence[RealPage] | None = None) -> list[str]:
    """The real censors' truth families, sorted (a censor's pages share one)."""
    pages = load_real_pages() if pages is None else pages
    return sorted({real_name(p) for p in pages if p.kind == "censor"})


def real_kinds(pages: Sequence[RealPage] | None = None) -> list[str]:
    """The real benign kinds, sorted."""
    pages = load_real_pages() if pages is None else pages
    return sorted({real_name(p) for p in pages if p.kind == "benign"})


def is_real(family: np.ndarray) -> np.ndarray:
    """Per row: whether its truth family or kind is a real page's."""
    return np.char.startswith(np.asarray(family, dtype=str), PREFIX)


def page_status(page: RealPage) -> str:
    """The page's status line; a source without one: a Location-only page is a redirect."""
    if page.status:
        return page.status
    location = any(name.lower() == "location" for name, _ in page.headers)
    return "302 Found" if location and not page.body else "200 OK"


class _Plan:
    """Vantage points and measurements drawn for the real archive, in writing order."""

    def __init__(self, seed: int, variants: bool) -> None:
        world = build_world(variants)
        self.rng = random.Random(f"quackae-real-pages/{seed}")
        self.domains = [d.name for d in world.domains]
        self.used = {vp.ip for vp in world.vantages}
        self.prefixes: dict[str, str] = {}
        # (page or None for an expected response, vp, country, domain, controls fail)
        self.measurements: list[tuple[RealPage | None, str, str, str, bool]] = []

    def vantage(self, country: str) -> str:
        """A new vantage point address in ``country`` (one /16 per country)."""
        if country not in self.prefixes:
            while True:
                prefix = f"{self.rng.choice(_FIRST_OCTETS)}.{self.rng.randint(0, 255)}"
                if prefix not in self.prefixes.values():
                    break
            self.prefixes[country] = prefix
        while True:
            ip = f"{self.prefixes[country]}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
            if ip not in self.used:
                self.used.add(ip)
                return ip

    def passing(self, vp: str, country: str, avoid: set[str]) -> None:
        """``PASSING`` measurements of other domains at ``vp`` that got the expected response."""
        others = [d for d in self.domains if d not in avoid]
        for domain in self.rng.sample(others, PASSING):
            self.measurements.append((None, vp, country, domain, False))

    def censor(self, page: RealPage) -> None:
        """A censor's page: 2-3 vantage points of its country, 6-10 domains, controls pass."""
        country = page.country or DEFAULT_COUNTRY
        vps = [self.vantage(country) for _ in range(self.rng.choice(CENSOR_VPS))]
        blocked = self.rng.sample(self.domains, self.rng.randint(*CENSOR_DOMAINS))
        for vp in vps:
            for domain in blocked:
                self.measurements.append((page, vp, country, domain, False))
            self.passing(vp, country, set(blocked))

    def isp_benign(self, page: RealPage) -> None:
        """An ISP's benign page: 2 vantage points of its country, 3-5 domains, controls fail."""
        country = page.country or DEFAULT_COUNTRY
        vps = [self.vantage(country) for _ in range(2)]
        domains = self.rng.sample(self.domains, self.rng.randint(3, 5))
        for vp in vps:
            for domain in domains:
                self.measurements.append((page, vp, country, domain, True))
            self.passing(vp, country, set(domains))

    def site_benign(self, page: RealPage, pool: dict[str, str]) -> None:
        """A CDN's, host's or server's page: 2-4 domains, each from 3-5 countries."""
        codes = [c.code for c in COUNTRIES]
        for domain in self.rng.sample(self.domains, self.rng.randint(2, 4)):
            for country in self.rng.sample(codes, self.rng.randint(3, 5)):
                if country not in pool:
                    pool[country] = self.vantage(country)
                self.measurements.append((page, pool[country], country, domain, False))


def plan_measurements(
    seed: int, variants: bool = False, pages: Sequence[RealPage] | None = None
) -> list[tuple[RealPage | None, str, str, str, bool]]:
    """Every real measurement ``(page or None, vp, country, domain, controls fail)``, in order."""
    pages = load_real_pages() if pages is None else pages
    plan = _Plan(seed, variants)
    pool: dict[str, str] = {}  # country -> the vantage point that sees CDN and hosting pages
    for page in pages:
        if page.kind == "censor":
            plan.censor(page)
        elif page.scope == "isp":
            plan.isp_benign(page)
        else:
            plan.site_benign(page, pool)
    for country, vp in pool.items():
        plan.passing(vp, country, set())
    return plan.measurements


def _country_name(code: str) -> str:
    """The ISO 3166 name of a country code ("" if unknown)."""
    found = pycountry.countries.get(alpha_2=code)
    return found.name if found is not None else ""


def _expected(vp: str, domain: str, code: str, moment: datetime) -> dict[str, Any]:
    """A v2 measurement whose test try matched the template (a control first)."""

    def entry(offset_ms: int, **fields: Any) -> dict[str, Any]:
        begin = moment + timedelta(milliseconds=offset_ms)
        return {
            "matches_template": True,
            **fields,
            "start_time": rfc3339(begin),
            "end_time": rfc3339(begin + timedelta(milliseconds=250)),
        }

    return {
        "vp": vp,
        "location": {"country_name": _country_name(code), "country_code": code},
        "service": "http",
        "test_url": domain,
        "response": [entry(0, control_url=control_url_for(vp + domain)), entry(1000)],
        "anomaly": False,
        "controls_failed": False,
        "stateful_block": False,
        "tag": START.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _measurement(
    page: RealPage, vp: str, code: str, domain: str, controls_fail: bool, moment: datetime
) -> dict[str, Any]:
    """The page served at ``vp`` for ``domain``; with ``controls_fail`` the controls get it too."""
    obj = render_measurement(
        page,
        domain,
        vp,
        code,
        _country_name(code),
        tries=TRIES,
        start=moment,
        status=page_status(page),
        tag=START.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    if controls_fail:
        page_entry = obj["response"][1]
        for i in (0, len(obj["response"]) - 1):
            control = obj["response"][i]
            obj["response"][i] = {
                **{k: v for k, v in page_entry.items() if k not in ("start_time", "end_time")},
                "control_url": control["control_url"],
                "start_time": control["start_time"],
                "end_time": control["end_time"],
            }
        obj["anomaly"], obj["controls_failed"] = False, True
    return obj


def _truth(line: int, index: int, vp: str, domain: str, page: RealPage | None) -> dict[str, Any]:
    """One ground-truth line in the generator's format."""
    if page is None:
        mech, family, censored, vendor, detail = "none", "", False, None, ""
    else:
        family, censored, detail = real_name(page), page.censored, page.id
        mech = "blockpage" if censored else "benign"
        vendor = family if censored else None
    return {
        "line": line,
        "try_index": index,
        "ip": vp,
        "domain": domain,
        "censored": censored,
        "mechanism": mech,
        "vendor": vendor,
        "fingerprinted": False,
        "detail": detail,
        "family": family,
    }


def write_real_archive(
    out: Path, seed: int, variants: bool = False, pages: Sequence[RealPage] | None = None
) -> SynthResult:
    """Write the real pages as one v2 HTTP archive of the world, with its truth sidecar.

    ``CP_Quack-http-2021-06-01-00-00-00.tar.gz`` (``<stem>/results.json``, ``<stem>/ips.txt``)
    and ``<stem>.truth.jsonl`` in ``out``, as ``synth.write_archive`` lays them out; the world
    (``variants``) gives the domains and the addresses to avoid. Same seed, same bytes.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    archive, truth_path = out / f"{STEM}.tar.gz", out / f"{STEM}.truth.jsonl"
    lines: list[str] = []
    truths: list[str] = []
    tries = 0
    for line_no, (page, vp, code, domain, fail) in enumerate(
        plan_measurements(seed, variants, pages), 1
    ):
        moment = START + timedelta(seconds=37 * line_no)
        if page is None:
            lines.append(dump_line(_expected(vp, domain, code, moment)))
            indices = [1]
        else:
            lines.append(dump_line(_measurement(page, vp, code, domain, fail, moment)))
            indices = list(range(1, TRIES + 1))
        for i in indices:
            truths.append(
                json.dumps(
                    _truth(line_no, i, vp, domain, page), ensure_ascii=False, separators=(",", ":")
                )
            )
        tries += len(indices)
    ips = sorted({json.loads(t)["ip"] for t in truths})
    mtime = int(START.timestamp())
    results = ("\n".join(lines) + "\n").encode()
    ips_bytes = ("\n".join(ips) + "\n").encode()
    with atomic_path(truth_path) as tmp:
        Path(tmp).write_text("\n".join(truths) + "\n", encoding="utf-8", newline="\n")
    with (
        atomic_path(archive) as tmp,
        Path(tmp).open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        tar.addfile(tar_entry(f"{STEM}/", 0, mtime, directory=True))
        tar.addfile(tar_entry(f"{STEM}/results.json", len(results), mtime), io.BytesIO(results))
        tar.addfile(tar_entry(f"{STEM}/ips.txt", len(ips_bytes), mtime), io.BytesIO(ips_bytes))
    return SynthResult(archive=archive, truth=truth_path, measurements=len(lines), tries=tries)
