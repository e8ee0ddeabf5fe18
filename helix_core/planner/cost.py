"""Time of one decode step (TTL) and memory per GPU of one layout, from bytes, FLOPs and collectives.

Per layer, on the busiest GPU:
  attention   q/k/v projections (replicated over KVP under Helix) + the KV shard read, as a roofline
              of HBM bytes and matmul FLOPs, or, when the profile has measured rates for the
              attention kernel class (kernel_class: the paged kernel per group size and head dim,
              e.g. "gqa-d128", "mha-d512"; absorbed MLA, "mla" / "mla-parts"), max(KV bytes / achieved B/s,
              FLOPs / achieved FLOP/s) + a fixed time per kernel call;
  exchange    Helix: one all-to-all over KVP of B x H/TPA x (value dim + 1) partials; HOP-B cuts the
              batch into p pieces so piece i's all-to-all overlaps piece i+1's attention;
  post        o_proj (MLA: W_UV too), then an all-reduce of B x hidden;
  FFN         dense TP, or routed experts EP x TP (only the experts the batch activates are read),
              then an all-reduce.
Per step: LM head (vocab-parallel), embedding all-reduce, logits all-gather, and the fitted
overheads of a measured profile. A collective costs latency(group) + bytes / link bandwidth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import ModelConfig
from .hardware import HardwareProfile, dtype_bytes, normalize_dtype
from .layouts import Layout

ACT_BYTES = 2.0  # hidden states on the wire (bf16)
EXCHANGE_BYTES = 4.0  # the engine's all-to-all: fp32 partial outputs and LSE


@dataclass(frozen=True)
class Workload:
    context: int  # tokens of KV per sequence
    batch: int  # sequences decoding together
    weight_dtype: str = "bf16"
    kv_dtype: str | None = None  # None: same as the weights
    exchange_bytes: float = EXCHANGE_BYTES
    exchange_values: int | None = None  # per head and token; None: the engine's (MLA: the latent)

    @property
    def kv(self) -> str:
        return normalize_dtype(self.kv_dtype or self.weight_dtype)


@dataclass(frozen=True)
class CostOptions:
    comm: bool = True  # collectives (False: the paper's Figure 1 mode)
    compute: bool = True  # FLOP roofline (False: memory reads only)
    lm_head: bool = True  # embedding and LM head
    hopb: bool | int = True  # True: best number of pieces; False: off; int: that many pieces
    # headslice with m > 1 runs the Triton sliced kernels; False: the torch path engines used before
    # them (what older bench rows measured; fit.bench_case says which)
    sliced_kernels: bool = True


@dataclass(frozen=True)
class Shape:
    """What the cost model needs of a model, in elements."""

    layers: int
    moe_layers: int
    hidden: int
    heads: int
    kv_heads: int  # as cached (MLA: 1)
    kv_elems: int  # cached elements per token and layer
    score_k: int  # q.k dims per head (MLA absorbed: latent + rope)
    score_v: int  # value dims per head (MLA absorbed: latent)
    pre_rep: int  # pre-attention weights every attention rank holds whole (MLA down projections)
    pre_q: int  # split over query-head groups
    pre_kv: int  # split over KV-head groups
    post: int  # o_proj (+ W_UV), split 1/N by the engine
    norms: int
    ffn: int  # dense gated MLP
    router: int
    expert: int  # one routed expert
    experts: int
    topk: int
    shared: int  # all shared experts
    vocab: int  # one V x hidden matrix
    vocab_size: int
    tied: bool
    kernel: str = "paged"  # decode-attention kernel family: "paged" (GQA/MQA/MHA) or "mla" (absorbed MLA)


def shape_of(cfg: ModelConfig) -> Shape:
    h, heads = cfg.hidden_size, cfg.num_heads
    moe = sum(cfg.is_moe_layer(i) for i in range(cfg.num_layers))
    if cfg.is_mla:
        lora, rope, nope, v = cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim
        ql = cfg.q_lora_rank or 0
        q_in = ql or h
        attn = {"kv_heads": 1, "kv_elems": lora + rope, "score_k": lora + rope, "score_v": lora,
                "pre_rep": h * ql + ql + h * (lora + rope) + lora,
                "pre_q": q_in * heads * (nope + rope) + heads * nope * lora,
                "pre_kv": 0, "post": heads * v * lora + heads * v * h}
    else:
        d, kv = cfg.head_dim, cfg.num_kv_heads
        bias = cfg.qkv_bias
        attn = {"kv_heads": kv, "kv_elems": 2 * kv * d, "score_k": d, "score_v": d, "pre_rep": 0,
                "pre_q": heads * d * (h + bias), "pre_kv": 2 * kv * d * (h + bias), "post": heads * d * h}
    expert = 3 * h * cfg.moe_intermediate_size
    return Shape(layers=cfg.num_layers, moe_layers=moe, hidden=h, heads=heads, norms=2 * h,
                 ffn=3 * h * cfg.intermediate_size, router=cfg.n_routed_experts * h, expert=expert,
                 experts=cfg.n_routed_experts, topk=cfg.num_experts_per_tok, shared=expert * cfg.n_shared_experts,
                 vocab=cfg.vocab_size * h, vocab_size=cfg.vocab_size, tied=cfg.tie_word_embeddings,
                 kernel="mla" if cfg.is_mla else "paged", **attn)


@dataclass(frozen=True)
class Shares:
    """One GPU's share of each piece of work under a layout."""

    q: float  # of the query heads (and their projections)
    kv_heads: float  # of the KV heads it caches and reads (duplication shows as > 1/N)
    seq: float  # of each sequence's positions
    post: float
    ffn_group: int
    ep: int
    shared: float
    layers: float  # of the layers it holds
    attn_batch_div: int  # DP: sequences are split over this many groups
    micro: int  # PP: micro-batches in flight


