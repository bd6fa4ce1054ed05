"""Country of a vantage point for v1 data, which does not carry one.

Offline only: by default the IP-to-country table shipped inside the ``iptocc`` package
(regional-registry delegation data, no download, no key); ``--mmdb PATH`` uses a MaxMind
database file instead. Country names come from ISO 3166 via ``pycountry``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import iptocc
import pycountry


@lru_cache(maxsize=512)
def country_name(code: str) -> str:
    """English short name of an ISO 3166 alpha-2 code ("" when unknown)."""
    country = pycountry.countries.get(alpha_2=code) if code else None
    return country.name if country else ""


class CountryLookup:
    """Map an IPv4/IPv6 address to ``(country_code, country name)``; ``("", "")`` if unknown."""

    def __init__(self, mmdb: Path | None = None) -> None:
        self._reader = None
        if mmdb is not None:
            import maxminddb

            self._reader = maxminddb.open_database(str(mmdb))

    @lru_cache(maxsize=65536)  # noqa: B019 - one lookup object per worker, bounded cache
    def lookup(self, ip: str) -> tuple[str, str]:
        """Country code and name of ``ip``."""
        code = self._mmdb_code(ip) if self._reader is not None else _iptocc_code(ip)
        return code, country_name(code)

    def _mmdb_code(self, ip: str) -> str:
        try:
            record = self._reader.get(ip)
        except ValueError:
            return ""
        if not isinstance(record, dict):
            return ""
        country = record.get("country") or record.get("registered_country") or {}
        return str(country.get("iso_code", "") or "")


def _iptocc_code(ip: str) -> str:
    try:
        return iptocc.country_code(ip) or ""
    except (ValueError, TypeError):
        return ""
