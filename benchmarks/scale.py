"""One scan file of the size Censored Planet writes: ingest memory stays flat, then encode 1M rows.

A real Hyperquack HTTP scan file holds tens of millions of tries in one ``results.json``. This
script writes one such archive (``--tries``, default 5,000,000 non-control tries) quickly, from
templates: the real HTTP v2 measurements in ``../shared/reference/hyperquack/`` (when present)
plus generated HTTP v2 measurements of the synth world, each copy with a fresh vantage point
address and one of 997 test-domain variants (in the request and the bodies), gzipped at level 1.
It then runs the whole command ``quackae flatten --workers 2`` on it (with a tokenizer trained
beforehand on a small archive), sampling the summed RSS of the process tree every 0.25 s, and
prints rows/s, the peak RSS of each tenth of the run (flat: bounded by the chunk size, not the
file size) and the extrapolation to 50M tries per scan file.

Then it flattens the first ``--encode_rows`` tries (default 1,000,000) the same way, trains a
tiny checkpoint for a few steps (``quackae train --limit_train_batches``) on the small archive's
dataset, and runs ``quackae encode`` on those rows, again with RSS sampled: rows/s and peak memory.

Every input is seeded (``--seed``); the same command gives the same files and row counts.

    .venv/bin/python benchmarks/scale.py                       # 5M tries, 1M encoded (~30 min)
    .venv/bin/python benchmarks/scale.py --tries 200000 --encode_rows 50000     # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from isal import igzip

from quackae import synth
from quackae.dataset import store

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
REAL_HTTP = REFERENCE / "hyperquack" / "http_results_v2.json"
REAL_SIGS = REFERENCE / "signatures"
TARGET_TRIES = 50_000_000  # tries per scan file the figures are extrapolated to
IP, DOMAIN = "\x01", "\x02"  # placeholders in the templates (never in real measurements)
STEM = "CP_Quack-http-2024-03-02-01-01-01"


def templates(work: Path, seed: int) -> list[tuple[str, str, int]]:
    """(line with IP/DOMAIN placeholders, bare domain, non-control tries) per template line."""
    lines = REAL_HTTP.read_text().splitlines() if REAL_HTTP.is_file() else []
    generated = synth.write_archive(work / "templates", 400, seed=seed, fmt="v2", scan="http")
    with tarfile.open(generated.archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("results.json"))
        lines += tar.extractfile(member).read().decode().splitlines()
    out = []
    for line in lines:
        m = json.loads(line)
        tries = sum(1 for r in m["response"] if not r.get("control_url"))
        bare = m["test_url"].removeprefix("www.")
        line = line.replace(m["vp"], IP).replace(bare, DOMAIN)
        if tries:
            out.append((line, bare, tries))
    return out


def measurements(
    shapes: list[tuple[str, str, int]], tries: int, seed: int
) -> Iterator[tuple[str, int]]:
    """Seeded varied copies of the templates until ``tries`` non-control tries: (line, tries)."""
    rng = random.Random(seed)
    done = 0
    while done < tries:
        line, bare, n = shapes[rng.randrange(len(shapes))]
        ip = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
        variant = rng.randrange(997)
        domain = bare if variant == 0 else f"d{variant}-{bare}"
        yield line.replace(IP, ip).replace(DOMAIN, domain) + "\n", n
        done += n


def write_scan(path: Path, shapes: list[tuple[str, str, int]], tries: int, seed: int) -> dict:
    """One ``.tar.gz`` with a single ``results.json`` member of at least ``tries`` tries.

    Two seeded passes: the first sizes the member (the tar header comes first), the second
    streams it through gzip level 1, so memory stays small whatever the size.
    """
    size = lines = total = 0
    for line, n in measurements(shapes, tries, seed):
        size, lines, total = size + len(line.encode()), lines + 1, total + n
    info = tarfile.TarInfo(f"{path.name.removesuffix('.tar.gz')}/results.json")
    info.size, info.mtime = size, 0
    with igzip.open(path, "wb", compresslevel=1) as gz:
        gz.write(info.tobuf(format=tarfile.GNU_FORMAT))
        batch: list[str] = []
        for line, _ in measurements(shapes, tries, seed):
            batch.append(line)
            if len(batch) == 2000:
                gz.write("".join(batch).encode())
                batch.clear()
        gz.write("".join(batch).encode())
        gz.write(b"\0" * (-size % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE))
    return {"lines": lines, "tries": total, "bytes": size, "gz_bytes": path.stat().st_size}


def sampled(cmd: list[str], interval: float = 0.25) -> dict:
    """Run ``cmd``; wall seconds, and the summed RSS and anonymous RSS (MB) of its process tree.

    Anonymous RSS is RSS less its file-backed and shared pages (``memory_info().shared`` on
    Linux): memory-mapped dataset files that were read count in RSS but not in it.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    samples: list[tuple[float, float, float]] = []
    stop = threading.Event()
    start = time.perf_counter()

    def poll() -> None:
        while not stop.is_set():
            rss = anon = 0
            with contextlib.suppress(psutil.Error):
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        info = p.memory_info()
                        rss += info.rss
                        anon += info.rss - getattr(info, "shared", 0)
            samples.append((time.perf_counter() - start, rss / 2**20, anon / 2**20))
            stop.wait(interval)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:4])} failed: {err.decode()[-2000:]}")
    return {"wall": wall, "samples": samples, "stdout": out.decode()}


def timeline(
    samples: list[tuple[float, float, float]], wall: float, parts: int = 10, column: int = 1
) -> list[float]:
    """The peak of one sampled column (1: RSS, 2: anonymous RSS; MB) in each tenth of the run."""
    peaks = [0.0] * parts
    for sample in samples:
        i = min(int(parts * sample[0] / wall), parts - 1)
        peaks[i] = max(peaks[i], sample[column])
    return peaks


