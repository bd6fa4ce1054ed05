"""HTTP responses as the wire shows them, and the generic parts every page kind shares.

Headers no censor's identity depends on (Date, Connection, Content-Length, Cache-Control, the
charset spelling of Content-Type and of the page's <meta>) are drawn from one distribution for
blockpages and benign pages alike (see ``generic_headers``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

#: The scanner's own addresses (Censored Planet's measurement machines) as pages quote them.
LOCAL_IPS = ("141.212.123.210", "141.212.123.211")


@dataclass(frozen=True)
class Resp:
    """An HTTP response as the wire shows it (status line without the version)."""

    status: str
    headers: tuple[tuple[str, str], ...]
    body: str
    cert_owner: str = ""  # https: who presented the certificate


def hex_id(rng: random.Random, n: int) -> str:
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
HTML_TYPES = ("text/html", "text/html; charset=utf-8", "text/html; charset=UTF-8")
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
HEAD_RE = re.compile(r"<head>\n?", re.IGNORECASE)
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


def shared_head(body: str, rng: random.Random) -> str:
    """The body with its <meta> charset declaration redrawn from the shared distribution."""
    if not HEAD_RE.search(body):
        return body
    body = _META_CHARSET_RE.sub("", body)
    meta = rng.choice(_META_CHARSETS)
    return (
        HEAD_RE.sub(lambda m: m.group(0) + (meta + "\n" if meta else ""), body, count=1)
        if meta
        else body
    )


def generic_headers(
    rng: random.Random, body: str, content_type: str | None, own: tuple[tuple[str, str], ...] = ()
) -> tuple[tuple[str, str], ...]:
    """Every response's headers: the shared generic draw plus ``own`` ones, in the one order.

    ``content_type`` None means an HTML page (its charset spelling is drawn); an ``own`` header
    of a generic name (a vendor's Cache-Control or Content-Type) replaces the drawn one.
    """
    generic: dict[str, str] = {}
    if rng.random() < 0.5:
        generic["Date"] = _http_date(rng)
    generic["Content-Type"] = content_type or rng.choice(HTML_TYPES)
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


def html_headers(
    rng: random.Random, body: str, *own: tuple[str, str]
) -> tuple[tuple[str, str], ...]:
    """Headers of an HTML response: the shared generic ones plus its own."""
    return generic_headers(rng, body, None, own)


def raw_http(resp: Resp) -> str:
    """The response as raw HTTP/1.1 text (what an echo/discard server path returns)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in resp.headers)
    return f"HTTP/1.1 {resp.status}\r\n{head}\r\n{resp.body}"
