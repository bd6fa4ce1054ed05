"""Tests of the synthetic Hyperquack archive generator and the default signature set."""

from __future__ import annotations

import collections
import importlib
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from quackae import synth
from quackae.cli import build_parser
from quackae.cli.synth import run_synth

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?([+-]\d\d:\d\d|Z)$")
V1_KEYS = ["Server", "Keyword", "Retries", "Results", "Blocked", "FailSanity", "StatefulBlock"]
V2_KEYS = [
    "vp",
    "location",
    "service",
    "test_url",
    "response",
    "anomaly",
    "controls_failed",
    "stateful_block",
    "tag",
]
TRUTH_KEYS = {
    "line",
    "try_index",
    "ip",
    "domain",
    "censored",
    "mechanism",
    "vendor",
    "fingerprinted",
    "detail",
    "family",
}


def read_results(archive: Path) -> list[dict[str, Any]]:
    """All measurement objects of an archive's results.json member."""
    with tarfile.open(archive, "r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("results.json"))
        fh = tar.extractfile(member)
        assert fh is not None
        return [json.loads(line) for line in fh.read().decode("utf-8").splitlines()]


def read_truth(path: Path) -> list[dict[str, Any]]:
    """All ground-truth objects of a sidecar."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def full_text(received: Any) -> str | None:
    """The full received response as hyperquack.md defines it for signature matching."""
    if received is None or isinstance(received, str):
        return received
    lines = [received.get("status_line", "")]
    for name, values in received.get("headers", {}).items():
        lines.extend(f"{name}: {v}" for v in values)
    lines.append(received.get("body", ""))
    return "\n".join(lines)


def load_signatures(path: Path) -> list[tuple[str, re.Pattern[str]]]:
    """The signatures of one JSON-lines file, compiled DOTALL."""
    text = path.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [(r["fingerprint"], re.compile(r["pattern"], re.DOTALL)) for r in rows]


def first_hit(sigs: list[tuple[str, re.Pattern[str]]], text: str) -> str | None:
    """The first signature that matches, in file order."""
    return next((name for name, pat in sigs if pat.search(text)), None)


def entries_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The try entries of a v1 or v2 measurement."""
    return obj["Results"] if "Results" in obj else obj["response"]


def received_of(entry: dict[str, Any]) -> Any:
    """The received response of a try entry (either format)."""
    return entry.get("Received", entry.get("response"))


@pytest.fixture(scope="module")
def http_v2(tmp_path_factory: pytest.TempPathFactory) -> synth.SynthResult:
    """A mid-sized v2 http archive shared by several tests."""
    return synth.write_archive(
        tmp_path_factory.mktemp("v2http"), 4000, seed=3, fmt="v2", scan="http"
    )


def test_deterministic(tmp_path: Path) -> None:
    """Same arguments give byte-identical files; another seed differs."""
    a = synth.write_archive(tmp_path / "a", 600, seed=7, fmt="v1", scan="https")
    b = synth.write_archive(tmp_path / "b", 600, seed=7, fmt="v1", scan="https")
    assert a.archive.name == b.archive.name
    assert a.archive.read_bytes() == b.archive.read_bytes()
    assert a.truth.read_bytes() == b.truth.read_bytes()
    c = synth.write_archive(tmp_path / "c", 600, seed=8, fmt="v1", scan="https")
    assert c.archive.read_bytes() != a.archive.read_bytes()


def check_v1(obj: dict[str, Any], scan: str) -> None:
    """Keys, types and control placement of a v1 measurement."""
    assert list(obj) == V1_KEYS
    assert isinstance(obj["Retries"], int) and obj["Retries"] >= 0
    results = obj["Results"]
    tests, controls = results[: obj["Retries"] + 1], results[obj["Retries"] + 1 :]
    assert len(controls) <= 1
    control_domain = synth.V1_CONTROL[scan]
    for entry in results:
        assert isinstance(entry["Sent"], str) and isinstance(entry["Success"], bool)
        assert TS.match(entry["StartTime"]) and TS.match(entry["EndTime"])
        if not entry["Success"]:
            assert isinstance(entry["Error"], str) and entry["Error"]
        rec = entry.get("Received")
        if rec is not None:
            if scan in ("echo", "discard"):
                assert isinstance(rec, str)
            else:
                assert isinstance(rec["status_line"], str) and isinstance(rec["body"], str)
                assert all(isinstance(v, list) for v in rec["headers"].values())
                assert ("tls" in rec) == (scan == "https")
    for entry in tests:
        if entry["Sent"]:
            assert control_domain not in entry["Sent"]
            if scan in ("http", "https"):
                assert entry["Sent"] == obj["Keyword"]
            else:
                assert entry["Sent"].startswith("GET ")
    for entry in controls:
        assert entry["Sent"] in ("", control_domain) or control_domain in entry["Sent"]
    if controls:
        assert not any(e["Success"] for e in tests)


def check_v2(obj: dict[str, Any], scan: str) -> None:
    """Keys, types and control placement of a v2 measurement."""
    assert list(obj) == V2_KEYS
    assert obj["service"] == scan
    assert set(obj["location"]) == {"country_name", "country_code"}
    tries = obj["response"]
    assert "control_url" in tries[0]
    tests = [e for e in tries if "control_url" not in e]
    assert tests
    if tests[-1]["matches_template"]:
        assert tries[-1] is tests[-1]
    else:
        assert "control_url" in tries[-1]
    for entry in tries:
        assert isinstance(entry["matches_template"], bool)
        assert TS.match(entry["start_time"]) and TS.match(entry["end_time"])
        rec = entry.get("response")
        if isinstance(rec, dict):
            assert scan in ("http", "https")
            assert {"status_line", "headers", "body"} <= set(rec)
            assert ("Certificate" in rec) == (scan == "https")
            if scan == "https":
                assert isinstance(rec["TlsVersion"], int) and isinstance(rec["CipherSuite"], int)
        elif rec is not None:
            assert isinstance(rec, str) and scan in ("echo", "discard")
    assert TS.match(obj["tag"] + "Z")


@pytest.mark.parametrize("fmt", ["v1", "v2"])
@pytest.mark.parametrize("scan", ["echo", "discard", "http", "https"])
def test_shape_and_truth(tmp_path: Path, fmt: str, scan: str) -> None:
    """Every line has the format's shape; truth has one consistent row per non-control try."""
    result = synth.write_archive(tmp_path, 400, seed=1, fmt=fmt, scan=scan)
    assert result.archive.name.startswith(f"CP_Quack-{scan}-")
    assert result.archive.name.endswith(".tar.gz")
    assert result.truth.name == result.archive.name.removesuffix(".tar.gz") + ".truth.jsonl"
    with tarfile.open(result.archive, "r:gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("/results.json") for n in names)
    objs = read_results(result.archive)
    assert len(objs) == result.measurements == 400
    for obj in objs:
        (check_v1 if fmt == "v1" else check_v2)(obj, scan)
    truth = read_truth(result.truth)
    assert len(truth) == result.tries
    by_line = collections.defaultdict(list)
    for row in truth:
        assert set(row) == TRUTH_KEYS
        assert row["mechanism"] in synth.MECHANISMS
        by_line[row["line"]].append(row["try_index"])
        obj = objs[row["line"] - 1]
        assert row["ip"] == obj.get("Server", obj.get("vp"))
        assert row["domain"] == obj.get("Keyword", obj.get("test_url"))
        entry = entries_of(obj)[row["try_index"]]
        assert "control_url" not in entry
        success = entry.get("Success", entry.get("matches_template"))
        assert success == (row["mechanism"] == "none")
        assert row["fingerprinted"] == (row["vendor"] in synth.DEFAULT_FINGERPRINTED)
        if row["mechanism"] == "blockpage":
            assert row["family"] == row["vendor"] and row["family"] in synth.FAMILIES
        elif row["mechanism"] == "benign":
            assert row["family"] == row["detail"] and row["family"] in synth.BENIGN_KINDS
        else:
            assert row["family"] == ("noise" if row["mechanism"] == "noise" else "")
    assert set(by_line) == set(range(1, 401))
    for line, indexes in by_line.items():
        entries = entries_of(objs[line - 1])
        if fmt == "v1":
            assert indexes == list(range(objs[line - 1]["Retries"] + 1))
        else:
            assert indexes == [i for i, e in enumerate(entries) if "control_url" not in e]


def test_all_outcomes_appear(http_v2: synth.SynthResult, tmp_path: Path) -> None:
    """A few thousand measurements contain every outcome kind, blockpage family and benign kind."""
    truth = read_truth(http_v2.truth)
    mechanisms = {row["mechanism"] for row in truth}
    assert set(synth.MECHANISMS) - {"tls"} <= mechanisms
    assert {row["vendor"] for row in truth if row["vendor"]} == set(synth.FAMILIES)
    assert {row["family"] for row in truth if row["family"]} == set(synth.BENIGN_KINDS) | set(
        synth.FAMILIES
    )
    objs = read_results(http_v2.archive)
    assert any(o["anomaly"] for o in objs) and any(o["controls_failed"] for o in objs)
    assert any(o["stateful_block"] for o in objs)
    assert any(len(o["response"]) > 2 for o in objs)
    https = read_truth(synth.write_archive(tmp_path, 3000, seed=2, fmt="v1", scan="https").truth)
    assert "tls" in {row["mechanism"] for row in https}
    echo = read_results(synth.write_archive(tmp_path, 3000, seed=2, fmt="v1", scan="echo").archive)
    sents = [e["Sent"] for o in echo for e in o["Results"]]
    assert "" in sents
    assert any(s.startswith("GET ") and not s.startswith("GET / ") for s in sents)
    assert any(o["FailSanity"] for o in echo) and any(o["StatefulBlock"] for o in echo)


def pages_by_kind(result: synth.SynthResult) -> dict[str, list[str]]:
    """Full received texts of tries by blockpage family or benign kind."""
    objs = read_results(result.archive)
    out: dict[str, list[str]] = collections.defaultdict(list)
    for row in read_truth(result.truth):
        if row["family"] in ("", "noise"):
            continue
        entry = entries_of(objs[row["line"] - 1])[row["try_index"]]
        text = full_text(received_of(entry))
        if text:
            out[row["family"]].append(text)
    return out


def test_world_size_and_variety() -> None:
    """>= 40 families, >= 12 languages, every mechanism, >= 15 benign kinds, ~3/4 fingerprinted."""
    families = synth.FAMILIES.values()
    assert len(synth.FAMILIES) >= 40
    assert len({f.language for f in families}) >= 12 and len({f.script for f in families}) >= 6
    assert {f.mechanism for f in families} == set(synth.FAMILY_MECHANISMS)
    assert {f.layout for f in families} >= {"table", "div", "plain", "json", "xml", "card", "rtl"}
    assert len(synth.BENIGN_KINDS) >= 15 and "noise" in synth.BENIGN_KINDS
    assert {
        "ssh_banner",
        "smtp_banner",
        "ftp_banner",
        "telnet_banner",
        "redis_banner",
        "router_login",
        "captive_portal",
        "parking",
        "binary_garbage",
    } <= set(synth.BENIGN_KINDS)
    assert 0.65 <= len(synth.DEFAULT_FINGERPRINTED) / len(synth.FAMILIES) <= 0.85
    countries = {c.code for c in synth.COUNTRIES}
    assert all(f.countries and set(f.countries) <= countries for f in families)


def words(family: synth.Family) -> set[str]:
    """The words of a family's own wording (title and lines), placeholders dropped."""
    text = " ".join((family.title, *family.lines, *family.extras))
    return {w for w in re.findall(r"\w{3,}", re.sub(r"\{\w+\}", " ", text).lower())}


def test_families_do_not_share_a_vocabulary() -> None:
    """No shared house wording: any two families' word sets overlap little (Jaccard <= 0.25)."""
    fams = [f for f in synth.FAMILIES.values() if words(f)]
    for i, a in enumerate(fams):
        for b in fams[i + 1 :]:
            wa, wb = words(a), words(b)
            assert len(wa & wb) / len(wa | wb) <= 0.25, (a.name, b.name, wa & wb)
    assert len({f.pattern for f in synth.FAMILIES.values()}) == len(synth.FAMILIES)


@pytest.mark.parametrize(("fmt", "scan"), [("v2", "http"), ("v1", "echo")])
def test_signatures_match_own_family_only(tmp_path: Path, fmt: str, scan: str) -> None:
    """Each family's and benign kind's pattern matches all its pages and nothing else."""
    sigs = synth.write_signatures(tmp_path / "sigs", synth.FAMILIES, synth.BENIGN_PATTERNS)
    blockpages = load_signatures(sigs / "blockpage_signatures.json")
    false_positives = load_signatures(sigs / "false_positive_signatures.json")
    assert len(blockpages) == len(synth.FAMILIES) and len(false_positives) == len(
        synth.BENIGN_PATTERNS
    )
    pages = pages_by_kind(synth.write_archive(tmp_path, 4000, seed=5, fmt=fmt, scan=scan))
    assert len([f for f in synth.FAMILIES if pages[f]]) >= 35
    for key, texts in pages.items():
        for text in texts:
            hits = [n for n, p in blockpages if p.search(text)] + [
                n for n, p in false_positives if p.search(text)
            ]
            if key in synth.FAMILIES:
                assert hits == [f"a_synth_{key}"], (key, hits, text[:200])
            else:
                assert hits == ([f"x_fp_synth_{key}"] if key in synth.BENIGN_PATTERNS else []), (
                    key,
                    hits,
                )


def test_default_and_chosen_signatures(tmp_path: Path) -> None:
    """By default ~3/4 of the families and a few server/CDN pages are fingerprinted; any can be."""
    sigs = synth.write_signatures(tmp_path / "default")
    names = [n for n, _ in load_signatures(sigs / "blockpage_signatures.json")]
    assert sorted(names) == sorted(f"a_synth_{f}" for f in synth.DEFAULT_FINGERPRINTED)
    fps = [n for n, _ in load_signatures(sigs / "false_positive_signatures.json")]
    assert sorted(fps) == sorted(f"x_fp_synth_{k}" for k in synth.DEFAULT_FALSE_POSITIVE_KINDS)
    chosen = synth.write_signatures(tmp_path / "two", ["kr_card", "vn_json"], [])
    assert [n for n, _ in load_signatures(chosen / "blockpage_signatures.json")] == [
        "a_synth_vn_json",
        "a_synth_kr_card",
    ]
    assert (chosen / "false_positive_signatures.json").read_text() == ""
    with pytest.raises(ValueError, match="nosuch"):
        synth.write_signatures(tmp_path / "bad", ["nosuch"])
    with pytest.raises(ValueError, match="noise"):
        synth.write_signatures(tmp_path / "bad", None, ["noise"])


def test_control_behaviour(http_v2: synth.SynthResult, tmp_path: Path) -> None:
    """Hosts that are not proper servers fail their controls too; blockpages have good controls."""
    for result in (http_v2, synth.write_archive(tmp_path, 3000, seed=6, fmt="v1", scan="echo")):
        objs = read_results(result.archive)
        by_line: dict[int, set[str]] = collections.defaultdict(set)
        for row in read_truth(result.truth):
            by_line[row["line"]].add(row["family"])
        seen = collections.Counter()
        for line, fams in by_line.items():
            obj = objs[line - 1]
            failed = obj.get("controls_failed", obj.get("FailSanity"))
            host = fams & set(synth.HOST_KINDS)
            if host:
                assert fams == host and failed, (line, fams)
                controls = [
                    e
                    for e in entries_of(obj)
                    if "control_url" in e
                    or e.get("Sent", "x") in ("", synth.V1_CONTROL["echo"])
                    or synth.V1_CONTROL["echo"] in e.get("Sent", "")
                ]
                assert controls and not any(
                    e.get("Success", e.get("matches_template")) for e in controls
                )
                seen["host"] += 1
            elif fams & set(synth.FAMILIES):
                assert not failed, (line, fams)
                seen["blockpage"] += 1
                seen["blockpage_anomaly"] += bool(obj.get("anomaly", obj.get("Blocked")))
            elif fams & set(synth.DOMAIN_KINDS):
                assert not failed, (line, fams)
                seen["domain"] += 1
        assert min(seen.values()) > 20 and len(seen) == 4, seen
        assert seen["blockpage_anomaly"] > 0.8 * seen["blockpage"], seen  # a few pass through (3%)


def test_pages_vary(http_v2: synth.SynthResult) -> None:
    """Family pages carry per-request details (domain, ids, optional lines): few equal strings."""
    pages = pages_by_kind(http_v2)
    distinct = total = 0
    for name, family in synth.FAMILIES.items():
        varies = "{" in "".join((*family.lines, *family.extras, family.notice))
        if varies and len(pages[name]) >= 4:
            assert len(set(pages[name])) >= 2, name
            distinct, total = distinct + len(set(pages[name])), total + len(pages[name])
    assert distinct > 0.6 * total


def test_every_line_parses(tmp_path: Path) -> None:
    """The project's parser reads every line and yields exactly the truth's tries."""
    try:
        hyperquack = importlib.import_module("quackae.ingest.hyperquack")
        parse = hyperquack.parse_measurement
    except Exception as exc:  # noqa: BLE001 - any import problem means "not there yet"
        pytest.skip(f"quackae.ingest.hyperquack not usable: {exc}")
    for fmt in ("v1", "v2"):
        for scan in ("echo", "discard", "http", "https"):
            result = synth.write_archive(tmp_path / fmt, 300, seed=4, fmt=fmt, scan=scan)
            truth = read_truth(result.truth)
            rows = []
            for line_no, obj in enumerate(read_results(result.archive), start=1):
                rows.extend((line_no, t) for t in parse(obj, scan))
            assert len(rows) == len(truth), (fmt, scan)
            for (line_no, t), row in zip(rows, truth, strict=True):
                assert (line_no, t.try_index, t.ip, t.domain) == (
                    row["line"],
                    row["try_index"],
                    row["ip"],
                    row["domain"],
                ), (fmt, scan)


def test_cli_helpers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI helpers have the documented defaults, write signatures and print one summary line."""
    parser = build_parser("synth")
    args = parser.parse_args(["synth", "--storage_path", str(tmp_path), "--measurements", "50"])
    assert (args.measurements, args.seed, args.format, args.scan) == (50, 0, "v2", "http")
    assert run_synth(args) == 0
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and ".tar.gz" in line and ".truth.jsonl" in line
    assert "measurements 50" in line
    written = load_signatures(tmp_path / "signatures" / "blockpage_signatures.json")
    assert len(written) == len(synth.DEFAULT_FINGERPRINTED)
    args = parser.parse_args(
        [
            "synth",
            "--storage_path",
            str(tmp_path / "none"),
            "--measurements",
            "30",
            "--fingerprinted",
            "none",
        ]
    )
    assert run_synth(args) == 0
    assert (tmp_path / "none" / "signatures" / "blockpage_signatures.json").read_text() == ""
    truth = read_truth(next((tmp_path / "none").glob("*.truth.jsonl")))
    assert not any(row["fingerprinted"] for row in truth)
    args = parser.parse_args(
        ["synth", "--storage_path", str(tmp_path / "bad"), "--fingerprinted", "kr_card,nosuch"]
    )
    capsys.readouterr()
    assert run_synth(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nosuch" in err and not (tmp_path / "bad").exists()
    assert synth.parse_fingerprinted("all") == frozenset(synth.FAMILIES)
    assert synth.parse_fingerprinted("kr_card, vn_json") == {"kr_card", "vn_json"}


def test_bad_arguments(tmp_path: Path) -> None:
    """Unknown formats and scans are rejected."""
    with pytest.raises(ValueError):
        synth.write_archive(tmp_path, 10, fmt="v3")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        synth.write_archive(tmp_path, 10, scan="dns")  # type: ignore[arg-type]


def test_synth_directory_is_a_flatten_source(tmp_path: Path) -> None:
    """A synth output folder expands to its archives only: no truth sidecar, no signature file."""
    from quackae.ingest.sources import expand_sources

    parser = build_parser("synth")
    for scan in ("echo", "http"):
        assert (
            run_synth(
                parser.parse_args(
                    [
                        "synth",
                        "--storage_path",
                        str(tmp_path),
                        "--measurements",
                        "20",
                        "--scan",
                        scan,
                    ]
                )
            )
            == 0
        )
    found = expand_sources([tmp_path])
    assert sorted(p.name for p in found) == sorted(p.name for p in tmp_path.glob("*.tar.gz"))
    assert len(found) == 2


def test_generic_headers_do_not_tell_blockpages_from_benign_pages() -> None:
    """Generic header lines, charset spellings and <meta> charsets: same rates in both groups.

    Each is compared where it can occur (a <meta> only in a page with <head>, a text/html charset
    only in an HTML response), so a detector cannot key on the generator's habits.
    """
    pages = synth.sample_pages(1500, seed=3)
    scope = {'<meta charset="...">': r"(?i)<head>", "<meta http-equiv=Content-Type>": r"(?i)<head>"}
    checked = 0
    for feature in synth.GENERIC_FEATURES:
        within = scope.get(
            feature, r"Content-Type: text/html" if "html" in feature or "charset" in feature else ""
        )
        block, benign = synth.artefact_rates(pages, within).get(feature, (0.0, 0.0))
        assert block + benign > 0, f"{feature!r} never drawn"
        assert abs(block - benign) <= 0.15, (
            f"{feature!r}: blockpages {block:.3f}, benign pages {benign:.3f}"
        )
        checked += 1
    assert checked == len(synth.GENERIC_FEATURES) >= 10
    # the check can fail: a family's own identity header is rare in benign pages
    rates = synth.artefact_rates(pages)
    assert rates["Server: StratusEdge"][0] == 0 and rates["Server: StratusEdge"][1] > 0.15
