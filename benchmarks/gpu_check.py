"""One-shot CUDA check of the cuDNN paths: agreement with CPU scans, Lightning, encoder speed.

Runs from the repository root with ``PYTHONPATH=src python benchmarks/gpu_check.py``. Imports only
``quackae.model.autoencoder`` / ``quackae.model.gru`` (torch, lightning, numpy, pyarrow; no ray,
re2, comet) and ``benchmarks/original.py``. Finishes in well under 4 minutes on one GPU.

Checks (float64 for exact agreement, TF32 off; fp32 reported too):

1. encoder latents, ``final`` and ``mean``: cuDNN (CUDA, no grad) vs the autograd scan on CPU;
2. teacher-forced ``decode_loss``: loss and every gradient, CUDA (cuDNN encoder and decoder scan)
   vs CPU (scans), and that the CUDA modules ran ``last_kernel == "native"``;
3. a few Lightning Trainer steps of QuackAutoEncoder on ``accelerator="gpu"`` (mixed teacher
   forcing, random batches), then a predict pass; losses finite;
4. encoder throughput, quackae vs the seed's model, fp32 and bf16, same batches, alternating.

Exits 1 on a mismatch. Without CUDA it says so, skips the GPU parts and dry-runs checks 1-3 on CPU
with torch's CPU GRU kernel standing in for cuDNN (the same code path as CUDA selects).
Writes the results as JSON to ``$OUT/gpu_check.json`` when ``OUT`` is set.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from original import OriginalAutoEncoder, alternate, encoder_flops_per_token, make_batch, tokens
from quackae.model import gru
from quackae.model.autoencoder import QuackAutoEncoder
from quackae.model.gru import native_gru

RESULTS: dict[str, Any] = {"checks": {}, "failures": []}
CUDA_SELECTS_NATIVE = gru.use_native


@contextmanager
def scans() -> Iterator[None]:
    """Run the reference side on quackae's own scans (undoes the CPU dry run's forced kernel)."""
    forced, gru.use_native = gru.use_native, CUDA_SELECTS_NATIVE
    try:
        yield
    finally:
        gru.use_native = forced


TOL64 = 1e-7


def record(name: str, ok: bool, **values: Any) -> None:
    """Store and print one check; a failed one makes the script exit non-zero."""
    RESULTS["checks"][name] = {"ok": ok, **values}
    if not ok:
        RESULTS["failures"].append(name)
    shown = ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )
    print(f"[{'ok' if ok else 'FAIL'}] {name}: {shown}", flush=True)


def small_model(dtype: torch.dtype, layers: int = 1) -> QuackAutoEncoder:
    """A seeded small model with a text offset (so the mean latent weighs text tokens)."""
    torch.manual_seed(0)
    return QuackAutoEncoder(300, 24, 32, layers=layers, layout={"text_offset": 50}).to(dtype)


def compare(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Max abs difference and the smallest row cosine of two (B, H) tensors."""
    a, b = a.double().cpu(), b.double().cpu()
    cos = torch.nn.functional.cosine_similarity(a.reshape(len(a), -1), b.reshape(len(b), -1), dim=1)
    return float((a - b).abs().max()), float(cos.min())


def check_cpu_native() -> None:
    """The native path's packing and unsorting on CPU (torch's CPU GRU kernel) vs the scan."""
    m = small_model(torch.float64)
    x = make_batch(9, 20, 300, seed=1)
    x[1, 1:] = 0  # a length-1 row
    emb = m.embed(x)
    lengths = x.ne(0).sum(dim=1)
    out_scan, h_scan = m.encoder(emb, lengths)
    hx = emb.new_zeros(2, 9, 16)
    out, h_n = native_gru(emb, lengths, m.encoder.flat_weights(), hx, 1, True)
    diff = max(
        float((out - out_scan).detach().abs().max()), float((h_n - h_scan).detach().abs().max())
    )
    record("cpu: native kernel path vs scan (float64)", diff < TOL64, max_abs_diff=diff)


