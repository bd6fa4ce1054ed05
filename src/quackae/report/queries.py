"""The report's numbers: DuckDB over the dataset's Parquet shards and ``predictions.parquet``.

Nothing is loaded into Python row by row: DuckDB reads the files in place, joins the
predictions to the dataset by ``row_id`` once (to check they belong together), and every table of
the report is one grouped query. Row-level tables are capped per group with a window
(``row_number() OVER (PARTITION BY ...)``), so a page's size does not grow with the dataset.

Definitions used on every page:

- *candidate*: the detector's ``candidate`` (probability at or above its threshold);
- *new candidate*: a candidate no signature labelled (``censored == 0``);
- *labelled block*: a row a blockpage signature labelled censored (``censored == 1``);
- *flagged*: a candidate or a labelled block; first and last seen are over flagged rows.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from quackae.dataset import store
from quackae.ingest.signatures import Matcher, Signature

PREDICTIONS_FILE = "predictions.parquet"  # what ``quackae detect predict`` writes (detect.pipeline)
SUMMARY_FILE = "detect.json"
PROPOSALS_FILE = "proposed_signatures.json"
REQUIRED = (
    "row_id",
    "source",
    "ip",
    "domain",
    "country_code",
    "timestamp",
    "scan",
    "censored",
    "fingerprint",
    "template",
    "probability",
    "candidate",
    "reason",
)
FLAGGED = "(candidate OR blocked)"
ORDER = "new_candidates DESC, candidates DESC, blocked DESC, rows DESC"


class ReportError(Exception):
    """Inputs that cannot make a report; the message is one line saying what to do."""


@dataclass
class Inputs:
    """A dataset and the detect output scored on it, checked to belong together."""

    dataset: Path  # local folder (a URI is mirrored first)
    shards: list[str]
    detections: Path
    summary: dict[str, Any]
    proposals: list[dict[str, str]]  # {"fingerprint", "pattern"} in file order
    has_cluster: bool  # predictions.parquet has the ``cluster`` column


def sql_string(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def sql_list(paths: list[str]) -> str:
    """A SQL list of string literals (file paths for ``read_parquet``)."""
    return "[" + ", ".join(sql_string(p) for p in paths) + "]"


def read_proposals(path: Path) -> list[dict[str, str]]:
    """The JSON lines of ``proposed_signatures.json`` (none when the file is absent)."""
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            out.append({"fingerprint": str(item["fingerprint"]), "pattern": str(item["pattern"])})
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ReportError(
                f"{path}:{n} is not a signature line {{fingerprint, pattern}}; rerun "
                "`quackae detect predict`"
            ) from None
    return out


def open_inputs(data_dir: store.Root, detections: Path) -> Inputs:
    """Check the detect output folder and the dataset; one clear line when they do not fit."""
    detections = Path(detections)
    pred = detections / PREDICTIONS_FILE
    if not pred.is_file():
        raise ReportError(
            f"{detections} has no {PREDICTIONS_FILE}: pass the folder `quackae detect predict "
            "--out` wrote"
        )
    try:
        names = pq.read_schema(pred).names
    except (OSError, pa.ArrowException) as e:
        raise ReportError(f"{pred} is unreadable ({e}); rerun `quackae detect predict`") from None
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ReportError(
            f"{pred} lacks the columns {', '.join(missing)}; it is not a `quackae detect predict` "
            "output (or an older one): rerun it"
        )
    summary_path = detections / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    ds = store.Dataset(data_dir)
    shards = [str(p) for p in ds.shard_paths]
    if not shards:
        raise ReportError(f"the dataset {data_dir} has no rows; flatten some archives into it")
    return Inputs(
        dataset=Path(ds.root),
        shards=shards,
        detections=detections,
        summary=summary,
        proposals=read_proposals(detections / PROPOSALS_FILE),
        has_cluster="cluster" in names,
    )


def connect(inputs: Inputs, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with table ``r``: every scored row, joined to the dataset, checked.

    Columns: the prediction's, ``cluster`` (proposal fingerprint or NULL), ``start_time``
    (UTC timestamp, NULL when unknown), ``day`` (its date), ``new`` and ``blocked`` flags.
    """
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads TO {int(threads)}")
    pred = sql_string(str(inputs.detections / PREDICTIONS_FILE))
    cluster = "p.cluster" if inputs.has_cluster else "CAST(NULL AS VARCHAR)"
    con.execute(
        f"""
        CREATE TABLE r AS
        SELECT p.row_id, p.source, p.ip, p.domain, coalesce(p.country_code, '') AS country_code,
               p.timestamp, p.scan, p.censored, coalesce(p.fingerprint, '') AS fingerprint,
               p.template, p.probability, p.candidate, p.reason, {cluster} AS cluster,
               CASE WHEN p.timestamp > 0 THEN make_timestamp(p.timestamp::BIGINT * 1000000) END
                   AS start_time,
               p.candidate AND p.censored = 0 AS new,
               p.censored = 1 AS blocked,
               d.row_id IS NOT NULL AS known
        FROM read_parquet({pred}) p
        LEFT JOIN (SELECT row_id FROM read_parquet({sql_list(inputs.shards)})) d USING (row_id)
        """
    )
    unknown = con.execute("SELECT count(*) FILTER (WHERE NOT known), count(*) FROM r").fetchone()
    if unknown[0]:
        scored = inputs.summary.get("dataset", "another dataset")
        raise ReportError(
            f"{unknown[0]} of the {unknown[1]} scored rows are not in the dataset {inputs.dataset}:"
            f" pass the --data_dir that `detect predict` scored ({scored})"
        )
    if not inputs.has_cluster and inputs.proposals:
        assign_clusters(con, inputs)
    con.execute("ALTER TABLE r ADD COLUMN day DATE")
    con.execute("UPDATE r SET day = start_time::DATE")
    return con


