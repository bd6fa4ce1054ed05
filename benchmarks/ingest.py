"""Ingest speed and memory: ``quackae flatten`` vs Censored Planet's own flattener, same run.

The peer is Censored Planet's real Hyperquack flattener (censoredplanet-analysis,
``pipeline/metadata/flatten_hyperquack.py`` with its blockpage matcher), run by the
``run.py`` kept beside it in ``../shared/reference/censoredplanet-flattener/`` in a subprocess
between quackae's runs, on the same measurements: quackae reads the ``CP_Quack-<scan>-….tar.gz``
archives, the peer the same results lines uncompressed (its loop reads JSON lines; it does not
gunzip, tokenize or write anything, and its timer starts after its imports and signature
loading). The peer keeps control tries as rows, quackae drops them, so the two rows/s are not
comparable: the ratio is of seconds on the same measurements.

Per repeat (alternating): ``quackae flatten --workers 1`` (whole command: process start,
imports, signatures, tokenizer, read, parse, label, tokenize, write), the peer, ``--workers 2``,
and the same quackae command on a three-line archive (its start-up). Printed: rows, seconds,
rows/s, measurements/s, CPU seconds and peak RSS of each; the ratio for the whole command and
for the steady state (quackae's seconds less its start-up, against the peer's own timer, which
leaves its start-up out too); then where one in-process worker's time goes.

Inputs: with ``--real`` a mix built from Censored Planet's real files in
``../shared/reference/hyperquack/`` (echo v1/v2, HTTP v2, HTTPS v1): every measurement copied
with a fresh vantage point address and a rotated test domain per copy, one archive per file with
a ``results.json`` member like the real ones, labelled with Censored Planet's signatures (the
peer loads the same files from its own package). Without ``--real``: generated archives
labelled with the synth world's signatures by quackae (the peer keeps its own).

With ``--real`` it first times ONE big archive (a real scan file is one results member): the HTTP v2
reference measurements varied the same way, ``--workers 1`` vs ``--workers 2`` alternating (one
reader cuts chunks, workers parse and write them; see ``quackae.ingest.fanout``), the reader's own
rate (how many workers it can feed), and with ``--ray`` the same archive as Ray tasks on a local
cluster of 1, then 2 one-CPU nodes started for the purpose (token auth on).

    .venv/bin/python benchmarks/ingest.py --real [--measurements 48000] [--repeats 1]
    .venv/bin/python benchmarks/ingest.py [--measurements 20000] [--repeats 1]
    .venv/bin/python benchmarks/ingest.py --real --one_archive_only --ray [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import psutil

from quackae import synth
from quackae.dataset import store
from quackae.ingest import fanout
from quackae.ingest import flatten as flatten_module
from quackae.ingest.flatten import Options, flatten
from quackae.io import cluster

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"
REFERENCE_SIGS = REFERENCE / "signatures"
# reference file -> (scan, archive time stamp); one archive per file, as each has one format
REAL_FILES = {
    "echo_results_v1.json": ("echo", "2021-04-25-01-01-01"),
    "echo_results_v2.json": ("echo", "2021-06-06-01-01-01"),
    "http_results_v2.json": ("http", "2021-05-30-01-01-01"),
    "https_results_v1.json": ("https", "2021-04-25-01-01-02"),
}


def peak_rss_of(cmd: list[str]) -> tuple[float, float, float, str]:
    """Run ``cmd``; wall seconds, peak summed RSS in MB, CPU seconds (it and its children), stdout.

    CPU seconds (user + system, children included) change less than wall seconds when other
    jobs share the cores: rows per CPU second is the figure to compare across runs.
    """
    cpu0 = _children_cpu()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0.0
    root = psutil.Process(proc.pid)
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs) / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    start = time.perf_counter()
    thread.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"{Path(cmd[1]).name} failed: {err.decode()[-2000:]}")
    return wall, peak, _children_cpu() - cpu0, out.decode()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _vary(line: str, copy: int, rng: random.Random) -> str:
    """One real measurement line as seen from another vantage point, for another test domain.

    The vantage point address is replaced everywhere in the line (a fresh random IPv4 per copy);
    the test domain too (request Host lines, bodies), for 3 copies in 4, by one of 997 variants.
    """
    m = json.loads(line)
    ip, domain = (m["Server"], m["Keyword"]) if "Server" in m else (m["vp"], m["test_url"])
    new_ip = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
    line = line.replace(ip, new_ip)
    if copy % 4:
        bare = domain.removeprefix("www.")
        line = line.replace(domain, domain.replace(bare, f"d{copy % 997}-{bare}"))
    return line


def _write_varied_archive(
    out: Path, stem: str, fname: str, measurements: int, rng: random.Random
) -> Path:
    """``out/<stem>.tar.gz`` with one ``results.json`` member: varied copies of a reference file."""
    lines = (REFERENCE / "hyperquack" / fname).read_text().splitlines()
    data = "".join(
        _vary(lines[i % len(lines)], i // len(lines), rng) + "\n" for i in range(measurements)
    ).encode()
    path = out / f"{stem}.tar.gz"
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        info = tarfile.TarInfo(f"{stem}/results.json")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    return path


def write_real_mix(out: Path, measurements: int, seed: int = 7) -> list[Path]:
    """Archives of at least ``measurements`` varied copies of the real reference measurements."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    per_file = -(-measurements // len(REAL_FILES))
    paths = []
    for fname, (scan, stamp) in REAL_FILES.items():
        paths.append(_write_varied_archive(out, f"CP_Quack-{scan}-{stamp}", fname, per_file, rng))
    return paths


