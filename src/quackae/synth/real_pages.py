"""Real blockpages and real benign anomalous pages from public sources, as Hyperquack records them.

Every page of ``data/real_pages.jsonl`` was served by a real censor, filter product or benign
middlebox and published by someone else (Censored Planet's test data and Satellite fingerprint
output, OONI's fingerprint list, other projects' fixtures and issue threads); none is written by
this project. Each record keeps where it came from (``Provenance``). Where only a distinctive
fragment of a page is published, the record says so (``fragment``) and holds that fragment alone.
``docs/real_pages.md`` lists the sources, the counts and the limits.

``load_real_pages`` reads and validates the corpus (a bad record is a ``CorpusError`` naming the
file, line and record). ``render_response`` gives a page the shape a Hyperquack measurement holds
(the v2 response object for HTTP/HTTPS, the raw text for echo/discard), ``render_measurement``
wraps it into a whole v2 measurement with passing control tries, and ``received_text`` and
``signature_labels`` show what Censored Planet's signature matcher makes of each page.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pycountry

from quackae.ingest.hyperquack import flatten_received
from quackae.ingest.signatures import Matcher

__all__ = [
    "CORPUS_RESOURCE",
    "KINDS",
    "SCOPES",
    "CorpusError",
    "Provenance",
    "RealPage",
    "canonical_header",
    "corpus_counts",
    "coverage",
    "load_real_pages",
    "parse_real_page",
    "received_text",
    "render_measurement",
    "render_response",
    "signature_labels",
]

#: The corpus file, package data of ``quackae.synth``.
CORPUS_RESOURCE = "data/real_pages.jsonl"
#: ``censor``: a page that blocks the tested domain; ``benign``: an anomaly that is not censorship.
KINDS = ("censor", "benign")
#: Who serves the page. Censors: Citizen Lab's scopes (national, ISP, institution, product) plus
#: hosting providers enforcing a state rule; benign pages: the network that serves them.
SCOPES: Mapping[str, frozenset[str]] = {
    "censor": frozenset({"national", "isp", "institution", "product", "hosting"}),
    "benign": frozenset({"cdn", "hosting", "server", "isp"}),
}
#: Censor scopes whose pages belong to one country (a product's page can be seen anywhere).
_COUNTRY_SCOPES = frozenset({"national", "isp", "institution", "hosting"})
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_STATUS_RE = re.compile(r"^[1-5]\d\d(?: [^\r\n]*)?$")
_DATE_RE = re.compile(r"^\d{4}-\d\d-\d\d$")
_COMMIT_RE = re.compile(r"^(?:[0-9a-f]{40})?$")
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)
_FIELDS = (
    "id",
    "kind",
    "name",
    "scope",
    "country",
    "status",
    "headers",
    "body",
    "fragment",
    "captured_domain",
    "observed",
    "provenance",
)
_SCANS = frozenset({"echo", "discard", "http", "https"})


class CorpusError(ValueError):
    """A corpus record is malformed (the message names the file, line and record)."""


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a page was published: a repository file (``path`` at ``commit``) or an address."""

    source: str
    path: str
    commit: str
    licence: str
    retrieved: str
    url: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class RealPage:
    """One real page: who served it, the response as published, and where it was published.

    ``status`` is the status line without the HTTP version ("" when the source gives the body
    only); ``headers`` are (name, value) pairs in the source's order; ``captured_domain`` is the
    tested domain the page was captured for ("" unknown), which ``render_response`` can swap for
    another; ``observed`` is the capture date when the source gives it (YYYY-MM-DD, else "").
    """

    id: str
    kind: str
    name: str
    scope: str
    country: str
    status: str
    headers: tuple[tuple[str, str], ...]
    body: str
    fragment: bool
    captured_domain: str
    observed: str
    provenance: Provenance

    @property
    def censored(self) -> bool:
        """True for a censor's page (the ground truth a detector is scored on)."""
        return self.kind == "censor"


# --------------------------------------------------------------------------- loading