def shares_of(layout: Layout, s: Shape) -> Shares:
    t, n = layout.attn_tp, layout.n
    kvh = max(1.0 / t, 1.0 / s.kv_heads)
    q = 1.0 / t
    if layout.kind == "headslice":
        q = kvh = 1.0 / n
    engine = layout.engine
    return Shares(q=q, kv_heads=kvh, seq=1.0 / layout.kvp, post=1.0 / n if engine else 1.0 / t,
                  ffn_group=layout.ffn_group, ep=layout.ep, shared=1.0 / (n if engine else layout.ffn_group),
                  layers=1.0 / layout.pp, attn_batch_div=layout.dp, micro=layout.pp)


@dataclass(frozen=True)
class Cost:
    layout: Layout
    batch: int
    ttl_s: float
    hopb_pieces: int
    kv_read_s: float  # HBM time of KV reads (whole step)
    weight_read_s: float  # HBM time of weight reads
    attention_s: float  # attention phases incl. projections (roofline)
    attention_kernel_s: float  # the decode attention kernels alone
    exchange_s: float  # exposed Helix all-to-all (after HOP-B)
    collective_s: float  # all other collectives
    ffn_s: float  # post-attention projections and FFN (roofline)
    overhead_s: float
    weight_bytes: float  # held per GPU
    kv_bytes: float  # held per GPU
    hbm_bytes: float

    @property
    def fits(self) -> bool:
        return self.weight_bytes + self.kv_bytes <= self.hbm_bytes

    @property
    def tokens_per_s_user(self) -> float:
        return 1.0 / self.ttl_s

    @property
    def tokens_per_s_gpu(self) -> float:
        return self.batch / (self.ttl_s * self.layout.n)


def _all_reduce(hw: HardwareProfile, group: int, nbytes: float) -> float:
    return 0.0 if group <= 1 else hw.latency(group) + 2 * (group - 1) / group * nbytes / hw.link_bw


def _spread(hw: HardwareProfile, group: int, nbytes: float) -> float:
    """All-to-all / all-gather / reduce-scatter: nbytes is what one GPU holds before or after."""
    return 0.0 if group <= 1 else hw.latency(group) + (group - 1) / group * nbytes / hw.link_bw


def activated_experts(s: Shape, tokens: int, ep: int) -> float:
    """Routed experts one GPU reads for `tokens` tokens: the expected distinct experts the batch
    activates (uniform routing), spread over EP, and at least one (the busiest GPU)."""
    if not s.experts:
        return 0.0
    local = s.experts / ep
    distinct = s.experts * (1.0 - (1.0 - s.topk / s.experts) ** tokens)
    return min(local, max(1.0, distinct / ep))


