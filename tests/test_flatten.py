"""The ingest stage end to end: generated archives in, Parquet shards out, read with pyarrow."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import REFERENCE, run_cli
from quackae import synth
from quackae.dataset import store
from quackae.ingest import tokens
from quackae.ingest.flatten import FlattenError, Options, flatten


def read_rows(root: Path, columns: list[str] | None = None):
    """Every committed row of a dataset, sorted by row id, as a pyarrow table."""
    wanted = columns or list(store.SCHEMA.names)
    table = store.Dataset(root).read_columns(sorted(set(wanted) | {"row_id"}))
    return table.sort_by("row_id").select(wanted)


def truth_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["v1", "v2"])
@pytest.mark.parametrize("scan", ["echo", "discard", "http", "https"])
def test_every_format_and_scan(tmp_path: Path, fmt: str, scan: str, synth_signatures: Path) -> None:
    raw = synth.write_archive(tmp_path / "raw", 80, seed=3, fmt=fmt, scan=scan)
    summary = flatten(
        [raw.archive],
        tmp_path / "ds",
        Options(max_tokens=96, signatures=synth_signatures),
        progress=False,
        vocab_size=600,
    )
    truth = truth_lines(raw.truth)
    rows = read_rows(tmp_path / "ds")
    # one row per non-control try, nothing rejected, every try traced back to its raw line
    assert summary.rejected == 0
    assert rows.num_rows == len(truth) == raw.tries
    got = sorted(zip(rows["line"].to_pylist(), rows["try_index"].to_pylist(), strict=True))
    assert got == sorted((t["line"], t["try_index"]) for t in truth)
    assert set(rows["scan"].to_pylist()) == {scan}
    assert set(rows["censored"].to_pylist()) <= {-1, 0, 1}
    # the domain of each row is the domain the generator measured
    by_key = {(t["line"], t["try_index"]): t for t in truth}
    for line, idx, domain, ip in zip(
        rows["line"].to_pylist(),
        rows["try_index"].to_pylist(),
        rows["domain"].to_pylist(),
        rows["ip"].to_pylist(),
        strict=True,
    ):
        assert by_key[(line, idx)]["domain"] == domain
        assert by_key[(line, idx)]["ip"] == ip
    # countries: carried by v2, looked up offline for v1
    assert all(len(c) == 2 for c in rows["country_code"].to_pylist())
    # token sequences respect the layout
    manifest = store.read_manifest(tmp_path / "ds")
    for seq in rows["tokens"].to_pylist():
        assert seq[0] == tokens.START and seq[-1] == tokens.END and len(seq) <= 96
        assert max(seq) < manifest["vocab_size"]
    assert manifest["length"] == rows.num_rows
    assert manifest["censored"] + manifest["undetermined"] + manifest["uncensored"] == rows.num_rows


def test_labels_follow_ground_truth_for_fingerprinted_vendors(
    archive_v2_http, tmp_path: Path, synth_signatures: Path
) -> None:
    """With the world's signatures, fingerprinted families are censored, the others undetermined."""
    flatten(
        [archive_v2_http.archive],
        tmp_path / "ds",
        Options(max_tokens=64, signatures=synth_signatures),
        progress=False,
        vocab_size=600,
    )
    rows = read_rows(tmp_path / "ds", ["line", "try_index", "censored", "fingerprint", "outcome"])
    truth = {(t["line"], t["try_index"]): t for t in truth_lines(archive_v2_http.truth)}
    seen = set()
    for line, idx, censored, fp, outcome in zip(
        *(rows[c].to_pylist() for c in rows.column_names), strict=True
    ):
        t = truth[(line, idx)]
        if t["mechanism"] == "blockpage" and t["fingerprinted"]:
            assert (
                censored == 1 and fp == f"a_synth_{t['family']}" and outcome == "content/blockpage"
            )
            seen.add("fingerprinted")
        if t["mechanism"] == "blockpage" and not t["fingerprinted"]:
            assert censored == 0 and fp == ""
            seen.add("unfingerprinted")
        page = t["family"] not in synth.BANNER_KINDS  # banners on a web scan: an error, no page
        if (
            t["mechanism"] == "benign"
            and t["family"] in synth.DEFAULT_FALSE_POSITIVE_KINDS
            and page
        ):
            assert censored == -1 and fp == f"x_fp_synth_{t['family']}"
            seen.add("false_positive")
        if censored == -1 and fp:
            assert outcome == "content/false_positive"
    assert seen == {"fingerprinted", "unfingerprinted", "false_positive"}


