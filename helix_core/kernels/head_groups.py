"""Which query heads read which KV head, in blocks a decode kernel's program takes together: the tables the
kernels index, built once per (block size, device) so a serving loop never syncs the host for them."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch


class HeadGroups:
    """Which query heads read which KV head, packed in blocks of <= BLOCK_H heads.

    Build it once (from kv_head_of_q: int group size, list, or tensor) and pass it on every call:
    the kernel's tables are cached per (BLOCK_H, device) and never need a host sync afterwards.
    """

    def __init__(self, kv_head_of_q: Sequence[int] | torch.Tensor, num_q_heads: int | None = None):
        if isinstance(kv_head_of_q, torch.Tensor):
            mapping = [int(x) for x in kv_head_of_q.detach().cpu().tolist()]
        else:
            mapping = [int(x) for x in kv_head_of_q]
        if num_q_heads is not None and len(mapping) != num_q_heads:
            raise ValueError(f"kv_head_of_q has {len(mapping)} entries for {num_q_heads} query heads")
        if any(h < 0 for h in mapping):
            raise ValueError("kv_head_of_q has negative entries")
        self.mapping = mapping
        self.num_q_heads = len(mapping)
        heads_of: dict[int, list[int]] = {}
        for q_head, kv_head in enumerate(mapping):
            heads_of.setdefault(kv_head, []).append(q_head)
        self.heads_of_kv = heads_of
        self.max_group = max((len(v) for v in heads_of.values()), default=1)
        self.max_kv_head = max(mapping, default=0)
        self._tables: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._whole_runs: dict[int, bool] = {}  # asked on every decode call that may load Q by TMA

    @classmethod
    def from_group_size(cls, num_q_heads: int, group: int) -> HeadGroups:
        return cls([h // group for h in range(num_q_heads)])

    def whole_runs(self, block_h: int) -> bool:
        """Every block of `block_h` query heads (as `tables` lays them out) is that many consecutive heads, so a
        block's query rows can be loaded as one box."""
        if block_h not in self._whole_runs:
            self._whole_runs[block_h] = all(
                block == list(range(block[0], block[0] + block_h))  # not scattered, nor a short (padded) block
                for q_heads in self.heads_of_kv.values()
                for block in (q_heads[i:i + block_h] for i in range(0, len(q_heads), block_h)))
        return self._whole_runs[block_h]

    def tables(self, block_h: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(kv head of each head block [G] int32, query heads of each block [G, block_h] int32, -1 pad)."""
        key = (block_h, str(device))
        hit = self._tables.get(key)
        if hit is None:
            kv, rows = [], []
            for kv_head, q_heads in self.heads_of_kv.items():
                for i in range(0, len(q_heads), block_h):
                    chunk = q_heads[i:i + block_h]
                    kv.append(kv_head)
                    rows.append(chunk + [-1] * (block_h - len(chunk)))
            hit = (torch.tensor(kv, dtype=torch.int32).to(device),
                   torch.tensor(rows, dtype=torch.int32).reshape(len(kv), block_h).to(device))
            self._tables[key] = hit
        return hit


_GROUPS_CACHE: OrderedDict[tuple, tuple[HeadGroups, torch.Tensor]] = OrderedDict()


def as_head_groups(kv_head_of_q, num_q_heads: int) -> HeadGroups:
    """int (GQA group size) | sequence | tensor | HeadGroups -> HeadGroups (tensors cached by identity
    and version, so only the first call with a given CUDA tensor syncs)."""
    if isinstance(kv_head_of_q, HeadGroups):
        return kv_head_of_q
    if kv_head_of_q is None:
        return HeadGroups(list(range(num_q_heads)))
    if isinstance(kv_head_of_q, int):
        return HeadGroups.from_group_size(num_q_heads, kv_head_of_q)
    if isinstance(kv_head_of_q, torch.Tensor):
        key = (kv_head_of_q.data_ptr(), kv_head_of_q._version, tuple(kv_head_of_q.shape), str(kv_head_of_q.device))
        hit = _GROUPS_CACHE.get(key)
        if hit is not None and hit[1] is kv_head_of_q:
            _GROUPS_CACHE.move_to_end(key)
            return hit[0]
        groups = HeadGroups(kv_head_of_q, num_q_heads)
        _GROUPS_CACHE[key] = (groups, kv_head_of_q)  # holds the tensor: its address is not reused
        while len(_GROUPS_CACHE) > 32:
            _GROUPS_CACHE.popitem(last=False)
        return groups
    return HeadGroups(kv_head_of_q, num_q_heads)
