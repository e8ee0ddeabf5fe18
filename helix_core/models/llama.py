"""Llama-style dense GQA/MHA decoder (Llama 2/3, Mistral, Qwen2): the math of one rank's shard.

Each rank holds the q/k/v rows of its head group (and dimension slice), the o_proj columns of
the heads whose exact attention it ends up with, and 1/N of the MLP; the LayerContext does the
KV cache, the attention exchange and the all-reduces.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..plan import Plan, head_rows
from ..rope import apply_rope, rope_cos_sin, rope_inv_freq
from .common import GatedMLP, LayerContext, VocabParallel, rms_norm


@dataclass
class LlamaLayer:
    input_norm: torch.Tensor
    post_norm: torch.Tensor
    wq: torch.Tensor
    wk: torch.Tensor
    wv: torch.Tensor
    bq: torch.Tensor | None
    bk: torch.Tensor | None
    bv: torch.Tensor | None
    wo: torch.Tensor
    bo: torch.Tensor | None
    mlp: GatedMLP


class LlamaModel:
    def __init__(self, cfg: ModelConfig, plan: Plan, rank: int, reader, load):
        self.cfg = cfg
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
        self.layers = []
        for i in range(cfg.num_layers):
            p = f"model.layers.{i}"
            bias = cfg.qkv_bias
            self.layers.append(LlamaLayer(
                input_norm=load(f"{p}.input_layernorm.weight"),
                post_norm=load(f"{p}.post_attention_layernorm.weight"),
                wq=load(f"{p}.self_attn.q_proj.weight", 0, q_rows),
                wk=load(f"{p}.self_attn.k_proj.weight", 0, kv_rows),
                wv=load(f"{p}.self_attn.v_proj.weight", 0, v_rows),
                bq=load(f"{p}.self_attn.q_proj.bias", 0, q_rows) if bias else None,
                bk=load(f"{p}.self_attn.k_proj.bias", 0, kv_rows) if bias else None,
                bv=load(f"{p}.self_attn.v_proj.bias", 0, v_rows) if bias else None,
                wo=load(f"{p}.self_attn.o_proj.weight", 1, o_cols),
                # a bias after a row-parallel matmul is added once, after the all-reduce
                bo=load(f"{p}.self_attn.o_proj.bias") if cfg.o_bias else None,
                mlp=GatedMLP.load(reader, f"{p}.mlp", ffn, load),
            ))
        self.final_norm = load("model.norm.weight")
        self.vocab = VocabParallel.load(reader, plan, rank, cfg.vocab_size, cfg.tie_word_embeddings, load)
        inv_freq, self.rope_scaling = rope_inv_freq(cfg.rope)
        self.inv_freq = inv_freq[shard.rope_freqs[0]:shard.rope_freqs[1]].to(self.final_norm.device)
        self.attention_scale = cfg.head_dim ** -0.5

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, ctx: LayerContext) -> torch.Tensor:
        """Hidden states after the final norm, [T, hidden], replicated on every rank."""
        x = self.vocab.embed_tokens(ids, ctx.all_reduce)
        cos, sin = rope_cos_sin(self.inv_freq, self.rope_scaling, positions)
        for index, layer in enumerate(self.layers):
            x = self._layer(index, layer, x, cos, sin, ctx)
        return rms_norm(x, self.final_norm, self.cfg.rms_norm_eps)

    def _layer(self, index, w: LlamaLayer, x, cos, sin, ctx: LayerContext):
        tokens = x.shape[0]
        h = rms_norm(x, w.input_norm, self.cfg.rms_norm_eps)
        q = F.linear(h, w.wq, w.bq).view(tokens, -1, self.local_head_dim)
        k = F.linear(h, w.wk, w.bk).view(tokens, -1, self.local_head_dim)
        v = F.linear(h, w.wv, w.bv).view(tokens, -1, self.local_value_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        attn = ctx.attend(index, q, k, v).to(x.dtype)
        y = ctx.all_reduce(F.linear(attn.reshape(tokens, -1), w.wo))
        if w.bo is not None:
            y = y + w.bo
        x = x + y
        h = rms_norm(x, w.post_norm, self.cfg.rms_norm_eps)
        with ctx.phase("ffn"):
            y = w.mlp(h)
        return x + ctx.all_reduce(y)