def fetch_texts(inputs: Inputs, row_ids: list[int]) -> dict[int, str]:
    """The normalised text of a few rows, decoded from the tokens DuckDB reads from the shards."""
    if not row_ids:
        return {}
    con = duckdb.connect(":memory:")
    con.register("wanted", pa.table({"row_id": pa.array(sorted(set(row_ids)), pa.int64())}))
    got = con.execute(
        f"SELECT s.row_id, s.tokens FROM read_parquet({sql_list(inputs.shards)}) s "
        "SEMI JOIN wanted USING (row_id)"
    ).fetchall()
    con.close()
    manifest = store.read_manifest(inputs.dataset)
    tokenizer = store.load_tokenizer(inputs.dataset)
    texts = store.decode_texts(
        tokenizer, [tokens for _, tokens in got], int(manifest["layout"]["text_offset"])
    )
    return dict(zip([row_id for row_id, _ in got], texts, strict=True))


def assign_clusters(con: duckdb.DuckDBPyConnection, inputs: Inputs) -> None:
    """Fill ``cluster`` of an older predictions file (no such column) by matching the proposals.

    New candidates' normalised texts are matched with the project's own matcher, first hit in
    file order wins: the rows ``flatten --signatures`` with the proposals added would label.
    """
    ids = [r[0] for r in con.execute("SELECT row_id FROM r WHERE new").fetchall()]
    texts = fetch_texts(inputs, ids)
    matcher = Matcher([], [Signature(p["fingerprint"], p["pattern"]) for p in inputs.proposals])
    hits = {i: matcher.match(t) for i, t in texts.items()}
    found = {i: fp for i, (hit, fp) in hits.items() if hit == 1}
    con.register(
        "assigned",
        pa.table(
            {
                "row_id": pa.array(list(found), pa.int64()),
                "fp": pa.array(list(found.values()), pa.string()),
            }
        ),
    )
    con.execute("UPDATE r SET cluster = a.fp FROM assigned a WHERE r.row_id = a.row_id")
    con.unregister("assigned")


# --------------------------------------------------------------------------- aggregates

GROUP_COLUMNS = f"""
    count(*) AS rows,
    count(*) FILTER (WHERE candidate) AS candidates,
    count(*) FILTER (WHERE new) AS new_candidates,
    count(*) FILTER (WHERE blocked) AS blocked,
    count(DISTINCT domain) FILTER (WHERE {FLAGGED}) AS domains,
    count(DISTINCT ip) FILTER (WHERE {FLAGGED}) AS vantage_points,
    count(DISTINCT country_code) FILTER (WHERE {FLAGGED}) AS countries,
    max(probability) AS max_probability,
    strftime(min(start_time) FILTER (WHERE {FLAGGED}), '%Y-%m-%d %H:%M') AS first_seen,
    strftime(max(start_time) FILTER (WHERE {FLAGGED}), '%Y-%m-%d %H:%M') AS last_seen
"""


