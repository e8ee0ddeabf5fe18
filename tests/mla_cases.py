"""Paged absorbed-MLA decode cases on the GPU and their fp32 reference, shared by the sm_90 kernel's GPU
tests (test_mla_sm90_gpu.py) and scripts/gpu_gluon_mla.py: a 576-dim latent + rope key per token, the
values its first 512 dims, pages placed anywhere in the pool."""
from __future__ import annotations

import torch

KEY_DIM, VALUE_DIM = 576, 512


def make_case(lengths, heads, page_size, dtype=torch.bfloat16, seed=0):
    """(q [B, heads, 576], key pages [P, page_size, 1, 576], block table [B, pages] int32, lengths [B] int32)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    counts = [max(1, -(-n // page_size)) for n in lengths]
    total = sum(counts) + 2
    keys = torch.randn(total, page_size, 1, KEY_DIM, device="cuda", generator=gen).to(dtype)
    perm = torch.randperm(total, device="cuda", generator=gen).to(torch.int32)  # pages anywhere in the pool
    table = torch.zeros(len(lengths), max(counts), dtype=torch.int32, device="cuda")
    at = 0
    for row, count in enumerate(counts):
        table[row, :count] = perm[at:at + count]
        at += count
    q = torch.randn(len(lengths), heads, KEY_DIM, device="cuda", generator=gen).to(dtype)
    return q, keys, table, torch.tensor(lengths, dtype=torch.int32, device="cuda")


def reference(q, keys, table, lengths, scale):
    """(out [B, heads, 512], lse [B, heads]): fp32 softmax attention of each sequence over its gathered keys."""
    batch, heads, _ = q.shape
    page_size = keys.shape[1]
    out = torch.zeros(batch, heads, VALUE_DIM, device="cuda")
    lse = torch.full((batch, heads), float("-inf"), device="cuda")
    for b, n in enumerate(lengths.tolist()):
        if n:
            idx = torch.arange(n, device="cuda")
            k = keys[table[b, idx // page_size].long(), idx % page_size, 0].float()
            s = q[b].float() @ k.T * scale
            lse[b] = torch.logsumexp(s, 1)
            out[b] = torch.softmax(s, 1) @ k[:, :VALUE_DIM]
    return out, lse