def quackae(*args: str) -> list[str]:
    return [sys.executable, "-m", "quackae", *args]


def flatten_cmd(archive: Path, out: Path, tokenizer: Path, sigs: list[str]) -> list[str]:
    return quackae(
        "flatten",
        "--quiet",
        "--workers",
        "2",
        "--tokenizer",
        str(tokenizer),
        *sigs,
        "--storage_path",
        str(out),
        "--source",
        str(archive),
    )


def report_ingest(name: str, scan: dict, run: dict, rows: int) -> float:
    """Print one ingest's figures; its rows/s."""
    rate = rows / run["wall"]
    peaks = timeline(run["samples"], run["wall"])
    print(
        f"{name}: {scan['lines']:,} measurements, {scan['tries']:,} tries, "
        f"{scan['bytes'] / 2**30:.2f} GiB of JSON lines ({scan['gz_bytes'] / 2**20:,.0f} MiB "
        f"gzipped); quackae flatten --workers 2: {rows:,} rows in {run['wall']:.1f} s = "
        f"{rate:,.0f} rows/s, peak RSS {max(peaks):,.0f} MB"
    )
    print(f"  peak RSS (MB) per tenth of the run: {' '.join(f'{p:,.0f}' for p in peaks)}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=5_000_000, help="tries in the big scan file")
    parser.add_argument(
        "--encode_rows", type=int, default=1_000_000, help="rows encoded (0: skip the encode)"
    )
    parser.add_argument("--train_steps", type=int, default=5, help="steps of the tiny checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of every generated input")
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch folder (default: a fresh temporary one)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quackae-bench-scale-", dir=args.work))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    """Generate, ingest, train a tiny checkpoint, encode; print every figure."""
    sigs = ["--signatures", str(REAL_SIGS)] if REAL_SIGS.is_dir() else []
    shapes = templates(work, args.seed)
    print(
        f"templates: {len(shapes)} HTTP v2 measurements ("
        f"{'the real reference ones + ' if REAL_HTTP.is_file() else ''}generated ones); "
        f"signatures: {'Censored Planet reference set' if sigs else 'project default set'}"
    )
    small = work / f"{STEM.replace('01-01-01', '00-00-00')}.tar.gz"
    write_scan(small, shapes, 20_000, args.seed + 1)
    subprocess.run(
        quackae("flatten", "--quiet", *sigs, "--storage_path", str(work / "small"), "--source")
        + [str(small)],
        check=True,
    )
    tokenizer = work / "small" / store.TOKENIZER
    started = time.perf_counter()
    big = work / f"{STEM}.tar.gz"
    scan = write_scan(big, shapes, args.tries, args.seed)
    print(f"generated the scan file in {time.perf_counter() - started:.0f} s")
    done = sampled(flatten_cmd(big, work / "big", tokenizer, sigs))
    rows = store.read_manifest(work / "big")["length"]
    rate = report_ingest("one scan file", scan, done, rows)
    print(
        f"  extrapolated to {TARGET_TRIES:,} tries per scan file: "
        f"{TARGET_TRIES / rate / 3600:.1f} h at {rate:,.0f} rows/s with 2 workers, memory as "
        "above (it does not grow with the file)"
    )
    shutil.rmtree(work / "big")
    big.unlink()
    if args.encode_rows <= 0:
        return
    part = work / f"{STEM.replace('01-01-01', '02-02-02')}.tar.gz"
    part_scan = write_scan(part, shapes, args.encode_rows, args.seed)
    part_run = sampled(flatten_cmd(part, work / "part", tokenizer, sigs))
    part_rows = store.read_manifest(work / "part")["length"]
    report_ingest("the encode input", part_scan, part_run, part_rows)
    encode(args, work, part_rows)


def encode(args: argparse.Namespace, work: Path, rows: int) -> None:
    """Train a tiny checkpoint for a few steps, then time ``quackae encode`` on ``work/part``."""
    model = ["--embed_size", "16", "--hidden_size", "32", "--ray_nodes", "0", "--seed"]
    trained = sampled(
        quackae(
            "train",
            "--data_dir",
            str(work / "small"),
            "--storage_path",
            str(work / "model"),
            *model,
            str(args.seed),
            "--batch_size",
            "64",
            "--limit_train_batches",
            str(args.train_steps),
            "--max_epochs",
            "1",
            "--limit_val_batches",
            "2",
            "--limit_test_batches",
            "2",
            "--logger",
            "csv",
            "--enable_progress_bar",
            "false",
        )
    )
    ckpt = work / "model" / "last.ckpt"
    print(
        f"tiny checkpoint (embed 16, hidden 32, {args.train_steps} steps of 64): "
        f"{trained['wall']:.0f} s"
    )
    done = sampled(
        quackae(
            "encode",
            "--data_dir",
            str(work / "part"),
            "--checkpoint_path",
            str(ckpt),
            "--storage_path",
            str(work / "emb"),
            *model,
            str(args.seed),
            "--batch_size",
            "512",
            "--enable_progress_bar",
            "false",
        )
    )
    peaks = timeline(done["samples"], done["wall"])
    print(
        f"quackae encode: {rows:,} rows in {done['wall']:.1f} s = {rows / done['wall']:,.0f} "
        f"rows/s (whole command), peak RSS {max(peaks):,.0f} MB"
    )
    print(f"  peak RSS (MB) per tenth of the run: {' '.join(f'{p:,.0f}' for p in peaks)}")
    anon = timeline(done["samples"], done["wall"], column=2)
    print(f"  of which anonymous (MB, not file-backed): {' '.join(f'{p:,.0f}' for p in anon)}")
    print(f"  {done['stdout'].strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
