"""The dataset store's public surface, in one place: what the other stages call.

A dataset folder (local, or a ``gs://``/``s3://`` prefix)::

    DIR/manifest.json            what is committed (only shards listed here exist for readers)
    DIR/tokenizer.json           the BPE tokenizer the tokens were made with
    DIR/shards/part-*.parquet    one row per non-control try (``schema.SCHEMA``)
    DIR/rejects/part-*.jsonl     every rejected input line: {"file", "line", "reason"}
    DIR/cache/                   flat token cache, memory-mapped by readers (rebuilt on demand)

The code lives in ``files`` (reaching files, local or remote), ``schema`` (columns, row ids),
``manifest`` (commit, clean-up, integrity), ``shards`` (write and read one shard), ``mirror``
(local copies of remote datasets), ``reader`` (``Dataset``, ``DatasetTokens``, the token cache)
and ``quackae.io.locks`` (the writer lock).
"""

from quackae.dataset.files import (
    CACHE_NAME,
    MANIFEST,
    SHARD_NAME,
    TOKENIZER,
    Root,
    StoreError,
    damaged,
    delete_files,
    exists,
    location,
    read_file,
    write_file,
)
from quackae.dataset.manifest import (
    FORMAT_VERSION,
    ManifestChanged,
    add_shard,
    check_owned,
    check_shards,
    commit,
    dataset_version,
    drop_source,
    load_tokenizer,
    new_manifest,
    read_manifest,
    remove_orphans,
    verify,
    write_manifest,
)
from quackae.dataset.mirror import CACHE_ENV, cache_dir, local_dataset
from quackae.dataset.reader import Dataset, DatasetTokens, TokenCache, decode_texts
from quackae.dataset.schema import (
    LABEL_KEYS,
    METADATA_COLUMNS,
    SCHEMA,
    SHARD_WRITE_OPTIONS,
    row_id,
    row_ids,
)
from quackae.dataset.shards import write_shard
from quackae.io.locks import writer_lock as dataset_lock

__all__ = [
    "CACHE_ENV",
    "CACHE_NAME",
    "FORMAT_VERSION",
    "LABEL_KEYS",
    "MANIFEST",
    "METADATA_COLUMNS",
    "SCHEMA",
    "SHARD_NAME",
    "SHARD_WRITE_OPTIONS",
    "TOKENIZER",
    "Dataset",
    "DatasetTokens",
    "ManifestChanged",
    "Root",
    "StoreError",
    "TokenCache",
    "add_shard",
    "cache_dir",
    "check_owned",
    "check_shards",
    "commit",
    "damaged",
    "decode_texts",
    "dataset_lock",
    "dataset_version",
    "delete_files",
    "drop_source",
    "exists",
    "load_tokenizer",
    "local_dataset",
    "location",
    "new_manifest",
    "read_file",
    "read_manifest",
    "remove_orphans",
    "row_id",
    "row_ids",
    "verify",
    "write_file",
    "write_manifest",
    "write_shard",
]
