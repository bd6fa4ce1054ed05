"""The predictions folder ``classify predict`` writes: one scored shard per embeddings shard.

Layout::

    DIR/predictions.json         what was scored, with which checkpoint and threshold
    DIR/shards/<shard>.parquet   embeddings metadata + ``probability``, ``baseline_probability``
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PREDICTIONS_META = "predictions.json"


def prediction_paths(pred_dir: Path) -> list[Path]:
    """Prediction shards of a predict output directory, in name order."""
    return sorted((Path(pred_dir) / "shards").glob("*.parquet"))


def read_predictions(
    pred_dir: Path, columns: Sequence[str], min_probability: float | None = None
) -> pa.Table:
    """Selected columns of the prediction shards, optionally only rows of probability >= a bound."""
    paths = prediction_paths(pred_dir)
    if not paths:
        raise ValueError(
            f"{pred_dir} holds no prediction shards; run `quackae classify predict` first"
        )
    flt = None if min_probability is None else [("probability", ">=", float(min_probability))]
    return pa.concat_tables(pq.read_table(p, columns=list(columns), filters=flt) for p in paths)


def count_rows(pred_dir: Path) -> int:
    """Number of rows of every prediction shard, from the Parquet footers."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in prediction_paths(pred_dir))
