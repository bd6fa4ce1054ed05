"""Locations on local disk and on a real GCS-API server (fake-gcs-server) through pyarrow.fs."""

from __future__ import annotations

import pytest

from quackae.io import storage


def test_uri_round_trip_and_children(gcs) -> None:
    base = storage.resolve(gcs.uri("store-a", "data"))
    assert base.remote and base.path == "store-a/data"
    # (a .gz name would do too, but fake-gcs-server reports the size it stores those at, gzipped)
    child = base.child("x", "CP_Quack-http-1.json")
    child.write_bytes(b"abc")
    again = storage.resolve(child.uri)  # a child's URI travels as a string and resolves back
    assert (
        again.read_bytes() == b"abc" and again.size() == 3 and again.name == "CP_Quack-http-1.json"
    )
    assert base.is_dir() and not base.is_file()
    assert [loc.name for loc in base.list_files()] == ["CP_Quack-http-1.json"]


def test_glob_matches_names_across_prefixes(gcs) -> None:
    base = storage.resolve(gcs.uri("store-b", "scans"))
    for name in (
        "d1/CP_Quack-http-1.tar.gz",
        "d1/CP_Quack-echo-1.json",
        "d2/CP_Quack-http-2.tar.gz",
        "d2/notes.txt",
    ):
        base.child(name).write_bytes(b"x")
    found = storage.glob(gcs.uri("store-b", "scans/*/CP_Quack-http-*.tar.gz"))
    assert [loc.name for loc in found] == ["CP_Quack-http-1.tar.gz", "CP_Quack-http-2.tar.gz"]
    assert storage.glob(gcs.uri("store-b", "scans/nothing-*")) == []


def test_local_paths_stay_local(tmp_path) -> None:
    loc = storage.resolve(tmp_path / "a.bin")
    assert not loc.remote and not storage.is_uri(str(tmp_path))
    loc.write_bytes(b"12345")
    assert loc.read_bytes(2) == b"12" and loc.is_file()


def test_unreachable_store_is_one_line() -> None:
    loc = storage.resolve(
        "gs://anonymous@nobucket/x?scheme=http&endpoint_override=127.0.0.1:9&retry_limit_seconds=1"
    )
    with pytest.raises(storage.StorageError, match="cannot reach it"):
        loc.info()
