"""Streaming raw sources: archives, JSON-lines files, bad inputs, resume and identity."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from quackae.ingest import sources
from quackae.ingest.sources import (
    SourceError,
    SourceLine,
    expand_sources,
    iter_lines,
    scan_from_name,
    source_fingerprint,
    source_key,
)

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"


def _lines(n: int, start: int = 0) -> bytes:
    """``n`` JSON lines ``{"i": k}``, newline-terminated."""
    return b"".join(json.dumps({"i": k}).encode() + b"\n" for k in range(start, start + n))


def _write_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w:gz") -> Path:
    """Write a tar archive holding ``members`` (name, content) in order."""
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _collect(path: Path, **kwargs: object) -> tuple[list[SourceLine], list[tuple]]:
    """All lines of ``path`` and the errors reported while reading it."""
    errors: list[tuple] = []
    got = list(iter_lines(path, lambda *a: errors.append(a), **kwargs))  # type: ignore[arg-type]
    return got, errors


def _values(got: list[SourceLine]) -> list[int]:
    return [json.loads(line.data)["i"] for line in got]


# --------------------------------------------------------------------------- archives


def test_tar_gz_streams_results_member_only(tmp_path: Path) -> None:
    path = _write_tar(
        tmp_path / "CP_Quack-echo-2021-10-11-01-01-01.tar.gz",
        [
            ("CP_Quack-echo/README.txt", b"not data\n"),
            ("CP_Quack-echo/blockpages.json", _lines(3, 100)),
            ("CP_Quack-echo/results.json", _lines(50)),
        ],
    )
    got, errors = _collect(path)
    assert errors == []
    assert _values(got) == list(range(50))
    assert [g.line_no for g in got] == list(range(1, 51))
    assert {g.member for g in got} == {"CP_Quack-echo/results.json"}
    assert {g.source for g in got} == {str(path)}


@pytest.mark.parametrize("name,mode", [("a.tar", "w"), ("a.tgz", "w:gz"), ("a.tar.gz", "w:gz")])
def test_tar_variants(tmp_path: Path, name: str, mode: str) -> None:
    path = _write_tar(tmp_path / name, [("x/results.json", _lines(7))], mode)
    got, errors = _collect(path)
    assert _values(got) == list(range(7)) and errors == []


def test_tar_without_results_member_falls_back_to_json_members(tmp_path: Path) -> None:
    path = _write_tar(
        tmp_path / "old.tar",
        [("notes.txt", b"x\n"), ("a.json", _lines(2)), ("b.jsonl", _lines(2, 2))],
        "w",
    )
    got, errors = _collect(path)
    assert _values(got) == [0, 1, 2, 3] and errors == []
    assert [g.member for g in got] == ["a.json", "a.json", "b.jsonl", "b.jsonl"]


def test_line_numbers_continue_across_results_members(tmp_path: Path) -> None:
    path = _write_tar(
        tmp_path / "two.tar.gz", [("p1/results.json", _lines(3)), ("p2/results.json", _lines(2, 3))]
    )
    got, _ = _collect(path)
    assert [g.line_no for g in got] == [1, 2, 3, 4, 5]
    resumed, _ = _collect(path, skip_lines=4)
    assert _values(resumed) == [4] and resumed[0].line_no == 5


def test_truncated_tar_gz_reports_and_keeps_earlier_lines(tmp_path: Path) -> None:
    full = _write_tar(tmp_path / "full.tar.gz", [("r/results.json", _lines(5000))])
    data = full.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    got, errors = _collect(cut)
    assert 0 < len(got) < 5000
    assert _values(got) == list(range(len(got)))
    assert len(errors) == 1
    source, line_no, reason = errors[0]
    assert source == str(cut) and reason.startswith("truncated archive")
    assert line_no == got[-1].line_no


def test_truncated_plain_tar(tmp_path: Path) -> None:
    full = _write_tar(tmp_path / "full.tar", [("results.json", _lines(3000))], "w")
    data = full.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    got, errors = _collect(cut)
    assert 0 < len(got) < 3000 and _values(got) == list(range(len(got)))
    assert [e[2].split(":")[0] for e in errors] == ["truncated archive"]


def test_truncated_gzip_lines(tmp_path: Path) -> None:
    data = gzip.compress(_lines(5000))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    got, errors = _collect(cut)
    assert 0 < len(got) < 5000 and _values(got) == list(range(len(got)))
    assert len(errors) == 1 and errors[0][2].startswith("truncated archive")


def test_garbage_with_gz_suffix_is_reported_not_raised(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"this is not gzip at all\n" * 10)
    got, errors = _collect(bad)
    assert got == [] and len(errors) == 1 and errors[0][1] == 0


def test_empty_files(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_bytes(b"")
    (tmp_path / "e.jsonl.gz").write_bytes(gzip.compress(b""))
    _write_tar(tmp_path / "e.tar.gz", [("results.json", b"")])
    for name in ("e.json", "e.jsonl.gz", "e.tar.gz"):
        assert _collect(tmp_path / name) == ([], [])


# --------------------------------------------------------------------------- plain files


@pytest.mark.parametrize("name", ["a.json", "a.jsonl", "a.json.gz", "a.jsonl.gz"])
def test_plain_and_gzip_lines(tmp_path: Path, name: str) -> None:
    raw = b'{"i": 0}\r\n\n   \n{"i": 1}\n\n{"i": 2}'  # CRLF, blank lines, no final newline
    path = tmp_path / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    got, errors = _collect(path)
    assert errors == []
    assert [(g.line_no, g.data) for g in got] == [
        (1, b'{"i": 0}'),
        (4, b'{"i": 1}'),
        (6, b'{"i": 2}'),
    ]
    assert {g.member for g in got} == {""}


def test_unknown_suffix_is_sniffed(tmp_path: Path) -> None:
    gz = tmp_path / "measurements.dat"
    gz.write_bytes(gzip.compress(_lines(3)))
    tar = _write_tar(tmp_path / "archive.bin", [("results.json", _lines(2))], "w")
    assert _values(_collect(gz)[0]) == [0, 1, 2]
    assert _values(_collect(tar)[0]) == [0, 1]


def test_non_utf8_bytes_pass_through(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(b'{"a": "\xff\xfe"}\n{"i": 1}\n')
    got, errors = _collect(path)
    assert [g.data for g in got] == [b'{"a": "\xff\xfe"}', b'{"i": 1}'] and errors == []


def test_skip_lines_resumes(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(_lines(100)))
    got, _ = _collect(path, skip_lines=90)
    assert _values(got) == list(range(90, 100))
    assert got[0].line_no == 91
    assert _collect(path, skip_lines=1000)[0] == []


def test_line_too_long_is_skipped_with_bounded_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1000)
    long_line = b'{"i": -1, "pad": "' + b"x" * 50_000 + b'"}\n'
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(_lines(2) + long_line + _lines(2, 2)))
    got, errors = _collect(path)
    assert _values(got) == [0, 1, 2, 3]
    assert [g.line_no for g in got] == [1, 2, 4, 5]
    assert errors == [(str(path), 3, errors[0][2])] and "line too long" in errors[0][2]


def test_multi_megabyte_line_at_real_cap(tmp_path: Path) -> None:
    big = b'{"pad": "' + b"y" * (sources.MAX_LINE_BYTES + 10) + b'"}\n'
    ok = b'{"pad": "' + b"z" * (3 * 1024 * 1024) + b'"}\n'
    path = _write_tar(tmp_path / "big.tar.gz", [("results.json", ok + big + _lines(1))])
    got, errors = _collect(path)
    assert [g.line_no for g in got] == [1, 3]
    assert len(got[0].data) == len(ok) - 1
    assert len(errors) == 1 and errors[0][1] == 2


def test_missing_path_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as exc:
        iter_lines(tmp_path / "nope.tar.gz")  # raised at call time, not on first next()
    assert "\n" not in str(exc.value) and "nope.tar.gz" in str(exc.value)


# --------------------------------------------------------------------------- listing


def test_expand_sources(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / ".hidden").mkdir()
    for rel in [
        "d/b.tar.gz",
        "d/a.json",
        "d/sub/c.jsonl.gz",
        "d/sub/d.tgz",
        "d/e.tar",
        "d/f.txt",
        "d/.hidden/g.json",
        "d/.h.json",
        "d/h.JSON.GZ",
        "loose.data",
    ]:
        (tmp_path / rel).write_bytes(b"")
    got = expand_sources([tmp_path / "d", str(tmp_path / "loose.data"), tmp_path / "d" / "a.json"])
    names = [p.relative_to(tmp_path).as_posix() for p in got]
    assert names == [
        "d/a.json",
        "d/b.tar.gz",
        "d/e.tar",
        "d/h.JSON.GZ",
        "d/sub/c.jsonl.gz",
        "d/sub/d.tgz",
        "loose.data",
    ]


def test_expand_sources_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as exc:
        expand_sources([tmp_path, tmp_path / "missing"])
    message = str(exc.value)
    assert "missing" in message and "\n" not in message and "pass" in message


@pytest.mark.parametrize(
    "name,scan",
    [
        ("CP_Quack-echo-2021-10-11-01-01-01.tar.gz", "echo"),
        ("CP_Quack-discard-2020-01-02-03-04-05.tar", "discard"),
        ("/data/x/CP_Quack-https-2021-05-30-01-01-01.tar.gz", "https"),
        ("CP_Quack-http-2021-05-30-01-01-01.tar.gz", "http"),
        ("http_results_v2.json", "http"),
        ("https_results_v1.json", "https"),
        ("/data/echo/results.jsonl.gz", "echo"),
        ("hyperquack_results.json", None),
        ("httpsfoo.json", None),
        ("echoes.json", None),
    ],
)
def test_scan_from_name(name: str, scan: str | None) -> None:
    assert scan_from_name(name) == scan


def test_source_key_is_the_file_name_and_the_fingerprint_the_copy(tmp_path: Path) -> None:
    a = _write_tar(
        tmp_path / "CP_Quack-echo-2021-10-11-01-01-01.tar.gz", [("results.json", _lines(9))]
    )
    (tmp_path / "elsewhere").mkdir()
    b = Path(shutil.copy(a, tmp_path / "elsewhere" / a.name))
    renamed = Path(shutil.copy(a, tmp_path / "other-name.tar.gz"))
    (tmp_path / "cut").mkdir()
    cut = tmp_path / "cut" / a.name
    cut.write_bytes(a.read_bytes()[: a.stat().st_size // 2])
    key = source_key(a)
    assert key == source_key(b) == source_key(str(b)) == source_key(cut)  # same name: same source
    assert key != source_key(renamed)
    assert len(key) == 32 and int(key, 16) >= 0
    assert source_fingerprint(a) == source_fingerprint(b) != source_fingerprint(cut)
    with pytest.raises(SourceError):
        source_fingerprint(tmp_path / "missing.tar")


def test_expand_sources_skips_synth_truth_sidecars(tmp_path: Path, caplog) -> None:
    archive = _write_tar(tmp_path / "CP_Quack-echo-x.tar.gz", [("results.json", _lines(2))])
    (tmp_path / "CP_Quack-echo-x.truth.jsonl").write_text("{}\n")
    with caplog.at_level("WARNING"):
        assert expand_sources([tmp_path]) == [archive]
    assert sum("sidecar" in r.getMessage() for r in caplog.records) == 1


# --------------------------------------------------------------------------- reference data


def test_reference_files_stream() -> None:
    folder = REFERENCE / "hyperquack"
    if not folder.is_dir():
        pytest.skip("shared reference data not present")
    files = expand_sources([folder])
    assert len(files) >= 4
    for path in files:
        got, errors = _collect(path)
        assert errors == [] and got
        for line in got:
            assert isinstance(json.loads(line.data), dict)
