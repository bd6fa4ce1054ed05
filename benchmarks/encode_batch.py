"""``quackae encode`` at several batch sizes: seconds, rows/s and whether the latents change.

Usage: ``python benchmarks/encode_batch.py [--measurements N] [--sizes 4 16 64 256] [--rounds R]``.
Generates one archive, flattens it, trains the seed's architecture (embed 128, hidden 512) for
a few batches to get a checkpoint, then runs the whole encode command in this process
(``controller.encode``: read, encode, write shards) once per batch size and round, sizes in
alternating order, each into a fresh folder. Prints the median seconds per size, the speed-up
over the seed's ``--batch_size 4`` and the largest latent difference from it. This is the
figure behind ``--encode_batch_size``'s default (64). Minutes, bounded by --measurements.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from quackae import synth
from quackae.ingest.flatten import Options, flatten
from quackae.model import controller
from quackae.model.config import ControllerConfig


def _latents(folder: Path) -> dict[int, np.ndarray]:
    """Row id -> latent of an embeddings folder."""
    out: dict[int, np.ndarray] = {}
    for shard in sorted((folder / "shards").glob("*.parquet")):
        table = pq.read_table(shard, columns=["row_id", "embedding"])
        for rid, emb in zip(
            table.column("row_id").to_pylist(), table.column("embedding").to_pylist(), strict=True
        ):
            out[int(rid)] = np.asarray(emb, np.float32)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--measurements", type=int, default=1500, help="(default 1500)")
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 64, 256], help="batch sizes")
    p.add_argument("--rounds", type=int, default=2, help="runs per size (default 2)")
    p.add_argument("--seed", type=int, default=0, help="(default 0)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="qencb-") as tmp:
        root = Path(tmp)
        arc = synth.write_archive(root / "raw", a.measurements, seed=a.seed, scan="http")
        ds = root / "ds"
        flatten([arc.archive], ds, Options(max_tokens=128), progress=False, vocab_size=2048)
        quiet = {"enable_progress_bar": False, "enable_model_summary": False}
        base = ControllerConfig(data_dir=str(ds), ray_nodes=0, seed=a.seed, trainer=quiet)
        summary = controller.train(
            base.replace(
                storage_path=str(root / "ae"),
                max_epochs=1,
                limit_train_batches=4,
                limit_val_batches=2,
                limit_test_batches=1,
            )
        )
        ckpt = summary["last_checkpoint"]
        times: dict[int, list[float]] = {n: [] for n in a.sizes}
        latents: dict[int, dict[int, np.ndarray]] = {}
        for r in range(a.rounds):
            for n in a.sizes if r % 2 == 0 else a.sizes[::-1]:
                out = root / f"enc-{n}-{r}"
                started = time.perf_counter()
                info = controller.encode(
                    base.replace(
                        encode=True,
                        checkpoint_path=ckpt,
                        storage_path=str(out),
                        encode_batch_size=n,
                    )
                )
                times[n].append(time.perf_counter() - started)
                latents.setdefault(n, _latents(out))
        rows = info["length"]
        ref = latents[a.sizes[0]]
        first = statistics.median(times[a.sizes[0]])
        print(
            f"encode of {rows} rows (hidden 512, embed 128, max_tokens 128), median of {a.rounds}"
        )
        print(f"{'batch':>6} {'seconds':>8} {'rows/s':>8} {'speed-up':>9} {'max |diff|':>11}")
        for n in a.sizes:
            s = statistics.median(times[n])
            diff = max(float(np.abs(latents[n][k] - ref[k]).max()) for k in ref)
            print(f"{n:>6} {s:>8.2f} {rows / s:>8.0f} {first / s:>8.2f}x {diff:>11.2e}")


if __name__ == "__main__":
    main()
