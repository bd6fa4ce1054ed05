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
import tarfile
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from quackae.io.atomic import atomic_path
from quackae.synth.benign import BANNER_KINDS, banner_text, benign_http
from quackae.synth.families import family_page, fingerprinted_set
from quackae.synth.responses import LOCAL_IPS, Resp, generic_headers, hex_id, html_headers, raw_http
from quackae.synth.variants import VARIANT_FAMILIES, VARIANT_KINDS, variant_benign, variant_page
from quackae.synth.world import Domain, Vantage, World, build_world

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
V1_CONTROL = {
    "echo": "example5718349450314.com",
    "discard": "example5718349450314.com",
    "http": "rtyutgyhefdafioasfjhjhi.com",
    "https": "rtyutgyhefdafioasfjhjhi.com",
}
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


@lru_cache(maxsize=4096)
def _cert_b64(owner: str) -> str:
    """Base64 of synthetic certificate-like bytes for an owner (stable, not a real DER)."""
    digest = hashlib.sha256(owner.encode()).digest()
    payload = b"\x30\x82\x02\x10synthetic-cert CN=" + owner.encode() + b" " + digest * 3
    return base64.b64encode(payload).decode()


def _resp_object(resp: Resp, scan: str, fmt: str, rng: random.Random) -> dict[str, Any]:
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
    resp: Resp | None = None  # a received HTTP response
    raw: str | None = None  # a received raw string (echo/discard garbage)
    error: str = (
        ""  # error kind: timeout | dial_timeout | reset | refused | malformed | eof | custom
    )
    success: bool = False
    duration_ms: float = 100.0
    family: str = ""  # blockpage family or benign kind ("noise" for network noise)
    error_text: str = ""  # the error string of a "custom" error


def _benign_outcome(kind: str, rng: random.Random, domain: str, scan: str) -> _Outcome:
    """One try answered by a benign kind, as the scan's client records it."""
    duration = rng.uniform(60, 900)
    if kind in BANNER_KINDS:
        banner = banner_text(kind, rng)
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
        resp=variant_benign(rng, kind, domain)
        if kind in VARIANT_KINDS
        else benign_http(kind, rng, domain),
        duration_ms=duration,
    )


def _censored_outcome(
    rng: random.Random, vp: Vantage, mech: str, domain: Domain, scan: str
) -> _Outcome:
    """One censored try on this path with the given mechanism."""
    if mech == "blockpage":
        assert vp.vendor is not None
        resp = (
            variant_page(rng, vp.vendor, domain.name, domain.category, vp.ip)
            if vp.vendor in VARIANT_FAMILIES
            else family_page(rng, vp.vendor, domain.name, domain.category)
        )
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
        resp = Resp(
            "200 OK", html_headers(rng, body, ("Server", "nginx")), body, "Security Certificate"
        )
        return _Outcome(
            "tls", True, detail="wrong_cert", resp=resp, duration_ms=rng.uniform(80, 600)
        )
    return _garbled_outcome(rng, vp, domain, scan)


def _page_status(rng: random.Random, domain: str, vp: Vantage) -> Resp:
    """A bare injected status response without any vendor page."""
    pick = rng.random()
    if pick < 0.4:
        return Resp("403 Forbidden", generic_headers(rng, "", None), "")
    if pick < 0.7:
        loc = f"http://{vp.ip.rsplit('.', 1)[0]}.1/"
        return Resp("302 Found", generic_headers(rng, "", None, (("Location", loc),)), "")
    return Resp("404 Not Found", generic_headers(rng, "", None), "")


def _garbled_outcome(rng: random.Random, vp: Vantage, domain: Domain, scan: str) -> _Outcome:
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
    resp = Resp(
        "200 OK", generic_headers(rng, "", None, (("Content-Length", "1536"),)), body, domain.name
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


def _effective_mechanism(vp: Vantage, scan: str) -> str | None:
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
    local = f"{LOCAL_IPS[rng.getrandbits(1)]}:{rng.randint(1024, 65535)}"
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


def dump_line(obj: dict[str, Any]) -> str:
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
    rng: random.Random, vp: Vantage, domain: Domain, d_index: int, mech: str | None, scan: str
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
    rng: random.Random, kind: str, domain: Domain, fmt: str, scan: str, max_tries: int
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
    vp: Vantage,
    domain: Domain,
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
    if vp.notice and scan == "http" and rng.random() < vp.notice:
        return _plan_host(rng, "isp_notice", domain, fmt, scan, max_tries)
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
    vp: Vantage,
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
            received = raw_http(out.resp)
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
    vp: Vantage,
    domain: Domain,
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
            control = V1_CONTROL[ctx.scan] if ctx.fmt == "v1" else f"control-{hex_id(rng, 16)}.com"
        else:
            truth.append((index, out))
        entries.append(_render_try(ctx, rng, vp, domain.name, control, out, t, swapped))
        t += int(out.duration_ms * 1_000_000) + (gap if not out.success else 1000)
    return _measurement_object(ctx, vp, domain.name, entries, plan), truth


def _measurement_object(
    ctx: _Context, vp: Vantage, domain: str, entries: list[dict[str, Any]], plan: _Plan
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
    line: int, index: int, vp: Vantage, domain: str, out: _Outcome, fingerprinted: frozenset[str]
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


def _pairs(rng: random.Random, world: World) -> Iterator[tuple[int, int]]:
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


def tar_entry(name: str, size: int, mtime: int, directory: bool = False) -> tarfile.TarInfo:
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
    variants: bool = False,
) -> tuple[int, list[str]]:
    """Write results lines to path and the truth sidecar; return (tries, vantage IPs used)."""
    world = build_world(variants)
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
            lines.append(dump_line(obj))
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
    variants: bool = False,
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
    variants : bool
        Sample the world with the variant families and benign habits of ``synth.variants``
        (default False: the default world, byte for byte as before).

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
                fingerprinted_set(fingerprinted, VARIANT_FAMILIES.keys()),
                variants,
            )
        ips_bytes = ("\n".join(ips) + "\n").encode()
        partial = archive.with_name(archive.name + ".part")
        with (
            partial.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            tar.addfile(tar_entry(f"{stem}/", 0, mtime, directory=True))
            with results.open("rb") as fh:
                tar.addfile(tar_entry(f"{stem}/results.json", results.stat().st_size, mtime), fh)
            tar.addfile(tar_entry(f"{stem}/ips.txt", len(ips_bytes), mtime), io.BytesIO(ips_bytes))
        partial.replace(archive)
    return SynthResult(archive=archive, truth=truth, measurements=measurements, tries=tries)