def check_encoder(dev: torch.device) -> None:
    """cuDNN latents (no grad) vs the CPU autograd scan, both latents, float64 and fp32."""
    for dtype, tol in ((torch.float64, TOL64), (torch.float32, 1e-4)):
        cpu = small_model(dtype, layers=2)
        gpu = small_model(dtype, layers=2).to(dev)
        x = make_batch(33, 40, 300, seed=2)
        x[3, 1:] = 0
        for latent in ("final", "mean"):
            with scans():
                want = cpu.embed_rows(x, latent)  # grad enabled: the scan
            assert cpu.encoder.last_kernel == "scan"
            with torch.inference_mode():
                got = gpu.embed_rows(x.to(dev), latent)
            diff, cos = compare(got, want.detach())
            ok = diff < tol and cos > 0.99999 and gpu.encoder.last_kernel == "native"
            record(
                f"encoder {latent} latent, cuDNN vs scan ({str(dtype)[6:]})",
                ok,
                max_abs_diff=diff,
                cosine_min=cos,
                kernel=gpu.encoder.last_kernel,
            )


def check_decoder(dev: torch.device) -> None:
    """Teacher-forced and sampled loss + grads: CUDA (cuDNN) vs CPU (autograd scans), float64."""
    x = make_batch(17, 30, 300, seed=3)
    x[2, 1:] = 0
    for mode in ("fast", "sample"):
        cpu, gpu = small_model(torch.float64, 2), small_model(torch.float64, 2).to(dev)
        with scans():
            loss_c = cpu.decode_loss(x, mode)[0]
            loss_c.backward()
        loss_g = gpu.decode_loss(x.to(dev), mode)[0]
        loss_g.backward()
        grad_diff = max(
            float((pg.grad.cpu() - pc.grad).abs().max())
            for pg, pc in zip(gpu.parameters(), cpu.parameters(), strict=True)
        )
        loss_diff = abs(float(loss_g.detach()) - float(loss_c.detach()))
        kernels = f"{gpu.encoder.last_kernel}/{gpu.decoder.last_kernel}"
        ok = loss_diff < TOL64 and grad_diff < 1e-6 and kernels == "native/native"
        record(
            f"decode_loss {mode}: loss and grads, cuDNN vs scan (float64)",
            ok,
            loss_diff=loss_diff,
            grad_max_abs_diff=grad_diff,
            kernels=kernels,
        )


