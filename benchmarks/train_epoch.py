"""Training epoch speed through the real controller: records/s with length bucketing on vs off.

Flattens a generated dataset, then runs ``ae_processor`` in-process (``--ray_nodes 0``) for a
fixed number of training batches with the default mixed training (teacher forcing p=0.5),
once with ``--bucketing`` and once without, and prints records/s and non-pad tokens/s of each.

    .venv/bin/python benchmarks/train_epoch.py [--batches 20] [--hidden_size 512]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from quackae import synth
from quackae.ingest.flatten import Options, flatten
from quackae.model import controller as ae_processor
from quackae.model.config import parse
from quackae.model.datamodule import QuackTokenizedDataModule


def run(data: Path, storage: Path, args: argparse.Namespace, bucketing: bool) -> float:
    """Seconds of ``args.batches`` training steps (no validation, no test)."""
    argv = [
        "--data_dir",
        str(data),
        "--storage_path",
        str(storage),
        "--ray_nodes",
        "0",
        "--max_epochs",
        "1",
        "--limit_train_batches",
        str(args.batches),
        "--limit_val_batches",
        "0",
        "--limit_test_batches",
        "0",
        "--num_sanity_val_steps",
        "0",
        "--batch_size",
        str(args.batch_size),
        "--embed_size",
        str(args.embed_size),
        "--hidden_size",
        str(args.hidden_size),
        "--l_rate",
        "1e-3",
        "--enable_progress_bar",
        "false",
        "--enable_model_summary",
        "false",
        "--logger",
        "csv",
        "--precision",
        args.precision,
    ] + (["--bucketing"] if bucketing else [])
    config = parse(argv)
    start = time.perf_counter()
    ae_processor.train_worker({"args": config.to_dict(), "resume": None})
    return time.perf_counter() - start


def padded_cells(data: Path, batch: int, batches: int, bucketing: bool) -> tuple[int, int, int]:
    """Records, non-pad tokens and cells of the first ``batches`` training batches."""
    dm = QuackTokenizedDataModule(str(data), batch_size=batch, bucketing=bucketing)
    records = tokens = cells = 0
    for i, x in enumerate(dm.train_dataloader()):
        if i == batches:
            break
        records += x.shape[0]
        tokens += int((x != dm.pad_id).sum())
        cells += x.numel()
    return records, tokens, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measurements", type=int, default=3000)
    parser.add_argument("--max_tokens", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--embed_size", type=int, default=128)
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--precision", default="32-true", help="Trainer precision, e.g. bf16-mixed")
    args = parser.parse_args()
    ae_processor.quiet_warnings()
    work = Path(tempfile.mkdtemp(prefix="quackae-bench-epoch-"))
    try:
        raws = [
            synth.write_archive(work / "raw", args.measurements, seed=s, fmt=f, scan=sc)
            for s, f, sc in ((1, "v2", "http"), (2, "v1", "echo"), (3, "v2", "https"))
        ]
        data = work / "ds"
        flatten(
            [r.archive for r in raws], data, Options(max_tokens=args.max_tokens), progress=False
        )
        print(
            f"E={args.embed_size} H={args.hidden_size} B={args.batch_size}, {args.batches} "
            "batches, "
            f"max_tokens {args.max_tokens}, teacher forcing p=0.5 (default mixed training), "
            f"precision {args.precision}"
        )
        for bucketing in (False, True):
            seconds = run(data, work / f"run{bucketing}", args, bucketing)
            records, tokens, cells = padded_cells(data, args.batch_size, args.batches, bucketing)
            print(
                f"bucketing {'on ' if bucketing else 'off'}: {records / seconds:8,.1f} records/s "
                f"{tokens / seconds:9,.0f} tokens/s  padding {1 - tokens / cells:.0%}  "
                f"({seconds:.1f}s)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
