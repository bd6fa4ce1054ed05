"""The report in a real browser (Debian's Chromium, headless): click-through and hostile pages.

Skipped, with the reason in pytest's summary and one closing line of the run, where no
Chromium is installed (`apt-get install -y chromium chromium-driver`; CI's `.ci/run` does it).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from conftest import SENTINEL_VARIABLE, ReportWorld, hostile_body
from quackae.report import site
from quackae.report.browser import (
    chromium,
    chromium_missing,
    file_url,
    requests,
    screenshot,
    settle,
)

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        settle(driver)
        yield driver


def _open(driver: Any, url: str) -> None:
    driver.get(url)
    _wait_loaded(driver)


def _wait_loaded(driver: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def _click(driver: Any, element: Any) -> None:
    """Click a link and wait until the page it opens has loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    before = driver.current_url
    element.click()
    WebDriverWait(driver, 30).until(lambda d: d.current_url != before)
    _wait_loaded(driver)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _cards(driver: Any) -> dict[str, str]:
    cards = driver.find_elements("css selector", ".card")
    return {
        c.find_element("css selector", ".k").text: c.find_element("css selector", ".v").text
        for c in cards
    }


def _visible_rows(driver: Any, table_id: str) -> list[Any]:
    rows = driver.find_elements("css selector", f"#{table_id} tbody tr")
    return [r for r in rows if r.is_displayed()]


class Truth:
    """Counts straight from predictions.parquet (pyarrow), to check what the pages show."""

    def __init__(self, world: ReportWorld) -> None:
        t = pq.read_table(world.predictions)
        self.rows = t.to_pylist()

    def count(self, **match: Any) -> dict[str, int]:
        rows = [r for r in self.rows if all(r[k] == v for k, v in match.items())]
        return {
            "rows": len(rows),
            "candidates": sum(r["candidate"] for r in rows),
            "new candidates": sum(r["candidate"] and r["censored"] == 0 for r in rows),
            "labelled blocks": sum(r["censored"] == 1 for r in rows),
        }


def _check_cards(driver: Any, want: dict[str, int]) -> None:
    shown = _cards(driver)
    assert {k: _number(shown[k]) for k in want} == want


def test_click_through_a_country_a_cluster_and_a_proposal(report_world, browser, tmp_path):
    truth, d = Truth(report_world), browser
    shots = []
    _open(d, file_url(report_world.report / "index.html"))
    assert _number(_cards(d)["rows (tries)"]) == len(truth.rows)
    shots.append(screenshot(d, tmp_path / "overview.png"))
    # the countries table: the first row is the country with the most new candidates
    first = _visible_rows(d, "countries-table")[0]
    cells = first.find_elements("tag name", "td")
    link = cells[0].find_element("tag name", "a")
    target = "/".join(Path(link.get_attribute("href")).parts[-2:])
    code = next(
        c for c in {r["country_code"] for r in truth.rows} if site.country_page(c) == target
    )
    want = truth.count(country_code=code)
    assert [_number(c.text) for c in cells[1:5]] == list(want.values())
    most = max(
        Counter(
            r["country_code"] for r in truth.rows if r["candidate"] and r["censored"] == 0
        ).values()
    )
    assert want["new candidates"] == most
    _click(d, link)
    assert d.current_url.endswith("/" + target)
    _check_cards(d, want)
    shots.append(screenshot(d, tmp_path / "country.png"))
    # a page cluster of that country
    cluster_link = d.find_element("css selector", "#country-clusters tbody a")
    template = cluster_link.text
    _click(d, cluster_link)
    assert "/cluster/" in d.current_url
    assert d.find_element("css selector", "p.lead code").text == template
    _check_cards(d, truth.count(template=template))
    shots.append(screenshot(d, tmp_path / "cluster.png"))
    # a proposal, from the index's proposals table
    _open(d, file_url(report_world.report / "index.html"))
    proposal = d.find_element("css selector", "#proposals-table tbody a")
    fingerprint = proposal.text
    _click(d, proposal)
    lines = (report_world.detections / "proposed_signatures.json").read_text().splitlines()
    line = next(json.loads(x) for x in lines if json.loads(x)["fingerprint"] == fingerprint)
    assert json.loads(d.find_element("id", "signature").text) == line
    covered = sum(r["cluster"] == fingerprint for r in truth.rows)
    assert _number(_cards(d)["rows"]) == covered > 0
    assert len(_visible_rows(d, "proposal-rows")) == min(covered, 25)  # the first page of rows
    shots.append(screenshot(d, tmp_path / "proposal.png"))
    for shot in shots:
        assert shot.read_bytes()[:8] == PNG and shot.stat().st_size > 20_000


