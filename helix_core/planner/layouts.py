"""The layouts the planner compares, and which of them the engine can run.

  tp         attention TP over all N (KV duplicated when N > KV heads), FFN TP (or EP x TP) over N
  pp         PP stages of t = N/PP GPUs, TP t inside each stage
  dp_attn    attention data-parallel over DP groups of t GPUs (each holds all its sequences' KV),
             FFN TP (dense) or EP x TP (MoE) over all N
  medha      KVP x t attention (t divides the KV heads), FFN tied to that fixed TP group of t GPUs
             (Medha-style KVP)
  helix      KVP x TPA attention (TPA <= KV heads), FFN TP or EP x TP over all N
  headslice  n head groups x m head-dimension slices, FFN over N

The engine runs tp, helix and headslice (`engine_plan`); pp, dp_attn and medha are modelled for
comparison only and never chosen for serving.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig
from ..plan import InvalidPlanError, Plan

KINDS = ("tp", "pp", "dp_attn", "medha", "helix", "headslice")
ENGINE_KINDS = ("tp", "helix", "headslice")
BASELINE_KINDS = ("tp", "pp", "dp_attn", "medha")  # the paper's baselines


@dataclass(frozen=True)
class Layout:
    kind: str
    n: int  # GPUs
    attn_tp: int = 1  # head groups of attention: TP width, TPA, or headslice's n
    kvp: int = 1
    pp: int = 1
    dp: int = 1
    slices: int = 1
    ep: int = 1  # expert parallel width of the FFN group

    @property
    def ffn_group(self) -> int:
        """GPUs sharing one copy of the FFN weights."""
        return self.attn_tp if self.kind in ("medha", "pp") else self.n

    @property
    def ffn_tp(self) -> int:
        return self.ffn_group // self.ep

    @property
    def engine(self) -> bool:
        return self.kind in ENGINE_KINDS

    def engine_plan(self) -> Plan | None:
        if self.kind == "helix":
            return Plan.helix(self.kvp, self.attn_tp, self.ep)
        if self.kind == "tp":
            return Plan.tp(self.n, self.ep)
        if self.kind == "headslice":
            return Plan.headslice(self.attn_tp, self.slices, self.ep)
        return None

    def label(self) -> str:
        ffn = f"EP{self.ep}xTP{self.ffn_tp}" if self.ep > 1 else f"TP{self.ffn_group}"
        attn = {
            "tp": f"TP{self.n}",
            "pp": f"PP{self.pp}xTP{self.attn_tp}",
            "dp_attn": f"DP{self.dp}xTP{self.attn_tp}",
            "medha": f"KVP{self.kvp}xTP{self.attn_tp}",
            "helix": f"KVP{self.kvp}xTPA{self.attn_tp}",
            "headslice": f"n{self.attn_tp}xm{self.slices}",
        }[self.kind]
        return f"{self.kind} {attn} | FFN {ffn} (N={self.n})"

    def spec(self) -> str:
        plan = self.engine_plan()
        return plan.spec() if plan else self.label()


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _eps(cfg: ModelConfig, group: int) -> list[int]:
    if not cfg.n_routed_experts:
        return [1]
    return [e for e in divisors(group) if cfg.n_routed_experts % e == 0
            and cfg.moe_intermediate_size % (group // e) == 0]


def candidates(cfg: ModelConfig, n: int, kinds=KINDS) -> list[Layout]:
    """Every layout of `kinds` on n GPUs, before validity checks."""
    out: list[Layout] = []
    for kind in kinds:
        if kind == "tp":
            out += [Layout("tp", n, attn_tp=n, ep=e) for e in _eps(cfg, n)]
        elif kind == "helix":  # KVP = 1 is tp
            for tpa in divisors(n)[:-1]:
                out += [Layout("helix", n, attn_tp=tpa, kvp=n // tpa, ep=e) for e in _eps(cfg, n)]
        elif kind == "headslice":
            for groups in divisors(n):
                out += [Layout("headslice", n, attn_tp=groups, slices=n // groups, ep=e) for e in _eps(cfg, n)]
        elif kind == "pp":
            for stages in divisors(n)[1:]:
                t = n // stages
                out += [Layout("pp", n, attn_tp=t, pp=stages, ep=e) for e in _eps(cfg, t)]
        elif kind == "dp_attn":
            for dp in divisors(n)[1:]:
                out += [Layout("dp_attn", n, attn_tp=n // dp, dp=dp, ep=e) for e in _eps(cfg, n)]
        elif kind == "medha":  # Medha shards KV over KVP instead of duplicating it: TP <= KV heads
            for kvp in divisors(n)[1:]:
                t = n // kvp
                if cfg.cached_kv_heads % t:
                    continue
                out += [Layout("medha", n, attn_tp=t, kvp=kvp, ep=e) for e in _eps(cfg, t)]
        else:
            raise ValueError(f"unknown layout kind {kind!r}: choose from {KINDS}")
    return out


def refusal(cfg: ModelConfig, layout: Layout, domain_gpus: int | None = None) -> str | None:
    """Why this layout cannot run this model (None: it can). Engine layouts go through the engine's own
    Plan.validate; the modelled-only ones get the same divisibility rules."""
    if domain_gpus and layout.n > domain_gpus:
        return f"N={layout.n} exceeds the {domain_gpus} GPUs of one NVLink domain"
    plan = layout.engine_plan()
    if plan is not None:
        try:
            plan.validate(cfg)
        except InvalidPlanError as err:
            return str(err)
        return None
    t = layout.attn_tp
    if cfg.num_heads % t:
        return f"{cfg.num_heads} heads do not split over attention TP {t}"
    if cfg.cached_kv_heads % t and t % cfg.cached_kv_heads:
        return f"attention TP {t} and the {cfg.cached_kv_heads} KV heads must divide one another"
    group = layout.ffn_group
    if any(not cfg.is_moe_layer(i) for i in range(cfg.num_layers)) and cfg.intermediate_size % group:
        return f"FFN size {cfg.intermediate_size} does not split over {group}"
    if layout.kind == "pp" and layout.pp > cfg.num_layers:
        return f"{layout.pp} stages exceed the {cfg.num_layers} layers"
    return None


def layouts(cfg: ModelConfig, n: int, kinds=KINDS, domain_gpus: int | None = None) -> list[Layout]:
    """The layouts of `kinds` this model can run on n GPUs."""
    return [lay for lay in candidates(cfg, n, kinds) if refusal(cfg, lay, domain_gpus) is None]


def layout_of_plan(plan: Plan) -> Layout:
    """The planner's layout for an engine plan."""
    if plan.kind == "helix":
        return Layout("helix", plan.world_size, attn_tp=plan.groups, kvp=plan.kvp, ep=plan.ep)
    if plan.kind == "tp":
        return Layout("tp", plan.world_size, attn_tp=plan.world_size, ep=plan.ep)
    if plan.kind == "headslice":
        return Layout("headslice", plan.world_size, attn_tp=plan.groups, slices=plan.slices, ep=plan.ep)
    raise ValueError(f"unknown plan kind {plan.kind!r}")
