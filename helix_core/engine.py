"""One rank's engine: its weight shards, its KV pages, and the prefill / decode steps.

Every rank runs the same command with the same arguments (rank 0 broadcasts them, see
group.py), so all control flow below depends only on replicated metadata and every rank
enters the same collectives in the same order. Requests are validated before any collective,
identically on every rank, so a bad request fails everywhere without a hang.
The next token is sampled once, on rank 0, and broadcast.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch

from .checkpoint import CheckpointReader
from .comm import NCCL_WINDOW, SYMMETRIC_ONE_SHOT, Comm
from .config import ModelConfig
from .kv_cache import PagedKVCache, StagePlacement
from .launched_steps import LaunchedStep
from .models import build_model, replicated_o_supported
from .models.common import project_attention
from .models.ops import EAGER
from .plan import Plan
from .sampling import SamplingParams, sample
from .sharded_attention import ShardedAttention
from .step import build_step

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


GQA_PAGE_SIZE = 16
MLA_PAGE_SIZE = 64  # whole 64-key tiles for the sm_90 MLA kernel's TMA loads


def default_page_size(cfg) -> int:
    """Tokens per KV page when the options leave it open: 64 for MLA's latent cache (H200, 128 heads, 4 x 512K
    keys: 1118 against 1364 us with 16-key pages, 2026-12-04), 16 otherwise."""
    return MLA_PAGE_SIZE if cfg.is_mla else GQA_PAGE_SIZE


class RequestError(ValueError):
    """A request the engine refuses (bad token id, unknown sequence...); the message names the field."""


@dataclass(frozen=True)
class EngineOptions:
    dtype: str = "float32"
    # tokens per KV page (allocation granularity); None: default_page_size(model)
    page_size: int | None = None
    stage_size: int = 16  # tokens appended to one KVP rank before moving to the next
    kv_pages: int = 256  # pages per rank
    prefill_chunk: int = 256  # prompt tokens per forward pass
    hopb_pieces: int = 1  # HOP-B: pieces the batch is cut into (1 = off)
    seed: int = 0  # generator of unseeded sampling
    fast_decode: str = "auto"  # static-shape decode steps: auto (CUDA only) | on | off
    cuda_graphs: bool = True  # capture fast decode steps in CUDA graphs (CUDA only)
    # Triton paged decode attention: auto (CUDA) | on (also CPU, under TRITON_INTERPRET) | off
    decode_kernel: str = "auto"
    max_batch: int = 64  # largest decode batch bucket of the fast path
    fused_ops: bool = True  # CUDA: norms, RoPE and SiLU gates as fused (torch.compile) kernels
    # one-row projections (batch-1 decode steps) by the Triton weight-streaming kernel
    # (kernels/small_linear.py): auto (CUDA) | on (also CPU, under TRITON_INTERPRET) | off (cuBLAS)
    small_linear: str = "auto"
    # fusions of the decode step's small kernels into their neighbours: the batch-1 residual add + norm
    # and SiLU gate inside the projection kernel (with small_linear), the fast path's RoPE + KV append
    # as one kernel (with the decode kernel): auto | off (benchmarks: the step without them)
    decode_fusions: str = "auto"
    # with decode_fusions: the batch-1 KVP merge inside the o projection kernel (small_linear.merge_linear)
    # instead of a merge kernel before it: auto | off (benchmarks: the step with the merge kernel)
    merge_in_projection: str = "auto"
    # what a step reads after a collective, asked for in L2 (up to this many MiB) by the kernel before it, so
    # HBM works during the collective's latency: the one-row o / down projections ask for the projection after
    # their all-reduce (small_linear.prefetch_after), and with KVP the decode kernel's split merge for the o
    # projection read after the exchange; 0: off (sm_90+; on one H200 it made o -> gap -> gate/up slower at
    # every amount, 2026-12-05: docs/benchmarks.md)
    l2_prefetch_mib: float = 0.0
    # the attention output projection: sharded (each rank its heads' columns, then an all-reduce) or
    # replicated (every rank holds all of o_proj; where the fast path's KVP exchange is a gather, which
    # hands every rank every head's partials, each rank projects every head itself and the layer's attention
    # needs no all-reduce: one collective a layer fewer for (N - 1) / N of o_proj read more). Llama family,
    # helix with TPA = 1 and KVP > 1 (`replicated_o_supported`), where the exchange gathers; elsewhere sharded
    # (and nothing extra held). Not yet measured on GPUs.
    o_projection: str = "sharded"
    kv_memory_fraction: float = 0.9  # kv_pages=0: this share of the GPU memory left after the weights
    # all-reduces over all N of up to max_batch x hidden elements: symm (torch symmetric-memory one-shot
    # kernel over NVLink P2P; CUDA, bf16/fp32), nccl, nccl-window (NCCL's symmetric kernels, staged through a
    # window-registered buffer; window_all_reduce.py; not yet measured), or auto (symm where it can run,
    # else NCCL/gloo)
    all_reduce: str = "auto"
    # the fast path's KVP exchange: gather (a sum over zero-padded slots, by the symm-mem one-shot
    # kernel; see gather_exchange.py), all_to_all, or auto (gather where symmetric memory runs and
    # all_reduce is not nccl, for exchanges up to GATHER_MAX_BYTES; else the all-to-all)
    exchange: str = "auto"


ALL_REDUCE_CHOICES = ("auto", "nccl", "symm", "nccl-window")  # EngineOptions.all_reduce


@dataclass
class ModelSource:
    """Where the weights come from: a checkpoint folder, or random slices (benchmarks)."""

    cfg: ModelConfig
    reader: object  # has(name), bytes_read
    load: Callable  # load(name, dim=0, ranges=None, boxes=None, dtype=None) -> this rank's slice

    @classmethod
    def checkpoint(cls, model_dir: str, dtype: torch.dtype, device: torch.device) -> "ModelSource":
        reader = CheckpointReader(model_dir)

        def load(name, dim=0, ranges=None, boxes=None, dtype=None):
            boxes = boxes if boxes is not None else ({dim: ranges} if ranges is not None else None)
            tensor = reader.read_box(name, boxes, dtype=dtype or default_dtype, device=device)
            if tensor.untyped_storage().nbytes() != tensor.nbytes:
                tensor = tensor.clone()  # own the slice: do not pin the mapped checkpoint file
            return tensor

        default_dtype = dtype
        return cls(ModelConfig.from_dir(model_dir), reader, load)

    @classmethod
    def random(cls, cfg: ModelConfig, dtype: torch.dtype, device: torch.device, seed: int = 0) -> "ModelSource":
        from .random_weights import RandomWeights

        weights = RandomWeights(cfg, device, dtype, seed)
        return cls(cfg, weights, weights.load)


@dataclass
class PrefillItem:
    seq_id: int
    token_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    final: bool = True  # the prompt ends with this chunk: sample the first new token


@dataclass
class TokenOut:
    seq_id: int
    token_id: int
    logprob: float
    logits: torch.Tensor | None = None  # full-vocabulary fp32 logits, when asked for


@dataclass
class _Sequence:
    start_rank: int
    sampling: SamplingParams
    pending_token: int | None = None  # sampled, not yet fed back
    # or the next token is still on the device: row `token_row` of launched step `token_ticket`
    token_ticket: int | None = None
    token_row: int = -1


_UNTIMED = contextlib.nullcontext()


class _StepContext:
    """The LayerContext of one step: attention over this step's batch, all-reduce over all N."""

    def __init__(self, attention: ShardedAttention, batch, comm: Comm, profiler=None):
        self._attention, self._batch, self._comm, self._profiler = attention, batch, comm, profiler

    def phase(self, name: str):
        """Times `name` when the step is profiled (see Engine.profiler); a shared no-op otherwise."""
        return _UNTIMED if self._profiler is None else self._profiler.phase(name)

    def attend(self, layer, q, k, v, value_dim=None, rotary=None):
        if rotary is not None:
            q, k = rotary.rotate(q, k)
        return self._attention(layer, self._batch, q, k, v, value_dim, phase=self.phase)

    def attention_output(self, layer, q, k, v, projection, linear, rotary=None):
        return project_attention(self, layer, q, k, v, projection, linear, rotary)

    def all_reduce(self, x):
        with self.phase("all_reduce"):
            return self._comm.all_reduce(x, "all")


