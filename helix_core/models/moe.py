"""DeepSeek-V3 mixture of experts: grouped top-k routing and one rank's slice of the experts.

Routing runs in fp32 on every rank from the same replicated hidden states and the same
replicated router weights, so all ranks pick the same experts with the same weights. A rank
computes its EP slice of the experts over its FFN-TP slice of their intermediate dimension,
plus its 1/N of the shared experts; the caller's all-reduce over all N sums every piece.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from .common import GatedMLP


def route(x: torch.Tensor, router: torch.Tensor, correction_bias: torch.Tensor, cfg: ModelConfig):
    """Sigmoid scores, group-limited top-k with the correction bias (noaux_tc). Returns
    (expert ids [T, k], weights [T, k] fp32)."""
    scores = F.linear(x.float(), router.float()).sigmoid()
    choice = scores + correction_bias.float()
    experts, groups = cfg.n_routed_experts, cfg.n_group
    group_scores = choice.view(-1, groups, experts // groups).topk(2, dim=-1).values.sum(dim=-1)
    top_groups = group_scores.topk(cfg.topk_group, dim=-1, sorted=False).indices
    group_mask = torch.zeros_like(group_scores).scatter_(1, top_groups, 1.0)
    expert_mask = group_mask.unsqueeze(-1).expand(-1, groups, experts // groups).reshape(-1, experts)
    choice = choice.masked_fill(expert_mask == 0, float("-inf"))
    ids = choice.topk(cfg.num_experts_per_tok, dim=-1, sorted=False).indices
    weights = scores.gather(1, ids)
    if cfg.norm_topk_prob:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return ids, weights * cfg.routed_scaling_factor


@dataclass
class MoEShard:
    router: torch.Tensor  # [E, hidden], replicated
    correction_bias: torch.Tensor  # [E], replicated
    first_expert: int
    experts: list[GatedMLP]  # local experts, each over this rank's FFN-TP slice
    shared: GatedMLP | None  # this rank's 1/N of the shared experts

    def __call__(self, x: torch.Tensor, cfg: ModelConfig, static_shapes: bool = False) -> torch.Tensor:
        ids, weights = route(x, self.router, self.correction_bias, cfg)
        self.last_routing = ids
        out = torch.zeros_like(x)
        for local, expert in enumerate(self.experts):
            hit = ids == self.first_expert + local
            if static_shapes:
                # every token through every local expert, weighted 0 where not routed: no
                # data-dependent shapes, so the step can be captured in a CUDA graph
                gate = (weights * hit).sum(dim=-1, keepdim=True)
                out += (expert(x) * gate).to(out.dtype)
                continue
            tokens, slot = torch.where(hit)
            if tokens.numel() == 0:
                continue
            y = expert(x[tokens]) * weights[tokens, slot, None]
            out.index_add_(0, tokens, y.to(out.dtype))
        if self.shared is not None:
            out = out + self.shared(x)
        return out


def load_moe(reader, prefix: str, cfg: ModelConfig, expert_range, ffn_range, shared_range, load) -> MoEShard:
    """Read one rank's experts from either checkpoint layout: per-expert tensors
    (`experts.{e}.gate_proj.weight`) or fused 3-D ones (`experts.gate_up_proj` [E, 2I, H],
    `experts.down_proj` [E, H, I])."""
    first, stop = expert_range
    lo, hi = ffn_range
    inter = cfg.moe_intermediate_size
    experts = []
    if reader.has(f"{prefix}.experts.gate_up_proj"):
        box = {0: [(first, stop)]}
        gate_up = load(f"{prefix}.experts.gate_up_proj", boxes={**box, 1: [(lo, hi), (inter + lo, inter + hi)]})
        down = load(f"{prefix}.experts.down_proj", boxes={**box, 2: [(lo, hi)]})
        for e in range(stop - first):
            experts.append(GatedMLP(gate_up[e], down[e]))  # gate rows then up rows, as stored
    else:
        for e in range(first, stop):
            experts.append(GatedMLP.load(reader, f"{prefix}.experts.{e}", (lo, hi), load))
    shared = GatedMLP.load(reader, f"{prefix}.shared_experts", shared_range, load) if cfg.n_shared_experts else None
    return MoEShard(
        router=load(f"{prefix}.gate.weight"),
        correction_bias=load(f"{prefix}.gate.e_score_correction_bias", dtype=torch.float32),
        first_expert=first,
        experts=experts,
        shared=shared,
    )