def test_default_set_knows_no_synthetic_censor(archive_v2_http, tmp_path: Path) -> None:
    """Without --signatures the default set labels no synthetic blockpage, and says so once."""
    result = run_cli(
        "flatten",
        "--source",
        archive_v2_http.archive,
        "--storage_path",
        tmp_path / "ds",
        "--quiet",
        "--max_tokens",
        "64",
        "--vocab_size",
        "600",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("--signatures DIR") == 1 and result.stderr.strip().count("\n") == 0
    rows = read_rows(tmp_path / "ds", ["censored", "fingerprint"])
    assert not any(
        fp.startswith("a_synth_") or fp.startswith("x_fp_synth_")
        for fp in rows["fingerprint"].to_pylist()
    )
    assert 1 not in set(rows["censored"].to_pylist())
    sigs = REFERENCE / "signatures" if (REFERENCE / "signatures").is_dir() else None
    if sigs is not None:
        quiet = run_cli(
            "flatten",
            "--source",
            archive_v2_http.archive,
            "--storage_path",
            tmp_path / "ds2",
            "--quiet",
            "--max_tokens",
            "64",
            "--vocab_size",
            "600",
            "--signatures",
            sigs,
        )
        assert quiet.returncode == 0 and "--signatures DIR" not in quiet.stderr


def test_reingest_adds_nothing_and_append_adds(tmp_path: Path, archive_v2_http) -> None:
    root = tmp_path / "ds"
    first = flatten(
        [archive_v2_http.archive], root, Options(max_tokens=64), progress=False, vocab_size=600
    )
    sha = store.read_manifest(root)["tokenizer_sha256"]
    # the same archive from another path is recognised by content
    copy = tmp_path / "elsewhere" / archive_v2_http.archive.name
    copy.parent.mkdir()
    shutil.copy(archive_v2_http.archive, copy)
    again = flatten([copy], root, Options(max_tokens=64), progress=False)
    assert again.rows == 0 and again.skipped_sources == 1
    assert store.read_manifest(root)["length"] == first.rows
    # a new archive appends, with the dataset's tokenizer
    other = synth.write_archive(tmp_path / "raw2", 50, seed=9, fmt="v1", scan="https")
    added = flatten([other.archive], root, Options(max_tokens=64), progress=False)
    manifest = store.read_manifest(root)
    assert added.rows == other.tries
    assert manifest["length"] == first.rows + other.tries == read_rows(root, ["row_id"]).num_rows
    assert manifest["tokenizer_sha256"] == sha
    assert len(set(read_rows(root, ["row_id"])["row_id"].to_pylist())) == manifest["length"]


def test_append_refuses_other_settings(tmp_path: Path, archive_v2_http) -> None:
    root = tmp_path / "ds"
    flatten([archive_v2_http.archive], root, Options(max_tokens=64), progress=False, vocab_size=600)
    with pytest.raises(FlattenError, match="--labeled"):
        flatten(
            [archive_v2_http.archive], root, Options(max_tokens=64, labeled=True), progress=False
        )
    with pytest.raises(FlattenError, match="--max_tokens 64"):
        flatten([archive_v2_http.archive], root, Options(max_tokens=128), progress=False)


def test_filters(tmp_path: Path, archive_v2_http) -> None:
    labeled = tmp_path / "labeled"
    flatten(
        [archive_v2_http.archive],
        labeled,
        Options(labeled=True, max_tokens=64),
        progress=False,
        vocab_size=600,
    )
    rows = read_rows(labeled, ["censored"])
    assert rows.num_rows > 0 and 0 not in set(rows["censored"].to_pylist())
    anomalies = tmp_path / "anomalies"
    flatten(
        [archive_v2_http.archive],
        anomalies,
        Options(anomalies=True, max_tokens=64),
        progress=False,
        vocab_size=600,
    )
    rows = read_rows(anomalies, ["anomaly", "outcome"])
    assert rows.num_rows > 0 and all(rows["anomaly"].to_pylist())
    assert "expected" not in set(rows["outcome"].to_pylist())


def test_workers_give_the_same_rows(tmp_path: Path) -> None:
    archives = [
        synth.write_archive(tmp_path / "raw", 60, seed=s, fmt=f, scan=sc).archive
        for s, f, sc in ((1, "v2", "http"), (2, "v1", "echo"), (3, "v2", "discard"))
    ]
    tok = tmp_path / "tok.json"
    flatten(
        archives[:1], tmp_path / "seed_ds", Options(max_tokens=64), progress=False, vocab_size=600
    )
    shutil.copy(tmp_path / "seed_ds" / store.TOKENIZER, tok)
    one = tmp_path / "one"
    two = tmp_path / "two"
    flatten(archives, one, Options(max_tokens=64), workers=1, tokenizer=tok, progress=False)
    flatten(archives, two, Options(max_tokens=64), workers=2, tokenizer=tok, progress=False)
    assert read_rows(one).equals(read_rows(two))


def _good_line(domain: str) -> bytes:
    obj = {
        "vp": "8.8.8.8",
        "location": {"country_name": "United States", "country_code": "US"},
        "service": "http",
        "test_url": domain,
        "response": [
            {
                "matches_template": True,
                "response": {"status_line": "200 OK", "headers": {}, "body": "hi"},
                "start_time": "2021-10-11T01:01:01.5-04:00",
                "end_time": "2021-10-11T01:01:02.5-04:00",
            }
        ],
        "anomaly": False,
        "controls_failed": False,
        "stateful_block": False,
        "tag": "2021-10-11T01:01:01",
    }
    return json.dumps(obj).encode()


def test_bad_input_is_counted_logged_and_good_lines_kept(tmp_path: Path, small_dataset) -> None:
    src = tmp_path / "src"
    src.mkdir()
    good = [_good_line(f"good{i}.example") for i in range(6)]
    wrong_type = json.loads(_good_line("x.example"))
    wrong_type["response"] = "nope"
    missing = json.loads(_good_line("y.example"))
    del missing["vp"]
    lines = [
        good[0],
        b"{not json",
        b"",
        b'{"vp": "1.2.3.4", "test_url": "\xff\xfe.example"}',
        json.dumps(wrong_type).encode(),
        json.dumps(missing).encode(),
        b'{"blob": "' + b"a" * (9 * 1024 * 1024) + b'"}',
        b"[1, 2, 3]",
        good[1],
    ]
    with gzip.open(src / "CP_Quack-http-2021-10-11-01-01-01.jsonl.gz", "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    (src / "CP_Quack-http-2021-10-12-01-01-01.json").write_bytes(b"")  # empty file
    # a truncated gzip: its first good lines survive
    blob = gzip.compress(b"\n".join(good[2:4]) + b"\n" + os.urandom(200_000).hex().encode())
    (src / "CP_Quack-http-2021-10-13-01-01-01.json.gz").write_bytes(blob[: len(blob) // 2])
    # a truncated tar.gz
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"\n".join(good[4:6]) + b"\n" + os.urandom(300_000).hex().encode()
        info = tarfile.TarInfo("CP_Quack-http-2021-10-14-01-01-01/results.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    (src / "CP_Quack-http-2021-10-14-01-01-01.tar.gz").write_bytes(raw[: int(len(raw) * 0.6)])

    result = run_cli(
        "flatten",
        "--source",
        src,
        "--storage_path",
        tmp_path / "ds",
        "--quiet",
        "--max_tokens",
        "64",
        # six good lines are too few to train a tokenizer on (MIN_TOKENIZER_TEXTS): reuse one
        "--tokenizer",
        small_dataset / "tokenizer.json",
    )
    # the two truncated archives are reported (exit 1) and stay incomplete; their good lines are
    # kept
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.count("ended early") == 2
    incomplete = [
        s for s in store.read_manifest(tmp_path / "ds")["sources"].values() if not s["done"]
    ]
    assert sorted(s["name"] for s in incomplete) == [
        "CP_Quack-http-2021-10-13-01-01-01.json.gz",
        "CP_Quack-http-2021-10-14-01-01-01.tar.gz",
    ]
    rows = read_rows(tmp_path / "ds", ["domain"])
    domains = set(rows["domain"].to_pylist())
    assert {
        "good0.example",
        "good1.example",
        "good2.example",
        "good3.example",
        "good4.example",
    } <= domains
    rejects = [
        json.loads(line)
        for p in sorted((tmp_path / "ds" / "rejects").glob("*.jsonl"))
        for line in p.read_text().splitlines()
    ]
    reasons = " | ".join(r["reason"] for r in rejects)
    for expected in ("invalid JSON", "not UTF-8", "unknown shape", "line too long", "truncated"):
        assert expected in reasons
    assert all({"file", "line", "reason"} <= set(r) for r in rejects)
    manifest = store.read_manifest(tmp_path / "ds")
    assert manifest["rejected"] == len(rejects) >= 7
    assert f"rejected {len(rejects)} line(s)" in result.stdout


def test_missing_source_is_one_line_error(tmp_path: Path) -> None:
    result = run_cli(
        "flatten", "--source", tmp_path / "nope.tar.gz", "--storage_path", tmp_path / "ds"
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope.tar.gz" in result.stderr
    assert "Traceback" not in result.stderr


def test_killed_run_resumes_to_identical_rows(tmp_path: Path) -> None:
    raw = synth.write_archive(tmp_path / "raw", 3000, seed=5, fmt="v2", scan="http")
    raw2 = synth.write_archive(tmp_path / "raw", 1500, seed=6, fmt="v1", scan="echo")
    args = [
        "--source",
        raw.archive,
        raw2.archive,
        "--max_tokens",
        "64",
        "--vocab_size",
        "600",
        "--chunk_lines",
        "150",
        "--quiet",
    ]
    clean = run_cli("flatten", "--storage_path", tmp_path / "clean", *args)
    assert clean.returncode == 0, clean.stderr

    killed = tmp_path / "killed"
    for _ in range(2):  # kill twice at different moments
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quackae",
                "flatten",
                "--storage_path",
                str(killed),
                *map(str, args),
            ]
        )
        deadline = time.time() + 120
        target = (
            3
            if not (killed / "manifest.json").exists()
            else len(store.read_manifest(killed)["shards"]) + 4
        )
        while time.time() < deadline:
            if (killed / "manifest.json").exists() and len(
                store.read_manifest(killed)["shards"]
            ) >= target:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial = store.read_manifest(killed)["length"]
        assert 0 < partial < store.read_manifest(tmp_path / "clean")["length"]
    rerun = run_cli("flatten", "--storage_path", killed, *args)
    assert rerun.returncode == 0, rerun.stderr
    assert read_rows(killed).equals(read_rows(tmp_path / "clean"))
    assert (
        store.read_manifest(killed)["length"] == store.read_manifest(tmp_path / "clean")["length"]
    )


@pytest.mark.skipif(not (REFERENCE / "hyperquack").is_dir(), reason="shared/reference not present")
def test_reference_files_with_censored_planet_signatures(
    tmp_path: Path, small_dataset: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    names = {
        "echo_results_v1.json": "CP_Quack-echo-2020-11-14-07-54-49.json",
        "echo_results_v2.json": "CP_Quack-echo-2021-10-11-01-01-01.json",
        "http_results_v2.json": "CP_Quack-http-2021-10-11-01-01-01.json",
        "https_results_v1.json": "CP_Quack-https-2020-11-06-15-24-18.json",
    }
    for ref, name in names.items():
        shutil.copy(REFERENCE / "hyperquack" / ref, src / name)
    sigs = REFERENCE / "signatures"
    tokenizer = small_dataset / store.TOKENIZER  # 42 tries are too few to train one on
    summary = flatten(
        [src], tmp_path / "ds", Options(signatures=sigs), progress=False, tokenizer=tokenizer
    )
    assert summary.rejected == 0 and summary.rows > 0
    rows = read_rows(tmp_path / "ds", ["censored", "fingerprint", "scan", "country_code"])
    blockpage = {
        json.loads(x)["fingerprint"]
        for x in (sigs / "blockpage_signatures.json").read_text().splitlines()
        if x.strip()
    }
    false_pos = {
        json.loads(x)["fingerprint"]
        for x in (sigs / "false_positive_signatures.json").read_text().splitlines()
        if x.strip()
    }
    pairs = list(zip(rows["censored"].to_pylist(), rows["fingerprint"].to_pylist(), strict=True))
    assert any(c == 1 for c, _ in pairs)
    for censored, fp in pairs:
        if censored == 1:
            assert fp in blockpage
        if censored == -1 and fp:
            assert fp in false_pos
    assert set(rows["scan"].to_pylist()) == {"echo", "http", "https"}
    assert all(rows["country_code"].to_pylist())


def test_inspect_json(small_dataset: Path) -> None:
    result = run_cli("inspect", small_dataset, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    manifest = store.read_manifest(small_dataset)
    assert info["kind"] == "dataset"
    for key in ("length", "censored", "undetermined", "uncensored", "max_width"):
        assert info[key] == manifest[key]
    assert sum(info["per_scan"].values()) == info["length"]
    assert sum(info["per_country"].values()) == info["length"]
    assert set(info["per_scan"]) == {"http", "echo"}
    p = info["token_length_percentiles"]
    assert p["p50"] <= p["p90"] <= p["p99"] <= p["max"] == info["max_width"] <= 128
    lengths = read_rows(small_dataset, ["length"])["length"].to_numpy()
    assert p["p50"] == int(np.percentile(lengths, 50))
    human = run_cli("inspect", small_dataset)
    assert "censored" in human.stdout and human.returncode == 0


def test_inspect_missing_dataset_is_one_line(tmp_path: Path) -> None:
    result = run_cli("inspect", tmp_path)
    assert (
        result.returncode == 2
        and "quackae flatten" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_shards_open_with_pyarrow_directly(small_dataset: Path) -> None:
    files = sorted((small_dataset / "shards").glob("*.parquet"))
    table = pq.read_table(files[0])
    for column in (
        "ip",
        "domain",
        "location",
        "country_code",
        "timestamp",
        "end_time",
        "scan",
        "censored",
        "fingerprint",
        "outcome",
        "tokens",
    ):
        assert column in table.column_names
    assert (
        table["timestamp"].type == "int64" and min(table["timestamp"].to_pylist()) > 1_500_000_000
    )


def test_tokens_are_blind_to_the_signatures(
    archive_v2_http, synth_signatures: Path, tmp_path: Path
) -> None:
    """Anti-leak: the stored tokens carry the signature-blind outcome, so the labels (made from the
    signatures) cannot be read back from the model's input; only the label columns differ."""
    none = tmp_path / "no_signatures"
    none.mkdir()
    for name in ("blockpage_signatures.json", "false_positive_signatures.json"):
        (none / name).write_text(
            '{"fingerprint": "x_never", "pattern": "qqzz-matches-nothing-qqzz"}\n'
        )
    flatten(
        [archive_v2_http.archive],
        tmp_path / "a",
        Options(max_tokens=128, signatures=synth_signatures),
        progress=False,
        vocab_size=512,
    )
    flatten(
        [archive_v2_http.archive],
        tmp_path / "b",
        Options(max_tokens=128, signatures=none),
        progress=False,
        tokenizer=tmp_path / "a" / store.TOKENIZER,
    )
    a = read_rows(tmp_path / "a", ["row_id", "censored", "outcome", "tokens"])
    b = read_rows(tmp_path / "b", ["row_id", "censored", "outcome", "tokens"])
    assert a["row_id"].to_pylist() == b["row_id"].to_pylist()
    assert (a["censored"].to_numpy() == 1).sum() > 0 and (b["censored"].to_numpy() == 1).sum() == 0
    assert (
        a["outcome"].to_pylist() != b["outcome"].to_pylist()
    )  # the labelled outcome column differs
    assert a["tokens"].to_pylist() == b["tokens"].to_pylist()  # the model's input does not