def stage_split(archives: list[Path], work: Path, tokenizer: Path, signatures: Path | None) -> None:
    """One in-process ``--workers 1`` pass with the pipeline's own stage timers; print the split."""
    flatten_module.STAGE_SECONDS.clear()
    started, cpu0 = time.perf_counter(), time.process_time()
    summary = flatten(
        archives,
        work / "split",
        Options(signatures=signatures),
        tokenizer=tokenizer,
        progress=False,
    )
    total, cpu = time.perf_counter() - started, time.process_time() - cpu0
    secs = flatten_module.STAGE_SECONDS
    split = {
        "read (decompress, split lines)": secs["read"],
        "parse (JSON, tries)": secs["parse"],
        "label (signatures, outcome, columns)": secs["parse+label"]
        - secs["parse"]
        + secs["columns"],
        "normalise (placeholders)": secs["normalise"],
        "tokenize (BPE, static tokens, arrays)": secs["tokenize"],
        "write (Parquet shard, manifest)": secs["write"],
    }
    split["other (setup, commit bookkeeping)"] = total - sum(split.values())
    print(
        f"where one worker's time goes (in-process, {summary.rows} rows, {total:.2f}s, "
        f"{summary.rows / total:,.0f} rows/s; {cpu:.2f} CPU s, {summary.rows / cpu:,.0f} "
        "rows/CPU-s):"
    )
    for name, seconds in sorted(split.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<40}{seconds:>7.2f}s{100 * seconds / total:>6.1f}%")


def _set_name(directory: Path | None) -> str:
    """Which signature set a directory is, for the printout."""
    if directory is None:
        return "project default set"
    return (
        "Censored Planet reference set"
        if directory == REFERENCE_SIGS
        else f"the synth world's ({directory.name})"
    )


PEER = REFERENCE / "censoredplanet-flattener" / "run.py"
_PEER_LINE = re.compile(r"(\d+) lines, (\d+) rows in ([\d.]+) s")


def peer_inputs(archives: list[Path], out: Path) -> list[Path]:
    """The results lines of each archive as ``<scan>_<archive>.jsonl`` (how run.py takes them)."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for archive in archives:
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("results.json"))
            data = tar.extractfile(member).read()
        scan = archive.name.split("-")[1]
        path = out / f"{scan}_{archive.name.removesuffix('.tar.gz')}.jsonl"
        path.write_bytes(data)
        files.append(path)
    return files


def run_peer(files: list[Path]) -> dict[str, float]:
    """Censored Planet's flattener on ``files``: its own lines, rows and loop seconds, and the
    process's wall, CPU seconds and peak RSS."""
    cmd = [sys.executable, "-W", "ignore", str(PEER), *map(str, files)]
    wall, peak, cpu, out = peak_rss_of(cmd)
    found = _PEER_LINE.search(out)
    if found is None:
        raise SystemExit(f"no timing in the peer's output: {out[-500:]}")
    lines, rows, seconds = int(found[1]), int(found[2]), float(found[3])
    return {
        "lines": lines,
        "rows": rows,
        "seconds": seconds,
        "wall": wall,
        "cpu": cpu,
        "peak": peak,
    }


