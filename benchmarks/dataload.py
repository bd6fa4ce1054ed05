"""Reading a stored dataset back into padded batches: quackae's store vs the seed's pickle store.

Builds a dataset from generated archives, writes the same records in the seed's layout (one pickle
file per record: token ids + metadata, in a temporary directory; nothing in ``src/`` pickles), then
times both readers on the same shuffled B=64 batches, one warm-up pass each, alternating A B A B:

* quackae: the training loader (``QuackTokenizedDataModule.train_dataloader``: the memory-mapped
  token cache + one vectorised gather per batch), length bucketing off and on;
* the seed: open + unpickle every record of the batch, then pad (its collate).

Records/s and bytes on disk per record for both. There are no FLOPs in reading; instead of an MFU
the last line says what share of a FLOP-limited training step (matmul peak measured in this run,
E=128 H=512 V=7069) reading one batch would take.

    .venv/bin/python benchmarks/dataload.py [--measurements 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from original import (
    alternate,
    machine_line,
    make_batch,
    matmul_peak,
    pad_batch,
    read_pickle_store,
    train_flops,
    write_pickle_store,
)
from quackae import synth
from quackae.dataset import store
from quackae.ingest.flatten import Options, flatten
from quackae.model.datamodule import QuackTokenizedDataModule

META = [
    "row_id",
    "source",
    "line",
    "ip",
    "domain",
    "country_code",
    "timestamp",
    "scan",
    "censored",
    "outcome",
]


def seed_records(ds: store.Dataset) -> list[dict]:
    """Every record as the seed stored it: a dict of metadata and the token ids."""
    table = ds.read_columns([*META, "tokens"]).to_pylist()
    return [
        {**{k: row[k] for k in META}, "tokens": np.asarray(row["tokens"], dtype=np.int64)}
        for row in table
    ]


def disk_bytes(paths: list[Path]) -> int:
    """Disk space ``paths`` take (allocated blocks: a small file still fills a whole block)."""
    return sum(p.stat().st_blocks * 512 for p in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--measurements", type=int, default=5000, help="per generated archive (two archives)"
    )
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"command: python benchmarks/dataload.py --measurements {args.measurements} "
        f"--batch_size {args.batch_size} --rounds {args.rounds}"
    )
    work = Path(tempfile.mkdtemp(prefix="quackae-bench-load-"))
    try:
        raws = [
            synth.write_archive(work / "raw", args.measurements, seed=1, fmt="v2", scan="http"),
            synth.write_archive(work / "raw", args.measurements, seed=2, fmt="v1", scan="echo"),
        ]
        root = work / "ds"
        flatten([r.archive for r in raws], root, Options(), progress=False)
        ds = store.Dataset(root)
        n = len(ds)
        pickles = work / "pickles"
        write_pickle_store(pickles, seed_records(ds))
        ds.tokens()  # build the cache once, as the first epoch does
        dms = {
            b: QuackTokenizedDataModule(str(root), batch_size=args.batch_size, bucketing=b)
            for b in (False, True)
        }
        for dm in dms.values():
            dm.prepare_data()
        order = np.random.default_rng(0).permutation(n)
        seed_batches = [order[i : i + args.batch_size] for i in range(0, n, args.batch_size)]

        def quackae_epoch(bucketing: bool) -> None:
            for _ in dms[bucketing].train_dataloader():
                pass

        def seed_epoch() -> None:
            for index in seed_batches:
                pad_batch([r["tokens"] for r in read_pickle_store(pickles, index)])

        seconds = alternate(
            {
                "quackae, bucketing off": lambda: quackae_epoch(False),
                "quackae, bucketing on": lambda: quackae_epoch(True),
                "seed: pickle per record": seed_epoch,
            },
            args.rounds,
        )
        size = {
            "quackae": disk_bytes(sorted((root / "shards").glob("*.parquet"))),
            "seed": disk_bytes(sorted(pickles.glob("*.pkl"))),
        }
        print(
            f"dataset: {n} records, B={args.batch_size}; one epoch per call, median of "
            f"{args.rounds} "
            f"alternating rounds after 1 warm-up; {machine_line()}"
        )
        base = seconds["seed: pickle per record"]
        for name, sec in seconds.items():
            disk = size["seed" if name.startswith("seed") else "quackae"] / n
            print(
                f"  {name:<26}{n / sec:>12,.0f} records/s  {base / sec:7.1f}x the seed  "
                f"{disk:7.0f} bytes/record on disk"
            )
        peak = matmul_peak()
        length = int(np.percentile(ds.tokens().lengths, 95))
        step = train_flops(make_batch(args.batch_size, length, 7069, seed=0), 128, 512, 7069) / peak
        share = args.batch_size / (n / seconds["quackae, bucketing on"]) / step
        print(
            f"matmul peak {peak / 1e9:.1f} GFLOP/s: a FLOP-limited training step (T={length}) "
            f"takes {step:.2f}s; "
            f"reading its batch takes {share:.3%} of that"
        )
        print("target: >= 300,000 records/s for quackae's loader")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
