"""``flatten --label_rule``: the whole response (Censored Planet analysis) or the body (seed)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from conftest import run_cli
from quackae.dataset import store
from quackae.ingest.hyperquack import parse_line

T0, T1 = "2021-10-11T01:01:01.5-04:00", "2021-10-11T01:01:02.5-04:00"
HEADER_SIGNATURE = "Server: Barracuda/NGFirewall"  # one of Censored Planet's header-only patterns


def _measurement(domain: str, response: object) -> dict:
    """A v2 HTTP measurement with one anomalous test try answered by ``response``."""
    return {
        "vp": "8.8.8.8",
        "location": {"country_name": "United States", "country_code": "US"},
        "service": "http",
        "test_url": domain,
        "response": [
            {"matches_template": False, "response": response, "start_time": T0, "end_time": T1}
        ],
        "anomaly": True,
        "controls_failed": False,
        "stateful_block": False,
    }


def _write_source(folder: Path) -> Path:
    """One results file: the signature only in a header, only in the body, and an empty body."""
    folder.mkdir(parents=True)
    lines = [
        _measurement(
            "header.example",
            {
                "status_line": "403 Forbidden",
                "headers": {"Server": ["Barracuda/NGFirewall"]},
                "body": "<html>Access denied</html>",
            },
        ),
        _measurement(
            "body.example",
            {"status_line": "200 OK", "headers": {}, "body": f"<pre>{HEADER_SIGNATURE}</pre>"},
        ),
        _measurement(
            "empty.example",
            {"status_line": f"200 OK {HEADER_SIGNATURE}", "headers": {}, "body": ""},
        ),
    ]
    path = folder / "CP_Quack-http-2021-10-11-01-01-01.json"
    path.write_text("".join(json.dumps(m) + "\n" for m in lines))
    return path


def _write_signatures(folder: Path) -> Path:
    folder.mkdir(parents=True)
    line = json.dumps({"fingerprint": "a_prod_barracuda_2", "pattern": HEADER_SIGNATURE})
    (folder / "blockpage_signatures.json").write_text(line + "\n")
    (folder / "false_positive_signatures.json").write_text("")
    return folder


def _labels(root: Path) -> dict[str, int]:
    """Each row's label by its test domain, read from the shards with pyarrow."""
    manifest = store.read_manifest(root)
    tables = [
        pq.read_table(root / s["file"], columns=["domain", "censored"]) for s in manifest["shards"]
    ]
    return {
        d: c
        for t in tables
        for d, c in zip(t["domain"].to_pylist(), t["censored"].to_pylist(), strict=True)
    }


def test_header_only_signature_is_censored_under_full_not_under_seed_body(
    tmp_path: Path, small_dataset: Path
) -> None:
    source = _write_source(tmp_path / "raw")
    sigs = _write_signatures(tmp_path / "sigs")
    tokenizer = small_dataset / store.TOKENIZER  # three tries are too few to train one on
    common = ["--source", source, "--signatures", sigs, "--quiet", "--tokenizer", tokenizer]
    full = run_cli("flatten", "--storage_path", tmp_path / "full", *common)
    seed = run_cli(
        "flatten", "--storage_path", tmp_path / "seed", "--label_rule", "seed_body", *common
    )
    assert full.returncode == 0, full.stderr
    assert seed.returncode == 0, seed.stderr
    assert _labels(tmp_path / "full") == {
        "header.example": 1,
        "body.example": 1,
        "empty.example": 1,  # the status line holds it
    }
    assert _labels(tmp_path / "seed") == {
        "header.example": 0,  # the body alone holds no signature
        "body.example": 1,
        "empty.example": 0,  # an empty body is not matched
    }
    assert store.read_manifest(tmp_path / "seed")["label_rule"] == "seed_body"
    assert store.read_manifest(tmp_path / "full")["label_rule"] == "full"


def test_append_with_another_rule_is_refused_in_one_line(
    tmp_path: Path, small_dataset: Path
) -> None:
    source = _write_source(tmp_path / "raw")
    sigs = _write_signatures(tmp_path / "sigs")
    root = tmp_path / "ds"
    tokenizer = small_dataset / store.TOKENIZER  # three tries are too few to train one on
    common = ["--storage_path", root, "--signatures", sigs, "--quiet", "--tokenizer", tokenizer]
    assert run_cli("flatten", "--source", source, *common).returncode == 0
    again = run_cli("flatten", "--source", source, "--label_rule", "seed_body", *common)
    assert again.returncode != 0
    assert again.stderr.strip().count("\n") == 0, again.stderr
    assert "--label_rule full" in again.stderr and "Traceback" not in again.stderr
    assert store.read_manifest(root)["length"] == 3  # nothing appended


def test_body_of_both_received_forms() -> None:
    """The body the seed matched: the whole string form, the body field of the object form."""
    as_text = _measurement("a.example", "HTTP/1.1 403 Forbidden\r\n\r\nblocked")
    as_object = _measurement("a.example", {"status_line": "403", "body": "blocked"})
    no_body = _measurement("a.example", {"status_line": "403"})
    nothing = _measurement("a.example", None)
    bodies = [
        parse_line(json.dumps(m).encode(), None)[0].body
        for m in (as_text, as_object, no_body, nothing)
    ]
    assert bodies == ["HTTP/1.1 403 Forbidden\r\n\r\nblocked", "blocked", "", None]