class Engine:
    def __init__(self, model: "str | ModelSource", plan: Plan, rank: int, comm: Comm, device: torch.device,
                 options: EngineOptions = EngineOptions()):
        if options.dtype not in DTYPES:
            raise ValueError(f"dtype {options.dtype!r}: choose one of {sorted(DTYPES)}")
        self.dtype = DTYPES[options.dtype]
        source = model if isinstance(model, ModelSource) else ModelSource.checkpoint(model, self.dtype, device)
        self.cfg = source.cfg
        plan.validate(self.cfg)
        self.plan, self.rank, self.comm, self.device, self.options = plan, rank, comm, device, options
        self.all_reduce_impl = self._setup_all_reduce()
        self.reader = source.reader
        ops = EAGER
        if device.type == "cuda" and options.fused_ops:
            from .models.ops import compiled_ops

            ops = compiled_ops()
        self.use_small_linear = self._kernel_wanted("small_linear", options.small_linear)
        if options.decode_fusions not in ("auto", "off"):
            raise ValueError(f"decode_fusions {options.decode_fusions!r}: choose auto or off")
        self.use_fusions = options.decode_fusions == "auto"
        if options.merge_in_projection not in ("auto", "off"):
            raise ValueError(f"merge_in_projection {options.merge_in_projection!r}: choose auto or off")
        self.use_merge_in_projection = (self.use_small_linear and self.use_fusions
                                        and options.merge_in_projection == "auto")
        if self.use_small_linear:
            from .models.ops import one_row_gated_linear, one_row_norm_linear, small_batch_linear

            ops = dataclasses.replace(ops, linear=small_batch_linear)
            if self.use_fusions:
                ops = dataclasses.replace(ops, fused_norm_linear=one_row_norm_linear,
                                          fused_gated_linear=one_row_gated_linear)
        if options.o_projection not in ("sharded", "replicated"):
            raise ValueError(f"o_projection {options.o_projection!r}: choose sharded or replicated")
        # the exchange first: a replicated o projection is loaded only where a gather will hand every rank
        # every head's partials
        self.gather_exchange, self.exchange_impl = self._setup_exchange(plan.attention_shard(self.cfg, rank))
        self._hopb_exchange_stream = None  # made on first use (hopb_exchange_stream)
        self.replicate_o = (options.o_projection == "replicated" and replicated_o_supported(self.cfg, plan)
                            and self.gather_exchange is not None)
        self.model = build_model(self.cfg, plan, rank, self.reader, source.load, ops, self.replicate_o)
        if options.l2_prefetch_mib < 0:
            raise ValueError(f"l2_prefetch_mib {options.l2_prefetch_mib}: a size in MiB, 0 for off")
        self.l2_prefetch_bytes = int(options.l2_prefetch_mib * (1 << 20))  # what a prefetching kernel asks for
        self.l2_prefetch_pairs = self._setup_l2_prefetch()
        coords = plan.coords(rank)
        shard = self.model.shard
        key_dim = (self.cfg.kv_lora_rank + self.cfg.qk_rope_head_dim) if self.cfg.is_mla else self.model.local_head_dim
        value_dim = None if self.cfg.is_mla else self.model.local_value_dim
        kv_heads = shard.kv_heads[1] - shard.kv_heads[0]
        page_size = options.page_size or default_page_size(self.cfg)
        pages = options.kv_pages or self._pages_that_fit(kv_heads * (key_dim + (value_dim or 0)), page_size)
        self.cache = PagedKVCache(
            num_layers=self.cfg.num_layers, num_pages=pages, page_size=page_size,
            kv_heads=kv_heads, key_dim=key_dim, value_dim=value_dim,
            placement=StagePlacement(plan.kvp, options.stage_size), kvp_rank=coords.kvp_rank,
            dtype=self.dtype, device=device)
        self.attention = ShardedAttention(
            shard=shard, num_heads=self.cfg.num_heads, num_kv_heads=self.cfg.cached_kv_heads, kvp=plan.kvp,
            comm=comm, cache=self.cache, scale=self.model.attention_scale, hopb_pieces=options.hopb_pieces)
        self.sequences: dict[int, _Sequence] = {}
        # Optional per-phase decode timer (services.metrics.DecodePhaseProfiler: begin_step / phase /
        # end_step). None costs one attribute check per phase boundary.
        self.profiler = None
        self._next_start_rank = 0
        self._generator = torch.Generator(device=device).manual_seed(options.seed)

        self.use_decode_kernel = self._kernel_wanted("decode_kernel", options.decode_kernel)
        self.runner = self._make_runner()
        self._launched: dict[int, LaunchedStep] = {}  # ticket -> a decode step not finished yet
        self._next_ticket = 0
        self._feedback_ticket: int | None = None  # the launched step whose tokens runner.feedback holds

    def _pages_that_fit(self, elements_per_token_per_layer: int, page_size: int) -> int:
        """KV pool from the GPU memory left after the weights, the same on every rank (the minimum)."""
        if self.device.type != "cuda":
            raise ValueError("kv_pages=0 (size from free memory) needs a CUDA device; set kv_pages")
        free, _ = torch.cuda.mem_get_info(self.device)
        workspace = 4 << 30  # activations, logits, graph pools, NCCL buffers
        page_bytes = (page_size * elements_per_token_per_layer * self.cfg.num_layers
                      * torch.tensor([], dtype=self.dtype).element_size())
        pages = torch.tensor([max(1, int((free * self.options.kv_memory_fraction - workspace) // page_bytes) - 1)],
                             device=self.device)
        if self.plan.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(pages, op=dist.ReduceOp.MIN)
        return int(pages.item())

    def _setup_all_reduce(self) -> str:
        """Which kernel the step's all-reduces over all N use (a collective when it sets one up)."""
        choice = self.options.all_reduce
        if choice not in ALL_REDUCE_CHOICES:
            raise ValueError(f"all_reduce {choice!r}: choose {', '.join(ALL_REDUCE_CHOICES)}")
        if self.plan.world_size == 1:
            return "none (one rank)"
        if choice == "nccl":
            return "nccl" if self.device.type == "cuda" else "gloo"
        return self._enable_fast_sum(self.options.max_batch * self.cfg.hidden_size, self.dtype, "all")

    def _enable_fast_sum(self, max_numel: int, dtype: torch.dtype, group: str) -> str:
        """Sets up the all_reduce option's faster path for `group` (collective); what its sums now run on."""
        if self.options.all_reduce == "nccl-window":
            return self.comm.enable_window_all_reduce(max_numel, dtype, group)
        return self.comm.enable_symmetric_all_reduce(max_numel, dtype, group)

    def _setup_exchange(self, shard):
        """(GatherExchange or None, description) of the fast path's KVP exchange (a collective when
        it sets up symmetric memory; the choice depends only on options and shapes, so every rank
        makes the same one)."""
        choice = self.options.exchange
        if choice not in ("auto", "all_to_all", "gather"):
            raise ValueError(f"exchange {choice!r}: choose auto, all_to_all or gather")
        if self.plan.kvp == 1:
            return None, "none (KVP = 1)"
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if choice == "all_to_all" or not self._fast_path_wanted():
            return None, f"{backend} all-to-all"
        if choice == "auto" and (self.device.type != "cuda" or self.options.all_reduce == "nccl"):
            return None, f"{backend} all-to-all (auto gathers only on CUDA symmetric memory)"
        from .gather_exchange import GatherExchange

        value_dim = self.cfg.kv_lora_rank if self.cfg.is_mla else sum(hi - lo for lo, hi in shard.value_dims)
        gather = GatherExchange(self.comm, self.plan.kvp, self.comm.index_in("kvp"),
                                shard.q_heads[1] - shard.q_heads[0], shard.out_heads[1] - shard.out_heads[0],
                                value_dim, self.options.max_batch, self.device)
        if gather.max_rows == 0:
            return None, f"{backend} all-to-all (one row's exchange is over the gather's limit)"
        fast = "all_reduce nccl: no symmetric memory"
        if self.options.all_reduce != "nccl":
            fast = self._enable_fast_sum(gather.numel, torch.float32, "kvp")
        rows = f"up to {gather.max_rows} rows, then {backend} all-to-all"
        if fast in (SYMMETRIC_ONE_SHOT, NCCL_WINDOW):
            return gather, f"gather by {fast} sum ({rows})"
        if choice == "gather":
            return gather, f"gather by {backend} all-reduce ({rows}; {fast})"
        return None, f"{backend} all-to-all ({fast})"

    def _kernel_wanted(self, name: str, mode: str) -> bool:
        """A Triton kernel option: auto (CUDA) | on (also CPU, under TRITON_INTERPRET) | off."""
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"{name} {mode!r}: choose auto, on or off")
        if mode == "off":
            return False
        from .kernels import interpret_mode, triton_available

        if self.device.type == "cuda":
            return triton_available()
        # on CPU only under Triton's interpreter, asked for explicitly: the tests of the kernel path
        return mode == "on" and interpret_mode() and triton_available()

    def _fast_path_wanted(self) -> bool:
        """Decode steps take the static-shape path (DecodeRunner), whose exchange may gather."""
        mode = self.options.fast_decode
        return not (mode == "off" or (mode == "auto" and self.device.type != "cuda"))

    def _make_runner(self):
        if not self._fast_path_wanted():
            return None
        from .fast_decode import DecodeRunner

        graphs = self.options.cuda_graphs and self.device.type == "cuda"
        return DecodeRunner(self, use_graphs=graphs, max_batch=self.options.max_batch)

    # ---- commands -----------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, items: list[PrefillItem], return_logits: bool = False) -> list[TokenOut]:
        """Append prompt tokens (new or continued sequences); sample after each final chunk."""
        self._validate_prefill(items)
        for item in items:
            if item.seq_id not in self.sequences:
                self.sequences[item.seq_id] = _Sequence(self._next_start_rank, item.sampling)
                self.cache.add_sequence(item.seq_id, self._next_start_rank)
                self._next_start_rank = (self._next_start_rank + 1) % self.plan.kvp
        results = []
        for piece, flags in self._prefill_passes(items):
            results += self._forward(piece, flags, return_logits)
        return results

    @torch.inference_mode()
    def decode(self, seq_ids: list[int], input_tokens: list[int] | None = None,
               return_logits: bool = False, profile: bool = False) -> list[TokenOut]:
        """One new token for each sequence. `input_tokens` replaces the sampled tokens fed back
        (teacher forcing). `profile` times this step's phases with `self.profiler`; rank 0 decides
        it and the flag travels with the command, so that every rank times the same steps."""
        if not (profile and self.profiler is not None):
            return self.decode_finish(self.decode_launch(seq_ids, input_tokens, return_logits))
        if self._launched:
            raise RuntimeError("a profiled decode step needs the launched ones finished first")
        self._validate_decode(seq_ids, input_tokens)
        self.profiler.begin_step(profile=True)
        try:
            # a profiled step runs the general path: phases cannot be timed inside a CUDA graph
            return self._general_step(seq_ids, self._host_feed(seq_ids, input_tokens), return_logits)
        finally:
            self.profiler.end_step()

    @torch.inference_mode()
    def decode_launch(self, seq_ids: list[int], input_tokens: list[int] | None = None,
                      return_logits: bool = False) -> int:
        """Enqueue one decode step (as `decode`) and return its ticket without waiting for its tokens;
        `decode_finish(ticket)` reads them. A sequence of the last launched step takes its new token
        from that step's output on the device, so the next step can be launched before this one is
        finished (launched_steps.py). Tickets count up from 0 on every rank alike."""
        self._validate_decode(seq_ids, input_tokens)
        if self.profiler is not None and not self._launched:
            self.profiler.begin_step(profile=False)  # a step as the host sees it: token to token
        ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
        if self.runner is None or self.runner.bucket_for(len(seq_ids)) is None:
            step = LaunchedStep(seq_ids, outs=self._general_step(seq_ids, self._host_feed(seq_ids, input_tokens),
                                                                 return_logits))
        else:
            step = self._launch_fast(ticket, seq_ids, input_tokens, return_logits)
        self._launched[ticket] = step
        return ticket

    @torch.inference_mode()
    def decode_finish(self, ticket: int) -> list[TokenOut]:
        """Wait for launched step `ticket` and return its tokens (sequences freed since get theirs too,
        which nothing feeds back)."""
        step = self._launched.pop(ticket, None)
        if step is None:
            raise RequestError(f"no launched decode step {ticket} (finished already, or never launched)")
        try:
            if step.outs is not None:
                return step.outs
            tokens, logprobs = step.wait()
            outs = []
            for i, seq_id in enumerate(step.seq_ids):
                seq = self.sequences.get(seq_id)
                if seq is not None and seq.token_ticket == ticket:  # not fed to a later step on the device
                    seq.pending_token, seq.token_ticket = tokens[i], None
                logits = step.logits[i].float().cpu() if step.logits is not None else None
                outs.append(TokenOut(seq_id, tokens[i], logprobs[i], logits))
            return outs
        finally:
            if self.profiler is not None:
                self.profiler.end_step()
                if self._launched:
                    self.profiler.begin_step(profile=False)

    def _launch_fast(self, ticket: int, seq_ids, input_tokens, return_logits) -> LaunchedStep:
        """The static-shape fast path (CUDA graphs on GPU): enqueue the step and the copy of its tokens."""
        host_tokens, token_rows = [], []
        for i, seq_id in enumerate(seq_ids):
            seq = self.sequences[seq_id]
            on_device = input_tokens is None and seq.pending_token is None  # validated: in runner.feedback
            host_tokens.append(None if on_device else (input_tokens[i] if input_tokens else seq.pending_token))
            token_rows.append(seq.token_row if on_device else -1)
        for seq_id in seq_ids:
            self.cache.grow(seq_id, self._length(seq_id) + 1)
        logits, picked = self.runner.step(seq_ids, host_tokens, token_rows)
        if not all(self.sequences[s].sampling.greedy for s in seq_ids):
            picked = self._sample_shared(seq_ids, logits)
            self.runner.feedback[: len(seq_ids)].copy_(picked[0].long())
        for row, seq_id in enumerate(seq_ids):
            seq = self.sequences[seq_id]
            seq.pending_token, seq.token_ticket, seq.token_row = None, ticket, row
        self._feedback_ticket = ticket
        return LaunchedStep.enqueue_copy(seq_ids, picked, logits if return_logits and self.rank == 0 else None)

    def _host_feed(self, seq_ids, input_tokens) -> list[int]:
        """Each sequence's new token on the host (a token still on the device is read from it)."""
        if input_tokens is not None:
            return list(input_tokens)
        feed = []
        for seq_id in seq_ids:
            seq = self.sequences[seq_id]
            if seq.pending_token is None:  # validated: the runner's feedback holds it
                seq.pending_token, seq.token_ticket = int(self.runner.feedback[seq.token_row]), None
            feed.append(seq.pending_token)
        return feed

    def _general_step(self, seq_ids, feed, return_logits) -> list[TokenOut]:
        pieces = [(s, [t]) for s, t in zip(seq_ids, feed)]
        return self._forward(pieces, [True] * len(seq_ids), return_logits)

    def free(self, seq_ids: list[int]) -> None:
        for seq_id in seq_ids:
            self.sequences.pop(seq_id, None)
            self.cache.free(seq_id)

    def _setup_l2_prefetch(self) -> int:
        """Registers the model's (projection, next projection) pairs around its all-reduces with the one-row
        kernel (`l2_prefetch_bytes` each); the kernel prefetches only where it can (sm_90+). Returns the
        number of pairs registered."""
        if not self.l2_prefetch_bytes or not self.use_small_linear or self.plan.world_size == 1:
            return 0  # nothing asked, or no all-reduce latency to fill
        from .kernels.small_linear import prefetch_after

        return sum(prefetch_after(before, after, self.l2_prefetch_bytes)
                   for before, after in self.model.collective_successors())

    def stats(self) -> dict:
        return {
            "rank": self.rank,
            "sequences": len(self.sequences),
            "kv_pages_total": self.cache.num_pages,
            "kv_pages_used_per_kvp_rank": self.cache.pages_used_per_rank(),
            "kv_tokens_local": {s: self.cache.local_length(s) for s in self.sequences},
            "hopb_pieces_run": self.attention.stats.hopb_pieces_run,
            "all_reduce": self.all_reduce_impl,
            "exchange": self.exchange_impl,
            "decode_kernel": self.use_decode_kernel,
            "small_linear": self.use_small_linear,
            "merges_in_projection": self.attention.stats.merges_in_projection,
            "o_projection": self.o_projection_use(),
            "replicated_o_projections": self.attention.stats.replicated_o_projections,
            "l2_prefetch_pairs": self.l2_prefetch_pairs,
            "weight_bytes": self.weight_bytes(),
            "kv_bytes": self.cache.total_bytes(),
            "checkpoint_bytes_read": self.reader.bytes_read,
        }

    def gather_stats(self) -> list[dict]:
        """stats() of every rank, in rank order (a collective: every rank must call it)."""
        return self.comm.gather_objects(self.stats())

    def agreement(self) -> dict:
        """Checksums every rank computes from its own state: sampled tokens fed back and the last
        MoE routing. Rank 0 gets every rank's values; all must be equal."""
        tokens = [self.sequences[s].pending_token or 0 for s in sorted(self.sequences)]
        routing = [getattr(getattr(layer, "ffn", None), "last_routing", None) for layer in self.model.layers]
        routing_sum = sum(int((r.long() * (1 + torch.arange(r.numel(), device=r.device).view_as(r))).sum())
                          for r in routing if r is not None)
        local = torch.tensor([sum((i + 1) * t for i, t in enumerate(tokens)), routing_sum],
                             dtype=torch.float64, device=self.device)
        gathered = self.comm.all_gather(local)
        return {"tokens": gathered[:, 0].tolist(), "routing": gathered[:, 1].tolist()}

    def gathers(self, rows: int) -> bool:
        """The KVP exchanges of a fast-path step of `rows` rows are gathers: every rank receives every
        head's partials (gather_exchange.py)."""
        return self.gather_exchange is not None and self.gather_exchange.fits(rows)

    def hopb_exchange_stream(self):
        """The second stream on which HOP-B pieces' gathered exchanges run (hopb_stream.py), made on first use;
        None off CUDA, where the exchange runs in order."""
        if self.device.type != "cuda":
            return None
        if self._hopb_exchange_stream is None:
            from .hopb_stream import ExchangeStream

            self._hopb_exchange_stream = ExchangeStream(self.device)
        return self._hopb_exchange_stream

    def projects_every_head(self, rows: int) -> bool:
        """A fast-path step of `rows` rows has each rank project every head with the whole o_proj, and no
        all-reduce after it (EngineOptions.o_projection "replicated", where the exchange gathers)."""
        return self.replicate_o and self.gathers(rows)

    def merges_in_projection(self, rows: int) -> bool:
        """A fast-path step of `rows` rows has the o projection's kernel merge the KVP partials of a Llama-family
        layer (EngineOptions.merge_in_projection: one row, KVP > 1), with no merge kernel before it."""
        return self.use_merge_in_projection and rows == 1 and self.plan.kvp > 1 and not self.cfg.is_mla

    def o_projection_use(self) -> str:
        """How decode steps run the attention output projection (EngineOptions.o_projection)."""
        if self.replicate_o:
            return (f"replicated: batches up to {self.gather_exchange.max_rows} rows project every head, "
                    "larger ones their own heads and all-reduce")
        if self.options.o_projection == "replicated":
            return ("sharded: replicated needs a Llama-family helix plan with TPA = 1 and KVP > 1 whose fast "
                    "path exchanges by the gather")
        return "sharded"

    def weight_bytes(self) -> int:
        """Bytes of the weight shards this rank holds (tied tensors once)."""
        seen: dict[int, int] = {}
        _collect_tensors([self.model.layers, self.model.vocab, self.model.final_norm], seen)
        return sum(seen.values())

    # ---- internals ----------------------------------------------------------------------------
    def _validate_prefill(self, items: list[PrefillItem]) -> None:
        growth, starts = {}, {}
        next_start = self._next_start_rank
        for item in items:
            if not item.token_ids:
                raise RequestError(f"sequence {item.seq_id}: token_ids is empty")
            self._check_token_ids(item.token_ids, f"sequence {item.seq_id}: token_ids")
            item.sampling.validate()
            seq = self.sequences.get(item.seq_id)
            if seq is not None and seq.pending_token is not None:
                raise RequestError(f"sequence {item.seq_id} already finished its prompt")
            if item.seq_id in growth:
                raise RequestError(f"sequence {item.seq_id} appears twice in one prefill")
            if seq is None:
                starts[item.seq_id] = next_start
                next_start = (next_start + 1) % self.plan.kvp
            growth[item.seq_id] = self._length(item.seq_id) + len(item.token_ids)
        self._check_room(growth, starts)

    def _validate_decode(self, seq_ids, input_tokens) -> None:
        if len(set(seq_ids)) != len(seq_ids):
            raise RequestError("seq_ids has duplicates")
        if input_tokens is not None:
            if len(input_tokens) != len(seq_ids):
                raise RequestError("input_tokens must give one token per sequence")
            self._check_token_ids(input_tokens, "input_tokens")
        for seq_id in seq_ids:
            seq = self.sequences.get(seq_id)
            if seq is None:
                raise RequestError(f"unknown sequence {seq_id}")
            if seq.pending_token is None and input_tokens is None:
                if seq.token_ticket is None:
                    raise RequestError(f"sequence {seq_id} has no sampled token yet: finish its prefill first")
                if seq.token_ticket != self._feedback_ticket:
                    raise RequestError(f"sequence {seq_id}'s next token is in launched decode step "
                                       f"{seq.token_ticket}, not in the last one: finish that step first")
        self._check_room({s: self._length(s) + 1 for s in seq_ids}, {})

    def _check_token_ids(self, ids, what: str) -> None:
        bad = [t for t in ids if not 0 <= int(t) < self.cfg.vocab_size]
        if bad:
            raise RequestError(f"{what}: token id {bad[0]} is outside the vocabulary [0, {self.cfg.vocab_size})")

    def _check_room(self, growth: dict[int, int], starts: dict[int, int]) -> None:
        longest = max(growth.values(), default=0)
        limit = self.cfg.sliding_window or self.cfg.max_position_embeddings
        if longest > limit:
            raise RequestError(f"a sequence would reach {longest} tokens, over the model's limit of {limit}")
        self.cache.check_fits(growth, starts)

    def _length(self, seq_id: int) -> int:
        seq = self.cache.sequences.get(seq_id)
        return seq.length if seq else 0

    def _prefill_passes(self, items: list[PrefillItem]):
        """Cut the prompts into forward passes of at most `prefill_chunk` tokens."""
        budget = max(1, self.options.prefill_chunk)
        queue = [(item, 0) for item in items]
        while queue:
            piece, flags, room, rest = [], [], budget, []
            for item, offset in queue:
                if room == 0:
                    rest.append((item, offset))
                    continue
                take = min(room, len(item.token_ids) - offset)
                piece.append((item.seq_id, item.token_ids[offset:offset + take]))
                done = offset + take == len(item.token_ids)
                flags.append(done and item.final)
                room -= take
                if not done:
                    rest.append((item, offset + take))
            queue = rest
            yield piece, flags

    def _forward(self, pieces, sample_flags, return_logits) -> list[TokenOut]:
        for seq_id, tokens in pieces:
            self.cache.grow(seq_id, self._length(seq_id) + len(tokens))
        batch = build_step(self.cache, pieces, sample_flags, self.device)
        ctx = _StepContext(self.attention, batch, self.comm, self.profiler)
        hidden = self.model.forward(batch.input_ids, batch.positions, ctx)
        if batch.sample_index.numel() == 0:
            return []
        with ctx.phase("sampling"):
            vocab = self.model.vocab
            logits = vocab.full_logits(vocab.local_logits(hidden[batch.sample_index]),
                                       lambda t: self.comm.all_gather(t), self.plan.world_size)
            sampled_ids = [s for (s, _), flag in zip(pieces, sample_flags) if flag]
            return self._sample_and_share(sampled_ids, logits, return_logits)

    def _sample_shared(self, seq_ids, logits) -> torch.Tensor:
        """Rank 0 samples; every rank gets [2, B] float64 on the device: the tokens and their logprobs."""
        shared = torch.zeros(2, len(seq_ids), dtype=torch.float64, device=self.device)
        if self.rank == 0:
            params = [self.sequences[s].sampling for s in seq_ids]
            positions = [self._length(s) for s in seq_ids]
            result = sample(logits, params, positions, generator=self._generator)
            shared[0] = result.token_ids.to(torch.float64)
            shared[1] = result.logprobs.to(torch.float64)
        self.comm.broadcast(shared, src=0)  # one sampled token, the same on every rank
        return shared

    def _sample_and_share(self, seq_ids, logits, return_logits) -> list[TokenOut]:
        token_floats, logprobs = self._sample_shared(seq_ids, logits).tolist()  # one read for both
        outs = []
        for i, seq_id in enumerate(seq_ids):
            token = int(token_floats[i])
            seq = self.sequences[seq_id]
            seq.pending_token, seq.token_ticket = token, None
            outs.append(TokenOut(seq_id, token, logprobs[i],
                                 logits[i].cpu() if return_logits and self.rank == 0 else None))
        return outs


def _collect_tensors(obj, seen: dict[int, int]) -> None:
    """Bytes of every distinct tensor storage reachable from a model object (tied weights once)."""
    if isinstance(obj, torch.Tensor):
        seen[obj.untyped_storage().data_ptr()] = obj.untyped_storage().nbytes()
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _collect_tensors(item, seen)
    elif hasattr(obj, "__dict__"):
        for value in vars(obj).values():
            _collect_tensors(value, seen)