def records(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    """Rows of a query as dicts."""
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def overview(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The figures at the top of the index page."""
    (row,) = records(
        con,
        f"""
        SELECT count(*) AS rows, count(DISTINCT source) AS scans,
               strftime(min(start_time), '%Y-%m-%d') AS first_day,
               strftime(max(start_time), '%Y-%m-%d') AS last_day,
               count(DISTINCT country_code) FILTER (WHERE country_code <> '') AS countries,
               count(DISTINCT ip) AS vantage_points, count(DISTINCT domain) AS domains,
               count(*) FILTER (WHERE blocked) AS blocked,
               count(*) FILTER (WHERE censored = -1) AS uncensored,
               count(*) FILTER (WHERE censored = 0) AS undetermined,
               count(*) FILTER (WHERE candidate) AS candidates,
               count(*) FILTER (WHERE new) AS new_candidates,
               count(*) FILTER (WHERE new AND cluster IS NOT NULL) AS in_proposals,
               count(*) FILTER (WHERE {FLAGGED}) AS flagged
        FROM r
        """,
    )
    return row


def grouped(
    con: duckdb.DuckDBPyConnection,
    key: str,
    where: str = "TRUE",
    parent: str | None = None,
    limit: int | None = None,
    extra: str = "",
) -> list[dict[str, Any]]:
    """``GROUP_COLUMNS`` per value of ``key`` (SQL), most new candidates first.

    With ``parent``, the groups are per (parent, key) and ``limit`` applies within each parent.
    ``extra`` adds aggregate columns (``"mode(country_code) AS country"``).
    """
    keys = f"{parent} AS parent, {key} AS key" if parent else f"{key} AS key"
    by = "parent, key" if parent else "key"
    ranked = f"row_number() OVER ({'PARTITION BY parent ' if parent else ''}ORDER BY {ORDER}, key)"
    cap = f"WHERE rank <= {int(limit)}" if limit else ""
    return records(
        con,
        f"""
        SELECT * FROM (
            SELECT *, {ranked} AS rank FROM (
                SELECT {keys}, {GROUP_COLUMNS}{", " + extra if extra else ""}
                FROM r WHERE {where} GROUP BY {by}
            )
        ) {cap} ORDER BY {"parent, " if parent else ""}rank
        """,
    )


def count_groups(con: duckdb.DuckDBPyConnection, key: str, where: str = "TRUE") -> int:
    """How many distinct values ``key`` takes (for "the first N of M")."""
    return int(con.execute(f"SELECT count(DISTINCT {key}) FROM r WHERE {where}").fetchone()[0])


ROW_COLUMNS = """row_id, strftime(start_time, '%Y-%m-%d %H:%M:%S') AS start_time, country_code,
    ip, domain, scan, censored, fingerprint, template, cluster, probability, candidate, reason"""


def top_rows(
    con: duckdb.DuckDBPyConnection, parent: str, where: str, limit: int
) -> dict[Any, list[dict[str, Any]]]:
    """Flagged rows per value of ``parent``, most probable first, at most ``limit`` each."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for row in records(
        con,
        f"""
        SELECT * FROM (
            SELECT {parent} AS parent, {ROW_COLUMNS}, row_number() OVER (
                PARTITION BY {parent} ORDER BY probability DESC, new DESC, row_id) AS rank
            FROM r WHERE {FLAGGED} AND ({where})
        ) WHERE rank <= {int(limit)} ORDER BY parent, rank
        """,
    ):
        out.setdefault(row.pop("parent"), []).append(row)
    return out


def per_day(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Candidates, new candidates and labelled blocks per (country, UTC day)."""
    return records(
        con,
        """
        SELECT country_code, strftime(day, '%Y-%m-%d') AS day,
               count(*) FILTER (WHERE candidate) AS candidates,
               count(*) FILTER (WHERE new) AS new_candidates,
               count(*) FILTER (WHERE blocked) AS blocked
        FROM r WHERE day IS NOT NULL GROUP BY ALL ORDER BY day, country_code
        """,
    )


def days(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every UTC day from the first to the last measurement (gaps included)."""
    first, last = con.execute("SELECT min(day), max(day) FROM r").fetchone()
    if first is None:
        return []
    return [
        d[0]
        for d in con.execute(
            f"SELECT strftime(range::DATE, '%Y-%m-%d') FROM range(DATE '{first}', "
            f"DATE '{last}' + INTERVAL 1 DAY, INTERVAL 1 DAY)"
        ).fetchall()
    ]


_NUMBER = re.compile(r"\d+(?:\.\d+)?%?")
_IN_COUNTRY = re.compile(r"\bin [A-Z]{2}\b")


def reason_counts(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[str, int]], list]:
    """How the detector decided: rows per reason of non-candidates, evidence parts of candidates.

    A candidate's reason lists its evidence joined by ", "; each part is counted once per row,
    numbers as N and the country as "its country" so that equal evidence counts together.
    """
    rows = con.execute("SELECT reason, candidate, count(*) FROM r GROUP BY ALL").fetchall()
    unflagged: Counter[str] = Counter()
    evidence: Counter[str] = Counter()
    for reason, candidate, n in rows:
        if not candidate:
            unflagged[reason or "(none)"] += n
            continue
        parts = {
            _IN_COUNTRY.sub("in its country", _NUMBER.sub("N", p.strip()))
            for p in (reason or "").split(", ")
            if p.strip()
        }
        for part in parts or {"(none)"}:
            evidence[part] += n
    by_count = lambda c: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))  # noqa: E731
    return by_count(unflagged), by_count(evidence)


def scans(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The overview per scan type (echo, discard, http, https)."""
    return grouped(con, "scan")
