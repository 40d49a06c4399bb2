"""The served module in fp32 and in the bf16 CPU form (models/pytorch_backend.py `to_bf16_cpu`), timed
batch by batch in one process, alternating, on whatever CPU this is (the probe's verdict printed).

    python reports/scripts/bf16_cpu_speed.py [--encoder e5-small] [--batch 8] [--tokens 48] [--rounds 3]

Random weights at the encoder's shape and random token ids (speed only). Prints each form's best
batch time and bf16's speed-up over fp32 (below 1: slower). On a CPU without AMX or AVX512-BF16 the
harness refuses `--dtype bf16`; this script times it anyway, to show why.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    from models.cpu_caps import probe
    from models.pytorch_backend import to_bf16_cpu
    from models.registry import resolve

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="e5-small")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    caps = probe()
    print(f"CPU: {caps.model}; native bf16 kernel: {caps.bf16_kernel or 'none'}")
    served = resolve("full", "xnli", encoder=args.encoder, weights="random")
    fp32 = served.torch_module(attn_implementation="sdpa")
    bf16 = served.torch_module(attn_implementation="sdpa")
    bf16.load_state_dict(fp32.state_dict())
    to_bf16_cpu(bf16)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (args.batch, args.tokens), generator=g)
    mask = torch.ones_like(ids)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    with torch.inference_mode():
        for module in (fp32, bf16):
            module(ids, mask)  # warm
        for r in range(args.rounds):
            order = [("fp32", fp32), ("bf16", bf16)][:: 1 if r % 2 == 0 else -1]
            for name, module in order:
                t0 = time.perf_counter()
                module(ids, mask)
                best[name] = min(best[name], time.perf_counter() - t0)
    print(
        f"{args.encoder} random weights, batch {args.batch} x {args.tokens} tokens, "
        f"{args.threads} threads, best of {args.rounds}: fp32 {best['fp32'] * 1e3:.1f} ms, "
        f"bf16 {best['bf16'] * 1e3:.1f} ms; bf16 speed-up {best['fp32'] / best['bf16']:.3f}x"
    )


if __name__ == "__main__":
    main()
