"""Encoding speed: the encoder alone vs the whole ``ae_processor --encode`` (read + encode + write).

Builds a dataset from generated archives and a checkpoint of an E=128, H=512 model sized for it,
then, in one run, times (a) the encoder forward alone on pre-gathered B=64 batches and (b) the
controller's in-process encode, which reads the dataset, encodes and writes embedding shards.

    .venv/bin/python benchmarks/encode.py [--measurements 6000] [--max_tokens 256]
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from quackae import ae_processor, store, synth
from quackae.autoencoder import QuackAutoEncoder
from quackae.cp_tokenized_data import BatchSampler, QuackTokenizedDataModule
from quackae.flatten import Options, flatten


def make_checkpoint(dm: QuackTokenizedDataModule, path: Path, embed: int, hidden: int) -> QuackAutoEncoder:
    """A checkpoint file (weights + hyperparameters) of a freshly initialised model."""
    torch.manual_seed(0)
    model = QuackAutoEncoder(
        num_embeddings=dm.num_embeddings, embed_size=embed, hidden_size=hidden,
        pad_id=dm.pad_id, tokenizer_sha256=dm.tokenizer_sha256, layout=dm.layout,
    )  # fmt: skip
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return model


def encoder_alone(model: QuackAutoEncoder, dm: QuackTokenizedDataModule, batch: int,
                  dtype: torch.dtype = torch.float32) -> tuple[float, float, torch.Tensor]:
    """Records/s, non-pad tokens/s and the latents of ``model.forward`` (in ``dtype``) on batches gathered beforehand."""
    cache = store.Dataset(dm.data_dir).tokens()
    # the same length-bucketed batches the predict loader makes
    sampler = BatchSampler(np.arange(len(cache)), cache.lengths, batch, shuffle=False, bucketing=True, seed=0)
    batches = [torch.from_numpy(cache.batch(index, dm.pad_id)) for index in sampler]
    order = np.arange(len(cache))
    model = copy.deepcopy(model).to(dtype).eval()
    with torch.inference_mode():
        model(batches[0])  # warm-up
        start = time.perf_counter()
        latents = [model(x)[0] for x in batches]
        seconds = time.perf_counter() - start
    tokens = int(sum(int((x != dm.pad_id).sum()) for x in batches))
    return len(order) / seconds, tokens / seconds, torch.cat(latents).float()


def end_to_end(data: Path, ckpt: Path, out: Path, batch: int, precision: str) -> float:
    """Seconds of the controller's whole in-process encode."""
    args = ae_processor.build_parser().parse_args(
        ["--data_dir", str(data), "--checkpoint_path", str(ckpt), "--storage_path", str(out), "--encode",
         "--ray_nodes", "0", "--batch_size", str(batch), "--precision", precision, "--enable_progress_bar", "false"]  # fmt: skip
    )
    start = time.perf_counter()
    ae_processor.main(args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measurements", type=int, default=6000)
    parser.add_argument("--max_tokens", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--embed_size", type=int, default=128)
    parser.add_argument("--hidden_size", type=int, default=512)
    args = parser.parse_args()
    ae_processor.quiet_warnings()
    work = Path(tempfile.mkdtemp(prefix="quackae-bench-encode-"))
    try:
        raws = [synth.write_archive(work / "raw", args.measurements, seed=s, fmt="v2", scan=sc)
                for s, sc in ((1, "http"), (2, "https"))]  # fmt: skip
        data = work / "ds"
        flatten([r.archive for r in raws], data, Options(max_tokens=args.max_tokens), progress=False)
        dm = QuackTokenizedDataModule(str(data), batch_size=args.batch_size)
        dm.prepare_data()
        model = make_checkpoint(dm, work / "model.ckpt", args.embed_size, args.hidden_size)
        lengths = store.Dataset(data).tokens().lengths
        print(f"dataset: {len(lengths)} records, mean length {lengths.mean():.0f} tokens; model E={args.embed_size} "
              f"H={args.hidden_size}, B={args.batch_size}, {torch.get_num_threads()} threads")  # fmt: skip
        reference = None
        for name, dtype, precision in (("fp32", torch.float32, "32-true"), ("bf16", torch.bfloat16, "bf16-true")):
            rec_alone, tok_alone, latents = encoder_alone(model, dm, args.batch_size, dtype)
            seconds = end_to_end(data, work / "model.ckpt", work / f"enc-{name}", args.batch_size, precision)
            rec_e2e, tok_e2e = len(lengths) / seconds, int(lengths.sum()) / seconds
            agree = ""
            if reference is None:
                reference = latents
            else:
                cos = torch.nn.functional.cosine_similarity(latents, reference, dim=1)
                agree = f"; latents vs fp32: cosine min {cos.min():.5f}"
            print(f"{name} (--precision {precision}){agree}")
            print(f"  {'encoder alone':<28}{rec_alone:>10,.0f} records/s{tok_alone:>12,.0f} tokens/s")
            print(f"  {'end-to-end (read+enc+write)':<28}{rec_e2e:>10,.0f} records/s{tok_e2e:>12,.0f} tokens/s"
                  f"   ({tok_e2e / tok_alone:.0%} of encoder alone; target >= 70%)")  # fmt: skip
        print("target: encoder >= 100,000 tokens/s (the original: ~50,000; FLOP limit ~150,000)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
