"""`quackae export`: every scored row, Censored Planet's column names, the same values back."""

from __future__ import annotations

import ast
import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import REFERENCE, run_cli
from quackae.dataset import store
from quackae.detect.features import static_flags
from quackae.report.export import OWN_COLUMNS, cp_columns

SCHEMA_FILE = REFERENCE / "censoredplanet-flattener" / "pipeline" / "metadata" / "schema.py"


def bigquery_fields() -> set[str]:
    """The keys of ``HYPERQUACK_BIGQUERY_SCHEMA`` in Censored Planet's schema.py (not imported)."""
    tree = ast.parse(SCHEMA_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "HYPERQUACK_BIGQUERY_SCHEMA" for t in node.targets
        ):
            return {k.value for k in node.value.keys}
    raise AssertionError("no HYPERQUACK_BIGQUERY_SCHEMA in schema.py")


def _export(world, fmt, out):
    done = run_cli(
        "export",
        "--data_dir",
        world.dataset,
        "--detections",
        world.detections,
        "--format",
        fmt,
        "--storage_path",
        out,
    )
    assert done.returncode == 0, done.stderr
    return out / f"hyperquack_predictions.{fmt}"


def _rows(path, fmt) -> list[dict]:
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_export_round_trips(report_world, tmp_path, fmt):
    rows = _rows(_export(report_world, fmt, tmp_path), fmt)
    pred = pq.read_table(report_world.predictions).to_pylist()
    ds = store.Dataset(report_world.dataset)
    data = {r["row_id"]: r for r in ds.read_columns(list(store.METADATA_COLUMNS)).to_pylist()}
    assert len(rows) == len(pred) == len(data)
    text = fmt == "csv"  # CSV gives strings back

    def same(value, want):
        if want is None:
            return value in (None, "")
        if isinstance(want, bool):
            return value == (str(want).lower() if text else want)
        if isinstance(want, float):
            return abs(float(value) - want) < 1e-6
        return (str(value) if text else value) == (str(want) if text else want)

    tokens = store.DatasetTokens(report_world.dataset)
    flags = static_flags(tokens, np.array([p["row_id"] for p in pred], dtype=np.int64))
    for i, (got, p) in enumerate(zip(rows, pred, strict=True)):  # in predictions order
        d = data[p["row_id"]]
        assert same(got["row_id"], p["row_id"]) and same(got["domain"], d["domain"])
        assert same(got["server_ip"], d["ip"]) and same(
            got["page_signature"], d["fingerprint"] or None
        )
        assert same(got["probability"], float(p["probability"]))
        assert same(got["candidate"], p["candidate"]) and same(got["cluster"], p["cluster"])
        assert same(got["reason"], p["reason"]) and same(got["label"], d["censored"])
        blockpage = None if not d["fingerprint"] else d["censored"] == 1
        assert same(got["is_known_blockpage"], blockpage)
        assert same(got["controls_failed"], bool(flags["controls_failed"][i]))
        assert same(got["stateful_block"], bool(flags["stateful_block"][i]))
        assert same(got["matches_template"], bool(flags["success"][i]))
        assert same(got["no_response_in_measurement_matches_template"], d["anomaly"])
        assert not got["source"].endswith((".gz", ".json", ".tar"))
        if d["timestamp"]:
            assert str(got["date"])[:10] == np.datetime64(d["timestamp"], "s").astype(str)[:10]
    assert any(r["cluster"] not in (None, "") for r in rows)


def test_field_names_are_censored_planets(report_world, tmp_path):
    if not SCHEMA_FILE.is_file():
        pytest.skip(f"Censored Planet's schema.py is not here ({SCHEMA_FILE})")
    fields = bigquery_fields()
    manifest = store.read_manifest(report_world.dataset)
    ours = set(cp_columns(manifest["layout"]))
    assert ours <= fields, ours - fields  # every CP-named column is one of theirs
    assert not set(OWN_COLUMNS) & fields  # and quackae's own never take one of their names
    names = pq.read_schema(_export(report_world, "parquet", tmp_path)).names
    assert set(names) == ours | set(OWN_COLUMNS)
    assert {"domain", "server_ip", "date", "start_time", "is_known_blockpage", "page_signature"} | {
        "outcome",
        "controls_failed",
        "stateful_block",
    } <= set(names)


def test_export_refuses_another_dataset(report_world, small_dataset, tmp_path):
    done = run_cli(
        "export",
        "--data_dir",
        small_dataset,
        "--detections",
        report_world.detections,
        "--storage_path",
        tmp_path,
    )
    assert done.returncode == 2 and "not in the dataset" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("hyperquack_predictions.*"))
