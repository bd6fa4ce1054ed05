"""`quackae report` without a browser: numbers against the Parquet files, escaping, bad inputs."""

from __future__ import annotations

import html.parser
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import SENTINEL_VARIABLE, ReportWorld, run_cli
from quackae.detect import pipeline
from quackae.report import html as h
from quackae.report import queries, site


def _proposals(world: ReportWorld) -> list[dict]:
    text = (world.detections / "proposed_signatures.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_overview_counts_are_the_parquet_files(report_world):
    t = pq.read_table(report_world.predictions)
    label = t.column("censored").to_numpy()
    cand = t.column("candidate").to_numpy(zero_copy_only=False)
    summary = json.loads((report_world.report / site.SUMMARY).read_text())
    ov = summary["overview"]
    assert ov["rows"] == t.num_rows
    assert ov["blocked"] == int((label == 1).sum()) and ov["uncensored"] == int((label == -1).sum())
    assert (
        ov["candidates"]
        == int(cand.sum())
        > ov["new_candidates"]
        == int((cand & (label == 0)).sum())
        > 0
    )
    assert ov["scans"] == len(set(t.column("source").to_pylist())) == 2
    codes = set(t.column("country_code").to_pylist()) - {""}
    assert ov["countries"] == len(codes)
    assert len(list((report_world.report / "country").glob("*.html"))) == len(codes)
    assert summary["proposals"] == len(_proposals(report_world)) > 0
    assert ov["in_proposals"] == pc.sum(pc.is_valid(t.column("cluster"))).as_py() > 0


def test_queries_group_like_pyarrow(report_world):
    """Country groups from DuckDB equal a plain count over predictions.parquet."""
    t = pq.read_table(report_world.predictions)
    inputs = queries.open_inputs(report_world.dataset, report_world.detections)
    con = queries.connect(inputs)
    groups = {g["key"]: g for g in queries.grouped(con, "country_code")}
    codes = t.column("country_code").to_pylist()
    label = t.column("censored").to_pylist()
    cand = t.column("candidate").to_pylist()
    rows, new, blocked = Counter(codes), Counter(), Counter()
    for c, lab, k in zip(codes, label, cand, strict=True):
        new[c] += bool(k and lab == 0)
        blocked[c] += lab == 1
    assert {k: g["rows"] for k, g in groups.items()} == dict(rows)
    assert {k: g["new_candidates"] for k, g in groups.items()} == {c: new[c] for c in rows}
    assert {k: g["blocked"] for k, g in groups.items()} == {c: blocked[c] for c in rows}
    first = queries.grouped(con, "country_code")[0]
    assert first["new_candidates"] == max(new.values())  # most new candidates first
    con.close()


class Tags(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text of script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)

    def handle_endtag(self, tag):
        self._in = None


def test_every_page_is_escaped_and_locked_down(report_world):
    """Parsed as a browser would: the report's one script and style, CSP first, no data markup."""
    pages = sorted(report_world.report.rglob("*.html"))
    hostile = [p for p in pages if SENTINEL_VARIABLE in p.read_text()]
    assert {p.parent.name for p in hostile} >= {"report", "country", "cluster", "proposal"}
    for page in pages:
        text = page.read_text()
        parser = Tags()
        parser.feed(text)
        names = [t for t, _ in parser.tags]
        assert names[:3] == ["html", "head", "meta"] and parser.tags[3][1] == {
            "http-equiv": "Content-Security-Policy",
            "content": h.CSP,
        }, page
        assert parser.scripts == [h.SCRIPT] and parser.styles == [h.STYLE], page
        assert names.count("script") == 1 and names.count("style") == 1, page
        for tag, attrs in parser.tags:
            assert not any(a.startswith("on") or a == "style" for a in attrs), (page, tag, attrs)
            assert tag not in ("img", "link", "base", "object", "embed", "form", "meta") or (
                tag == "meta" and "refresh" not in str(attrs.get("http-equiv", "")).lower()
            ), (page, tag)
            if tag == "a":
                assert re.fullmatch(r"[A-Za-z0-9_./#-]+", attrs["href"] or ""), (page, attrs)
            if tag == "iframe":
                assert attrs.get("sandbox") == "" and "src" not in attrs, (page, attrs)
    # the hostile text is there, as text: escaped in the page, whole in the iframe's srcdoc
    proposal = next(p for p in hostile if p.parent.name == "proposal")
    assert f"&lt;script&gt;window.top.{SENTINEL_VARIABLE}" in proposal.read_text()
    frames = [a for t, a in Tags.parse(proposal) if t == "iframe"]
    assert any(f'onerror="window.top.{SENTINEL_VARIABLE}' in (a["srcdoc"] or "") for a in frames)


def _tags(path: Path) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(path.read_text())
    return parser.tags


Tags.parse = staticmethod(_tags)


def test_proposal_pages_offer_the_signature_and_its_rows(report_world):
    t = pq.read_table(report_world.predictions, columns=["cluster"])
    counts = Counter(c for c in t.column("cluster").to_pylist() if c)
    for p in _proposals(report_world):
        page = report_world.report / site.proposal_page(p["fingerprint"])
        text = page.read_text()
        line = json.dumps({"fingerprint": p["fingerprint"], "pattern": p["pattern"]})
        assert f'<pre id="signature">{h.esc(line)}</pre>' in text
        assert f'<div class="v">{counts[p["fingerprint"]]:,}</div><div class="k">rows</div>' in text


def test_split_received_cuts_status_headers_and_body():
    r = h.split_received("[DOMAIN]\nHTTP/1.1 403 Forbidden\nServer: x\nX-A: b c\n<html>\nhi")
    assert (r.sent, r.status, r.headers) == (
        "[DOMAIN]",
        "HTTP/1.1 403 Forbidden",
        [("Server", "x"), ("X-A", "b c")],
    )
    assert r.body == "<html>\nhi"
    assert h.split_received("read: connection reset").body == "read: connection reset"


def test_links_refuse_anything_but_report_pages():
    assert h.href("../country/IR.html") == "../country/IR.html"
    for bad in ("javascript:alert(1)", "http://x/y.html", "//x/a.html", 'a.html"><script>'):
        with pytest.raises(ValueError):
            h.href(bad)


def test_clusters_of_an_older_predictions_file_are_matched(report_world, tmp_path):
    """Without the cluster column, the proposals' patterns give (almost) the same rows."""
    old = tmp_path / "old"
    old.mkdir()
    for name in (pipeline.SUMMARY_FILE, "proposed_signatures.json"):
        shutil.copy(report_world.detections / name, old / name)
    t = pq.read_table(report_world.predictions)
    pq.write_table(t.drop_columns(["cluster"]), old / pipeline.PREDICTIONS_FILE)
    inputs = queries.open_inputs(report_world.dataset, old)
    assert not inputs.has_cluster
    con = queries.connect(inputs)
    got = dict(con.execute("SELECT row_id, cluster FROM r WHERE cluster IS NOT NULL").fetchall())
    con.close()
    want = {
        i: c
        for i, c in zip(
            t.column("row_id").to_pylist(), t.column("cluster").to_pylist(), strict=True
        )
        if c
    }
    assert all(want.get(i) == c for i, c in got.items())  # never another proposal's row
    assert len(got) >= 0.9 * len(want)  # each pattern covers >= 90% of its cluster


def test_constants_match_the_detect_stage():
    assert (queries.PREDICTIONS_FILE, queries.SUMMARY_FILE) == (
        pipeline.PREDICTIONS_FILE,
        pipeline.SUMMARY_FILE,
    )


def test_bad_inputs_are_one_line(report_world, small_dataset, tmp_path):
    cases = [
        (["--detections", tmp_path], "has no predictions.parquet"),
        (
            ["--detections", report_world.detections, "--data_dir", small_dataset],
            "not in the dataset",
        ),
    ]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    cases.append((["--storage_path", busy], "was not made by `quackae report`"))
    for override, message in cases:
        args = {
            "--data_dir": report_world.dataset,
            "--detections": report_world.detections,
            "--storage_path": tmp_path / "out",
        }
        args.update(dict(zip(override[::2], override[1::2], strict=True)))
        done = run_cli("report", *[x for kv in args.items() for x in kv])
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (busy / "notes.txt").read_text() == "mine"
    again = tmp_path / "again"  # a folder holding an earlier report is replaced
    limits = site.Limits(rows=3, cluster_pages=2)
    site.build_report(report_world.dataset, report_world.detections, again, limits)
    assert len(list((again / "cluster").glob("*.html"))) == 2
    site.build_report(
        report_world.dataset, report_world.detections, again, site.Limits(cluster_pages=1)
    )
    assert len(list((again / "cluster").glob("*.html"))) == 1