def test_tables_sort_filter_and_page(report_world, browser):
    d, truth = browser, Truth(report_world)
    _open(d, file_url(report_world.report / "index.html"))
    # sort the countries by rows (numbers sort as numbers, most first on the first click)
    header = d.find_elements("css selector", "#countries-table th")[1]
    assert header.text.startswith("rows")
    header.click()
    top = _visible_rows(d, "countries-table")[0].find_elements("tag name", "td")[1]
    assert _number(top.text) == max(Counter(r["country_code"] for r in truth.rows).values())
    # page through the domains: 25 a page
    domains = len({r["domain"] for r in truth.rows})
    info = d.find_element("css selector", "#domains-table .info")
    assert info.text == f"1\u201325 of {domains} rows shown"
    d.find_element("css selector", "#domains-table button.next").click()
    assert info.text == f"26\u201350 of {domains} rows shown"
    # filter: every shown row holds the text, and as many as the Parquet file has
    box = d.find_element("css selector", "#domains-table input.filter")
    box.send_keys(".org")
    shown = _visible_rows(d, "domains-table")
    want = sorted({r["domain"] for r in truth.rows if ".org" in r["domain"].lower()})
    assert info.text.startswith(f"1\u2013{min(len(want), 25)} of {len(want)} matching")
    assert all(".org" in r.text for r in shown) and len(shown) == min(len(want), 25)


def test_hostile_pages_cannot_act(report_world, browser, sentinel, tmp_path):
    """Every page showing the hostile data: no script ran, nothing was fetched from anywhere."""
    d = browser
    pages = sorted(
        p for p in report_world.report.rglob("*.html") if SENTINEL_VARIABLE in p.read_text()
    )
    assert {p.parent.name for p in pages} >= {"report", "country", "cluster", "proposal"}
    requests(d)  # drop what came before
    frames_seen = 0
    for page in pages:
        _open(d, file_url(page))
        time.sleep(0.3)  # room for a refresh, an image or a late script to act
        assert d.execute_script(f"return window.{SENTINEL_VARIABLE}") is None, page
        assert "PWNED" not in d.title
        for i, _ in enumerate(d.find_elements("tag name", "iframe")):
            d.switch_to.frame(i)
            try:
                assert d.execute_script(f"return window.{SENTINEL_VARIABLE}") is None, page
                # rendered (its title is there), but its script that renames it never ran
                assert d.execute_script("return document.title") == "Access denied"
                frames_seen += 1
            finally:
                d.switch_to.default_content()
        if page.parent.name == "proposal" and "access_denied" in page.name:
            body = d.find_element("id", "example-body").text
            assert f"<script>window.top.{SENTINEL_VARIABLE}" in body  # shown, as text
    assert frames_seen >= 2
    assert d.execute_script(f"return window.{SENTINEL_VARIABLE}") is None
    fetched = [u for u in requests(d) if not u.startswith("file://")]
    assert fetched == []  # the network log: only the report's own files were opened
    assert sentinel.hits == []  # and the server the payloads point at saw nothing
    # the control: the same page opened bare (less its refresh, which would leave it at once)
    # does run its scripts and fetch from the sentinel, so the checks above would have seen it
    control = tmp_path / "control.html"
    control.write_text(re.sub(r'<meta http-equiv="refresh"[^>]*>', "", hostile_body(sentinel.base)))
    _open(d, file_url(control))
    time.sleep(0.5)
    assert d.execute_script(f"return window.{SENTINEL_VARIABLE}") is not None
    assert any(u.startswith(sentinel.base) for u in requests(d)) and sentinel.hits
    sentinel.hits.clear()
