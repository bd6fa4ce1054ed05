"""Reading a stored dataset back into padded batches: quackae's store vs the seed's pickle store.

Builds a dataset from generated archives, writes the same records in the seed's layout (one pickle
file per record, ``original.write_seed_store``, in a temporary directory; nothing in ``src/``
pickles), then times one training epoch of each reader, one warm-up epoch each, alternating:

* quackae: the training loader (``QuackTokenizedDataModule.train_dataloader``: the memory-mapped
  token cache + one vectorised gather per batch), length bucketing off and on;
* the seed: its own ``cp_dataset.QuackIterableDataset`` and collate ``pad_right``, run from
  ``../shared/reference/cp_learning`` (``benchmarks/seed_original.py``) in a shuffled DataLoader
  as its data module builds it (skipped with one line where the reference is absent).

Records/s (records each epoch yields over its seconds: quackae's training split is 70% of the
records, the seed's loader reads them all) and bytes on disk per record. There are no FLOPs in
reading; instead of an MFU the last line says what share of a FLOP-limited training step (matmul
peak measured in this run, E=128 H=512 V=7069) reading one batch would take.

    .venv/bin/python benchmarks/dataload.py [--measurements 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

import seed_original
from original import (
    alternate,
    machine_line,
    make_batch,
    matmul_peak,
    seed_item_path,
    train_flops,
    write_seed_store,
)
from quackae import synth
from quackae.dataset import store
from quackae.ingest.flatten import Options, flatten
from quackae.model.datamodule import QuackTokenizedDataModule

SEED = "seed: pickle per record"
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


def seed_records(ds: store.Dataset) -> list[tuple[dict, np.ndarray]]:
    """Every record as the seed stored it: its metadata dict and its token ids."""
    table = ds.read_columns([*META, "tokens"]).to_pylist()
    return [({k: row[k] for k in META}, np.asarray(row["tokens"], dtype=np.int64)) for row in table]


def seed_loader(pickles: Path, batch_size: int):
    """The seed's training loader over its store: ``cp_dataset.QuackIterableDataset`` and
    ``cp_tokenized_data.pad_right``, shuffled, as its data module's ``train_dataloader`` builds
    it (that class itself cannot be constructed on Lightning 2: it passes the removed
    ``train_transforms`` arguments to ``LightningDataModule``; ``persistent_workers=True`` is
    dropped, as torch refuses it with no worker processes)."""
    from torch.utils.data import DataLoader

    data = seed_original.load_data(pad_id=0)
    dataset = data.cp_dataset.QuackIterableDataset(str(pickles))
    gen = torch.Generator().manual_seed(0)
    return DataLoader(
        dataset, batch_size=batch_size, collate_fn=data.pad_right, shuffle=True, generator=gen
    )


def disk_bytes(paths: list[Path]) -> int:
    """Disk space ``paths`` take (allocated blocks: a small file still fills a whole block)."""
    return sum(p.stat().st_blocks * 512 for p in paths)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
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
        seed_here = seed_original.reference_dir() is not None
        if seed_here:
            write_seed_store(pickles, seed_records(ds))
        else:
            print(seed_original.missing_reason())
        ds.tokens()  # build the cache once, as the first epoch does
        dms = {
            b: QuackTokenizedDataModule(str(root), batch_size=args.batch_size, bucketing=b)
            for b in (False, True)
        }
        for dm in dms.values():
            dm.prepare_data()
        records: dict[str, int] = {}  # records one epoch of each reader yields

        def quackae_epoch(name: str, bucketing: bool) -> None:
            records[name] = sum(len(x) for x in dms[bucketing].train_dataloader())

        def seed_epoch(loader) -> None:
            records[SEED] = sum(len(x) for x in loader)

        peers = {
            "quackae, bucketing off": lambda: quackae_epoch("quackae, bucketing off", False),
            "quackae, bucketing on": lambda: quackae_epoch("quackae, bucketing on", True),
        }
        if seed_here:
            loader = seed_loader(pickles, args.batch_size)
            peers[SEED] = lambda: seed_epoch(loader)
        seconds = alternate(peers, args.rounds)
        size = {"quackae": disk_bytes(sorted((root / "shards").glob("*.parquet")))}
        if seed_here:
            size["seed"] = disk_bytes(
                [seed_item_path(pickles, i) for i in range(n)] + [pickles / "metadata.pyc"]
            )
        print(
            f"dataset: {n} records, B={args.batch_size}; one epoch per call, median of "
            f"{args.rounds} "
            f"alternating rounds after 1 warm-up; {machine_line()}"
        )
        rates = {name: records[name] / sec for name, sec in seconds.items()}
        base = rates.get(SEED)
        for name, rate in rates.items():
            disk = size["seed" if name == SEED else "quackae"] / n
            ratio = f"{rate / base:7.1f}x the seed" if base else ""
            print(
                f"  {name:<26}{rate:>12,.0f} records/s ({records[name]} per epoch)  {ratio}  "
                f"{disk:7.0f} bytes/record on disk"
            )
        peak = matmul_peak()
        length = int(np.percentile(ds.tokens().lengths, 95))
        step = train_flops(make_batch(args.batch_size, length, 7069, seed=0), 128, 512, 7069) / peak
        share = args.batch_size / rates["quackae, bucketing on"] / step
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
