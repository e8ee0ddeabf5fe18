"""Rotary position embeddings, computed exactly as Hugging Face transformers computes them.

Frequencies follow ``transformers.modeling_rope_utils`` op for op in fp32, so inverse frequencies equal
HF's bit for bit and cos/sin stay exact even at million-token positions. Conventions are HF's:
``emb = cat(freqs, freqs)`` and the ``rotate_half`` rotation, which pairs dim ``i`` with ``i + d/2``.
"""
from __future__ import annotations

import math

import torch

from helix_core.config import ModelConfig, RopeConfig


def rope_inv_freq(rope: RopeConfig) -> tuple[torch.Tensor, float]:
    """fp32 inverse frequencies (length ``rope.rotary_dim // 2``) and the factor that scales cos/sin."""
    inv_freq = _default_inv_freq(rope.theta, rope.rotary_dim)
    if rope.rope_type == "default":
        return inv_freq, 1.0
    if rope.rope_type == "linear":
        return inv_freq / rope.params["factor"], 1.0
    if rope.rope_type == "llama3":
        return _llama3_inv_freq(inv_freq, rope.params), 1.0
    if rope.rope_type == "yarn":
        return _yarn_inv_freq(rope)
    raise ValueError(f"unsupported rope_type {rope.rope_type!r}")


def rope_cos_sin(
    inv_freq: torch.Tensor, attention_scaling: float, positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape ``positions.shape + (2 * len(inv_freq),)``, fp32.

    ``inv_freq`` may be any slice ``[a:b]`` of a head's frequencies: the result then equals the full
    cos/sin restricted to dims ``[a:b]`` and ``[d/2 + a : d/2 + b]``, in that order.
    """
    freqs = positions[..., None].float() * inv_freq.to(device=positions.device, dtype=torch.float32)
    emb = torch.cat((freqs, freqs), dim=-1)
    if attention_scaling == 1.0:  # x * 1.0 == x: two kernels fewer in a decode step
        return emb.cos(), emb.sin()
    return emb.cos() * attention_scaling, emb.sin() * attention_scaling


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape ``[..., tokens, heads, dim]`` by ``cos``/``sin`` of shape ``[..., tokens, dim]``.

    cos/sin are broadcast over the heads axis. The math runs in fp32; the result has ``x``'s dtype.
    """
    xf = x.float()
    cos = cos.float().unsqueeze(-2)
    sin = sin.float().unsqueeze(-2)
    return (xf * cos + _rotate_half(xf) * sin).to(x.dtype)


def deinterleave_rope_dims(dim: int) -> torch.Tensor:
    """Permutation ``p`` with ``apply_rope(x[..., p]) == HF apply_rotary_pos_emb_interleave(x)``.

    DeepSeek checkpoints lay rotary dims out as pairs ``(x0, x1), (x2, x3), ...``; gathering the even dims
    then the odd dims turns them into the ``rotate_half`` layout, so weight rows can be permuted once at load.
    """
    if dim % 2:
        raise ValueError(f"rotary dim must be even, got {dim}")
    return torch.cat((torch.arange(0, dim, 2), torch.arange(1, dim, 2)))


def mla_softmax_scale(config: ModelConfig) -> float:
    """DeepSeek MLA attention scale, as HF's ``DeepseekV3Attention.scaling``.

    ``qk_head_dim ** -0.5``, times ``yarn_get_mscale(factor, mscale_all_dim) ** 2`` whenever the RoPE is
    not 'default' and ``mscale_all_dim`` is set and non-zero (HF checks exactly that, for any rope type).
    A config without ``factor`` uses the factor YaRN derives (HF itself fails on such a config here).
    """
    if not config.is_mla:
        raise ValueError(f"mla_softmax_scale is for MLA models, got model_type={config.model_type!r}")
    scale = (config.qk_nope_head_dim + config.qk_rope_head_dim) ** -0.5
    rope = config.rope
    mscale_all_dim = rope.params.get("mscale_all_dim") or 0
    if rope.rope_type != "default" and mscale_all_dim:
        mscale = _yarn_get_mscale(_scaling_factor(rope), mscale_all_dim)
        scale = scale * mscale * mscale
    return scale


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _default_inv_freq(theta: float, dim: int) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim))


def _llama3_inv_freq(inv_freq: torch.Tensor, params: dict) -> torch.Tensor:
    factor = params["factor"]
    low_freq_factor = params["low_freq_factor"]
    high_freq_factor = params["high_freq_factor"]
    old_context_len = params["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor

    wavelen = 2 * math.pi / inv_freq
    # Long wavelengths are interpolated by `factor`, short ones kept, the band between blended smoothly.
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def _scaling_factor(rope: RopeConfig) -> float:
    """YaRN's ``factor``; DeepSeek-style configs may leave it out and imply it by the two context lengths."""
    factor = rope.params.get("factor")
    if factor is None:
        factor = rope.max_position_embeddings / _original_max_positions(rope)
    return factor


def _original_max_positions(rope: RopeConfig) -> int:
    return rope.params.get("original_max_position_embeddings") or rope.max_position_embeddings


def _yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def _yarn_attention_factor(rope: RopeConfig, factor: float) -> float:
    attention_factor = rope.params.get("attention_factor")
    if attention_factor is not None:
        return attention_factor
    mscale = rope.params.get("mscale")
    mscale_all_dim = rope.params.get("mscale_all_dim")
    if mscale and mscale_all_dim:
        return float(_yarn_get_mscale(factor, mscale) / _yarn_get_mscale(factor, mscale_all_dim))
    return _yarn_get_mscale(factor)


def _yarn_inv_freq(rope: RopeConfig) -> tuple[torch.Tensor, float]:
    dim, base = rope.rotary_dim, rope.theta
    factor = _scaling_factor(rope)
    original_max_positions = _original_max_positions(rope)
    beta_fast = rope.params.get("beta_fast") or 32
    beta_slow = rope.params.get("beta_slow") or 1
    truncate = rope.params.get("truncate", True)

    def correction_dim(num_rotations: float) -> float:
        # The dim whose wavelength makes `num_rotations` turns over the original context.
        return (dim * math.log(original_max_positions / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # HF's guard against a zero-width ramp

    pos_freqs = base ** (torch.arange(0, dim, 2).to(torch.float32) / dim)
    inv_freq_extrapolation = 1.0 / pos_freqs
    inv_freq_interpolation = 1.0 / (factor * pos_freqs)
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    extrapolation_weight = 1 - ramp
    inv_freq = (
        inv_freq_interpolation * (1 - extrapolation_weight) + inv_freq_extrapolation * extrapolation_weight
    )
    return inv_freq, _yarn_attention_factor(rope, factor)