def _tiny_archive(archives: list[Path], out: Path) -> Path:
    """Three lines of the first archive in an archive of their own: the start-up run's input."""
    with tarfile.open(archives[0]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("results.json"))
        data = b"".join(tar.extractfile(member).readlines()[:3])
    stem = archives[0].name.removesuffix(".tar.gz").replace("01-01-01", "09-09-09")
    path = out / f"{stem}.tar.gz"
    out.mkdir(parents=True, exist_ok=True)
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        info = tarfile.TarInfo(f"{stem}/results.json")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    return path


def _quackae(
    archives: list[Path], out: Path, tokenizer: Path, signatures: Path | None, workers: int
) -> dict[str, float]:
    """One whole ``quackae flatten`` command: rows, wall, CPU seconds, peak RSS."""
    sig_args = ["--signatures", str(signatures)] if signatures else []
    cmd = [
        sys.executable,
        "-m",
        "quackae",
        "flatten",
        "--quiet",
        "--workers",
        str(workers),
        "--tokenizer",
        str(tokenizer),
        "--storage_path",
        str(out),
        *sig_args,
        "--source",
        *map(str, archives),
    ]
    wall, peak, cpu, _ = peak_rss_of(cmd)
    rows = store.read_manifest(out)["length"]
    shutil.rmtree(out)
    return {"rows": rows, "wall": wall, "cpu": cpu, "peak": peak}


def compare(archives: list[Path], work: Path, repeats: int, signatures: Path | None) -> None:
    """Time ``quackae flatten`` (1 and 2 workers, and its start-up) and Censored Planet's
    flattener on the same measurements, alternating; print both and the ratios."""
    if not PEER.is_file():
        raise SystemExit(f"the peer is missing: {PEER} (Censored Planet's flattener)")
    mb = sum(a.stat().st_size for a in archives) / 2**20
    t0 = time.perf_counter()
    first = flatten(archives, work / "tok", Options(signatures=signatures), progress=False)
    tok_seconds = time.perf_counter() - t0
    tokenizer = work / "tok" / store.TOKENIZER
    peer_files = peer_inputs(archives, work / "peer")
    tiny = _tiny_archive(archives, work / "tiny")
    print(
        f"input: {len(archives)} archives, {first.lines} measurements, {first.rows} quackae rows, "
        f"{mb:.1f} MB compressed, {sum(f.stat().st_size for f in peer_files) / 2**20:.0f} MB "
        "of JSON lines"
    )
    print(
        f"first flatten, in-process, incl. training the BPE tokenizer: {tok_seconds:.1f}s "
        "(not counted below)"
    )
    peer_tiny = peer_inputs([tiny], work / "peer-tiny")
    runs: dict[str, list[dict[str, float]]] = {
        "w1": [],
        "w2": [],
        "peer": [],
        "start": [],
        "peer_start": [],
    }
    print(
        f"{'run':<36}{'lines':>7}{'rows':>8}{'seconds':>9}{'rows/s':>9}{'lines/s':>9}"
        f"{'CPU s':>8}{'peak RSS MB':>13}"
    )

    def show(name: str, lines: int, rows: int, seconds: float, cpu: float, peak: float) -> None:
        print(
            f"{name:<36}{lines:>7}{rows:>8}{seconds:>9.2f}{rows / seconds:>9,.0f}"
            f"{lines / seconds:>9,.0f}{cpu:>8.2f}{peak:>13.0f}"
        )

    for rep in range(repeats):
        for what in ("w1", "peer", "w2", "start", "peer_start"):
            if what in ("peer", "peer_start"):
                r = run_peer(peer_files if what == "peer" else peer_tiny)
                runs[what].append(r)
                name = "Censored Planet flattener (own timer)"
                show(
                    name if what == "peer" else "Censored Planet start-up (3 lines)",
                    r["lines"],
                    r["rows"],
                    r["seconds"] if what == "peer" else r["wall"],
                    r["cpu"],
                    r["peak"],
                )
                continue
            source = [tiny] if what == "start" else archives
            workers = 2 if what == "w2" else 1
            r = _quackae(source, work / f"ds-{what}-{rep}", tokenizer, signatures, workers)
            runs[what].append(r)
            lines = 3 if what == "start" else first.lines
            name = (
                "quackae start-up (3 lines)" if what == "start" else f"quackae flatten -w {workers}"
            )
            show(name, lines, r["rows"], r["wall"], r["cpu"], r["peak"])
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in runs.items()}
    peer, w1, w2, start = med["peer"], med["w1"], med["w2"], med["start"]
    steady = w1["wall"] - start["wall"]
    steady_cpu = (peer["cpu"] - med["peer_start"]["cpu"]) / (w1["cpu"] - start["cpu"])
    print(
        f"signatures: quackae {_set_name(signatures)}; the peer its own package's "
        "(Censored Planet's published files)"
    )
    print(
        f"median of {repeats}: quackae {w1['rows'] / w1['wall']:,.0f} rows/s (1 worker, whole "
        f"command), {w2['rows'] / w2['wall']:,.0f} (2 workers); Censored Planet's flattener "
        f"{peer['rows'] / peer['seconds']:,.0f} rows/s (its rows include control tries)"
    )
    print(
        f"speed-up on the same {first.lines} measurements, peer seconds / quackae seconds: "
        f"{peer['seconds'] / w1['wall']:.2f}x whole command, 1 worker (target >= 3x); "
        f"{peer['seconds'] / steady:.2f}x steady state, 1 worker, less its "
        f"{start['wall']:.2f} s start-up (target >= 5x); {peer['seconds'] / w2['wall']:.2f}x "
        "whole command, 2 workers"
    )
    print(
        f"in CPU seconds (less sensitive to other load): quackae {w1['cpu']:.2f} whole command, "
        f"the peer's process {peer['cpu']:.2f}: {peer['cpu'] / w1['cpu']:.2f}x; steady state "
        f"(each less its own 3-line run: {start['cpu']:.2f} and {med['peer_start']['cpu']:.2f}): "
        f"{steady_cpu:.2f}x"
    )
    stage_split(archives, work, tokenizer, signatures)


