"""Parse one Hyperquack measurement (v1 or v2) into one ``Try`` per non-control try.

Formats are described in ``docs/hyperquack.md`` of the shared docs: v1 (``Server``,
``Keyword``, ``Results``; until mid-2021) and v2 (``vp``, ``test_url``, ``response``).
Bad data never escapes as ``KeyError``/``TypeError``: every problem is a ``ParseError``
with a short reason that the ingest stage counts and logs.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec

__all__ = [
    "SCANS",
    "V1_CONTROL_DOMAINS",
    "ParseError",
    "Try",
    "flatten_received",
    "loads_line",
    "parse_line",
    "parse_measurement",
    "parse_timestamp",
]

SCANS: frozenset[str] = frozenset({"echo", "discard", "http", "https"})
# Control domains of Hyperquack v1 (echo/discard and http/https respectively).
V1_CONTROL_DOMAINS: frozenset[str] = frozenset(
    {"example5718349450314.com", "rtyutgyhefdafioasfjhjhi.com"}
)
_NAN = math.nan


class ParseError(ValueError):
    """A measurement has an unknown shape, a wrong type or a missing field."""


@dataclass(slots=True)
class Try:
    """One non-control try of a measurement (the unit that becomes a dataset row)."""

    ip: str
    domain: str
    location: str
    country_code: str
    scan: str
    fmt: str
    try_index: int
    start: float
    end: float
    success: bool | None
    anomaly: bool
    controls_failed: bool
    stateful_block: bool
    sent: str
    received: str | None
    status_line: str
    error: str
    tls_version: int | None
    cipher_suite: int | None
    has_cert: bool


# --------------------------------------------------------------------------- timestamps

_TS = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?\s*(Z|z|[+-]\d\d:?\d\d)?$"
)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@lru_cache(maxsize=4096)
def _whole_seconds(prefix: str, tz: str) -> int:
    """Unix seconds of ``YYYY-MM-DDTHH:MM:SS`` at offset ``tz``; cached (tries share them)."""
    return int(parse_timestamp(prefix + tz))


_POW10 = tuple(10**n for n in range(64))


def _fast_timestamp(text: str) -> float | None:
    """The common shape ``YYYY-MM-DDTHH:MM:SS.fffffffff±HH:MM`` without a regex; None otherwise."""
    if not 25 <= len(text) <= 60 or text[10] != "T" or text[19] != "." or text[-3] != ":":
        return None
    tz_at = len(text) - 6
    frac = text[20:tz_at]
    if text[tz_at] not in "+-" or not frac.isdecimal():  # isdigit() also takes "²", int() not
        return None
    return _whole_seconds(text[:19], text[tz_at:]) + int(frac) / _POW10[len(frac)]


def parse_timestamp(text: str) -> float:
    """RFC 3339 time (nanoseconds, ``Z`` or ``±HH:MM`` offset) -> unix seconds as float.

    A missing offset means UTC. Raises ``ParseError`` on anything else.
    """
    fast = _fast_timestamp(text)
    if fast is not None:
        return fast
    m = _TS.match(text)
    if m is None:
        raise ParseError("bad timestamp")
    year, month, day, hour, minute, second, frac, tz = m.groups()
    mo, d, h, mi, s = int(month), int(day), int(hour), int(minute), int(second)
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 60):
        raise ParseError("bad timestamp")
    seconds = _days_from_civil(int(year), mo, d) * 86400 + h * 3600 + mi * 60 + s
    if tz and tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    if frac:
        return seconds + int(frac) / 10 ** len(frac)
    return float(seconds)


def _time_field(entry: dict[str, Any], key: str) -> float:
    """The unix time of an optional timestamp field; nan if absent or empty."""
    value = entry.get(key)
    if value is None or value == "":
        return _NAN
    if not isinstance(value, str):
        raise ParseError(f"{key} is not a string")
    fast = _fast_timestamp(value)
    return fast if fast is not None else parse_timestamp(value)


# --------------------------------------------------------------------------- field access


def _req_str(obj: dict[str, Any], key: str) -> str:
    """A required string field."""
    value = obj.get(key)
    if not isinstance(value, str):
        raise ParseError(f"missing {key}" if value is None else f"{key} is not a string")
    return value


def _opt_str(obj: dict[str, Any], key: str) -> str:
    """An optional string field ("" when absent or null)."""
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ParseError(f"{key} is not a string")
    return value


def _req_bool(obj: dict[str, Any], key: str) -> bool:
    """A required boolean field."""
    value = obj.get(key)
    if not isinstance(value, bool):
        raise ParseError(f"missing {key}" if value is None else f"{key} is not a bool")
    return value


def _opt_bool(obj: dict[str, Any], key: str) -> bool | None:
    """An optional boolean field (None when absent or null)."""
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ParseError(f"{key} is not a bool")


def _opt_int(obj: dict[str, Any], key: str) -> int | None:
    """An optional integer field (None when absent or null; bools rejected)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParseError(f"{key} is not an int")
    return value


