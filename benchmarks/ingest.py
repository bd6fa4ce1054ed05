"""Ingest speed and memory: ``quackae flatten`` on generated archives vs a reference-style flattener.

Prints rows/s and MB/s (compressed input) per worker and the peak RSS of the whole process tree
for ``--workers 1`` and ``--workers 2``, and, in the same run, the rows/s of a flattener written
the way Censored Planet's own one works (json.loads, one dict per try, every signature tried with
``re.search`` in a Python loop, timestamps through ``datetime``), without tokenizing or writing.

    .venv/bin/python benchmarks/ingest.py [--measurements 20000]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

from quackae import store, synth
from quackae.flatten import Options, flatten
from quackae.sources import iter_lines

REFERENCE_SIGS = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "signatures"


def peak_rss_of(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak summed RSS in MB of it and its children)."""
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
    return wall, peak


def _load_patterns(base: Path) -> list[re.Pattern[str]]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measurements", type=int, default=20000, help="measurements per archive")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quackae-bench-ingest-"))
    try:
        raw = [
            synth.write_archive(work / "raw", args.measurements, seed=1, fmt="v2", scan="http"),
            synth.write_archive(work / "raw", args.measurements, seed=2, fmt="v1", scan="https"),
        ]
        synth_sigs = synth.write_signatures(work / "raw" / "signatures")
        mb = sum(r.archive.stat().st_size for r in raw) / 2**20
        t0 = time.perf_counter()
        flatten([raw[0].archive], work / "tok", Options(signatures=synth_sigs), progress=False)
        tok_seconds = time.perf_counter() - t0
        tokenizer = work / "tok" / store.TOKENIZER
        print(f"input: 2 archives, {sum(r.tries for r in raw)} tries, {mb:.1f} MB compressed")
        print(f"tokenizer training + first flatten of one archive: {tok_seconds:.1f}s (not counted below)")
        print(f"{'run':<26}{'rows':>9}{'seconds':>9}{'rows/s':>10}{'rows/s/worker':>15}{'MB/s/worker':>13}{'peak RSS MB':>13}")
        results = {}
        for workers in (1, 2):
            out = work / f"ds{workers}"
            cmd = [sys.executable, "-m", "quackae", "flatten", "--quiet", "--workers", str(workers),
                   "--tokenizer", str(tokenizer), "--storage_path", str(out), "--signatures", str(synth_sigs),
                   "--source", *(str(r.archive) for r in raw)]  # fmt: skip
            wall, peak = peak_rss_of(cmd)
            rows = store.read_manifest(out)["length"]
            results[workers] = rows / wall
            print(f"{'quackae flatten -w ' + str(workers):<26}{rows:>9}{wall:>9.2f}{rows / wall:>10,.0f}"
                  f"{rows / wall / workers:>15,.0f}{mb / wall / workers:>13.2f}{peak:>13.0f}")  # fmt: skip
        sigs = REFERENCE_SIGS if REFERENCE_SIGS.is_dir() else None
        patterns = _load_patterns(sigs or synth_sigs)
        ref_rows, ref_s = 0, 0.0
        for r in raw:
            n, s = reference_flattener(r.archive, patterns)
            ref_rows, ref_s = ref_rows + n, ref_s + s
        ref = ref_rows / ref_s
        print(f"{'reference-style, 1 core':<26}{ref_rows:>9}{ref_s:>9.2f}{ref:>10,.0f}{ref:>15,.0f}{'':>13}{'':>13}")
        print(f"signatures: quackae flatten the synth world's; reference-style "
              f"{'Censored Planet reference set' if sigs else 'the synth world' + chr(39) + 's'} "
              f"({len(patterns)} patterns)")  # fmt: skip
        print(f"speed-up vs reference-style flattener: {results[1] / ref:.1f}x (1 worker), "
              f"{results[2] / ref:.1f}x (2 workers); target >= 3x")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
