"""PagedKVCache glue for the decode kernels: a rank's block table and local lengths for the sequences of a
step (memoized, so a step's layers and HOP-B pieces share one host-to-device copy), and the decode attention
of one layer over them."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from .decode_attention import paged_decode_attention
from .decode_launch import DecodeConfig


_TABLE_CACHE: OrderedDict[tuple, tuple] = OrderedDict()
_TABLE_CACHE_SIZE = 16


def build_block_table(cache, seq_ids: Sequence[int], device: torch.device | str | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(block_table [B, max_pages] int32, lengths [B] int32, max_length) of this rank's pages.

    Memoized on the sequences' state (shard object identity, page count, length), so the layers
    of one step (and the HOP-B pieces) share one host->device copy. Pages of a sequence are only
    ever appended, and a freed-and-readded id gets a new shard object (held by the memo entry,
    so its identity cannot be reused while the entry lives).
    """
    device = torch.device(device) if device is not None else cache.keys.device
    shards = [cache.sequences[s] for s in seq_ids]
    key = (id(cache), str(device), tuple((id(sh), len(sh.pages), sh.length) for sh in shards))
    hit = _TABLE_CACHE.get(key)
    if hit is not None:
        _TABLE_CACHE.move_to_end(key)
        return hit[0], hit[1], hit[2]
    local = [cache.local_length(s) for s in seq_ids]
    page_size = cache.page_size
    counts = [-(-n // page_size) for n in local]
    width = max(1, max(counts, default=0))
    table = torch.zeros(len(seq_ids), width, dtype=torch.int32)
    for row, (sh, count) in enumerate(zip(shards, counts)):
        if count:
            table[row, :count] = torch.tensor(sh.pages[:count], dtype=torch.int32)
    lens = torch.tensor(local, dtype=torch.int32)
    max_length = max(local, default=0)
    if device.type == "cuda":
        table = table.pin_memory().to(device, non_blocking=True)
        lens = lens.pin_memory().to(device, non_blocking=True)
    else:
        table, lens = table.to(device), lens.to(device)
    _TABLE_CACHE[key] = (table, lens, max_length, shards)
    while len(_TABLE_CACHE) > _TABLE_CACHE_SIZE:
        _TABLE_CACHE.popitem(last=False)
    return table, lens, max_length


def decode_attention_for_step(cache, layer: int, seq_ids: Sequence[int], q: torch.Tensor, scale: float,
                              kv_head_of_q, value_dim: int | None = None,
                              config: DecodeConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for ShardedAttention._local_attention on a decode piece (one token per sequence).

    q [B, Hq, Dk] (row i is seq_ids[i]'s new token, already written to the cache). Returns
    (out [B, Hq, Dv] fp32, lse [B, Hq] fp32) as partial_attention would over each sequence's local keys.
    """
    table, lens, max_length = build_block_table(cache, seq_ids, q.device)
    values = None if cache.values is None else cache.values[layer]
    if values is None and value_dim is None:
        value_dim = cache.keys.shape[-1]
    return paged_decode_attention(q, cache.keys[layer], values, table, lens, scale, kv_head_of_q,
                                  value_dim=value_dim if values is None else None, max_length=max_length,
                                  config=config)