def _entries(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The list of try objects under ``key``."""
    value = obj.get(key)
    if not isinstance(value, list):
        raise ParseError(f"missing {key}" if value is None else f"{key} is not a list")
    for entry in value:
        if not isinstance(entry, dict):
            raise ParseError(f"{key} entry is not an object")
    return value


def _scan_of(scan: str | None, service: object = None) -> str:
    """The scan type: the caller's (archive name) first, else v2 ``service`` minus a port."""
    if scan:
        name = scan.lower()
    elif isinstance(service, str) and service:
        name = service.split(":", 1)[0].lower()
    else:
        raise ParseError("unknown scan type (not in source name, no service field)")
    if name not in SCANS:
        raise ParseError(f"unknown scan type {name[:20]!r}")
    return name


# --------------------------------------------------------------------------- received


def _header_lines(headers: object) -> list[str]:
    """``Name: value`` lines, one per value, in the order given."""
    if headers is None:
        return []
    if not isinstance(headers, dict):
        raise ParseError("headers is not an object")
    lines: list[str] = []
    for name, values in headers.items():
        if isinstance(values, str):
            lines.append(f"{name}: {values}")
        elif not isinstance(values, list):
            raise ParseError("header values are not a list")
        elif len(values) == 1 and isinstance(values[0], str):  # the usual case: one value
            lines.append(f"{name}: {values[0]}")
        else:
            for value in values:
                if not isinstance(value, str):
                    raise ParseError("header value is not a string")
                lines.append(f"{name}: {value}")
    return lines


def flatten_received(received: object) -> tuple[str | None, str]:
    """The full received text and the status line of a ``Received``/``response`` value.

    A string is kept as is (status line ""); the object form becomes the status line, one
    ``Name: value`` line per header value, then the body, joined by newlines. Absent, null
    or empty -> ``(None, "")``: nothing was received.
    """
    if received is None or received == "":
        return None, ""
    if isinstance(received, str):
        return received, ""
    if not isinstance(received, dict):
        raise ParseError("received is neither a string nor an object")
    status = _opt_str(received, "status_line")
    body = _opt_str(received, "body")
    parts = [status, *_header_lines(received.get("headers")), body]
    return "\n".join(parts), status


def _tls_v1(received: object) -> tuple[int | None, int | None, bool]:
    """TLS version, cipher suite and certificate presence of v1 ``Received.tls``."""
    if not isinstance(received, dict):
        return None, None, False
    tls = received.get("tls")
    if tls is None:
        return None, None, False
    if not isinstance(tls, dict):
        raise ParseError("tls is not an object")
    cert = _opt_str(tls, "cert")
    return _opt_int(tls, "version"), _opt_int(tls, "cipher_suite"), bool(cert)


def _tls_v2(received: object) -> tuple[int | None, int | None, bool]:
    """TLS version, cipher suite and certificate presence of a v2 response object."""
    if not isinstance(received, dict):
        return None, None, False
    cert = _opt_str(received, "Certificate")
    return _opt_int(received, "TlsVersion"), _opt_int(received, "CipherSuite"), bool(cert)


# --------------------------------------------------------------------------- v1


def _domain_from_request(sent: str) -> str | None:
    """The test domain of an echo/discard request ``GET / HTTP/1.1\\r\\nHost: <d>\\r\\n\\r\\n``.

    Handles the swapped-path bug (``GET <domain> HTTP/1.1\\r\\nHost: /path``). None if the
    request has no usable host.
    """
    lines = sent.split("\n")
    request = lines[0].strip().split(" ")
    target = request[1] if len(request) >= 2 else ""
    host = ""
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "host":
            host = value.strip()
            break
    if host and not host.startswith("/"):
        return host
    if target and not target.startswith("/"):
        return target
    return host or None


@lru_cache(maxsize=4096)  # a measurement's retries send the same request
def _v1_domain(sent: str, keyword: str) -> str:
    """The domain a v1 try asked for: from the request, the bare domain, else Keyword."""
    if sent.startswith("GET ") or "\n" in sent:
        return _domain_from_request(sent) or keyword
    return sent.strip() or keyword


def _v1_is_control(index: int, sent: str, domain: str, retries: int) -> bool:
    """Whether a v1 try is a control: a control domain, or empty Sent after the retries."""
    if domain in V1_CONTROL_DOMAINS:
        return True
    return not sent and index > retries


def _parse_v1(obj: dict[str, Any], scan: str | None) -> list[Try]:
    """Tries of a Hyperquack v1 measurement."""
    scan_name = _scan_of(scan)
    ip = _req_str(obj, "Server")
    keyword = _req_str(obj, "Keyword")
    retries = obj.get("Retries")
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise ParseError("missing Retries" if retries is None else "Retries is not an int")
    entries = _entries(obj, "Results")
    anomaly = _req_bool(obj, "Blocked")
    controls_failed = bool(_opt_bool(obj, "FailSanity"))
    stateful = bool(_opt_bool(obj, "StatefulBlock"))
    tries: list[Try] = []
    for index, entry in enumerate(entries):
        sent = _opt_str(entry, "Sent")
        domain = keyword if not sent else _v1_domain(sent, keyword)
        if _v1_is_control(index, sent, domain, retries):
            continue
        raw = entry.get("Received")
        received, status = flatten_received(raw)
        tls_version, cipher, has_cert = _tls_v1(raw)
        tries.append(
            Try(
                ip,
                domain,
                "",
                "",
                scan_name,
                "v1",
                index,
                _time_field(entry, "StartTime"),
                _time_field(entry, "EndTime"),
                _opt_bool(entry, "Success"),
                anomaly,
                controls_failed,
                stateful,
                sent,
                received,
                status,
                _opt_str(entry, "Error"),
                tls_version,
                cipher,
                has_cert,
            )
        )
    return tries


# --------------------------------------------------------------------------- v2


def _location(obj: dict[str, Any]) -> tuple[str, str]:
    """Country name and code of a v2 ``location`` ("" when unknown)."""
    loc = obj.get("location")
    if loc is None:
        return "", ""
    if not isinstance(loc, dict):
        raise ParseError("location is not an object")
    return _opt_str(loc, "country_name"), _opt_str(loc, "country_code")


def _parse_v2(obj: dict[str, Any], scan: str | None) -> list[Try]:
    """Tries of a Hyperquack v2 measurement (tries carrying ``control_url`` dropped)."""
    scan_name = _scan_of(scan, obj.get("service"))
    ip = _req_str(obj, "vp")
    domain = _req_str(obj, "test_url")
    entries = _entries(obj, "response")
    anomaly = _req_bool(obj, "anomaly")
    controls_failed = bool(_opt_bool(obj, "controls_failed"))
    stateful = bool(_opt_bool(obj, "stateful_block"))
    location, country_code = _location(obj)
    tries: list[Try] = []
    for index, entry in enumerate(entries):
        if _opt_str(entry, "control_url"):
            continue
        raw = entry.get("response")
        received, status = flatten_received(raw)
        tls_version, cipher, has_cert = _tls_v2(raw)
        tries.append(
            Try(
                ip,
                domain,
                location,
                country_code,
                scan_name,
                "v2",
                index,
                _time_field(entry, "start_time"),
                _time_field(entry, "end_time"),
                _opt_bool(entry, "matches_template"),
                anomaly,
                controls_failed,
                stateful,
                "",
                received,
                status,
                _opt_str(entry, "error"),
                tls_version,
                cipher,
                has_cert,
            )
        )
    return tries


# --------------------------------------------------------------------------- entry points

_FAST_DECODE = msgspec.json.Decoder().decode


def loads_line(data: bytes) -> object:
    """``json.loads(data.decode("utf-8"))``, about twice as fast on valid lines.

    msgspec decodes first; it is never more lenient than the standard library (it refuses
    NaN, lone surrogates and invalid UTF-8), so whatever it refuses is handed to ``json``,
    which gives its usual value or raises its usual exception.
    """
    try:
        return _FAST_DECODE(data)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return json.loads(data.decode("utf-8"))


def parse_measurement(obj: object, scan: str | None) -> list[Try]:
    """One decoded measurement -> one ``Try`` per non-control try.

    Parameters
    ----------
    obj
        The decoded JSON object of one results line (v1 or v2).
    scan
        The scan type from the source name (``scan_from_name``); None to use v2's
        ``service``.

    Raises
    ------
    ParseError
        Unknown shape, wrong type, missing required field, or no scan type.
    """
    if not isinstance(obj, dict):
        raise ParseError("measurement is not an object")
    if "Results" in obj or "Server" in obj:
        return _parse_v1(obj, scan)
    if "response" in obj or "vp" in obj:
        return _parse_v2(obj, scan)
    raise ParseError("unknown measurement shape")


def parse_line(data: bytes | str, scan: str | None) -> list[Try]:
    """Decode one raw results line (UTF-8 JSON) and parse it; every failure is a ParseError."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"invalid JSON: {str(exc)[:80]}") from None
    return parse_measurement(obj, scan)