def _require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``obj[key]`` when it has the expected type; otherwise a ``ValueError`` naming the field."""
    if key not in obj:
        raise ValueError(f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _check_country(code: str) -> None:
    """An ISO 3166-1 alpha-2 code in capitals, or ""."""
    if code and (code != code.upper() or pycountry.countries.get(alpha_2=code) is None):
        raise ValueError(f"country {code!r} is not an ISO 3166-1 alpha-2 code")


def _parse_headers(value: Any) -> tuple[tuple[str, str], ...]:
    """``[[name, value], ...]`` -> pairs; names are HTTP tokens, values one line each."""
    if not isinstance(value, list):
        raise ValueError("field 'headers' must be a list of [name, value] pairs")
    pairs: list[tuple[str, str]] = []
    for item in value:
        if not (
            isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
        ):
            raise ValueError(f"header {item!r} is not a [name, value] pair of strings")
        name, text = item
        if not _TOKEN_RE.match(name):
            raise ValueError(f"header name {name!r} is not an HTTP token")
        if "\r" in text or "\n" in text:
            raise ValueError(f"header {name!r} has a line break in its value")
        pairs.append((name, text))
    return tuple(pairs)


def _parse_provenance(value: Any) -> Provenance:
    """The provenance object: a source, a path or address, a licence and a retrieval date."""
    if not isinstance(value, dict):
        raise ValueError("field 'provenance' must be an object")
    prov = Provenance(
        source=_require(value, "source", str),
        path=_require(value, "path", str),
        commit=_require(value, "commit", str),
        licence=_require(value, "licence", str),
        retrieved=_require(value, "retrieved", str),
        url=value.get("url", ""),
        note=value.get("note", ""),
    )
    if not prov.source or not (prov.path or prov.url):
        raise ValueError("provenance needs a source and a path or url")
    if not prov.licence:
        raise ValueError("provenance needs a licence (say 'none stated' when there is none)")
    if not _COMMIT_RE.match(prov.commit):
        raise ValueError(f"provenance commit {prov.commit!r} is not 40 hex digits")
    if not _DATE_RE.match(prov.retrieved):
        raise ValueError(f"provenance retrieved {prov.retrieved!r} is not YYYY-MM-DD")
    if not isinstance(prov.url, str) or not isinstance(prov.note, str):
        raise ValueError("provenance url and note must be strings")
    return prov


def _check_record(page: RealPage) -> None:
    """Cross-field rules: kind, scope, country, status, dates, and something to render."""
    if not _ID_RE.match(page.id):
        raise ValueError("id must be lowercase letters, digits and hyphens")
    if page.kind not in KINDS:
        raise ValueError(f"kind {page.kind!r} is not one of {', '.join(KINDS)}")
    if not page.name.strip():
        raise ValueError("name is empty")
    if page.scope not in SCOPES[page.kind]:
        allowed = ", ".join(sorted(SCOPES[page.kind]))
        raise ValueError(f"scope {page.scope!r} is not one of {allowed} for a {page.kind} page")
    _check_country(page.country)
    if page.kind == "censor" and page.scope in _COUNTRY_SCOPES and not page.country:
        raise ValueError(f"a {page.scope} censor needs its country")
    if page.status and not _STATUS_RE.match(page.status):
        raise ValueError(f"status {page.status!r} is not '<code> <reason>'")
    if page.observed and not _DATE_RE.match(page.observed):
        raise ValueError(f"observed {page.observed!r} is not YYYY-MM-DD")
    if not page.body and not page.headers:
        raise ValueError("the record has neither headers nor a body")


def parse_real_page(obj: Any, where: str = "<record>") -> RealPage:
    """One decoded JSON record -> a validated ``RealPage``.

    Raises
    ------
    CorpusError
        The record is not an object, lacks a field, or breaks a rule; the message starts with
        ``where`` and the record's id.
    """
    rid = obj.get("id") if isinstance(obj, dict) else None
    label = f"{where}: record {rid!r}" if isinstance(rid, str) else f"{where}: record"
    try:
        if not isinstance(obj, dict):
            raise ValueError("is not a JSON object")
        unknown = sorted(set(obj) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}")
        page = RealPage(
            id=_require(obj, "id", str),
            kind=_require(obj, "kind", str),
            name=_require(obj, "name", str),
            scope=_require(obj, "scope", str),
            country=_require(obj, "country", str),
            status=_require(obj, "status", str),
            headers=_parse_headers(_require(obj, "headers", list)),
            body=_require(obj, "body", str),
            fragment=_require(obj, "fragment", bool),
            captured_domain=_require(obj, "captured_domain", str),
            observed=_require(obj, "observed", str),
            provenance=_parse_provenance(_require(obj, "provenance", dict)),
        )
        _check_record(page)
    except ValueError as exc:
        raise CorpusError(f"{label}: {exc}") from None
    return page


def _corpus_lines(path: str | Path | None) -> tuple[str, list[str]]:
    """(name for messages, lines) of the given file or of the packaged corpus."""
    if path is not None:
        p = Path(path)
        try:
            return str(p), p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusError(f"{p}: cannot read the real-page corpus ({exc})") from None
    resource = resources.files("quackae.synth").joinpath(CORPUS_RESOURCE)
    try:
        text = resource.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise CorpusError(
            f"quackae/synth/{CORPUS_RESOURCE} is missing; reinstall quackae (it is package data)"
        ) from None
    return f"quackae/synth/{CORPUS_RESOURCE}", text.splitlines()


def load_real_pages(path: str | Path | None = None) -> list[RealPage]:
    """Every record of the corpus (``path``, or the packaged one), validated, in file order.

    Raises
    ------
    CorpusError
        A line is not JSON, a record breaks a rule, or two records share an id.
    """
    name, lines = _corpus_lines(path)
    pages: list[RealPage] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{line_no}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise CorpusError(f"{where}: invalid JSON ({exc})") from None
        page = parse_real_page(obj, where)
        if page.id in seen:
            raise CorpusError(
                f"{where}: record {page.id!r}: id already used on line {seen[page.id]}"
            )
        seen[page.id] = line_no
        pages.append(page)
    return pages


def corpus_counts(pages: Sequence[RealPage]) -> dict[str, int]:
    """Records, distinct censors and benign kinds (all and full pages only), fragments."""
    censors = [p for p in pages if p.kind == "censor"]
    benign = [p for p in pages if p.kind == "benign"]
    return {
        "records": len(pages),
        "censor_pages": len(censors),
        "censors": len({p.name for p in censors}),
        "censors_full_page": len({p.name for p in censors if not p.fragment}),
        "censor_countries": len({p.country for p in censors if p.country}),
        "benign_pages": len(benign),
        "benign_kinds": len({p.name for p in benign}),
        "benign_kinds_full_page": len({p.name for p in benign if not p.fragment}),
        "fragments": sum(p.fragment for p in pages),
    }


# --------------------------------------------------------------------------- rendering


def canonical_header(name: str) -> str:
    """Go's canonical MIME header key (``content-type`` -> ``Content-Type``), as Hyperquack
    writes header names in the object form of a response."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _swap_domain(text: str, old: str, new: str | None) -> str:
    """``text`` with the captured domain replaced by ``new`` (unchanged when either is empty)."""
    return text.replace(old, new) if old and new else text