def memory(cfg: ModelConfig, layout: Layout, work: Workload, shape: Shape | None = None) -> tuple[float, float]:
    """(weight bytes, KV bytes) held by one GPU."""
    s = shape or shape_of(cfg)
    sh = shares_of(layout, s)
    attn = s.pre_rep + s.pre_q * sh.q + s.pre_kv * sh.kv_heads + s.post * sh.post + s.norms
    dense = s.ffn / sh.ffn_group
    moe = s.router + s.experts / sh.ep * s.expert / (sh.ffn_group / sh.ep) + s.shared * sh.shared
    layers = (s.layers * attn + (s.layers - s.moe_layers) * dense + s.moe_layers * moe) * sh.layers
    vocab = s.vocab * (1 if s.tied else 2) / sh.ffn_group
    weights = (layers + vocab) * dtype_bytes(work.weight_dtype)
    seqs = math.ceil(work.batch / sh.attn_batch_div)
    kv = seqs * work.context * sh.seq * s.kv_elems * sh.kv_heads * dtype_bytes(work.kv) * s.layers * sh.layers
    return weights, kv


def _attention_work(s: Shape, sh: Shares, work: Workload, attn_tokens: int) -> tuple[float, float]:
    """(KV bytes read, attention FLOPs) of one layer's decode attention on one GPU."""
    S = work.context
    kv_read = attn_tokens * S * sh.seq * s.kv_elems * sh.kv_heads * dtype_bytes(work.kv)
    flops = 2 * attn_tokens * S * sh.seq * s.heads * sh.q * (s.score_k + s.score_v)
    return kv_read, flops


MLA_ONE_PART_MAX_HEADS = 64  # query heads a GPU up to which the MLA kernel keeps one 64-head part


def kernel_class(s: Shape, sh: Shares, layout: Layout, sliced_kernels: bool = True) -> str:
    """The decode-attention kernel class one GPU runs under `layout`: what sets the kernel's achieved
    rate, so what a measured profile keys its rates by.

    "sliced-d{D}": headslice with m > 1, the sliced kernels over D = head dim / m dims a head (partial
      q.k scores to fp32, all-reduced, then softmax and P.V); "fallback" with sliced_kernels False
      (the torch path of engines before them; always the roofline).
    "mla-parts" / "mla": the absorbed-MLA kernel (one latent KV head; 576 / 512 dims) with more than 64
      query heads on the GPU (128-head tiles, the values in two parts; H200: 223 TFLOP/s for 128 heads
      at 4 x 512K keys) or at most 64 (64-head tiles, one part: 163 TFLOP/s for 64 heads at 4 x 1M),
      so KVP, which keeps every head on a GPU, and TP, which divides them, run at different rates.
    "gqa-d{D}" / "mha-d{D}": the paged kernel with head dim D and g query heads per KV head on the
      GPU (g >= 2: gqa, MQA included; g = 1: mha). The kernel packs the g heads of a KV head into a
      block of BLOCK_H >= 16 rows (the tensor-core minimum), so g = 1 leaves 15 of 16 rows padding,
      and D picks its tile configuration (keys per tile, warps, accumulator width): both change the
      KV bytes per second it reaches. g is per GPU: TP beyond the KV heads leaves heads / t query
      heads on the one KV head a GPU holds."""
    if layout.kind == "headslice" and layout.slices > 1:
        return f"sliced-d{s.score_k // layout.slices}" if sliced_kernels else "fallback"
    if s.kernel == "mla":
        return "mla-parts" if s.heads * sh.q > MLA_ONE_PART_MAX_HEADS else "mla"
    group = max(1, round(s.heads * sh.q / (s.kv_heads * sh.kv_heads)))
    return f"{'mha' if group == 1 else 'gqa'}-d{s.score_k}"


def attention_rate_kind(kernel: str) -> str | None:
    """What bounds a kernel class's achieved rate: "kv_Bps" (the paged kernel is memory-bound: KV
    bytes/s), "flops" (absorbed MLA: FLOP/s), None (the torch fallback: roofline only)."""
    if kernel.startswith("mla"):
        return "flops"
    if kernel == "gqa" or kernel.startswith(("gqa-", "mha-", "sliced-")):  # "gqa": profiles written before the split
        return "kv_Bps"
    return None


@dataclass(frozen=True)
class AttentionWork:
    kernel: str  # kernel_class: "gqa-d128", "mha-d512", "mla", "sliced-d256", ...; "fallback" (torch path)
    kv_bytes: float  # KV bytes one GPU reads, all layers
    flops: float  # attention FLOPs on one GPU, all layers (absorbed MLA: d_k = latent + rope, d_v = latent)
    calls: int  # attention kernel calls per step without HOP-B (one per layer)