def check_trainer(dev: torch.device) -> None:
    """A few Lightning steps on ``dev`` ("gpu" on CUDA) with mixed teacher forcing, then predict."""
    import lightning.pytorch as pl

    model = QuackAutoEncoder(300, 24, 32, learning_rate=1e-3, teacher_forcing=0.5)
    batches = [make_batch(16, 24, 300, seed=10 + i) for i in range(8)]
    trainer = pl.Trainer(
        accelerator="gpu" if dev.type == "cuda" else "cpu",
        devices=1,
        max_steps=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    loss = float(trainer.callback_metrics.get("train_loss", torch.tensor(math.nan)))
    preds = trainer.predict(
        model, DataLoader([(list(range(16)), b) for b in batches[:2]], batch_size=None)
    )
    shapes = [tuple(p[1].shape) for p in preds]
    ok = math.isfinite(loss) and trainer.global_step == 6 and shapes == [(16, 32)] * 2
    record(
        f"lightning: 6 training steps + predict on {dev.type}",
        ok,
        steps=trainer.global_step,
        last_train_loss=loss,
        decoder_kernel=model.decoder.last_kernel,
        predict_shapes=str(shapes),
    )


def matmul_peak(dev: torch.device, dtype: torch.dtype, n: int = 8192) -> float:
    """Best matmul FLOP/s on this device in ``dtype``, measured now."""
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    a @ b
    torch.cuda.synchronize()
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def check_speed(dev: torch.device) -> None:
    """Encoder forward (no grad) tokens/s, quackae vs the seed's model, same batches, in turn."""
    embed, hidden, vocab = 128, 512, 7069
    per_token = encoder_flops_per_token(embed, hidden)
    speed: dict[str, Any] = {}
    for dtype in (torch.float32, torch.bfloat16):
        peak = matmul_peak(dev, dtype)
        torch.manual_seed(0)
        original = OriginalAutoEncoder(vocab, embed, hidden).to(dev, dtype).eval()
        model = QuackAutoEncoder(vocab, embed, hidden).to(dev, dtype).eval()
        model.embed.load_state_dict(original.embed.state_dict())
        model.encoder.load_state_dict(original.encoder.state_dict())
        for batch, length in ((64, 64), (64, 256), (1024, 256)):
            name = f"{str(dtype)[6:]} B={batch} T={length}"
            speed[name] = time_encoders(original, model, dev, batch, length, peak, per_token, name)
    RESULTS["encoder_speed"] = speed


def time_encoders(
    original: OriginalAutoEncoder,
    model: QuackAutoEncoder,
    dev: torch.device,
    batch: int,
    length: int,
    peak: float,
    per_token: float,
    name: str,
) -> dict[str, Any]:
    """Tokens/s of both encoders on 8 random batches, alternating; MFU against ``peak``."""
    xs = [make_batch(batch, length, 7069, seed=i).to(dev) for i in range(8)]
    n = tokens(xs)

    def run(fn: Any) -> None:
        for x in xs:
            fn(x)
        torch.cuda.synchronize()

    try:
        with torch.inference_mode():
            sec = alternate(
                {
                    "original": lambda: run(lambda x: original.encode(x)[0]),
                    "quackae": lambda: run(lambda x: model.embed_rows(x, "final")),
                },
                rounds=5,
                warmup=2,
            )
    except RuntimeError as err:  # e.g. no cuDNN RNN kernel for this dtype
        print(f"  {name}: not run ({str(err).splitlines()[0]})")
        return {"error": str(err).splitlines()[0]}
    row: dict[str, Any] = {k: n / v for k, v in sec.items()}
    row["ratio"] = sec["original"] / sec["quackae"]
    row["mfu_quackae"] = row["quackae"] * per_token / peak
    print(
        f"  {name}: quackae {row['quackae']:,.0f} tokens/s (MFU {row['mfu_quackae']:.1%} of "
        f"{peak / 1e12:.0f} TFLOP/s), original {row['original']:,.0f}; {row['ratio']:.2f}x",
        flush=True,
    )
    return row


def main() -> int:
    """Run the checks that this machine can run; write the JSON; 1 on any mismatch."""
    start = time.perf_counter()
    RESULTS["torch"] = torch.__version__
    RESULTS["cuda"] = torch.cuda.is_available()
    check_cpu_native()
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        RESULTS["device"] = torch.cuda.get_device_name(dev)
        RESULTS["cudnn"] = torch.backends.cudnn.version()
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        print(
            f"device {RESULTS['device']}, cuDNN {RESULTS['cudnn']}, torch {torch.__version__}; "
            "TF32 off"
        )
        check_encoder(dev)
        check_decoder(dev)
        check_trainer(dev)
        print("encoder throughput (no grad), same batches, alternating:")
        check_speed(dev)
    else:
        print(
            "no CUDA device: skipped the cuDNN checks and the GPU throughput. Dry run of the "
            "same checks "
            "on CPU, torch's CPU GRU kernel standing in for cuDNN (not a GPU result):"
        )
        gru.use_native = lambda x: True  # what CUDA tensors select, forced for the dry run
        dev = torch.device("cpu")
        check_encoder(dev)
        check_decoder(dev)
        check_trainer(dev)
        RESULTS["skipped"] = ["cuda", "speed"]
    RESULTS["seconds"] = time.perf_counter() - start
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_check.json").write_text(json.dumps(RESULTS, indent=2))
    verdict = (
        "FAILED: " + ", ".join(RESULTS["failures"]) if RESULTS["failures"] else "all checks passed"
    )
    print(f"{verdict} ({RESULTS['seconds']:.0f}s)")
    return 1 if RESULTS["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
