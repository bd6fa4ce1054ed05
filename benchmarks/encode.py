"""Encoding speed: quackae vs the seed's model in the same run, and ``ae_processor --encode``.

Part 1, same-run peers: the seed's encoder (its own ``autoencoder.py``'s ``forward``: ``nn.GRU``
over a packed sequence, imported by ``benchmarks/seed_original.py``) and quackae's encode path
(``QuackAutoEncoder.embed_rows`` without grad: the length-sorted kernel), with the same weights,
on the same random B=64 batches (row lengths uniform in [T/2, T]), one warm-up each, then
alternating A B A B; fp32, and bf16 where the CPU has native bf16 (or ``--bf16 on``). MFU is
against a matmul peak measured in the same run; the "FLOP limit" is that peak over the encoder's
FLOPs per token. Without ``../shared/reference`` the original is skipped with one line.

Part 2, end to end: builds a dataset from generated archives and a checkpoint sized for it, then
times the encoder alone on the predict loader's batches and the controller's whole in-process encode
(read the dataset, encode, write embedding shards), alternating; prints the end-to-end rate as a
share of the encoder's.

    .venv/bin/python benchmarks/encode.py [--lengths 64 256] [--rounds 5] [--measurements 3000] \
        [--e2e_rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

import seed_original
from original import (
    alternate,
    encoder_flops_per_token,
    machine_line,
    make_batch,
    matmul_peak,
    tokens,
)
from quackae import ae_processor as seed_cli  # the command line: parser and cli()
from quackae import synth
from quackae.dataset import store
from quackae.ingest.flatten import Options, flatten
from quackae.model import controller as ae_processor
from quackae.model.autoencoder import QuackAutoEncoder
from quackae.model.datamodule import BatchSampler, QuackTokenizedDataModule

ORIGINAL = "original (nn.GRU, packed)"


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); else bf16 is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def peers_same_run(args: argparse.Namespace, peak: float) -> None:
    """Part 1: the seed's encoder vs quackae's encode path, same weights and batches, in turn."""
    torch.manual_seed(0)
    model = QuackAutoEncoder(args.vocab, args.embed_size, args.hidden_size).eval()
    original = None
    if seed_original.reference_dir() is None:
        print(seed_original.missing_reason())
    else:
        original = seed_original.build(
            args.vocab, args.embed_size, args.hidden_size, pad_id=0
        ).eval()
        model.load_state_dict(seed_original.quackae_state(original))
    per_token = encoder_flops_per_token(args.embed_size, args.hidden_size)
    print(
        f"Part 1: encoder forward, no grad; E={args.embed_size} H={args.hidden_size} "
        f"V={args.vocab} "
        f"B={args.batch_size}; lengths uniform in [T/2, T]; {args.batches} batches per call, "
        f"1 warm-up, median of {args.rounds} alternating rounds"
    )
    print(
        f"matmul peak {peak / 1e9:.1f} GFLOP/s -> FLOP limit {peak / per_token:,.0f} tokens/s "
        f"({per_token / 1e6:.2f} MFLOP/token); {machine_line()}"
    )
    use_bf16 = args.bf16 == "on" or (args.bf16 == "auto" and cpu_has_bf16())
    for length in args.lengths:
        compare_at(length, args, original, model, use_bf16, peak)
    if not use_bf16:
        print("bf16: not timed (no native bf16 on this CPU; --bf16 on to time it anyway)")
    print("target: quackae >= 1.25x the original at T=64 and T=256, fp32")


def compare_at(
    length: int,
    args: argparse.Namespace,
    original: torch.nn.Module | None,
    model: QuackAutoEncoder,
    use_bf16: bool,
    peak: float,
) -> None:
    """Time and print the peers on ``args.batches`` random batches of width ``length``."""
    per_token = encoder_flops_per_token(args.embed_size, args.hidden_size)
    batches = [
        make_batch(args.batch_size, length, args.vocab, seed=1000 * length + i)
        for i in range(args.batches)
    ]
    n = tokens(batches)
    model_bf16 = copy.deepcopy(model).to(torch.bfloat16)

    def run_original() -> list[torch.Tensor]:
        assert original is not None
        return [original(x)[0] for x in batches]

    def run_quackae(latent: str, m: QuackAutoEncoder = model) -> list[torch.Tensor]:
        return [m.embed_rows(x, latent) for x in batches]

    peers = {} if original is None else {ORIGINAL: run_original}
    peers |= {
        "quackae --latent final": lambda: run_quackae("final"),
        "quackae --latent mean": lambda: run_quackae("mean"),
    }
    if use_bf16:
        peers["quackae final, bf16"] = lambda: run_quackae("final", model_bf16)
    with torch.inference_mode():
        got = torch.cat(run_quackae("final"))
        assert model.encoder.last_kernel == "sorted", model.encoder.last_kernel
        agree = "no original to compare latents with"
        if original is not None:
            want = torch.cat(run_original())
            agree = f"latents vs original: max abs diff {(got - want).abs().max():.1e}"
        if use_bf16:
            low = torch.cat(run_quackae("final", model_bf16)).float()
            cos = torch.nn.functional.cosine_similarity(low, got, dim=1).min()
            agree += f"; bf16 vs fp32 cosine min {cos:.6f}"
        seconds = alternate(peers, args.rounds)
    base = seconds.get(ORIGINAL)
    print(f"T={length}: {n:,} tokens per call; {agree}")
    for name, sec in seconds.items():
        rate = n / sec
        ratio = f"{base / sec:5.2f}x original" if base else ""
        print(f"  {name:<28}{rate:>10,.0f} tokens/s  MFU {rate * per_token / peak:6.1%}  {ratio}")


def make_checkpoint(
    dm: QuackTokenizedDataModule, path: Path, embed: int, hidden: int
) -> QuackAutoEncoder:
    """A checkpoint file (weights + hyperparameters) of a freshly initialised model."""
    torch.manual_seed(0)
    model = QuackAutoEncoder(
        num_embeddings=dm.num_embeddings,
        embed_size=embed,
        hidden_size=hidden,
        pad_id=dm.pad_id,
        tokenizer_sha256=dm.tokenizer_sha256,
        layout=dm.layout,
    )
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return model


def encoder_alone(
    model: QuackAutoEncoder, dm: QuackTokenizedDataModule, batch: int, latent: str
) -> float:
    """Seconds of the encode path (``embed_rows``) over the predict loader's gathered batches."""
    cache = store.Dataset(dm.data_dir).tokens()
    sampler = BatchSampler(
        np.arange(len(cache)), cache.lengths, batch, shuffle=False, bucketing=True, seed=0
    )
    batches = [torch.from_numpy(cache.batch(index, dm.pad_id)) for index in sampler]
    model = copy.deepcopy(model).eval()
    with torch.inference_mode():
        model.embed_rows(batches[0], latent)  # warm-up
        start = time.perf_counter()
        for x in batches:
            model.embed_rows(x, latent)
        return time.perf_counter() - start


