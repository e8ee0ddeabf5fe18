"""Math shared by the model families: norms, the gated MLP, vocab-parallel embedding and head."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ContextManager, Protocol

import torch
import torch.nn.functional as F

from ..checkpoint import CheckpointReader
from ..plan import Plan, split_even


@dataclass(frozen=True)
class Rotary:
    """RoPE (rotate-half layout) still to be applied to a layer's q and k, handed to
    LayerContext.attend: a context that stores k with a kernel may rotate it on the way."""

    cos: torch.Tensor  # [T, D] fp32
    sin: torch.Tensor
    apply: Callable  # apply(x [T, H, D], cos, sin) -> x rotated, in x's dtype

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.apply(q, self.cos, self.sin), self.apply(k, self.cos, self.sin)


class LayerContext(Protocol):
    """What a model layer needs from the parallel runtime; the model math knows nothing else."""

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None,
               value_dim: int | None = None, rotary: Rotary | None = None) -> torch.Tensor:
        """Attention of q over the cache after appending k (and v). rotary: q and k are not yet
        rotated; the context applies it (Rotary.rotate, or fused with the append)."""
        ...

    def attention_output(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None,
                         projection: "OutProjection", linear: Callable, rotary: Rotary | None = None) -> torch.Tensor:
        """The attention block's output, summed over all ranks: linear(attention [T, H * Dv] in q's dtype,
        projection.local), all-reduced (`project_attention`), unless the context fuses steps: the fast path
        merges the KVP partials inside the projection's kernel, and where it received every head's partials
        and the rank holds the whole projection (`projection.full`) it projects them all itself, with no
        all-reduce."""
        ...

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor: ...

    def phase(self, name: str) -> ContextManager[None]:
        """Times one phase of a profiled decode step ("ffn", ...); a no-op context otherwise."""
        ...


@dataclass(frozen=True)
class OutProjection:
    """The attention output projection (o_proj) as one rank holds it. `local` multiplies the heads whose
    exact output the rank has after the KVP exchange (its columns of W_o); its all-reduce over the ranks
    sums the heads. `full` (replicated o, EngineOptions.o_projection): the rank holds every column, and
    `local` is a view of its own; a context whose exchange delivered every head's partials projects them
    all with `full` and skips the all-reduce."""

    local: torch.Tensor  # [hidden, out_heads * Dv]
    full: torch.Tensor | None = None  # [hidden, H * Dv]

    @classmethod
    def load(cls, load: Callable, name: str, local_columns, replicated: bool = False) -> "OutProjection":
        """From `load` (a rank's slice of a checkpoint tensor): this rank's columns (one contiguous range
        when replicated), or, replicated, the whole weight with `local` a view of those columns."""
        if not replicated:
            return cls(load(name, 1, local_columns))
        full = load(name)
        (lo, hi), = local_columns
        return cls(full[:, lo:hi], full)


def project_attention(ctx: LayerContext, layer: int, q, k, v, projection: OutProjection, linear: Callable,
                      rotary: Rotary | None = None) -> torch.Tensor:
    """LayerContext.attention_output step by step: attention, the projection of this rank's heads, the
    all-reduce."""
    attn = ctx.attend(layer, q, k, v, rotary=rotary).to(q.dtype)
    return ctx.all_reduce(linear(attn.reshape(q.shape[0], -1), projection.local))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """As Hugging Face computes it: statistics in fp32, scaled by the weight in the input dtype."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


@dataclass
class GatedMLP:
    """SiLU-gated MLP over a slice of the intermediate dimension; the caller sums the slices.
    Gate and up rows are stored together so one GEMM reads both."""

    gate_up: torch.Tensor  # [2 * I_local, hidden]: the gate rows, then the up rows
    down: torch.Tensor  # [hidden, I_local]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """In eager torch (the MoE experts); a dense FFN runs its two projections through the model's
        Ops (add_norm_linear, gated_linear), which may fuse the norm and the gate into them."""
        gate, up = F.linear(x, self.gate_up).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.down)

    @classmethod
    def load(cls, reader: CheckpointReader, prefix: str, rows: tuple[int, int], load) -> "GatedMLP":
        gate = load(f"{prefix}.gate_proj.weight", 0, [rows])
        up = load(f"{prefix}.up_proj.weight", 0, [rows])
        return cls(gate_up=torch.cat([gate, up]), down=load(f"{prefix}.down_proj.weight", 1, [rows]))


@dataclass
class VocabParallel:
    """Embedding and LM head split by vocabulary rows over all N ranks."""

    embed: torch.Tensor  # [V_local, hidden]
    head: torch.Tensor  # [V_local, hidden]
    vocab_range: tuple[int, int]
    vocab_size: int

    def embed_tokens(self, ids: torch.Tensor, all_reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        start, stop = self.vocab_range
        mine = (ids >= start) & (ids < stop)
        local = torch.where(mine, ids - start, torch.zeros_like(ids))
        rows = self.embed[local] * mine.unsqueeze(-1).to(self.embed.dtype)
        return all_reduce(rows)  # exactly one rank contributes each row: the sum is exact

    def local_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.head).float()

    def full_logits(self, local: torch.Tensor, gathered_from: Callable[[torch.Tensor], torch.Tensor],
                    world_size: int) -> torch.Tensor:
        """Gather every rank's vocab slice (padded to equal size) into [S, V] fp32."""
        per_rank = -(-self.vocab_size // world_size)
        padded = torch.zeros(local.shape[0], per_rank, dtype=local.dtype, device=local.device)
        padded[:, : local.shape[1]] = local
        gathered = gathered_from(padded)  # [N, S, per_rank]
        pieces = []
        for rank in range(world_size):
            start, stop = split_even(self.vocab_size, world_size, rank)
            pieces.append(gathered[rank, :, : stop - start])
        return torch.cat(pieces, dim=-1)

    @classmethod
    def load(cls, reader: CheckpointReader, plan: Plan, rank: int, vocab_size: int, tied: bool, load):
        start, stop = split_even(vocab_size, plan.world_size, rank)
        embed = load("model.embed_tokens.weight", 0, [(start, stop)])
        head = embed if tied or not reader.has("lm_head.weight") else load("lm_head.weight", 0, [(start, stop)])
        return cls(embed, head, (start, stop), vocab_size)


class DecoderStack:
    """What every family shares: the vocab-parallel ends, the RoPE table and the layer loop.
    A family sets `cfg`, `ops` and `layers` and defines `_layer(index, weights, x, delta, cos, sin, ctx)`
    -> (x, delta): each layer hands its last residual delta to the next one, so the residual add and
    the next norm run as one fused kernel (ops.add_rms_norm); and `_ffn(weights, x, delta, static_shapes)`
    -> (x, y), the part of a layer after its attention's all-reduce (see `ffn`)."""

    def collective_successors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(projection weight, the weight a step reads next) for each projection whose output goes to an
        all-reduce in a decode step: where HBM may read ahead during the all-reduce. None known: []."""
        return []

    def ffn(self, index: int, x: torch.Tensor, delta: torch.Tensor, static_shapes: bool = True):
        """Layer `index` after its attention: (x + delta, this rank's FFN output of rms_norm(x + delta)),
        the output before the all-reduce that sums the ranks' slices. The layer runs exactly this; the
        benchmark times it alone (the FFN phase of a step)."""
        return self._ffn(self.layers[index], x, delta, static_shapes)

    def _load_ends(self, plan: Plan, rank: int, reader, load, rope_freqs: tuple[int, int]) -> None:
        from ..rope import rope_inv_freq

        cfg = self.cfg
        self.final_norm = load("model.norm.weight")
        self.vocab = VocabParallel.load(reader, plan, rank, cfg.vocab_size, cfg.tie_word_embeddings, load)
        inv_freq, self.rope_scaling = rope_inv_freq(cfg.rope)
        self.inv_freq = inv_freq[rope_freqs[0]:rope_freqs[1]].to(self.final_norm.device)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, ctx: LayerContext) -> torch.Tensor:
        """Hidden states after the final norm, [T, hidden], replicated on every rank."""
        from ..rope import rope_cos_sin

        x = self.vocab.embed_tokens(ids, ctx.all_reduce)
        cos, sin = rope_cos_sin(self.inv_freq, self.rope_scaling, positions)
        delta = None
        for index, layer in enumerate(self.layers):
            x, delta = self._layer(index, layer, x, delta, cos, sin, ctx)
        return self.ops.add_rms_norm(x, delta, self.final_norm, self.cfg.rms_norm_eps)[1]
