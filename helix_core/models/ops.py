"""The elementwise pieces of a layer, swappable for fused kernels.

On CUDA every decode step is one CUDA graph, and each small kernel in it still costs a few
microseconds; a layer written in plain torch launches dozens of them. `compiled_ops()` fuses
each piece (norm, RoPE, SiLU gate) into one generated kernel with torch.compile; a piece that
fails to compile falls back to eager, with a warning, so the math never changes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..rope import apply_rope
from .common import rms_norm

log = logging.getLogger(__name__)


def add_rms_norm(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, eps: float):
    """(x + delta, rms_norm(x + delta)): a residual add and the next norm, one kernel when compiled.
    delta None: the first layer, nothing to add yet."""
    total = x if delta is None else x + delta
    return total, rms_norm(total, weight, eps)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def _one_row(x: torch.Tensor) -> bool:
    return x.dim() == 2 and x.shape[0] == 1


def small_batch_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear; a single row (a batch-1 decode step) by the weight-streaming Triton kernel, which
    beat cuBLAS there on an H200 while cuBLAS was as fast or faster from 2 rows on."""
    from ..kernels.small_linear import small_linear, usable

    if not _one_row(x) or not usable(x, weight):
        return F.linear(x, weight, bias)
    y = small_linear(x, weight)
    return y if bias is None else y + bias


def one_row_norm_linear(x, delta, norm_weight, eps, weight, bias=None):
    """Ops.fused_norm_linear of a batch-1 step: the weight-streaming kernel builds rms_norm(x + delta)
    as it reads it (kernels/small_linear.py); None where it does not apply."""
    from ..kernels.small_linear import norm_linear, norm_linear_usable

    if not norm_linear_usable(x, delta, norm_weight, weight):  # one row only
        return None
    total, y = norm_linear(x, delta, norm_weight, eps, weight)
    return total, (y if bias is None else y + bias)


def one_row_gated_linear(gate_up, weight):
    """Ops.fused_gated_linear of a batch-1 step: the SiLU gate built as the kernel reads its input."""
    from ..kernels.small_linear import gated_linear, usable

    if not _one_row(gate_up) or not usable(gate_up, weight, 2 * weight.shape[1]):
        return None
    return gated_linear(gate_up, weight)


@dataclass(frozen=True)
class Ops:
    rms_norm: Callable = rms_norm
    add_rms_norm: Callable = add_rms_norm
    rope: Callable = apply_rope
    silu_mul: Callable = silu_mul
    linear: Callable = F.linear
    # fusions of a norm or gate into the projection after it: they return None where they do not
    # apply, and the composition of the ops above runs instead
    fused_norm_linear: Callable | None = None
    fused_gated_linear: Callable | None = None

    def add_norm_linear(self, x, delta, norm_weight, eps: float, weight, bias=None):
        """(x + delta, linear(rms_norm(x + delta), weight, bias)): a residual add, the norm after
        it and the projection of the normed row."""
        if self.fused_norm_linear is not None:
            fused = self.fused_norm_linear(x, delta, norm_weight, eps, weight, bias)
            if fused is not None:
                return fused
        x, h = self.add_rms_norm(x, delta, norm_weight, eps)
        return x, self.linear(h, weight, bias)

    def gated_linear(self, gate_up, weight):
        """linear(silu(gate) * up, weight) of a [gate | up] row: a gated MLP's down projection."""
        if self.fused_gated_linear is not None:
            fused = self.fused_gated_linear(gate_up, weight)
            if fused is not None:
                return fused
        return self.linear(self.silu_mul(gate_up), weight)


EAGER = Ops()


def compiled_function(fn: Callable) -> Callable:
    """fn as one torch.compile'd (generated-kernel) function; back to eager if the toolchain fails."""
    compiled = torch.compile(fn, dynamic=None, fullgraph=True)
    current = [compiled]

    def call(*args, **kwargs):
        try:
            return current[0](*args, **kwargs)
        except Exception as error:  # an unsupported toolchain must not change the results
            if current[0] is fn:
                raise
            log.warning("torch.compile of %s failed (%s); using eager", fn.__name__, error)
            current[0] = fn
            return fn(*args, **kwargs)

    return call


def compiled_ops() -> Ops:
    return Ops(rms_norm=compiled_function(rms_norm), add_rms_norm=compiled_function(add_rms_norm),
               rope=compiled_function(apply_rope), silu_mul=compiled_function(silu_mul))
