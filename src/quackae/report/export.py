"""``quackae export``: every scored row with its dataset row, in Censored Planet's field names.

Censored Planet publishes Hyperquack as BigQuery tables (``HYPERQUACK_BIGQUERY_SCHEMA`` of
their flattener's ``pipeline/metadata/schema.py``). A column here takes their name wherever
the dataset holds the same field (``CP_COLUMNS``), so an export joins with their tables on
``domain``, ``server_ip``, ``date``/``start_time`` and ``source``; quackae's own columns
(``OWN_COLUMNS``: the detector's ``probability``, ``candidate``, ``reason``, the proposal
``cluster``, the row's identity) sit beside them. Fields the dataset does not keep (the raw
body and headers, errors, TLS certificate details, AS and organisation, ``measurement_id``,
``retry``) are left out rather than guessed. DuckDB reads the Parquet files in place and writes
the output (``COPY``), so memory stays bounded at any size.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from quackae.dataset import store
from quackae.ingest.tokens import STATIC_FIELDS
from quackae.io.atomic import atomic_path
from quackae.io.folders import check_output, claim_output
from quackae.report.queries import PREDICTIONS_FILE, ReportError, open_inputs, sql_list, sql_string

EXPORT_NAME = "hyperquack_predictions"
FORMATS = {"csv": "(FORMAT csv, HEADER)", "parquet": "(FORMAT parquet, COMPRESSION zstd)"}
FORMATS["jsonl"] = "(FORMAT json)"  # DuckDB writes one JSON object per line

START = "CASE WHEN d.timestamp > 0 THEN make_timestamp(d.timestamp::BIGINT * 1000000) END"
END = "CASE WHEN d.end_time > 0 THEN make_timestamp(d.end_time::BIGINT * 1000000) END"


def flag_sql(name: str, start: int) -> str:
    """SQL decoding one measurement flag from a row's static tokens (``features.static_flags``).

    ``success`` has three values (unknown, false, true), the others two (false, true).
    """
    names = [n for n, _ in STATIC_FIELDS]
    value = f"(d.tokens[{names.index(name) + 2}] - {int(start)})"  # 1-based; START comes first
    if name == "success":
        return f"CASE {value} WHEN 2 THEN TRUE WHEN 1 THEN FALSE END"
    return f"({value} = 1)"


def cp_columns(layout: dict) -> dict[str, str]:
    """Censored Planet's column name -> its SQL over predictions ``p`` and dataset rows ``d``."""
    static = layout["static"]
    return {
        "domain": "d.domain",
        "domain_is_control": "FALSE",  # the dataset keeps no control try
        "date": f"({START})::DATE",  # UTC day of the start time
        "start_time": START,
        "end_time": END,
        "server_ip": "d.ip",
        "server_country": "NULLIF(d.country_code, '')",
        # the archive's name without extensions, as Censored Planet's source_from_filename gives
        "source": r"regexp_replace(d.source, '(\.(tar|tgz|gz|json|jsonl))+$', '')",
        # a blockpage signature hit -> true, a false-positive signature hit -> false, else NULL
        "is_known_blockpage": "CASE WHEN d.fingerprint = '' THEN NULL WHEN d.censored = 1 "
        "THEN TRUE WHEN d.censored = -1 THEN FALSE END",
        "page_signature": "NULLIF(d.fingerprint, '')",
        "outcome": "d.outcome",
        "matches_template": flag_sql("success", static["success"][0]),
        "no_response_in_measurement_matches_template": "d.anomaly",  # CP's name for anomaly
        "controls_failed": flag_sql("controls_failed", static["controls_failed"][0]),
        "stateful_block": flag_sql("stateful_block", static["stateful_block"][0]),
    }


OWN_COLUMNS = {
    "row_id": "d.row_id",
    "line": "d.line",
    "try_index": "d.try_index",  # index in the measurement's tries, controls counted
    "scan": "d.scan",
    "server_country_name": "NULLIF(d.location, '')",
    "label": "d.censored",  # quackae's label: 1 censored, 0 undetermined, -1 uncensored
    "template": "p.template",
    "probability": "p.probability",
    "candidate": "p.candidate",
    "reason": "p.reason",
    "cluster": "p.cluster",
}


def export(
    data_dir: store.Root, detections: Path, fmt: str, storage_path: Path
) -> tuple[Path, int]:
    """Write ``storage_path/hyperquack_predictions.<fmt>``; its path and number of rows."""
    if fmt not in FORMATS:
        raise ReportError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    out = Path(storage_path)
    proof = tuple(f"{EXPORT_NAME}.{f}" for f in FORMATS)  # what an earlier export left
    check_output(out, "--storage_path", "quackae export", proof=proof)  # before reading
    inputs = open_inputs(data_dir, detections)
    manifest = store.read_manifest(inputs.dataset)
    own = dict(OWN_COLUMNS)
    if not inputs.has_cluster:
        own["cluster"] = "CAST(NULL AS VARCHAR)"
    columns = {**cp_columns(manifest["layout"]), **own}
    select = ",\n".join(f'{sql} AS "{name}"' for name, sql in columns.items())
    pred = sql_string(str(inputs.detections / PREDICTIONS_FILE))
    query = (
        f"SELECT {select} FROM read_parquet({pred}, file_row_number = true) p "
        f"JOIN read_parquet({sql_list(inputs.shards)}) d USING (row_id) "
        "ORDER BY p.file_row_number"
    )
    claim_output(out, "--storage_path", "quackae export", proof=proof)
    target = out / f"{EXPORT_NAME}.{fmt}"
    con = duckdb.connect(":memory:")
    try:
        scored, missing = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE d.row_id IS NULL) "
            f"FROM read_parquet({pred}) p "
            f"LEFT JOIN (SELECT row_id FROM read_parquet({sql_list(inputs.shards)})) d "
            "USING (row_id)"
        ).fetchone()
        if missing:
            raise ReportError(
                f"{missing} of the {scored} scored rows are not in the dataset {inputs.dataset}: "
                "pass the --data_dir that `detect predict` scored"
            )
        with atomic_path(target) as tmp:
            con.execute(f"COPY ({query}) TO {sql_string(str(tmp))} {FORMATS[fmt]}")
    finally:
        con.close()
    return target, int(scored)
