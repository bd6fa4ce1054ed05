"""The fast ingest path writes exactly the rows its per-try definitions give, on real files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from quackae.dataset import store
from quackae.ingest import tokens
from quackae.ingest.flatten import Options, flatten
from quackae.ingest.hyperquack import parse_measurement
from quackae.ingest.outcome import outcome_of
from quackae.ingest.signatures import label, load_signatures
from quackae.ingest.sources import scan_from_name, source_key

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"
NAMES = {
    "echo_results_v1.json": "CP_Quack-echo-2020-11-14-07-54-49.json",
    "echo_results_v2.json": "CP_Quack-echo-2021-10-11-01-01-01.json",
    "http_results_v2.json": "CP_Quack-http-2021-10-11-01-01-01.json",
    "https_results_v1.json": "CP_Quack-https-2020-11-06-15-24-18.json",
}
MAX_TOKENS = 64


@pytest.mark.skipif(not (REFERENCE / "hyperquack").is_dir(), reason="shared/reference not present")
def test_flattened_rows_equal_the_per_try_definitions(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    # each file three times: the memoised labels are hit, and the tokenizer gets its 100 tries
    for ref, name in NAMES.items():
        text = (REFERENCE / "hyperquack" / ref).read_text().rstrip("\n") + "\n"
        (src / name).write_text(text * 3)
    sigs = REFERENCE / "signatures"
    options = Options(signatures=sigs, max_tokens=MAX_TOKENS, chunk_lines=3)
    summary = flatten([src], tmp_path / "ds", options, progress=False, vocab_size=600)
    assert summary.rejected == 0 and summary.rows > 80
    table = pq.read_table(tmp_path / "ds" / "shards")
    rows = {r["row_id"]: r for r in table.to_pylist()}
    assert len(rows) == summary.rows

    matcher = load_signatures(sigs)
    encoder = tokens.Encoder(tokens.load_tokenizer(tmp_path / "ds" / store.TOKENIZER), MAX_TOKENS)
    room, off = MAX_TOKENS - len(tokens.STATIC_FIELDS) - 3, encoder.layout.text_offset
    seen, censored_rows = 0, 0
    for name in sorted(NAMES.values()):
        path = src / name
        key = source_key(path)
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            for t in parse_measurement(json.loads(line), scan_from_name(name)):
                row = rows[store.row_id(key, line_no, t.try_index)]
                censored, fingerprint = label(t, matcher)
                text = tokens.normalise(
                    tokens.try_text(t, MAX_TOKENS * tokens.CHARS_PER_TOKEN), t.domain
                )
                ids = [
                    i + off
                    for i in encoder.tokenizer.encode(text, add_special_tokens=False).ids[:room]
                ]
                statics = tokens.static_tokens(t, outcome_of(t, 0, ""), encoder.layout)
                assert row["tokens"] == [tokens.START, *statics, tokens.SEP, *ids, tokens.END]
                assert row["length"] == len(row["tokens"])
                assert (row["censored"], row["fingerprint"]) == (censored, fingerprint)
                assert row["outcome"] == outcome_of(t, censored, fingerprint)
                assert row["timestamp"] == (math.floor(t.start) if math.isfinite(t.start) else 0)
                assert row["end_time"] == (math.floor(t.end) if math.isfinite(t.end) else 0)
                duration = (t.end - t.start) * 1000.0
                if math.isfinite(duration):
                    assert row["duration_ms"] == pytest.approx(duration, rel=1e-6)
                else:
                    assert math.isnan(row["duration_ms"])
                assert (row["source"], row["line"], row["ip"], row["domain"], row["scan"]) == (
                    name,
                    line_no,
                    t.ip,
                    t.domain,
                    t.scan,
                )
                seen += 1
                censored_rows += censored == 1
    assert seen == summary.rows and censored_rows > 0
