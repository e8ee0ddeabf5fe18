"""The error bf16 split partials add to absorbed-MLA decode attention, modeled in torch (runs on the CPU).

The sm_90 MLA kernel can write each split's normalized output in bf16 instead of fp32 (mla_sm90.launch's
`partials`): half the bytes between the split kernel and the merge, and one more rounding of every split's
output before the merge weighs them. This script cuts the keys as the kernel did when it was run (2026-12-06, ninth session:
the one-wave split count of mla_sm90.choose_splits for a 132-SM GPU, ceil(tiles / splits) whole 64-key tiles a
split; the kernel's default since the fifteenth session deals the tiles evenly, the same split count), computes each split's output and LSE in
fp32, rounds the outputs to bf16 or not, merges in fp32 as the merge kernel does, rounds the result to bf16 as
the model takes it, and prints the error against fp32 attention beside the floor any bf16 output has (the fp32
result rounded once). `--sharpness` scales the queries: larger is a more peaked softmax, where a few splits carry
the output and their rounding shows through the merge undiluted.

    python scripts/partials_rounding.py --lengths 32768 131072 --sharpness 1 3 8
"""
from __future__ import annotations

import argparse
import math

import torch

from helix_core.kernels.decode_launch import choose_num_splits
from helix_core.kernels.mla_sm90 import BLOCK_H, BLOCK_N as TILE, KEY_DIM, VALUE_DIM

HEADS = 128  # DeepSeek-V3's
HEAD_BLOCKS = HEADS // BLOCK_H
H100_SMS = 132
SCALE = 1.0 / math.sqrt(192)  # DeepSeek-V3's q.k head dim (nope 128 + rope 64)


def split_bounds(length: int, splits: int) -> list[tuple[int, int]]:
    """The kernel's key ranges as they were (mla_sm90.launch's even_splits off): ceil(length / splits) rounded up
    to whole tiles, the last split short or empty."""
    per = -(-(-(-length // splits)) // TILE) * TILE
    return [(lo, min(lo + per, length)) for lo in range(0, per * splits, per) if lo < length]


def merged(q: torch.Tensor, keys: torch.Tensor, bounds, partials: torch.dtype) -> torch.Tensor:
    """Attention [heads, 512] from per-split fp32 outputs stored in `partials`, merged by LSE weights in fp32."""
    outs, lses = [], []
    for lo, hi in bounds:
        scores = q @ keys[lo:hi].T * SCALE
        lses.append(torch.logsumexp(scores, 1))
        outs.append((torch.softmax(scores, 1) @ keys[lo:hi, :VALUE_DIM]).to(partials).float())
    weights = torch.softmax(torch.stack(lses), 0)
    return (weights[..., None] * torch.stack(outs)).sum(0)


def error_rows(length: int, sharpness: float, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    q = (torch.randn(HEADS, KEY_DIM, generator=gen) * sharpness).bfloat16().float()
    keys = torch.randn(length, KEY_DIM, generator=gen).bfloat16().float()
    scores = q @ keys.T * SCALE
    exact = torch.softmax(scores, 1) @ keys[:, :VALUE_DIM]
    bounds = split_bounds(length, choose_num_splits(1, HEAD_BLOCKS, length, TILE, H100_SMS, waves=1))
    rows = []
    for name, result in (("bf16 floor", exact),
                         ("fp32 partials", merged(q, keys, bounds, torch.float32)),
                         ("bf16 partials", merged(q, keys, bounds, torch.bfloat16))):
        err = (result.bfloat16().float() - exact).abs()
        rows.append(dict(length=length, sharpness=sharpness, splits=len(bounds), case=name,
                         max_err=err.max().item(), mean_err=err.mean().item(),
                         mean_abs_out=exact.abs().mean().item()))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32768, 131072])
    parser.add_argument("--sharpness", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    args = parser.parse_args()
    print("| context | q scale | splits with keys | output | max abs err | mean abs err | mean abs output |")
    print("|---|---|---|---|---|---|---|")
    for length in args.lengths:
        for sharpness in args.sharpness:
            for row in error_rows(length, sharpness):
                print(f"| 1 x {row['length']} | {row['sharpness']:g} | {row['splits']} | {row['case']} "
                      f"| {row['max_err']:.3e} | {row['mean_err']:.3e} | {row['mean_abs_out']:.3e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
