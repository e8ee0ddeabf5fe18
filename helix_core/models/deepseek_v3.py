"""DeepSeek-V3: multi-head latent attention (absorbed form) with dense and MoE FFN layers.

The cache holds one latent "head" per token: the normalized compressed KV (kv_lora_rank) and
the rotated shared rope key. Decode attends in the absorbed form: the query's no-rope part is
mapped into latent space through W_UK, scores are q_lat.c + q_rope.k_rope, the output stays in
latent space (values are the latent itself), and W_UV maps it back per head after the exchange.
The interleaved RoPE layout of the checkpoint is permuted into the half-split layout at load;
q.k is unchanged by permuting both sides the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..plan import Plan, head_rows
from ..rope import deinterleave_rope_dims, mla_softmax_scale
from .common import DecoderStack, GatedMLP, LayerContext
from .moe import MoEShard, load_moe
from .ops import EAGER, Ops


@dataclass
class MLALayer:
    input_norm: torch.Tensor
    post_norm: torch.Tensor
    q_a: torch.Tensor | None  # [q_lora, hidden] (None: no q LoRA, wq is the full projection)
    q_a_norm: torch.Tensor | None
    wq: torch.Tensor  # [H_local * (nope + rope), q_lora or hidden]
    kv_a: torch.Tensor  # [kv_lora + rope, hidden], replicated
    kv_a_norm: torch.Tensor
    w_uk: torch.Tensor  # [H_local, nope, kv_lora]
    w_uv: torch.Tensor  # [H_out, v, kv_lora]
    wo: torch.Tensor  # [hidden, H_out * v]
    ffn: GatedMLP | MoEShard


class DeepseekV3Model(DecoderStack):
    def __init__(self, cfg: ModelConfig, plan: Plan, rank: int, reader, load, ops: Ops = EAGER):
        self.cfg, self.ops = cfg, ops
        shard = plan.attention_shard(cfg, rank)
        self.shard = shard
        nope, rope, v_dim, lora = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
        qk = nope + rope
        rope_order = deinterleave_rope_dims(rope) if cfg.rope_interleave else torch.arange(rope)
        q_rows = head_rows(shard.q_heads, qk, ((0, qk),))
        heads_q = shard.q_heads[1] - shard.q_heads[0]
        q_perm = torch.cat([torch.arange(nope), nope + rope_order])
        kv_perm = torch.cat([torch.arange(lora), lora + rope_order])
        self.layers = []
        for i in range(cfg.num_layers):
            p = f"model.layers.{i}"
            a = f"{p}.self_attn"
            q_name = f"{a}.q_b_proj.weight" if cfg.q_lora_rank else f"{a}.q_proj.weight"
            wq = load(q_name, 0, q_rows).view(heads_q, qk, -1)[:, q_perm].reshape(heads_q * qk, -1)
            kv_b_q = load(f"{a}.kv_b_proj.weight", 0, head_rows(shard.q_heads, nope + v_dim, ((0, nope),)))
            kv_b_out = load(f"{a}.kv_b_proj.weight", 0, head_rows(shard.out_heads, nope + v_dim, ((nope, nope + v_dim),)))
            if cfg.is_moe_layer(i):
                ffn = load_moe(reader, f"{p}.mlp", cfg, plan.expert_range(cfg, rank), plan.expert_ffn_range(cfg, rank),
                               plan.dense_ffn_range(cfg.moe_intermediate_size * cfg.n_shared_experts, rank), load)
            else:
                ffn = GatedMLP.load(reader, f"{p}.mlp", plan.dense_ffn_range(cfg.intermediate_size, rank), load)
            self.layers.append(MLALayer(
                input_norm=load(f"{p}.input_layernorm.weight"),
                post_norm=load(f"{p}.post_attention_layernorm.weight"),
                q_a=load(f"{a}.q_a_proj.weight") if cfg.q_lora_rank else None,
                q_a_norm=load(f"{a}.q_a_layernorm.weight") if cfg.q_lora_rank else None,
                wq=wq,
                kv_a=load(f"{a}.kv_a_proj_with_mqa.weight")[kv_perm],
                kv_a_norm=load(f"{a}.kv_a_layernorm.weight"),
                w_uk=kv_b_q.view(heads_q, nope, lora),
                w_uv=kv_b_out.view(-1, v_dim, lora),
                wo=load(f"{a}.o_proj.weight", 1, head_rows(shard.out_heads, v_dim, ((0, v_dim),))),
                ffn=ffn,
            ))
        self._load_ends(plan, rank, reader, load, (0, rope // 2))
        self.attention_scale = mla_softmax_scale(cfg)

    def _layer(self, index, w: MLALayer, x, delta, cos, sin, ctx: LayerContext):
        cfg, ops = self.cfg, self.ops
        tokens = x.shape[0]
        nope, lora = cfg.qk_nope_head_dim, cfg.kv_lora_rank
        x, h = ops.add_rms_norm(x, delta, w.input_norm, cfg.rms_norm_eps)
        q_in = ops.rms_norm(ops.linear(h, w.q_a), w.q_a_norm, cfg.rms_norm_eps) if w.q_a is not None else h
        q = ops.linear(q_in, w.wq).view(tokens, -1, nope + cfg.qk_rope_head_dim)
        q_nope, q_rope = q[..., :nope], ops.rope(q[..., nope:], cos, sin)
        kv = ops.linear(h, w.kv_a)
        latent = ops.rms_norm(kv[:, :lora], w.kv_a_norm, cfg.rms_norm_eps)
        k_rope = ops.rope(kv[:, None, lora:], cos, sin)
        # absorb W_UK into the query: q_nope . (W_UK c) == (q_nope W_UK) . c
        q_latent = torch.einsum("thn,hnc->thc", q_nope, w.w_uk)
        query = torch.cat([q_latent, q_rope], dim=-1)
        key = torch.cat([latent[:, None, :], k_rope], dim=-1)
        out_latent = ctx.attend(index, query, key, None, value_dim=lora)  # [T, H_out, lora] fp32
        out = torch.einsum("thc,hvc->thv", out_latent.to(x.dtype), w.w_uv)
        y = ctx.all_reduce(ops.linear(out.reshape(tokens, -1), w.wo))
        with ctx.phase("ffn"):
            x, y = self._ffn(w, x, y, getattr(ctx, "static_shapes", False))
        return x, ctx.all_reduce(y)

    def _ffn(self, w: MLALayer, x, delta, static_shapes: bool = True):
        cfg, ops = self.cfg, self.ops
        x, h = ops.add_rms_norm(x, delta, w.post_norm, cfg.rms_norm_eps)
        if isinstance(w.ffn, MoEShard):
            return x, w.ffn(h, cfg, static_shapes=static_shapes)
        # not through ops.add_norm_linear / gated_linear: fused into the one-row kernel, the norm and gate
        # cost this FFN (7168 -> 2 x 18432) more than their own kernels (H200, deepseek-mla 4 layers 1 x 32K:
        # 2.153-2.165 ms a step against 2.129 ms, 2026-12-03)
        return x, ops.linear(ops.silu_mul(ops.linear(h, w.ffn.gate_up)), w.ffn.down)
