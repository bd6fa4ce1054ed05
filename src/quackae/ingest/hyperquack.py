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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec
import numpy as np

__all__ = [
    "SCANS",
    "V1_CONTROL_DOMAINS",
    "ParseError",
    "Try",
    "flatten_received",
    "loads_line",
    "parse_bytes",
    "parse_line",
    "parse_measurement",
    "parse_lines",
    "parse_timestamp",
    "parse_timestamps",
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
    # The received body as the seed project matched signatures against it (``--label_rule
    # seed_body``): the whole text of the string form, the ``body`` field of the object form
    # ("" when it has none); None when nothing was received (or not given).
    body: str | None = None


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


_STAMP_WIDTH = 40  # longest timestamp parsed column-wise (Hyperquack writes 34-35 characters)
_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)  # of YYYY-MM-DDTHH:MM:SS
_MARKS = ((4, b"-"), (7, b"-"), (10, b"T"), (13, b":"), (16, b":"), (19, b"."))


def _number(u8: np.ndarray, first: int, last: int) -> np.ndarray:
    """The decimal number in columns ``first..last`` of an ASCII byte matrix."""
    value = np.zeros(len(u8), np.int64)
    for col in range(first, last + 1):
        value = value * 10 + (u8[:, col].astype(np.int64) - 48)
    return value