def _prepared(
    page: RealPage, domain: str | None, status: str | None
) -> tuple[str, list[tuple[str, str]], str]:
    """Status line, headers and body to render: domain swapped, Content-Length recomputed."""
    status_line = status if status is not None else page.status
    if not status_line:
        raise CorpusError(
            f"record {page.id!r} has no status line in its source; pass status= to render it"
        )
    if not _STATUS_RE.match(status_line):
        raise CorpusError(f"status {status_line!r} is not '<code> <reason>'")
    body = _swap_domain(page.body, page.captured_domain, domain)
    headers: list[tuple[str, str]] = []
    for name, value in page.headers:
        if name.lower() == "content-length":
            value = str(len(body.encode("utf-8")))  # consistent with what is rendered
        headers.append((name, _swap_domain(value, page.captured_domain, domain)))
    return status_line, headers, body


def render_response(
    page: RealPage, scan: str = "http", domain: str | None = None, status: str | None = None
) -> dict[str, Any] | str:
    """The page as a Hyperquack v2 try's ``response`` holds it.

    Parameters
    ----------
    page
        The corpus record.
    scan
        ``http``/``https``: the object ``{"status_line", "headers": {name: [values]}, "body"}``
        (header names in Go's canonical form, sorted, as Hyperquack's JSON has them; no TLS
        fields); ``echo``/``discard``: the raw HTTP/1.1 text a middlebox injects.
    domain
        The tested domain to serve the page for: replaces ``captured_domain`` in the body and
        header values, the way a censor's page names whatever domain it blocks. None keeps it.
    status
        A status line for pages whose source gives none (required then), or to override.

    Content-Length, when the page has one, is recomputed to the rendered body's UTF-8 length.
    """
    if scan not in _SCANS:
        raise ValueError(f"scan must be one of {', '.join(sorted(_SCANS))}, not {scan!r}")
    status_line, headers, body = _prepared(page, domain, status)
    if scan in ("echo", "discard"):
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        return f"HTTP/1.1 {status_line}\r\n{head}\r\n{body}"
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(canonical_header(name), []).append(value)
    return {
        "status_line": status_line,
        "headers": {name: grouped[name] for name in sorted(grouped)},
        "body": body,
    }