def write_one_archive(out: Path, measurements: int, seed: int = 8) -> Path:
    """One big real HTTP scan archive: ``measurements`` varied copies of the HTTP v2 lines.

    A Censored Planet archive holds one scan, and v1 lines take their scan from the file name, so
    the single-archive figure uses the HTTP file (real-sized pages, the heaviest scan).
    """
    out.mkdir(parents=True, exist_ok=True)
    return _write_varied_archive(
        out,
        "CP_Quack-http-2021-07-04-01-01-01",
        "http_results_v2.json",
        measurements,
        random.Random(seed),
    )


def reader_rate(archive: Path) -> None:
    """How fast the one reader decompresses and cuts chunks: the most workers it can feed."""
    started = time.perf_counter()
    lines = size = 0
    for job in fanout.cut_chunks(
        str(archive), "k", 0, 0, flatten_module.CHUNK_LINES, flatten_module.CHUNK_BYTES
    ):
        lines, size = lines + len(job.line_nos), size + sum(map(len, job.datas))
    wall = time.perf_counter() - started
    print(
        f"the reader alone (gunzip, untar, cut chunks): {lines / wall:,.0f} lines/s, "
        f"{size / 2**20 / wall:.0f} MB/s uncompressed ({lines} lines, {wall:.2f}s)"
    )


def _flatten_cmd(
    archive: Path, out: Path, tokenizer: Path, signatures: Path | None, extra: list[str]
) -> list[str]:
    sig_args = ["--signatures", str(signatures)] if signatures else []
    return [
        sys.executable,
        "-m",
        "quackae",
        "flatten",
        "--quiet",
        "--tokenizer",
        str(tokenizer),
        "--storage_path",
        str(out),
        *sig_args,
        *extra,
        "--source",
        str(archive),
    ]


def one_archive(archive: Path, work: Path, repeats: int, signatures: Path | None) -> None:
    """``--workers 1`` vs ``--workers 2`` on one archive (chunks fanned out), alternating."""
    mb = archive.stat().st_size / 2**20
    flatten([archive], work / "tok1", Options(signatures=signatures), progress=False)
    tokenizer = work / "tok1" / store.TOKENIZER
    print(f"one archive: {archive.name}, {mb:.1f} MB compressed")
    reader_rate(archive)
    rates: dict[int, list[float]] = {1: [], 2: []}
    print(
        f"{'run':<30}{'rows':>9}{'seconds':>9}{'rows/s':>10}{'peak RSS MB':>13}{'CPU s':>8}"
        f"{'rows/CPU-s':>12}"
    )
    for rep in range(repeats):
        for workers in (1, 2):
            out = work / f"one{workers}-{rep}"
            cmd = _flatten_cmd(archive, out, tokenizer, signatures, ["--workers", str(workers)])
            wall, peak, cpu, _ = peak_rss_of(cmd)
            rows = store.read_manifest(out)["length"]
            shutil.rmtree(out)
            rates[workers].append(rows / wall)
            print(
                f"{'one archive, --workers ' + str(workers):<30}{rows:>9}{wall:>9.2f}"
                f"{rows / wall:>10,.0f}"
                f"{peak:>13.0f}{cpu:>8.2f}{rows / cpu:>12,.0f}"
            )
    w1, w2 = statistics.median(rates[1]), statistics.median(rates[2])
    print(
        f"one archive, median of {repeats}: {w1:,.0f} rows/s (1 worker), {w2:,.0f} rows/s (2 "
        "workers): "
        f"{w2 / w1:.2f}x"
    )