def _stamps_of_shape(u8: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds of ``YYYY-MM-DDTHH:MM:SS.f±HH:MM`` rows, and which rows have that shape.

    The same value as ``_fast_timestamp`` (whole seconds as an integer, then the fraction's
    integer over its power of ten, added in float64); rows of another shape or out of range
    are left to it.
    """
    rows = np.arange(len(u8))
    tz_at = lens - 6
    digit = (u8 >= 48) & (u8 <= 57)
    ok = (lens >= 26) & (lens <= _STAMP_WIDTH) & digit[:, _DIGITS].all(axis=1)
    for col, mark in _MARKS:
        ok &= u8[:, col] == mark[0]
    tz_sign = u8[rows, np.clip(tz_at, 0, _STAMP_WIDTH - 1)]
    ok &= (tz_sign == ord("+")) | (tz_sign == ord("-"))
    ok &= u8[rows, np.clip(lens - 3, 0, _STAMP_WIDTH - 1)] == ord(":")
    for back in (5, 4, 2, 1):
        ok &= digit[rows, np.clip(lens - back, 0, _STAMP_WIDTH - 1)]
    col = np.arange(_STAMP_WIDTH)
    in_frac = (col >= 20) & (col[None, :] < tz_at[:, None])
    ok &= (digit | ~in_frac).all(axis=1)
    year, month, day = _number(u8, 0, 3), _number(u8, 5, 6), _number(u8, 8, 9)
    hour, minute, second = _number(u8, 11, 12), _number(u8, 14, 15), _number(u8, 17, 18)
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 60)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    seconds = (era * 146097 + doe - 719468) * 86400 + hour * 3600 + minute * 60 + second
    tz_digit = [
        u8[rows, np.clip(lens - back, 0, _STAMP_WIDTH - 1)].astype(np.int64) - 48
        for back in (5, 4, 2, 1)
    ]
    offset = (tz_digit[0] * 10 + tz_digit[1]) * 3600 + (tz_digit[2] * 10 + tz_digit[3]) * 60
    seconds -= np.where(tz_sign == ord("-"), -offset, offset)
    frac = np.zeros(len(u8), np.int64)
    for c in range(20, _STAMP_WIDTH - 6):
        inside = c < tz_at
        frac = np.where(inside, frac * 10 + (u8[:, c].astype(np.int64) - 48), frac)
    scale = np.asarray(_POW10[:_STAMP_WIDTH], np.float64)[np.clip(tz_at - 20, 0, None)]
    return seconds.astype(np.float64) + frac.astype(np.float64) / scale, ok


def parse_timestamps(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """``_time_field`` of many values at once: unix seconds (nan when empty), and which failed.

    Hyperquack's usual shape is parsed column-wise (numpy over the bytes), anything else one at
    a time by ``parse_timestamp``; a value it refuses is marked in the second array.
    """
    values = np.full(len(texts), _NAN)
    bad = np.zeros(len(texts), bool)
    where = [i for i, text in enumerate(texts) if text]
    if not where:
        return values, bad
    given = [texts[i] for i in where]
    lens = np.fromiter(map(len, given), np.int64, len(given))
    try:
        u8 = np.array(given, dtype=f"S{_STAMP_WIDTH}").view(np.uint8).reshape(-1, _STAMP_WIDTH)
    except UnicodeEncodeError:  # not ASCII: each on its own
        fast, ok = np.zeros(len(given)), np.zeros(len(given), bool)
    else:
        fast, ok = _stamps_of_shape(u8, lens)
    at = np.asarray(where)
    values[at[ok]] = fast[ok]
    for k in np.flatnonzero(~ok).tolist():
        try:
            values[where[k]] = parse_timestamp(given[k])
        except ParseError:
            bad[where[k]] = True
    return values, bad


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


def _body_of(received: object) -> str | None:
    """``Try.body`` of a ``Received``/``response`` value that ``flatten_received`` accepted."""
    if received is None or received == "":
        return None
    if isinstance(received, str):
        return received
    return _opt_str(received, "body")  # type: ignore[arg-type]


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
                _body_of(raw),
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
                _body_of(raw),
            )
        )
    return tries


# --------------------------------------------------------------------------- typed decoding
# The hot path decodes a line straight into these structs: only the fields a Try needs, no dict
# per object, and the big values a row never reads as text (certificates, the responses of
# control tries) kept as undecoded ``msgspec.Raw``. Optional fields default to None, the value
# ``dict.get`` gives the dict path; the four keys that decide the format default to UNSET so
# presence is told from null. Anything unusual (a wrong type, a missing field, a bad timestamp)
# makes ``parse_bytes`` hand the line to the dict path, which gives its usual error or value.

_NULL = msgspec.Raw(b"null")
_UNSET = msgspec.UNSET


class _TlsV1(msgspec.Struct):
    version: int | None = None
    cipher_suite: int | None = None
    cert: msgspec.Raw = _NULL


class _ReceivedV1(msgspec.Struct):
    status_line: str | None = None
    headers: dict[str, str | list[str]] | None = None
    body: str | None = None
    tls: _TlsV1 | None = None


class _ReceivedV2(msgspec.Struct):
    status_line: str | None = None
    headers: dict[str, str | list[str]] | None = None
    body: str | None = None
    TlsVersion: int | None = None
    CipherSuite: int | None = None
    Certificate: msgspec.Raw = _NULL


class _EntryV1(msgspec.Struct):
    Sent: str | None = None
    Received: msgspec.Raw = _NULL
    Success: bool | None = None
    Error: str | None = None
    StartTime: str | None = None
    EndTime: str | None = None


class _EntryV2(msgspec.Struct):
    control_url: str | None = None
    matches_template: bool | None = None
    response: msgspec.Raw = _NULL
    error: str | None = None
    start_time: str | None = None
    end_time: str | None = None


class _Location(msgspec.Struct):
    country_name: str | None = None
    country_code: str | None = None


class _Measurement(msgspec.Struct):
    # v1
    Server: str | None | msgspec.UnsetType = _UNSET
    Keyword: str | None = None
    Retries: int | None = None
    Results: list[_EntryV1] | None | msgspec.UnsetType = _UNSET
    Blocked: bool | None = None
    FailSanity: bool | None = None
    StatefulBlock: bool | None = None
    # v2
    vp: str | None | msgspec.UnsetType = _UNSET
    test_url: str | None = None
    service: str | None = None
    location: _Location | None = None
    response: list[_EntryV2] | None | msgspec.UnsetType = _UNSET
    anomaly: bool | None = None
    controls_failed: bool | None = None
    stateful_block: bool | None = None


_DECODE_MEASUREMENT = msgspec.json.Decoder(_Measurement).decode
_DECODE_RECEIVED_V1 = msgspec.json.Decoder(str | _ReceivedV1 | None).decode
_DECODE_RECEIVED_V2 = msgspec.json.Decoder(str | _ReceivedV2 | None).decode


class _Unusual(Exception):
    """Raised inside the typed path: hand the line to the dict path."""


def _raw_flag(raw: msgspec.Raw) -> bool:
    """``bool(_opt_str(...))`` of an undecoded value: a non-empty JSON string."""
    if raw is _NULL:
        return False
    view = memoryview(raw)
    if view[:1] == b'"':
        return len(view) > 2
    if view == b"null":
        return False
    raise _Unusual


def _typed_received(
    value: str | _ReceivedV1 | _ReceivedV2 | None,
) -> tuple[str | None, str, str | None]:
    """``flatten_received`` and ``_body_of`` of a typed ``Received``/``response`` value."""
    if value is None or value == "":
        return None, "", None
    if isinstance(value, str):
        return value, "", value
    status = value.status_line or ""
    body = value.body or ""
    parts = [status]
    if value.headers:
        for name, values in value.headers.items():
            if isinstance(values, str):
                parts.append(f"{name}: {values}")
            else:
                parts.extend([f"{name}: {v}" for v in values])
    parts.append(body)
    return "\n".join(parts), status, body


# received text, status line, TLS version, cipher suite, has a certificate, body
_Received = tuple[str | None, str, int | None, int | None, bool, str | None]
_NOTHING: _Received = (None, "", None, None, False, None)
RECEIVED_MEMO = 4096  # distinct raw responses remembered (retries and vantage points repeat them)
RECEIVED_MEMO_BYTES = 16 * 2**20  # ... of at most this many raw bytes (so memory stays bounded)
_received_memo: dict[bytes, _Received] = {}
_received_memo_bytes = [0]  # raw bytes of the memo's keys


def _memo_received(key: bytes, value: _Received) -> _Received:
    """Remember one decoded response (bounded: the memo starts over when full)."""
    if (
        len(_received_memo) >= RECEIVED_MEMO
        or _received_memo_bytes[0] + len(key) > RECEIVED_MEMO_BYTES
    ):
        _received_memo.clear()
        _received_memo_bytes[0] = 0
    _received_memo_bytes[0] += len(key)
    _received_memo[key] = value
    return value


def _received_v1(raw: msgspec.Raw) -> _Received:
    """Received text, status line, TLS version, cipher suite, has-cert of a v1 ``Received``.

    Equal raw responses give the same objects: a memo hit also spares the later stages
    hashing and comparing a new copy of the text.
    """
    key = b"1" + bytes(raw)
    hit = _received_memo.get(key)
    if hit is not None:
        return hit
    value = _DECODE_RECEIVED_V1(raw)
    received, status, body = _typed_received(value)
    tls = value.tls if isinstance(value, _ReceivedV1) else None
    if tls is None:
        return _memo_received(key, (received, status, None, None, False, body))
    has_cert = _raw_flag(tls.cert)
    return _memo_received(key, (received, status, tls.version, tls.cipher_suite, has_cert, body))


def _received_v2(raw: msgspec.Raw) -> _Received:
    """``_received_v1`` of a v2 ``response`` value."""
    key = b"2" + bytes(raw)
    hit = _received_memo.get(key)
    if hit is not None:
        return hit
    value = _DECODE_RECEIVED_V2(raw)
    received, status, body = _typed_received(value)
    if not isinstance(value, _ReceivedV2):
        return _memo_received(key, (received, status, None, None, False, body))
    has_cert = _raw_flag(value.Certificate)
    fields = (received, status, value.TlsVersion, value.CipherSuite, has_cert, body)
    return _memo_received(key, fields)


def _typed_v1(m: _Measurement, scan: str | None, times: list[str | None]) -> list[Try]:
    """``_parse_v1`` of a typed measurement (raises ``_Unusual`` where it would differ)."""
    ip, keyword, retries, entries = m.Server, m.Keyword, m.Retries, m.Results
    if (
        not scan
        or scan.lower() not in SCANS
        or ip is None
        or ip is _UNSET
        or keyword is None
        or retries is None
        or entries is None
        or entries is _UNSET
        or m.Blocked is None
    ):
        raise _Unusual
    scan_name, anomaly = scan.lower(), m.Blocked
    controls_failed, stateful = bool(m.FailSanity), bool(m.StatefulBlock)
    tries: list[Try] = []
    for index, entry in enumerate(entries):
        sent = entry.Sent or ""
        domain = keyword if not sent else _v1_domain(sent, keyword)
        if domain in V1_CONTROL_DOMAINS or (not sent and index > retries):
            continue
        raw = entry.Received
        if raw is _NULL:
            received, status, tls_version, cipher, has_cert, body = _NOTHING
        else:
            received, status, tls_version, cipher, has_cert, body = _received_v1(raw)
        times.append(entry.StartTime)
        times.append(entry.EndTime)
        tries.append(
            Try(
                ip,
                domain,
                "",
                "",
                scan_name,
                "v1",
                index,
                _NAN,  # start and end: set from ``times`` by ``parse_lines``
                _NAN,
                entry.Success,
                anomaly,
                controls_failed,
                stateful,
                sent,
                received,
                status,
                entry.Error or "",
                tls_version,
                cipher,
                has_cert,
                body,
            )
        )
    return tries


def _typed_v2(m: _Measurement, scan: str | None, times: list[str | None]) -> list[Try]:
    """``_parse_v2`` of a typed measurement (raises ``_Unusual`` where it would differ)."""
    ip, domain, entries = m.vp, m.test_url, m.response
    if scan:
        scan_name = scan.lower()
    elif m.service:
        scan_name = m.service.split(":", 1)[0].lower()
    else:
        raise _Unusual
    if (
        scan_name not in SCANS
        or ip is None
        or ip is _UNSET
        or domain is None
        or entries is None
        or entries is _UNSET
        or m.anomaly is None
    ):
        raise _Unusual
    anomaly = m.anomaly
    controls_failed, stateful = bool(m.controls_failed), bool(m.stateful_block)
    loc = m.location
    location, country_code = (
        ("", "") if loc is None else (loc.country_name or "", loc.country_code or "")
    )
    tries: list[Try] = []
    for index, entry in enumerate(entries):
        if entry.control_url:
            continue
        raw = entry.response
        if raw is _NULL:
            received, status, tls_version, cipher, has_cert, body = _NOTHING
        else:
            received, status, tls_version, cipher, has_cert, body = _received_v2(raw)
        times.append(entry.start_time)
        times.append(entry.end_time)
        tries.append(
            Try(
                ip,
                domain,
                location,
                country_code,
                scan_name,
                "v2",
                index,
                _NAN,
                _NAN,
                entry.matches_template,
                anomaly,
                controls_failed,
                stateful,
                "",
                received,
                status,
                entry.error or "",
                tls_version,
                cipher,
                has_cert,
                body,
            )
        )
    return tries


def _typed_line(data: bytes, scan: str | None, times: list[str | None]) -> list[Try] | None:
    """The tries of one line by the typed path (times left to the caller); None if unusual."""
    if not data.isascii():
        try:  # msgspec does not check the UTF-8 of values it skips or keeps raw
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    mark = len(times)
    try:
        m = _DECODE_MEASUREMENT(data)
        if m.Results is not _UNSET or m.Server is not _UNSET:
            return _typed_v1(m, scan, times)
        if m.response is not _UNSET or m.vp is not _UNSET:
            return _typed_v2(m, scan, times)
    except (_Unusual, msgspec.MsgspecError, ValueError, RecursionError):
        del times[mark:]
        return None
    return None


def parse_lines(datas: Sequence[bytes], scan: str | None) -> list[list[Try] | None]:
    """The tries of raw results lines, decoded straight into typed structs; None if unusual.

    Gives exactly ``parse_measurement(loads_line(data), scan)`` for every line it takes, and
    None for a line the typed path does not settle (invalid JSON or UTF-8, a wrong type, a
    missing field, an unknown shape, a bad timestamp): the caller then takes the dict path,
    which gives its usual rows or error. The timestamps of all lines are parsed together
    (``parse_timestamps``).
    """
    out: list[list[Try] | None] = []
    times: list[str | None] = []  # start and end of every try, in order
    flat: list[Try] = []
    owners: list[int] = []  # the line of each try
    for i, data in enumerate(datas):
        tries = _typed_line(data, scan, times)
        out.append(tries)
        if tries:
            flat.extend(tries)
            owners.extend([i] * len(tries))
    if not flat:
        return out
    values, bad = parse_timestamps(times)
    for t, start, end in zip(flat, values[0::2].tolist(), values[1::2].tolist(), strict=True):
        t.start, t.end = start, end
    for k in np.flatnonzero(bad).tolist():
        out[owners[k // 2]] = None  # the dict path raises this timestamp's error
    return out


def parse_bytes(data: bytes, scan: str | None) -> list[Try] | None:
    """``parse_lines`` of one line."""
    return parse_lines([data], scan)[0]


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
