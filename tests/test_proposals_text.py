"""What detect says to people: proposal names, excerpts and reasons, on real page text."""

from __future__ import annotations

from quackae.detect.detector import counted
from quackae.detect.proposals import excerpt, name_words, proposal_name

TURKISH = (
    "HTTP/1.1 200 OK\nServer: nginx\nContent-Type: text/html; charset=utf-8\n"
    "<html><head><title>Erişim Engellendi</title></head>\n"
    "<body><p>Bu siteye erişim [DATE] tarihli karar ile engellenmiştir.</p></body></html>"
)


def test_name_from_the_distinctive_line_and_country() -> None:
    assert name_words("<title>Erişim Engellendi</title>") == ["erisim", "engellendi"]
    assert proposal_name("<title>Erişim Engellendi</title>", "TR", "200 OK") == (
        "proposed_tr_erisim_engellendi"
    )
    # placeholders, markup and digits name nothing; at most four words
    assert name_words("<p>[DOMAIN] has been blocked by order 5651 of the court</p>") == [
        "has",
        "been",
        "blocked",
        "by",
    ]
    # a line without a Latin spelling falls back to the template's words, then to "page"
    assert proposal_name("<title>دسترسی غیرمجاز</title>", "IR", "403 Forbidden") == (
        "proposed_ir_forbidden"
    )
    assert proposal_name("<title>دسترسی</title>", "", "") == "proposed_xx_page"


def test_excerpt_shows_the_body_line_not_the_headers() -> None:
    shown = excerpt(TURKISH, "<p>Bu siteye erişim [DATE] tarihli karar ile engellenmiştir.</p>")
    assert shown.startswith("<body><p>Bu siteye erişim") and "Server:" not in shown
    assert excerpt("a\nb", "") == "a\\nb"  # no line: the page's head, newlines escaped


def test_counts_read_as_english() -> None:
    assert counted(1, "country", "countries") == "1 country"
    assert counted(2.0000001, "country", "countries") == "2 countries"
    assert counted(1, "vantage point") == "1 vantage point"
    assert counted(0, "domain") == "0 domains"