def _ray_cluster(temp_dir: Path, nodes: int) -> str:
    """Start a local cluster of ``nodes`` one-CPU nodes (token auth on); its address."""
    ray = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.run(
        [
            ray,
            "start",
            "--head",
            "--num-cpus",
            "1",
            "--port",
            "0",
            "--temp-dir",
            str(temp_dir),
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    address = re.search(r"ray start --address='([^']+)'", head.stdout + head.stderr).group(1)
    for _ in range(nodes - 1):
        subprocess.run(
            [ray, "start", "--address", address, "--num-cpus", "1", "--temp-dir", str(temp_dir)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return address


def ray_nodes(archive: Path, work: Path, signatures: Path | None) -> None:
    """``--ray_address`` on a local cluster of 1, then 2 one-CPU nodes, same archive."""
    tokenizer = work / "tok1" / store.TOKENIZER
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    for nodes in (1, 2):
        temp_dir = Path(tempfile.mkdtemp(prefix="qbray-", dir="/tmp"))
        try:
            address = _ray_cluster(temp_dir, nodes)
            out = work / f"ray{nodes}"
            cmd = _flatten_cmd(archive, out, tokenizer, signatures, ["--ray_address", address])
            started = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            wall = time.perf_counter() - started
            rows = store.read_manifest(out)["length"]
            shutil.rmtree(out)
            print(
                f"{'one archive, Ray, ' + str(nodes) + ' node(s) x 1 CPU':<30}{rows:>9}"
                f"{wall:>9.2f}{rows / wall:>10,.0f}"
                "   (incl. joining the cluster and starting its workers)"
            )
        finally:
            cluster.stop_local(temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--real",
        action="store_true",
        help="the mix of Censored Planet's real reference files instead of generated archives",
    )
    parser.add_argument(
        "--measurements",
        type=int,
        default=None,
        help="measurements per generated archive (default 20000), or in the whole real mix (48000)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternating repeats; medians are reported"
    )
    parser.add_argument(
        "--one_archive_only",
        action="store_true",
        help="with --real: only the single-archive figures (1 vs 2 workers, --ray)",
    )
    parser.add_argument(
        "--mix_only",
        action="store_true",
        help="with --real: only the mix against Censored Planet's flattener (no single archive)",
    )
    parser.add_argument(
        "--ray",
        action="store_true",
        help="with --real: also flatten the single archive on a local Ray cluster of 1, then 2 "
        "nodes",
    )
    args = parser.parse_args()
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    work = Path(tempfile.mkdtemp(prefix="quackae-bench-ingest-"))
    try:
        if args.real:
            if not (REFERENCE / "hyperquack").is_dir():
                raise SystemExit(f"--real needs the reference files in {REFERENCE / 'hyperquack'}")
            measurements = args.measurements or 48000
            archives = write_real_mix(work / "raw", measurements)
            sigs = REFERENCE_SIGS if REFERENCE_SIGS.is_dir() else None
            if not args.mix_only:
                single = write_one_archive(work / "one", measurements)
                print(
                    f"one real HTTP archive: {measurements} varied copies of the HTTP v2 "
                    "reference measurements"
                )
                one_archive(single, work, args.repeats, sigs)
                if args.ray:
                    ray_nodes(single, work, sigs)
                if args.one_archive_only:
                    return
            print(
                f"real mix: {measurements} varied copies of the {len(REAL_FILES)} reference files"
            )
        else:
            measurements = args.measurements or 20000
            raw = [
                synth.write_archive(work / "raw", measurements, seed=1, fmt="v2", scan="http"),
                synth.write_archive(work / "raw", measurements, seed=2, fmt="v1", scan="https"),
            ]
            sigs = synth.write_signatures(work / "raw" / "signatures")
            archives = [r.archive for r in raw]
        compare(archives, work, args.repeats, sigs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
