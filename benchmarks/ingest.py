"""Ingest speed and memory: ``quackae flatten`` vs a reference-style flattener, same inputs.

Prints rows/s and MB/s (compressed input) per worker and the peak RSS of the whole process tree
for ``--workers 1`` and ``--workers 2``, and, in the same run, the rows/s of a flattener written
the way Censored Planet's own one works (json.loads, one dict per try, every signature tried with
``re.search`` in a Python loop, timestamps through ``datetime``), without tokenizing or writing.
Then an in-process pass prints where one worker's time goes (read, parse, label, normalise,
tokenize, write).

Inputs: generated archives (default), or with ``--real`` a mix built from Censored Planet's real
files in ``../shared/reference/hyperquack/`` (echo v1/v2, HTTP v2, HTTPS v1): every measurement
copied with a fresh vantage point address and a rotated test domain per copy, written as
``CP_Quack-<scan>-….tar.gz`` archives with a ``results.json`` member like the real ones.
With ``--real``, both flatteners label with Censored Planet's signatures when present; on
generated archives quackae uses its default set and the peer Censored Planet's (as before).

With ``--real`` it first times ONE big archive (a real scan file is one results member): the HTTP v2
reference measurements varied the same way, ``--workers 1`` vs ``--workers 2`` alternating (one
reader cuts chunks, workers parse and write them; see ``quackae.ingest.fanout``), the reader's own
rate (how many workers it can feed), and with ``--ray`` the same archive as Ray tasks on a local
cluster of 1, then 2 one-CPU nodes started for the purpose (token auth on).

    .venv/bin/python benchmarks/ingest.py [--measurements 20000] [--repeats 1]
    .venv/bin/python benchmarks/ingest.py --real [--measurements 40000] [--repeats 1]
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
from datetime import datetime
from pathlib import Path

import psutil

from quackae import synth
from quackae.dataset import store
from quackae.ingest import fanout
from quackae.ingest import flatten as flatten_module
from quackae.ingest.flatten import Options, flatten
from quackae.ingest.sources import iter_lines
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


def peak_rss_of(cmd: list[str]) -> tuple[float, float, float]:
    """Run ``cmd``; wall seconds, peak summed RSS in MB and CPU seconds of it and its children.

    CPU seconds (user + system, children included) hardly change when other jobs share the
    cores, unlike wall seconds: rows per CPU second is the figure to compare across runs.
    """
    cpu0 = _children_cpu()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"flatten failed: {err.decode()[-2000:]}")
    return wall, peak, _children_cpu() - cpu0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load_patterns(directory: Path | None) -> list[re.Pattern[str]]:
    base = directory if directory is not None else Path(synth.__file__).parent / "data"
    patterns = []
    for name in ("false_positive_signatures.json", "blockpage_signatures.json"):
        for line in (base / name).read_text().splitlines():
            if line.strip():
                patterns.append(re.compile(json.loads(line)["pattern"], re.DOTALL))
    return patterns


def _time(text: str) -> datetime:
    return datetime.fromisoformat(_FRACTION.sub("", text))


_FRACTION = re.compile(r"\.\d+")


def reference_flattener(archive: Path, patterns: list[re.Pattern[str]]) -> tuple[int, float]:
    """Rows and seconds of a per-try dict flattener with a naive signature loop (no tokenizing)."""
    rows = 0
    start = time.perf_counter()
    for item in iter_lines(archive):
        m = json.loads(item.data)
        for r in m.get("response", m.get("Results", [])):
            if r.get("control_url"):
                continue
            received = r.get("response", r.get("Received"))
            if isinstance(received, dict):
                head = [received.get("status_line", "")]
                for k, vs in (received.get("headers") or {}).items():
                    head.extend(f"{k}: {v}" for v in vs)
                text = "\n".join([*head, received.get("body", "")])
            else:
                text = received or ""
            row = {
                "ip": m.get("vp", m.get("Server")),
                "domain": m.get("test_url", m.get("Keyword")),
                "start": _time(r.get("start_time", r.get("StartTime", ""))),
                "end": _time(r.get("end_time", r.get("EndTime", ""))),
                "received": text,
                "blockpage": None,
            }
            for p in patterns:
                if text and p.search(text):
                    row["blockpage"] = p.pattern
                    break
            rows += 1
    return rows, time.perf_counter() - start


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


def compare(
    archives: list[Path],
    rows_hint: int,
    work: Path,
    repeats: int,
    signatures: Path | None,
    peer_signatures: Path | None,
) -> None:
    """Time ``quackae flatten`` (1 and 2 workers) and the reference-style flattener, alternating.

    ``signatures`` label quackae's rows (None: the project's default set); the peer loops over
    ``peer_signatures`` (None: the project's default set).
    """
    mb = sum(a.stat().st_size for a in archives) / 2**20
    t0 = time.perf_counter()
    first = flatten(archives, work / "tok", Options(signatures=signatures), progress=False)
    tok_seconds = time.perf_counter() - t0
    tokenizer = work / "tok" / store.TOKENIZER
    print(
        f"input: {len(archives)} archives, {rows_hint} measurements, {first.rows} rows, {mb:.1f} "
        "MB compressed"
    )
    print(
        f"first flatten, in-process, incl. training the BPE tokenizer: {tok_seconds:.1f}s "
        f"({first.rows / tok_seconds:,.0f} rows/s; not counted below)"
    )
    sig_args = ["--signatures", str(signatures)] if signatures else []
    patterns = _load_patterns(peer_signatures)
    rates: dict[str, list[float]] = {"w1": [], "w2": [], "ref": [], "w1cpu": [], "refcpu": []}
    print(
        f"{'run':<26}{'rows':>9}{'seconds':>9}{'rows/s':>10}{'rows/s/worker':>15}{'MB/s/worker':>13}"
        f"{'peak RSS MB':>13}{'CPU s':>8}{'rows/CPU-s':>12}"
    )
    for rep in range(repeats):
        for workers in (1, 2):
            out = work / f"ds{workers}-{rep}"
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
            wall, peak, cpu = peak_rss_of(cmd)
            rows = store.read_manifest(out)["length"]
            shutil.rmtree(out)
            rates[f"w{workers}"].append(rows / wall)
            if workers == 1:
                rates["w1cpu"].append(rows / cpu)
            print(
                f"{'quackae flatten -w ' + str(workers):<26}{rows:>9}{wall:>9.2f}"
                f"{rows / wall:>10,.0f}"
                f"{rows / wall / workers:>15,.0f}{mb / wall / workers:>13.2f}{peak:>13.0f}"
                f"{cpu:>8.2f}{rows / cpu:>12,.0f}"
            )
            if workers == 1:  # the peer runs between our two runs of each repeat
                ref_rows, ref_s, cpu0 = 0, 0.0, time.process_time()
                for archive in archives:
                    n, s = reference_flattener(archive, patterns)
                    ref_rows, ref_s = ref_rows + n, ref_s + s
                ref_cpu = time.process_time() - cpu0
                rates["ref"].append(ref_rows / ref_s)
                rates["refcpu"].append(ref_rows / ref_cpu)
                print(
                    f"{'reference-style, 1 core':<26}{ref_rows:>9}{ref_s:>9.2f}"
                    f"{ref_rows / ref_s:>10,.0f}{ref_rows / ref_s:>15,.0f}{'':>13}{'':>13}"
                    f"{ref_cpu:>8.2f}{ref_rows / ref_cpu:>12,.0f}"
                )
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"signatures: quackae {_set_name(signatures)}, reference-style "
        f"{_set_name(peer_signatures)} "
        f"({len(patterns)} patterns)"
    )
    print(
        f"median of {repeats}: {med['w1']:,.0f} rows/s (1 worker), {med['w2']:,.0f} rows/s (2 "
        "workers), "
        f"reference-style {med['ref']:,.0f} rows/s"
    )
    print(
        f"speed-up vs reference-style flattener: {med['w1'] / med['ref']:.1f}x (1 worker), "
        f"{med['w2'] / med['ref']:.1f}x (2 workers); target >= 3x"
    )
    print(
        f"per CPU second (robust to other load): {med['w1cpu']:,.0f} rows/CPU-s (1 worker, whole "
        f"command) vs {med['refcpu']:,.0f} reference-style: {med['w1cpu'] / med['refcpu']:.1f}x"
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
            wall, peak, cpu = peak_rss_of(cmd)
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
        help="measurements per generated archive (default 20000), or in the whole real mix (40000)",
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
            measurements = args.measurements or 40000
            archives = write_real_mix(work / "raw", measurements)
            sigs = peer_sigs = REFERENCE_SIGS if REFERENCE_SIGS.is_dir() else None
            single = write_one_archive(work / "one", measurements)
            print(
                f"one real HTTP archive: {measurements} varied copies of the HTTP v2 reference "
                "measurements"
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
            archives, measurements = [r.archive for r in raw], 2 * measurements
            peer_sigs = REFERENCE_SIGS if REFERENCE_SIGS.is_dir() else sigs  # as in earlier runs
        compare(archives, measurements, work, args.repeats, sigs, peer_sigs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
