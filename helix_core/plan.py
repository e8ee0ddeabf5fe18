"""Sharding plans: the one mapping from a rank to its coordinates and to the slices it owns.

Attention runs on a grid  N = KVP x G x M:
  * KVP ranks split the KV cache by sequence (Helix's KV parallelism),
  * G head groups split the query heads (and their KV heads): Helix's TPA, or the TP baseline,
  * M slices split every head's dimension (the head-group x dimension-slice partition).
Plans are points of that grid:
  helix      KVP x TPA x 1, TPA <= KV heads, so the KV cache is never duplicated;
  tp         1 x N x 1, KV heads duplicated when N > KV heads (the baseline's honest cost);
  headslice  1 x n x m, partial q.k scores of the m slices summed before the softmax.
After attention the same N ranks run the output projection and the FFN tensor-parallel over
all N (dense), or EP x FFN-TP for routed experts.

rank = (kvp_rank * G + group_rank) * M + slice_rank   (attention)
rank = ep_rank * FFN_TP + ffn_tp_rank                   (routed experts)
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig

PLAN_KINDS = ("helix", "tp", "headslice")
Ranges = tuple[tuple[int, int], ...]  # half-open (start, stop) ranges, concatenated in order


class InvalidPlanError(ValueError):
    """The plan cannot run this model on this many ranks; the message says what to change."""


def split_even(total: int, parts: int, index: int) -> tuple[int, int]:
    """The index-th of `parts` contiguous pieces of range(total); earlier pieces take the remainder."""
    base, extra = divmod(total, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


@dataclass(frozen=True)
class RankCoords:
    rank: int
    kvp_rank: int
    group_rank: int  # TPA rank (helix), TP rank (tp), head group (headslice)
    slice_rank: int
    ep_rank: int
    ffn_tp_rank: int


@dataclass(frozen=True)
class AttentionShard:
    """What one rank computes and caches in the attention phase."""

    q_heads: tuple[int, int]  # query heads projected and attended (whole batch)
    kv_heads: tuple[int, int]  # KV heads cached (MLA: the single latent head)
    head_dims: Ranges  # dims of each q/k head this rank holds (all, or one slice from each RoPE half)
    rope_freqs: tuple[int, int]  # indices into the RoPE inverse frequencies of those dims
    out_heads: tuple[int, int]  # heads whose exact attention output this rank holds after the exchange
    value_dims: Ranges  # dims of each value head of out_heads this rank holds


@dataclass(frozen=True)
class Plan:
    kind: str
    world_size: int
    kvp: int = 1
    groups: int = 1
    slices: int = 1
    ep: int = 1

    def __post_init__(self):
        # named as in the plan's spec ('helix:kvp=2,tpa=1', 'tp:n=4', 'headslice:n=2,m=2')
        groups = "tpa" if self.kind == "helix" else "n"
        sizes = {"kvp": self.kvp, groups: self.groups, "m": self.slices, "ep": self.ep}
        bad = [f"{name}={size}" for name, size in sizes.items() if size < 1]
        if bad or self.world_size < 1:
            raise InvalidPlanError(
                f"a {self.kind} plan's sizes must be at least 1, got {', '.join(bad) or f'{self.world_size} ranks'}"
            )

    # ---- constructors -------------------------------------------------------------------------
    @classmethod
    def helix(cls, kvp: int, tpa: int, ep: int = 1) -> "Plan":
        return cls("helix", kvp * tpa, kvp=kvp, groups=tpa, ep=ep)

    @classmethod
    def tp(cls, world_size: int, ep: int = 1) -> "Plan":
        return cls("tp", world_size, groups=world_size, ep=ep)

    @classmethod
    def headslice(cls, n_groups: int, m_slices: int, ep: int = 1) -> "Plan":
        return cls("headslice", n_groups * m_slices, groups=n_groups, slices=m_slices, ep=ep)

    @classmethod
    def parse(cls, spec: str) -> "Plan":
        """'helix:kvp=2,tpa=1[,ep=2]', 'tp:n=4', 'headslice:n=2,m=2'."""
        kind, _, args = spec.partition(":")
        values = {}
        for item in filter(None, args.split(",")):
            key, _, value = item.partition("=")
            try:
                values[key.strip()] = int(value)
            except ValueError:
                raise InvalidPlanError(f"plan '{spec}': {key.strip()} must be a whole number, got {value!r}") from None
        ep = values.pop("ep", 1)
        try:
            if kind == "helix":
                plan = cls.helix(values.pop("kvp"), values.pop("tpa", 1), ep)
            elif kind == "tp":
                plan = cls.tp(values.pop("n"), ep)
            elif kind == "headslice":
                plan = cls.headslice(values.pop("n"), values.pop("m"), ep)
            else:
                raise InvalidPlanError(f"unknown plan kind '{kind}': choose one of {PLAN_KINDS}")
        except KeyError as missing:
            raise InvalidPlanError(f"plan '{spec}' lacks {missing}") from None
        if values:
            raise InvalidPlanError(f"plan '{spec}': {kind} takes no {', '.join(sorted(values))}")
        return plan

    # ---- shape --------------------------------------------------------------------------------
    @property
    def tpa(self) -> int:
        return self.groups

    @property
    def ffn_tp(self) -> int:
        return self.world_size // self.ep

    def spec(self) -> str:
        if self.kind == "helix":
            core = f"kvp={self.kvp},tpa={self.groups}"
        elif self.kind == "tp":
            core = f"n={self.world_size}"
        else:
            core = f"n={self.groups},m={self.slices}"
        return f"{self.kind}:{core}" + (f",ep={self.ep}" if self.ep > 1 else "")

    def coords(self, rank: int) -> RankCoords:
        if not 0 <= rank < self.world_size:
            raise InvalidPlanError(f"rank {rank} is outside the plan's {self.world_size} ranks")
        slice_rank = rank % self.slices
        group_rank = (rank // self.slices) % self.groups
        kvp_rank = rank // (self.slices * self.groups)
        return RankCoords(rank, kvp_rank, group_rank, slice_rank, rank // self.ffn_tp, rank % self.ffn_tp)

    def process_groups(self) -> dict[str, list[list[int]]]:
        """Every named group as lists of ranks; each rank belongs to exactly one list per name."""
        ranks = range(self.world_size)
        by = {
            # same head group and slice, all sequence shards: the all-to-all of partial outputs
            "kvp": lambda c: (c.group_rank, c.slice_rank),
            # same sequence shard: the query-head groups of one KV shard
            "tpa": lambda c: (c.kvp_rank, c.slice_rank),
            # same heads, different dimension slices: the q.k partial-score all-reduce
            "head_slices": lambda c: (c.kvp_rank, c.group_rank),
            "ffn_tp": lambda c: c.ep_rank,
            "ep": lambda c: c.ffn_tp_rank,
        }
        groups: dict[str, list[list[int]]] = {"all": [list(ranks)]}
        for name, key in by.items():
            buckets: dict[object, list[int]] = {}
            for r in ranks:
                buckets.setdefault(key(self.coords(r)), []).append(r)
            groups[name] = list(buckets.values())
        return groups

    # ---- validation ---------------------------------------------------------------------------
    def validate(self, cfg: ModelConfig) -> None:
        """Refuse, before anything loads, a plan this model cannot run; say what to change."""
        n = self.world_size
        fail = _failer(self)
        if self.kind not in PLAN_KINDS:
            fail(f"unknown plan kind; choose one of {PLAN_KINDS}")
        if min(n, self.kvp, self.groups, self.slices, self.ep) < 1:
            fail("every plan dimension must be >= 1")
        if self.kvp * self.groups * self.slices != n:
            fail(f"N={n} must equal KVP x groups x slices = {self.kvp} x {self.groups} x {self.slices}")
        heads, kv_heads = cfg.num_heads, cfg.cached_kv_heads
        if self.kind == "helix":
            if self.groups > kv_heads:
                fail(
                    f"TPA={self.groups} exceeds the model's {kv_heads} KV heads, which would duplicate KV; "
                    f"use TPA <= {kv_heads} and put the rest into KVP (e.g. KVP={n // kv_heads if n % kv_heads == 0 else '?'}, TPA={kv_heads})"
                )
            if kv_heads % self.groups:
                fail(f"TPA={self.groups} must divide the {kv_heads} KV heads")
            if heads % n:
                fail(f"the {heads} query heads must split evenly over KVP x TPA = {n} ranks after the all-to-all")
        elif self.kind == "tp":
            if self.kvp != 1 or self.slices != 1:
                fail("tp has no KVP or slices; use 'helix' or 'headslice'")
            if heads % n:
                fail(f"the {heads} query heads must divide evenly over N={n}")
            if kv_heads % n and n % kv_heads:
                fail(f"N={n} and the {kv_heads} KV heads must divide one another")
        else:
            if cfg.is_mla:
                fail("headslice splits head dimensions of q, k and v; MLA has one latent KV head: use helix")
            if self.kvp != 1:
                fail("headslice has no KVP dimension")
            if heads % self.groups or kv_heads % self.groups:
                fail(f"n={self.groups} head groups must divide the {heads} query and {kv_heads} KV heads")
            if cfg.head_dim % (2 * self.slices):
                fail(
                    f"m={self.slices} slices must split each half of the head dim {cfg.head_dim} evenly "
                    f"(RoPE pairs dim i with i + d/2), so head_dim must be a multiple of 2m={2 * self.slices}"
                )
        self._validate_ffn(cfg, fail)

    def _validate_ffn(self, cfg: ModelConfig, fail) -> None:
        n = self.world_size
        if n % self.ep:
            fail(f"EP={self.ep} must divide N={n}")
        dense_layers = [i for i in range(cfg.num_layers) if not cfg.is_moe_layer(i)]
        if dense_layers and cfg.intermediate_size % n:
            fail(f"the FFN size {cfg.intermediate_size} must divide evenly over N={n}")
        if not cfg.n_routed_experts:
            if self.ep != 1:
                fail("EP > 1 needs a model with routed experts")
            return
        if cfg.n_routed_experts % self.ep:
            fail(f"EP={self.ep} must divide the {cfg.n_routed_experts} routed experts")
        if cfg.moe_intermediate_size % self.ffn_tp:
            fail(f"FFN-TP={self.ffn_tp} (N/EP) must divide the expert FFN size {cfg.moe_intermediate_size}")
        shared = cfg.moe_intermediate_size * cfg.n_shared_experts
        if shared % n:
            fail(f"the shared-expert FFN size {shared} must divide evenly over N={n}")

    # ---- what a rank owns ---------------------------------------------------------------------
    def attention_shard(self, cfg: ModelConfig, rank: int) -> AttentionShard:
        c = self.coords(rank)
        heads, kv_heads = cfg.num_heads, cfg.cached_kv_heads
        q_heads = split_even(heads, self.groups, c.group_rank)
        if self.groups <= kv_heads:
            kv = split_even(kv_heads, self.groups, c.group_rank)
        else:  # tp with duplication: every rank caches the one KV head its query heads use
            kv_index = q_heads[0] * kv_heads // heads
            kv = (kv_index, kv_index + 1)
        if self.slices == 1:
            dims: Ranges = ((0, cfg.head_dim),)
            freqs = (0, cfg.rope.rotary_dim // 2)
            value_dims: Ranges = ((0, cfg.value_head_dim),)
        else:
            half = cfg.head_dim // 2
            lo, hi = split_even(half, self.slices, c.slice_rank)
            dims = ((lo, hi), (half + lo, half + hi))
            freqs = (lo, hi)
            value_dims = dims  # value dims follow the q/k dims so one index set describes the slice
        per_kvp = (q_heads[1] - q_heads[0]) // self.kvp
        out_start = q_heads[0] + c.kvp_rank * per_kvp
        return AttentionShard(q_heads, kv, dims, freqs, (out_start, out_start + per_kvp), value_dims)

    def dense_ffn_range(self, size: int, rank: int) -> tuple[int, int]:
        return split_even(size, self.world_size, rank)

    def expert_range(self, cfg: ModelConfig, rank: int) -> tuple[int, int]:
        return split_even(cfg.n_routed_experts, self.ep, self.coords(rank).ep_rank)

    def expert_ffn_range(self, cfg: ModelConfig, rank: int) -> tuple[int, int]:
        return split_even(cfg.moe_intermediate_size, self.ffn_tp, self.coords(rank).ffn_tp_rank)

    # ---- description --------------------------------------------------------------------------
    def describe(self, cfg: ModelConfig | None = None) -> str:
        n = self.world_size
        if self.kind == "helix":
            text = f"helix: N={n} = KVP {self.kvp} x TPA {self.groups}; KV sharded by sequence and KV head"
        elif self.kind == "tp":
            text = f"tp: attention tensor-parallel over N={n}"
        else:
            text = f"headslice: N={n} = {self.groups} head groups x {self.slices} dimension slices"
        text += f"; FFN over N={n}" + (f" as EP {self.ep} x TP {self.ffn_tp}" if self.ep > 1 else " (TP)")
        if cfg is not None:
            dup = self.kv_duplication(cfg)
            text += f"; KV duplication x{dup}" if dup > 1 else "; no KV duplication"
        return text

    def kv_duplication(self, cfg: ModelConfig) -> int:
        """How many ranks hold each cached KV element (1 means never duplicated)."""
        return max(1, self.groups // cfg.cached_kv_heads)


def head_rows(heads: tuple[int, int], head_size: int, dims: Ranges) -> list[tuple[int, int]]:
    """Rows of a [heads * head_size, ...] projection for the given heads and per-head dim ranges."""
    rows: list[tuple[int, int]] = []
    for head in range(*heads):
        for lo, hi in dims:
            start, stop = head * head_size + lo, head * head_size + hi
            if rows and rows[-1][1] == start:
                rows[-1] = (rows[-1][0], stop)
            else:
                rows.append((start, stop))
    return rows


def _failer(plan: Plan):
    def fail(reason: str):
        raise InvalidPlanError(f"plan {plan.spec()}: {reason}")

    return fail