def rfc3339(moment: datetime) -> str:
    """``2021-06-01T00:00:00.000000000+00:00``: Hyperquack's timestamp shape (nanoseconds)."""
    offset = moment.strftime("%z") or "+0000"
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{moment.microsecond:06d}000{offset[:3]}:{offset[3:]}"


def control_url_for(seed: str) -> str:
    """A v2 control domain (``control-<16 hex>.com``), derived from ``seed`` (deterministic)."""
    return f"control-{hashlib.sha256(seed.encode()).hexdigest()[:16]}.com"


def render_measurement(
    page: RealPage,
    domain: str,
    vp: str,
    country_code: str,
    country_name: str = "",
    scan: str = "http",
    tries: int = 1,
    start: datetime | None = None,
    status: str | None = None,
    tag: str = "",
) -> dict[str, Any]:
    """A whole Hyperquack v2 measurement in which vantage point ``vp`` gets ``page`` for ``domain``.

    A passing control try comes first and last (the path to the vantage point works), and each
    of the ``tries`` tries in between received the page and did not match the template, so the
    measurement is an anomaly whose controls passed: what a censor on the path looks like.
    Deterministic: times advance one second per try from ``start`` (default 2021-06-01 UTC).
    """
    if tries < 1:
        raise ValueError("tries must be at least 1")
    first = start or datetime(2021, 6, 1, tzinfo=timezone.utc)
    moment = first
    response = render_response(page, scan=scan, domain=domain, status=status)
    entries: list[dict[str, Any]] = []

    def stamp(entry: dict[str, Any]) -> dict[str, Any]:
        nonlocal moment
        entry["start_time"] = rfc3339(moment)
        moment += timedelta(milliseconds=250)
        entry["end_time"] = rfc3339(moment)
        moment += timedelta(milliseconds=750)
        return entry

    entries.append(stamp({"matches_template": True, "control_url": control_url_for(vp + domain)}))
    for _ in range(tries):
        entries.append(stamp({"matches_template": False, "response": response}))
    entries.append(stamp({"matches_template": True, "control_url": control_url_for(domain + vp)}))
    location = {"country_name": country_name, "country_code": country_code}
    return {
        "vp": vp,
        "location": location,
        "service": scan,
        "test_url": domain,
        "response": entries,
        "anomaly": True,
        "controls_failed": False,
        "stateful_block": False,
        "tag": tag or first.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# --------------------------------------------------------------------------- signatures


def received_text(page: RealPage) -> str:
    """The text Censored Planet's matcher sees for the page: what ingest flattens a received
    object to (status line, one ``Name: value`` line per header, body), as recorded."""
    grouped: dict[str, list[str]] = {}
    for name, value in page.headers:
        grouped.setdefault(name, []).append(value)
    text, _ = flatten_received({"status_line": page.status, "headers": grouped, "body": page.body})
    return text or ""


def signature_labels(
    pages: Iterable[RealPage], matcher: Matcher
) -> list[tuple[RealPage, int, str]]:
    """``(page, label, fingerprint)`` per page: 1 blockpage hit, -1 false-positive hit, 0 none."""
    out = []
    for page in pages:
        value, fingerprint = matcher.match(received_text(page))
        out.append((page, value, fingerprint))
    return out


def coverage(labels: Sequence[tuple[RealPage, int, str]]) -> Counter[tuple[str, int]]:
    """Counts of ``(kind, label)``: how the signatures judge censor and benign pages."""
    return Counter((page.kind, value) for page, value, _ in labels)
