"""Llama-style dense GQA/MHA decoder (Llama 2/3, Mistral, Qwen2): the math of one rank's shard.

Each rank holds the q/k/v rows of its head group (and dimension slice), the o_proj columns of
the heads whose exact attention it ends up with (or all of o_proj, replicated: OutProjection), and
1/N of the MLP; the LayerContext does the KV cache, the attention exchange and the all-reduces.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..plan import Plan, head_rows
from .common import DecoderStack, GatedMLP, LayerContext, OutProjection, Rotary
from .ops import EAGER, Ops


@dataclass
class LlamaLayer:
    input_norm: torch.Tensor
    post_norm: torch.Tensor
    wqkv: torch.Tensor  # q, k and v rows of this rank, stacked so one GEMM reads them
    bqkv: torch.Tensor | None
    wo: OutProjection
    bo: torch.Tensor | None
    mlp: GatedMLP


class LlamaModel(DecoderStack):
    def __init__(self, cfg: ModelConfig, plan: Plan, rank: int, reader, load, ops: Ops = EAGER,
                 replicate_o: bool = False):
        """replicate_o: hold every column of o_proj (OutProjection.full), for contexts that project every
        head after an exchange that delivers them all (EngineOptions.o_projection)."""
        self.cfg, self.ops = cfg, ops
        shard = plan.attention_shard(cfg, rank)
        self.shard = shard
        d = cfg.head_dim
        self.local_head_dim = sum(hi - lo for lo, hi in shard.head_dims)
        self.local_value_dim = sum(hi - lo for lo, hi in shard.value_dims)
        q_rows = head_rows(shard.q_heads, d, shard.head_dims)
        kv_rows = head_rows(shard.kv_heads, d, shard.head_dims)
        v_rows = head_rows(shard.kv_heads, d, shard.value_dims)
        o_cols = head_rows(shard.out_heads, d, shard.value_dims)
        ffn = plan.dense_ffn_range(cfg.intermediate_size, rank)
        self.qkv_split = [sum(b - a for a, b in rows) for rows in (q_rows, kv_rows, v_rows)]
        self.layers = []
        for i in range(cfg.num_layers):
            p = f"model.layers.{i}"
            a = f"{p}.self_attn"
            self.layers.append(LlamaLayer(
                input_norm=load(f"{p}.input_layernorm.weight"),
                post_norm=load(f"{p}.post_attention_layernorm.weight"),
                wqkv=torch.cat([load(f"{a}.q_proj.weight", 0, q_rows), load(f"{a}.k_proj.weight", 0, kv_rows),
                                load(f"{a}.v_proj.weight", 0, v_rows)]),
                bqkv=torch.cat([load(f"{a}.q_proj.bias", 0, q_rows), load(f"{a}.k_proj.bias", 0, kv_rows),
                                load(f"{a}.v_proj.bias", 0, v_rows)]) if cfg.qkv_bias else None,
                wo=OutProjection.load(load, f"{a}.o_proj.weight", o_cols, replicate_o),
                # a bias after a row-parallel matmul is added once, after the all-reduce
                bo=load(f"{p}.self_attn.o_proj.bias") if cfg.o_bias else None,
                mlp=GatedMLP.load(reader, f"{p}.mlp", ffn, load),
            ))
        self._load_ends(plan, rank, reader, load, shard.rope_freqs)  # a slice's dims use its frequencies
        self.attention_scale = cfg.head_dim ** -0.5

    def collective_successors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """o -> this layer's gate/up (after the residual add and norm), down -> the next layer's q/k/v, the
        last layer's down -> the LM head."""
        pairs = []
        for index, layer in enumerate(self.layers):
            after_down = self.layers[index + 1].wqkv if index + 1 < len(self.layers) else self.vocab.head
            pairs += [(layer.wo.local, layer.mlp.gate_up), (layer.mlp.down, after_down)]
        return pairs

    def _layer(self, index, w: LlamaLayer, x, delta, cos, sin, ctx: LayerContext):
        tokens, ops, eps = x.shape[0], self.ops, self.cfg.rms_norm_eps
        x, qkv = ops.add_norm_linear(x, delta, w.input_norm, eps, w.wqkv, w.bqkv)
        q_width, k_width, _ = self.qkv_split
        q = qkv[:, :q_width].view(tokens, -1, self.local_head_dim)
        k = qkv[:, q_width:q_width + k_width].view(tokens, -1, self.local_head_dim)
        v = qkv[:, q_width + k_width:].view(tokens, -1, self.local_value_dim)
        # the context rotates q and k, on the decode fast path in the kernel that appends k and v
        y = ctx.attention_output(index, q, k, v, w.wo, ops.linear, Rotary(cos, sin, ops.rope))
        if w.bo is not None:
            y = y + w.bo
        with ctx.phase("ffn"):
            x, y = self._ffn(w, x, y)
        return x, ctx.all_reduce(y)

    def _ffn(self, w: LlamaLayer, x, delta, static_shapes: bool = True):
        x, gate_up = self.ops.add_norm_linear(x, delta, w.post_norm, self.cfg.rms_norm_eps, w.mlp.gate_up)
        return x, self.ops.gated_linear(gate_up, w.mlp.down)