def attention_work(cfg: ModelConfig, layout: Layout, work: Workload, shape: Shape | None = None,
                   sliced_kernels: bool = True) -> AttentionWork:
    """What the decode attention of one step does on the busiest GPU (what bench's attention_s times)."""
    s = shape or shape_of(cfg)
    sh = shares_of(layout, s)
    micro = math.ceil(work.batch / sh.micro)
    kv_read, flops = _attention_work(s, sh, work, math.ceil(micro / sh.attn_batch_div))
    layers = s.layers * sh.layers
    return AttentionWork(kernel_class(s, sh, layout, sliced_kernels), kv_read * layers, flops * layers, round(layers))


def evaluate(cfg: ModelConfig, layout: Layout, hw: HardwareProfile, work: Workload,
             options: CostOptions = CostOptions(), shape: Shape | None = None) -> Cost:
    """The cost of one decode step of `work` under `layout` (shape: shape_of(cfg), when already known)."""
    s = shape or shape_of(cfg)
    sh = shares_of(layout, s)
    wb, kb = dtype_bytes(work.weight_dtype), dtype_bytes(work.kv)
    bw = hw.hbm_bw * hw.mem_efficiency
    f_w = hw.flops_for(work.weight_dtype) * hw.flop_efficiency
    f_kv = hw.flops_for(work.kv) * hw.flop_efficiency
    B, S = work.batch, work.context
    micro = math.ceil(B / sh.micro)  # tokens one PP stage processes at a time
    attn_tokens = math.ceil(micro / sh.attn_batch_div)  # sequences one GPU attends (DP splits them)
    comm = options.comm
    g_ffn, ep = sh.ffn_group, sh.ep
    n = layout.n

    def roof(nbytes: float, flops: float, rate: float) -> float:
        return max(nbytes / bw, flops / rate if options.compute else 0.0)

    # ---- attention phase ------------------------------------------------------------------------------
    pre = s.pre_rep + s.pre_q * sh.q + s.pre_kv * sh.kv_heads + s.norms
    kv_read, attn_flops = _attention_work(s, sh, work, attn_tokens)
    t_proj = roof(pre * wb, 2 * attn_tokens * pre, f_w)
    kv_traffic = kv_read * hw.kv_read_scale
    kernel = kernel_class(s, sh, layout, options.sliced_kernels)
    fallback = kernel == "fallback"
    rates = None if fallback else hw.attention_rates(kernel)
    call = 0.0
    if rates:  # the measured kernel: achieved KV bytes/s and FLOP/s (either missing: the roofline's)
        kv_bw = rates.get("kv_Bps") or bw / hw.kv_read_scale
        kv_flops = rates.get("flops") or f_kv
        t_kv = max(kv_read / kv_bw, attn_flops / kv_flops if options.compute else 0.0)
        call = rates.get("call_s", 0.0)
    else:
        if fallback:
            # the torch path of engines before the sliced kernels: it gathers every cached K/V
            # element into an fp32 copy per query head (written, then read) and makes ~12 passes
            # over the fp32 scores
            per_kv_head = s.heads / s.kv_heads
            kv_traffic += kv_read * 8 * per_kv_head / kb + 12 * 4.0 * B * S * s.heads / layout.attn_tp
        elif kernel.startswith("sliced-"):  # the fp32 partial scores: written by one kernel, read by the next
            kv_traffic += 2 * 4.0 * attn_tokens * S * s.heads / layout.attn_tp
        t_kv = roof(kv_traffic, attn_flops, f_kv)
    exch_dim = (work.exchange_values or s.score_v) + 1
    if layout.kind == "helix" and layout.kvp > 1 and comm:
        sent = B * s.heads * sh.q * exch_dim * work.exchange_bytes
        t_attn, pieces = _hopb(hw, layout.kvp, t_kv, sent, B, options.hopb, call)
        exposed = t_attn - t_kv - pieces * call
    else:
        t_attn, pieces, exposed = t_kv + call, 1, 0.0
    # ---- collectives besides the exchange -----------------------------------------------------------
    hidden = micro * s.hidden * ACT_BYTES
    if not comm:
        per_layer_coll = 0.0
    elif layout.kind == "medha":  # LSE-merge of the KVP partials, then TP all-reduces in the group
        partial = B * s.heads * sh.q * exch_dim * work.exchange_bytes
        per_layer_coll = _all_reduce(hw, layout.kvp, partial) + 2 * _all_reduce(hw, layout.attn_tp, hidden)
    elif layout.kind == "dp_attn":  # TP inside the DP group; tokens to and from the FFN group
        local = attn_tokens * s.hidden * ACT_BYTES
        per_layer_coll = _all_reduce(hw, layout.attn_tp, local) + 2 * _spread(hw, n, hidden)
    elif layout.kind == "pp":
        per_layer_coll = 2 * _all_reduce(hw, layout.attn_tp, hidden)
    else:  # tp, helix, headslice: o_proj and FFN all-reduces over all N
        per_layer_coll = 2 * _all_reduce(hw, n, hidden)
    if comm and layout.kind == "headslice" and layout.slices > 1:  # partial q.k scores, fp32
        per_layer_coll += _all_reduce(hw, layout.slices, B * s.heads / layout.attn_tp * S * 4.0)
    # ---- post-attention and FFN -----------------------------------------------------------------------
    post_tokens = attn_tokens if layout.kind == "dp_attn" else micro
    t_post = roof(s.post * sh.post * wb, 2 * post_tokens * s.post * sh.post, f_w)
    t_dense = roof(s.ffn / g_ffn * wb, 2 * micro * s.ffn / g_ffn, f_w)
    moe_bytes = (s.router + activated_experts(s, micro, ep) * s.expert / (g_ffn // ep) + s.shared * sh.shared) * wb
    moe_flops = 2 * micro * (s.router + s.topk * s.expert / g_ffn + s.shared * sh.shared)
    t_moe = roof(moe_bytes, moe_flops, f_w)
    dense_layers = s.layers - s.moe_layers
    per_attn = t_proj + t_attn + t_post + per_layer_coll
    layers_time = s.layers * per_attn + dense_layers * t_dense + s.moe_layers * t_moe
    # ---- per step ----------------------------------------------------------------------------------------
    head_bytes = s.vocab / g_ffn * wb if options.lm_head else 0.0
    t_head = roof(head_bytes, 2 * micro * s.vocab / g_ffn, f_w) if options.lm_head else 0.0
    step_coll = 0.0
    if comm and options.lm_head:  # embedding all-reduce, logits all-gather (fp32), sampled tokens' broadcast
        step_coll += _all_reduce(hw, g_ffn, hidden) + _spread(hw, g_ffn, micro * s.vocab_size * 4.0) + hw.latency(n)
    if comm and layout.kind == "pp":
        step_coll += (layout.pp - 1) * (hw.p2p_latency_s + hidden / hw.link_bw)
    overhead = hw.step_overhead_s + s.layers * (hw.layer_overhead_s + attn_tokens * hw.seq_layer_overhead_s)
    ttl = layers_time + t_head + step_coll + overhead
    weight_read = (s.layers * (pre + s.post * sh.post) * wb + dense_layers * s.ffn / g_ffn * wb
                   + s.moe_layers * moe_bytes + head_bytes)
    held_w, held_kv = memory(cfg, layout, work, s)
    return Cost(
        layout=layout, batch=B, ttl_s=ttl, hopb_pieces=pieces,
        kv_read_s=s.layers * kv_read / bw, weight_read_s=weight_read / bw,
        attention_s=s.layers * (t_proj + t_kv + pieces * call), attention_kernel_s=s.layers * (t_kv + pieces * call),
        exchange_s=s.layers * exposed,
        collective_s=s.layers * per_layer_coll + step_coll,
        ffn_s=s.layers * t_post + dense_layers * t_dense + s.moe_layers * t_moe + t_head,
        overhead_s=overhead, weight_bytes=held_w, kv_bytes=held_kv, hbm_bytes=hw.hbm_bytes * hw.memory_fraction,
    )


def _hopb(hw: HardwareProfile, kvp: int, t_kv: float, sent: float, batch: int, hopb,
          call: float = 0.0) -> tuple[float, int]:
    """(attention + exposed all-to-all, pieces): a two-stage pipeline over p pieces of the batch,
    a = t_kv / p + call (every piece is one attention kernel call), c = latency + sent / p / bandwidth:
    time = a + c + (p - 1) max(a, c)."""
    if hopb is False or hopb is None:
        options = [1]
    elif hopb is True:
        options = sorted({1, batch} | {2 ** i for i in range(1, 12) if 2 ** i < batch})
    else:
        options = [max(1, min(int(hopb), batch))]
    best = None
    for p in options:
        a = t_kv / p + call
        c = _spread(hw, kvp, sent / p)
        total = a + c + (p - 1) * max(a, c)
        if best is None or total < best[0] - 1e-15:
            best = (total, p)
    return best