def end_to_end(data: Path, ckpt: Path, out: Path, batch: int, latent: str) -> float:
    """Seconds of the controller's whole in-process encode (read + encode + write shards)."""
    args = seed_cli.build_parser().parse_args(
        [
            "--data_dir",
            str(data),
            "--checkpoint_path",
            str(ckpt),
            "--storage_path",
            str(out),
            "--encode",
            "--ray_nodes",
            "0",
            "--batch_size",
            str(batch),
            "--latent",
            latent,
            "--enable_progress_bar",
            "false",
        ]
    )
    start = time.perf_counter()
    ae_processor.main(args)
    return time.perf_counter() - start


def _dataset(
    work: Path, name: str, pairs: int, args: argparse.Namespace, tokenizer: Path | None
) -> Path:
    """A dataset of ``pairs`` (HTTP, HTTPS) archive pairs, ``args.measurements`` each, seeded."""
    raws = [
        synth.write_archive(
            work / f"raw-{name}",
            args.measurements,
            seed=10 * p + s,
            fmt="v2",
            scan=sc,
            start=datetime(2024, 1, 1 + p, 1, 0, 0),
        )  # a distinct archive name per pair
        for p in range(pairs)
        for s, sc in ((1, "http"), (2, "https"))
    ]
    data = work / name
    flatten(
        [r.archive for r in raws],
        data,
        Options(max_tokens=args.max_tokens),
        progress=False,
        tokenizer=tokenizer,
    )
    return data


def pipeline(args: argparse.Namespace) -> None:
    """Part 2: the encode path alone vs ``ae_processor --encode`` end to end, on generated data.

    Both are timed alternately (alone, whole command, alone, ...) and the medians compared, so a
    change in the machine's speed during the run hits both alike. The whole command includes its
    start-up (checkpoint load, Trainer, dataset open, final check), so the figure is a lower bound
    for a scan file of millions of rows.
    """
    ae_processor.quiet_warnings()
    work = Path(tempfile.mkdtemp(prefix="quackae-bench-encode-"))
    try:
        data = _dataset(work, "ds", 3, args, None)
        dm = QuackTokenizedDataModule(str(data), batch_size=args.batch_size)
        dm.prepare_data()
        model = make_checkpoint(dm, work / "model.ckpt", args.embed_size, args.hidden_size)
        n = int(store.Dataset(data).tokens().lengths.sum())
        print(
            f"Part 2: dataset of {len(store.Dataset(data))} records ({n:,} tokens), fp32, batch "
            f"{args.batch_size}, "
            f"median of {args.e2e_rounds} alternating rounds"
        )
        for latent in ("final", "mean"):
            alone, whole = [], []
            for r in range(args.e2e_rounds):
                alone.append(encoder_alone(model, dm, args.batch_size, latent))
                whole.append(
                    end_to_end(
                        data,
                        work / "model.ckpt",
                        work / f"enc-{latent}-{r}",
                        args.batch_size,
                        latent,
                    )
                )
            a, w = float(np.median(alone)), float(np.median(whole))
            print(
                f"  --latent {latent}: encoder alone {n / a:>8,.0f} tokens/s; end to end "
                "(read+encode+write, whole "
                f"command) {n / w:>8,.0f} tokens/s = {a / w:.0%} of the encoder alone (target >= "
                "90%); "
                f"rounds alone {[round(x, 1) for x in alone]} s, whole "
                f"{[round(x, 1) for x in whole]} s"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256])
    parser.add_argument(
        "--batches", type=int, default=4, help="random batches per timed call (part 1)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--vocab", type=int, default=7069)
    parser.add_argument(
        "--measurements", type=int, default=3000, help="per archive (part 2); 0 skips part 2"
    )
    parser.add_argument("--e2e_rounds", type=int, default=3, help="alternating rounds of part 2")
    parser.add_argument("--max_tokens", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--embed_size", type=int, default=128)
    parser.add_argument("--hidden_size", type=int, default=512)
    args = parser.parse_args()
    print(
        "command: python benchmarks/encode.py "
        + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
        )
    )
    peers_same_run(args, matmul_peak())
    if args.measurements:
        pipeline(args)


if __name__ == "__main__":
    main()
