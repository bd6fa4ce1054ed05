"""Read a stored dataset back into padded batches: records/s and bytes on disk per record.

Builds a dataset from generated archives, then times the data module's training loader (the
memory-mapped token cache + one vectorised gather per batch), with and without length bucketing,
and the first read that builds the cache from the Parquet shards.

    .venv/bin/python benchmarks/dataload.py [--measurements 20000] [--batch_size 64]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from quackae import store, synth
from quackae.cp_tokenized_data import QuackTokenizedDataModule
from quackae.flatten import Options, flatten


def disk_bytes(root: Path) -> int:
    """Bytes of the committed shards (what a dataset costs to store and share)."""
    return sum(p.stat().st_size for p in (root / "shards").glob("*.parquet"))


def time_loader(root: Path, batch_size: int, bucketing: bool, epochs: int) -> tuple[float, float]:
    """Records/s over ``epochs`` passes of the training loader, and the padding fraction."""
    dm = QuackTokenizedDataModule(str(root), batch_size=batch_size, bucketing=bucketing)
    dm.prepare_data()
    records = cells = pads = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in dm.train_dataloader():
            records += batch.shape[0]
            cells += batch.numel()
            pads += int((batch == dm.pad_id).sum())
    return records / (time.perf_counter() - start), pads / max(cells, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measurements", type=int, default=20000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quackae-bench-load-"))
    try:
        raws = [
            synth.write_archive(work / "raw", args.measurements, seed=1, fmt="v2", scan="http"),
            synth.write_archive(work / "raw", args.measurements, seed=2, fmt="v1", scan="echo"),
        ]
        root = work / "ds"
        flatten([r.archive for r in raws], root, Options(), progress=False)
        ds = store.Dataset(root)
        start = time.perf_counter()
        ds.tokens()
        build = time.perf_counter() - start
        print(f"dataset: {len(ds)} records, {disk_bytes(root) / len(ds):.0f} bytes/record on disk "
              f"(Parquet, zstd), token cache built in {build:.2f}s")  # fmt: skip
        for bucketing in (False, True):
            rate, pad = time_loader(root, args.batch_size, bucketing, args.epochs)
            print(f"train loader B={args.batch_size} bucketing={'on ' if bucketing else 'off'}: "
                  f"{rate:>10,.0f} records/s, padding {pad:.0%} of cells")  # fmt: skip
        print("target: >= 300,000 records/s (the original pickle-per-record store: ~11,000/s, ~4 KB/record)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
