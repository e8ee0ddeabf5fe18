"""The fast decode path: static-shape decode steps, captured in CUDA graphs per batch bucket.

Everything a step needs is a device tensor of fixed shape: the new tokens, the lengths, each
sequence's first KVP rank and this rank's page table. From the lengths, the step computes on the
device which rank and slot receive each appended token (padded rows and tokens owned by other
KVP ranks write to a scratch page) and each sequence's local key count for the attention kernel.
The host only advances its page accounting and uploads a page-table entry when a page is added,
so a step costs one small host-to-device copy, one graph replay and the read of the tokens.

The KVP exchange: up to GATHER_MAX_BYTES it is one sum over zero-padded slots (gather_exchange.py),
beyond that an all-to-all. At batch 1 with the one-row projection kernel, the KVP merge is done by
the output projection's kernel as it reads its input (`attention_output`), not by a kernel of its own.
A gather delivers every head's partials to every rank: where the rank holds the whole output
projection (EngineOptions.o_projection "replicated") it projects every head itself, and the layer's
attention needs no all-reduce.

HOP-B: the batch is cut into pieces; a piece's all-to-all is issued asynchronously (it runs on
the process group's communication stream) while the next piece's attention runs on the compute
stream; the merge waits for it. A gathered exchange is a kernel on the stream that launches it, so
with pieces it is launched on a second stream (hopb_stream.py), to the same effect.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .attention import merge_partials
from .kernels.rope_append import rope_and_append, rope_append_usable
from .kernels.small_linear import merge_linear, merge_linear_usable
from .kv_cache import PagedKVCache, StagePlacement
from .sampling import greedy_tokens_and_logprobs
from .sharded_attention import exchange_packed, start_exchange

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def paged_attention_torch(q, key_pages, value_pages, block_table, lengths, scale, kv_head_of_q, value_dim=None,
                          reduce_scores=None, max_keys=None):
    """Static-shape reference of the paged decode kernel: (out [B,Hq,Dv] fp32, lse [B,Hq] fp32).
    `reduce_scores` sums partial q.k scores over the ranks holding other dimension slices.
    max_keys: a bound of every row's length; only that many keys a row are gathered (the page
    table spans the whole pool, and this path materializes what it reads in fp32)."""
    page = key_pages.shape[1]
    if max_keys is not None:
        block_table = block_table[:, : max(1, -(-int(max_keys) // page))]
    batch, max_pages = block_table.shape
    keys = key_pages[block_table.long()].flatten(1, 2)[:, :, kv_head_of_q].float()  # [B, S, Hq, Dk]
    values = keys[..., :value_dim] if value_pages is None else \
        value_pages[block_table.long()].flatten(1, 2)[:, :, kv_head_of_q].float()
    scores = torch.einsum("bhd,bshd->bhs", q.float(), keys)
    if reduce_scores is not None:
        scores = reduce_scores(scores.contiguous())
    scores = scores * scale
    visible = torch.arange(max_pages * page, device=q.device)[None, :] < lengths[:, None]
    scores = scores.masked_fill(~visible[:, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.nan_to_num(torch.exp(scores - lse.unsqueeze(-1)), nan=0.0)
    return torch.einsum("bhs,bshd->bhd", probs, values), lse


def paged_attention(q, key_pages, value_pages, block_table, lengths, scale, kv_head_of_q, head_groups=None,
                    value_dim=None, reduce_scores=None, out=None, lse=None, max_length=None, prefetch=None):
    """Decode attention over paged local keys: the Triton kernels when `head_groups` is given (CUDA),
    else the torch reference of them. With `reduce_scores` (partial q.k scores summed over dimension
    slices) the sliced kernels, which hand the scores to it between the q.k and the softmax.
    out/lse: where the kernel writes its results (e.g. the channels of a packed exchange buffer);
    max_length: None or a bound of every row's length: the decode kernel's launch-config hint, the
    sliced kernels' static score width and the torch path's gather bound; prefetch: (tensor, bytes) for
    the decode kernel's split merge to ask for in L2 as it ends (a hint; the other paths ignore it)."""
    if head_groups is not None:
        q = q if q.stride(-1) == 1 else q.contiguous()  # the kernels take any row/head strides
        if reduce_scores is not None:
            from .kernels.sliced_decode import paged_sliced_attention

            return paged_sliced_attention(q, key_pages, value_pages, block_table, lengths, scale, head_groups,
                                          reduce_scores, value_dim=value_dim, max_length=max_length, out=out, lse=lse)
        from .kernels.decode_attention import paged_decode_attention

        return paged_decode_attention(q, key_pages, value_pages, block_table, lengths, scale,
                                      head_groups, value_dim=value_dim, out=out, lse=lse, max_length=max_length,
                                      prefetch=prefetch)
    return paged_attention_torch(q, key_pages, value_pages, block_table, lengths, scale, kv_head_of_q, value_dim,
                                 reduce_scores, max_keys=max_length)


