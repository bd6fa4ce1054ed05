"""What a row received, in a few words: the status line and title of its page, decoded from tokens.

Shared by the detector (page templates) and the reports (grouping candidates by page).
"""

from __future__ import annotations

import re

import numpy as np

from quackae.dataset.reader import DatasetTokens

SIGNATURE_CHARS = 90
TITLE = re.compile(r"<title[^>]*>([^<]*)", re.IGNORECASE)  # also a title cut by truncation
STATUS_LINE = re.compile(r"^(?:HTTP/\S+\s+)?[1-5]\d\d\b.*")  # "HTTP/1.1 403 Forbidden", "403 ..."


def page_signature(text: str) -> str:
    """Status line plus page title, else the first line: what a try received, in a few words."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "(nothing received)"
    status = next((ln for ln in lines if STATUS_LINE.match(ln)), "")
    title = TITLE.search(text)
    parts = [status] if status else []
    if title and title.group(1).strip():
        parts.append(f"title: {' '.join(title.group(1).split())}")
    sig = " | ".join(parts) if parts else lines[0]
    return sig[:SIGNATURE_CHARS]


def page_signatures(tokens: DatasetTokens, row_ids: np.ndarray, chunk: int = 4096) -> list[str]:
    """A short signature of the page or error each row received (see ``page_signature``)."""
    out: list[str] = []
    for lo in range(0, len(row_ids), chunk):
        out.extend(page_signature(t) for t in tokens.texts(row_ids[lo : lo + chunk]))
    return out