@dataclass
class DecodeBuffers:
    """Static inputs of one batch bucket (host fills them before each replay). The per-row vectors
    share one [5, B] device tensor, so a step uploads them in one copy."""

    # [5, B] long: new token (from the host), its position, first KVP rank, valid (1) or padding (0),
    # and where the token comes from instead: a row of the previous step's output (-1: the host's)
    meta: torch.Tensor
    block_table: torch.Tensor  # [B, max_pages] int32, this rank's pages of each row's sequence

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens cached before this step = the position of the new one."""
        return self.meta[1]

    @classmethod
    def allocate(cls, batch: int, max_pages: int, scratch_page: int, device) -> "DecodeBuffers":
        return cls(torch.zeros(5, batch, dtype=torch.long, device=device),
                   torch.full((batch, max_pages), scratch_page, dtype=torch.int32, device=device))


def _staged(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A host tensor to copy to `device` without blocking: pinned on CUDA (torch's caching host
    allocator keeps the block until the copy is done), so the copy queues behind a step in flight."""
    host = torch.tensor(values, dtype=dtype)
    return host.pin_memory() if device.type == "cuda" else host


def step_inputs(meta: torch.Tensor, block_table: torch.Tensor, feedback: torch.Tensor, *, placement: StagePlacement,
                rank: int, page: int, scratch_slot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input token ids, the cache slot each row's new token goes to on this rank, the rank's local key
    counts after the append) of a step, from DecodeBuffers.meta and the block table. A row's token comes
    from `feedback` (the previous step's pick, still on the device) where its source row is >= 0. The
    local key count is StagePlacement.local_count's arithmetic on tensors; rows this rank does not receive
    write to the scratch slot."""
    host_tokens, pos, start, valid, source = meta[0], meta[1], meta[2], meta[3] != 0, meta[4]
    kvp, stage = placement.kvp, placement.stage_size
    input_ids = torch.where(source >= 0, feedback[source.clamp(min=0)], host_tokens)
    mine = (placement.owner(pos, start) == rank) & valid
    local = placement.local_index(pos)
    page_index = (local // page).clamp(max=block_table.shape[1] - 1)
    page_id = block_table.gather(1, page_index[:, None]).squeeze(1).long()
    slots = torch.where(mine, page_id * page + local % page, torch.full_like(pos, scratch_slot))
    total = pos + 1
    full, rest = total // stage, total % stage
    first = (rank - start) % kvp
    owned_full = torch.where(full > first, (full - first + kvp - 1) // kvp, torch.zeros_like(full))
    partial = torch.where((rest > 0) & ((start + full) % kvp == rank), rest, torch.zeros_like(rest))
    local_lengths = torch.where(valid, owned_full * stage + partial, torch.zeros_like(full))
    return input_ids, slots, local_lengths.to(torch.int32)


class StepPlacement:
    """Device-side placement of the appended tokens (the same arithmetic as StagePlacement).
    compiled: `step_inputs` as one generated kernel (torch.compile) instead of about 25 small ones
    (CUDA: each costs a launch and 1-3 us of a batch-1 step)."""

    def __init__(self, cache: PagedKVCache, compiled: bool = False):
        self.placement = cache.placement
        self.page = cache.page_size
        self.rank = cache.kvp_rank
        self.scratch_slot = cache.scratch_page * cache.page_size
        if compiled:
            from .models.ops import compiled_function

            self._inputs = compiled_function(step_inputs)
        else:
            self._inputs = step_inputs

    def inputs(self, buf: DecodeBuffers, feedback: torch.Tensor):
        """(input ids, slots, local lengths) of the step in `buf` (see `step_inputs`)."""
        return self._inputs(buf.meta, buf.block_table, feedback, placement=self.placement, rank=self.rank,
                            page=self.page, scratch_slot=self.scratch_slot)


class FastDecodeContext:
    """LayerContext of a static decode step: paged kernel attention, exchange, all-reduce."""

    static_shapes = True

    def __init__(self, engine, buf: DecodeBuffers, slots, local_lengths, hopb_pieces: int, head_groups,
                 length_hint: int | None = None):
        self.engine, self.buf, self.slots, self.local_lengths = engine, buf, slots, local_lengths
        self.length_hint = length_hint  # bound of the local key counts that picks the kernel's launch
        self.comm = engine.comm
        self.cache: PagedKVCache = engine.cache
        attention = engine.attention
        self.kvp, self.out_heads, self.scale = attention.kvp, attention.out_heads, attention.scale
        self.kv_head_of_q = attention.kv_head_of_q
        self.pieces = max(1, min(hopb_pieces, buf.meta.shape[1])) if self.kvp > 1 else 1
        # HOP-B with gathered exchanges: those run on a second stream, beside the next piece's attention
        self.exchange_stream = engine.hopb_exchange_stream() if self.pieces > 1 else None
        self.head_groups = head_groups  # None: the torch reference path
        self.reduce_scores = None
        if self.comm.size("head_slices") > 1:  # partial q.k scores summed over the dimension slices
            self.reduce_scores = lambda scores: self.comm.all_reduce(scores, "head_slices")
        self.use_kernel = head_groups is not None  # the kernels write into given out/lse destinations
        self.fuse_append = self.use_kernel and engine.use_fusions  # RoPE + KV append in one kernel
        self.prefetch_bytes = engine.l2_prefetch_bytes if self.use_kernel else 0

    def phase(self, name: str):
        """Phases are not timed inside a captured graph (see the profiler's sampled eager steps)."""
        return contextlib.nullcontext()

    def all_reduce(self, x):
        return self.comm.all_reduce(x, "all")

    def attend(self, layer, q, k, v, value_dim=None, rotary=None):
        merged = [self._finish_exchange(*p) for p in self._attend_pieces(layer, q, k, v, value_dim, rotary)]
        return merged[0] if len(merged) == 1 else torch.cat(merged, dim=0)

    def attention_output(self, layer, q, k, v, projection, linear, rotary=None):
        # where the exchange gathers every head's partials and this rank holds the whole o projection, it
        # projects them all itself: the sum over heads is then complete, with no all-reduce
        whole = self.engine.projects_every_head(q.shape[0])
        weight = projection.full if whole else projection.local
        # with KVP, the split merge before the exchange asks for the o projection's weights in L2
        prefetch = (weight, self.prefetch_bytes) if self.prefetch_bytes and self.kvp > 1 else None
        pending = self._attend_pieces(layer, q, k, v, None, rotary, prefetch, every_head=whole)
        y = self._project(pending, weight, linear, q)
        if whole:
            self.engine.attention.stats.replicated_o_projections += 1
            return y
        return self.all_reduce(y)

    def _project(self, pending, weight, linear, q):
        """The output projection of the exchanged partials: merged by the projection's kernel (one row),
        else by the merge kernel and then projected."""
        if self.engine.merges_in_projection(q.shape[0]):
            recv, work, dim = pending[0]
            if dim is not None and merge_linear_usable(recv, weight):
                # the o projection's kernel merges the KVP partials as it reads them: no merge kernel
                if work is not None:
                    work.wait()
                self.engine.attention.stats.merges_in_projection += 1
                return merge_linear(recv, weight)
        merged = [self._finish_exchange(*p) for p in pending]
        attn = merged[0] if len(merged) == 1 else torch.cat(merged, dim=0)
        return linear(attn.to(q.dtype).reshape(q.shape[0], -1), weight)

    def _attend_pieces(self, layer, q, k, v, value_dim, rotary, prefetch=None, every_head=False) -> list[tuple]:
        """Append k / v, attend per HOP-B piece and start each piece's exchange: [(recv, work, Dv)], or
        [(exact output, None, None)] without KVP (see _finish_exchange). prefetch: (tensor, bytes) the
        last piece's attention asks for in L2 as it ends (paged_decode_attention); every_head: gathered
        exchanges return every head's partials, not only this rank's heads'."""
        cache = self.cache
        keys = cache.keys[layer]
        values = None if cache.values is None else cache.values[layer]
        key_rows = keys.view(-1, *keys.shape[-2:])
        value_rows = None if values is None else values.view(-1, *values.shape[-2:])
        if rotary is not None and self.fuse_append and rope_append_usable(q, k, v, key_rows, value_rows):
            q = rope_and_append(q, k, v, rotary.cos, rotary.sin, self.slots, key_rows, value_rows)
        else:
            if rotary is not None:
                q, k = rotary.rotate(q, k)
            key_rows.index_copy_(0, self.slots, k.to(keys.dtype))
            if values is not None:
                value_rows.index_copy_(0, self.slots, v.to(values.dtype))
        batch = q.shape[0]
        bounds = self.piece_bounds(batch)
        dv = value_dim if values is None else values.shape[-1]
        pending = []
        gather = self.engine.gather_exchange if self.kvp > 1 else None
        for lo, hi in bounds:
            args = (q[lo:hi], keys, values, self.buf.block_table[lo:hi], self.local_lengths[lo:hi], value_dim,
                    prefetch if hi == batch else None)
            if gather is not None and gather.fits(hi):
                # partials go to this rank's zero-padded slot column; one sum over the group gathers them
                out, lse = gather.send_view(lo, hi)
                if self.use_kernel:
                    self._attention(*args, out=out, lse=lse)
                else:
                    part_out, part_lse = self._attention(*args)
                    out.copy_(part_out)
                    lse.copy_(part_lse)
                if self.exchange_stream is not None:
                    recv, work = self.exchange_stream.run(lambda lo=lo, hi=hi: gather.exchange(lo, hi, every_head))
                    pending.append((recv, work, dv))
                else:
                    pending.append((gather.exchange(lo, hi, every_head), None, dv))
            elif self.use_kernel and self.kvp > 1:
                # the kernel writes output and LSE straight into the exchange buffer's channels
                packed = torch.empty(hi - lo, q.shape[1], dv + 1, dtype=torch.float32, device=q.device)
                self._attention(*args, out=packed[..., :dv], lse=packed[..., dv])
                pending.append(exchange_packed(self.comm, packed, self.kvp, self.out_heads))
            elif self.use_kernel and self.kvp == 1:
                # already exact: the kernel stores the output in the model's dtype, so the layer's cast
                # is a no-op instead of one more kernel a layer
                out = torch.empty(hi - lo, q.shape[1], dv, dtype=self.engine.dtype, device=q.device)
                lse = torch.empty(hi - lo, q.shape[1], dtype=torch.float32, device=q.device)
                self._attention(*args, out=out, lse=lse)
                pending.append((out, None, None))
            else:
                pending.append(start_exchange(self.comm, *self._attention(*args), self.kvp, self.out_heads))
        self.engine.attention.stats.hopb_pieces_run = len(bounds)
        return pending

    def piece_bounds(self, batch: int) -> list[tuple[int, int]]:
        """The row ranges [lo, hi) of the HOP-B pieces of a batch of `batch` rows (one piece without HOP-B)."""
        return [(p * batch // self.pieces, (p + 1) * batch // self.pieces) for p in range(self.pieces)]

    def _attention(self, q, keys, values, block_table, lengths, value_dim, prefetch=None, out=None, lse=None):
        return paged_attention(q, keys, values, block_table, lengths, self.scale, self.kv_head_of_q,
                               self.head_groups, value_dim, self.reduce_scores, out=out, lse=lse,
                               max_length=self.length_hint, prefetch=prefetch)

    def _finish_exchange(self, recv, work, dim):
        if dim is None:
            return recv
        if work is not None:
            work.wait()
        if self.use_kernel:  # one kernel instead of a handful of elementwise ones
            from .kernels.split_merge import merge_partials as merge_kernel

            # stored in the model's dtype: the layer's cast is then a no-op
            return merge_kernel(recv[..., :dim], recv[..., dim], out_dtype=self.engine.dtype)
        return merge_partials(recv[..., :dim], recv[..., dim])


class DecodeRunner:
    """Runs decode steps of one engine on static buffers; on CUDA, through captured graphs."""

    def __init__(self, engine, use_graphs: bool, max_batch: int = 64):
        self.engine = engine
        self.use_graphs = use_graphs
        self.buckets = [b for b in BUCKETS if b <= max_batch] or [1]
        compiled = engine.device.type == "cuda" and engine.options.fused_ops
        self.placement = StepPlacement(engine.cache, compiled=compiled)
        self._greedy = greedy_tokens_and_logprobs
        if compiled:  # its dozen small reductions and casts as a few generated kernels
            from .models.ops import compiled_function

            self._greedy = compiled_function(greedy_tokens_and_logprobs)
        self.head_groups = None
        if engine.use_decode_kernel:
            from .kernels.head_groups import as_head_groups

            kv_of_q = engine.attention.kv_head_of_q.tolist()
            self.head_groups = as_head_groups(kv_of_q, len(kv_of_q))
        self.long_keys = self._long_context_keys()
        # a static key bound per graph: the torch path gathers that many keys a row, and the sliced
        # kernels (partial scores summed across dimension slices) all-reduce scores that wide
        self.bounded_gather = self.attention_path != "triton"
        self._buffers: dict[int, DecodeBuffers] = {}
        self._graphs: dict[tuple, tuple] = {}  # (bucket, length hint) -> (graph, logits, tokens)
        self._rows: dict[int, list] = {}  # bucket -> [(seq_id, pages uploaded)] per row
        # the last step's tokens by row, on the device: where a step enqueued before the previous
        # one's tokens are read takes its new tokens from
        self.feedback = torch.zeros(self.buckets[-1], dtype=torch.long, device=engine.device)
        self.last_key: tuple | None = None  # the graph key of the last step

    @property
    def attention_path(self) -> str:
        """Which decode attention the steps run: "triton", "triton-sliced" (headslice, m > 1) or "torch"."""
        if self.head_groups is None:
            return "torch"
        return "triton-sliced" if self.engine.comm.size("head_slices") > 1 else "triton"

    @property
    def sm90_mla_kernel(self) -> bool:
        """The decode attention over this MLA cache runs the sm_90 Gluon kernel (kernels/mla_sm90.py)."""
        cache = self.engine.cache
        if self.head_groups is None or cache.values is not None:
            return False
        from .kernels import mla_sm90

        return mla_sm90.takes_cache(cache.keys[0], self.engine.cfg.kv_lora_rank)

    def _long_context_keys(self) -> int | None:
        """Local key count from which the kernel's default launch config changes (MLA), if any."""
        if self.head_groups is None or self.sm90_mla_kernel:  # the Gluon kernel's launch does not change with it
            return None
        from .kernels.decode_launch import long_context_keys

        cache = self.engine.cache
        value_dim = self.engine.cfg.kv_lora_rank if cache.values is None else cache.values.shape[-1]
        return long_context_keys(cache.keys.shape[-1], value_dim, self.head_groups.max_group, cache.keys.dtype)

    def length_hint(self, seq_ids: list[int]) -> int | None:
        """A bound of this step's local key counts, the same on every rank (from the replicated host
        accounting), or None (the pool's capacity). A graph is captured per (bucket, hint):
        - the torch path gathers that many keys a row, the sliced kernels sum scores that wide: a
          power of two, so few graphs as contexts grow;
        - the kernel, where its launch config depends on the length (MLA), gets one graph below the
          long-context key count (hint: a bound under it) and one above (None); else always None."""
        cache = self.engine.cache
        longest = max((cache.sequences[s].length for s in seq_ids), default=0)
        local_bound = cache.placement.max_local_count(longest)
        if self.bounded_gather:
            return max(cache.page_size, 1 << max(0, local_bound - 1).bit_length())
        if self.long_keys is None:
            return None
        return self.long_keys - 1 if local_bound < self.long_keys else None

    def bucket_for(self, batch: int) -> int | None:
        return next((b for b in self.buckets if b >= batch), None)

    @torch.inference_mode()
    def step(self, seq_ids: list[int], host_tokens: list[int | None],
             token_rows: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One decode step; the cache must already hold room for the new tokens. A row's new token is
        host_tokens[i], or, where token_rows[i] >= 0, row token_rows[i] of the previous step's output
        (still on the device: the step can be enqueued before that one's tokens are read). Returns the
        full logits [len(seq_ids), V] fp32 and `picked` [2, len(seq_ids)] float64: the greedy tokens
        and their logprobs (device tensors, the graph's own outputs: read or copy them before the next
        step). The greedy tokens are also the next step's `feedback`; a caller that samples otherwise
        writes its tokens there (`feedback[:len(seq_ids)]`)."""
        bucket = self.bucket_for(len(seq_ids))
        buf = self._buffers.get(bucket)
        if buf is None:
            cache = self.engine.cache
            buf = self._buffers[bucket] = DecodeBuffers.allocate(bucket, cache.num_pages, cache.scratch_page,
                                                                 self.engine.device)
            self._rows[bucket] = [(None, 0)] * bucket
        self._fill(bucket, buf, seq_ids, host_tokens, token_rows or [-1] * len(seq_ids))
        hint = self.length_hint(seq_ids)
        self.last_key = (bucket, hint)
        if not self.use_graphs:
            logits, picked = self._forward(buf, hint)
        else:
            if self.last_key not in self._graphs:
                self._graphs[self.last_key] = self._capture(buf, hint)
            graph, logits, picked = self._graphs[self.last_key]
            graph.replay()
        count = len(seq_ids)
        return logits[:count], picked[:, :count]

    def _fill(self, bucket, buf: DecodeBuffers, seq_ids, host_tokens, token_rows) -> None:
        cache, device = self.engine.cache, self.engine.device
        meta = [[0] * bucket for _ in range(4)] + [[-1] * bucket]
        rows = self._rows[bucket]
        for row in range(bucket):
            if row < len(seq_ids):
                seq_id = seq_ids[row]
                shard = cache.sequences[seq_id]
                if token_rows[row] >= 0:
                    meta[4][row] = token_rows[row]
                else:
                    meta[0][row] = host_tokens[row]
                meta[1][row] = shard.length - 1  # position of the new token (cache already grown)
                meta[2][row] = shard.start_rank
                meta[3][row] = 1
                known_seq, uploaded = rows[row]
                if known_seq != seq_id:
                    uploaded = 0
                if len(shard.pages) > uploaded:
                    new = _staged(shard.pages[uploaded:], torch.int32, device)
                    buf.block_table[row, uploaded:len(shard.pages)].copy_(new, non_blocking=True)
                rows[row] = (seq_id, len(shard.pages))
            else:
                rows[row] = (None, 0)
        buf.meta.copy_(_staged(meta, torch.long, device), non_blocking=True)

    def _forward(self, buf: DecodeBuffers, length_hint: int | None = None):
        engine = self.engine
        input_ids, slots, local_lengths = self.placement.inputs(buf, self.feedback)
        ctx = FastDecodeContext(engine, buf, slots, local_lengths, engine.options.hopb_pieces, self.head_groups,
                                length_hint)
        hidden = engine.model.forward(input_ids, buf.lengths, ctx)
        vocab = engine.model.vocab
        logits = vocab.full_logits(vocab.local_logits(hidden), lambda t: engine.comm.all_gather(t),
                                   engine.plan.world_size)
        tokens, logprobs = self._greedy(logits)
        engine.comm.broadcast(tokens, src=0)  # one decision, the same on every rank
        self.feedback[: tokens.shape[0]].copy_(tokens)  # the next step's tokens, if it takes them from here
        # float64 holds every token id exactly: tokens and logprobs come back in one copy
        return logits, torch.stack([tokens.double(), logprobs.double()])

    def _capture(self, buf: DecodeBuffers, length_hint: int | None = None):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm up: Triton compiles, NCCL sets up its channels
                self._forward(buf, length_hint)
        torch.cuda.current_stream().wait_stream(side)
        self.engine.comm.barrier()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits, picked = self._forward(buf, length_hint)
        return graph, logits, picked
