"""Model configuration read from a Hugging Face ``config.json``.

Only what the engine's math needs is kept. Anything the engine would silently get wrong
(quantized weights, other activations, sliding windows it cannot honour...) is refused here,
at load, with a message that names the offending field.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LLAMA_FAMILY = {"llama", "mistral", "qwen2"}
MLA_FAMILY = {"deepseek_v3"}
SUPPORTED_ROPE_TYPES = {"default", "linear", "llama3", "yarn"}


class UnsupportedConfigError(ValueError):
    """The checkpoint's config asks for something the engine does not implement."""


@dataclass(frozen=True)
class RopeConfig:
    """RoPE of one model: ``rope_type`` in SUPPORTED_ROPE_TYPES plus that type's parameters."""

    rope_type: str
    theta: float
    rotary_dim: int  # number of rotated dimensions of a query/key head
    max_position_embeddings: int
    params: dict[str, Any] = field(default_factory=dict)  # factor, low_freq_factor, beta_fast, ...


@dataclass(frozen=True)
class ModelConfig:
    model_type: str  # llama | mistral | qwen2 | deepseek_v3
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int  # GQA: q/k/v head size. MLA: qk head size (nope + rope)
    intermediate_size: int
    rms_norm_eps: float
    tie_word_embeddings: bool
    max_position_embeddings: int
    rope: RopeConfig
    qkv_bias: bool = False
    o_bias: bool = False
    sliding_window: int | None = None
    # MLA (DeepSeek-V3)
    q_lora_rank: int | None = None
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    rope_interleave: bool = False
    # MoE (DeepSeek-V3)
    n_routed_experts: int = 0
    n_shared_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    n_group: int = 1
    topk_group: int = 1
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    first_k_dense_replace: int = 0
    moe_layer_freq: int = 1
    eos_token_ids: tuple[int, ...] = ()
    checkpoint_dtype: str = "float32"

    @property
    def is_mla(self) -> bool:
        return self.model_type in MLA_FAMILY

    @property
    def value_head_dim(self) -> int:
        return self.v_head_dim if self.is_mla else self.head_dim

    @property
    def cached_kv_heads(self) -> int:
        """KV heads as stored in the cache: MLA caches one latent 'head'."""
        return 1 if self.is_mla else self.num_kv_heads

    def is_moe_layer(self, layer: int) -> bool:
        return (
            self.n_routed_experts > 0
            and layer >= self.first_k_dense_replace
            and layer % max(self.moe_layer_freq, 1) == 0
        )

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> "ModelConfig":
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no config.json; a model folder is in Hugging Face format")
        return cls.from_dict(json.loads(path.read_text()))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ModelConfig":
        return _parse(raw)


def _require(raw: dict[str, Any], key: str) -> Any:
    if raw.get(key) is None:
        raise UnsupportedConfigError(f"config field '{key}' is missing")
    return raw[key]


def _refuse_unsupported(raw: dict[str, Any], model_type: str) -> None:
    quant = raw.get("quantization_config")
    if quant:
        method = quant.get("quant_method", "?") if isinstance(quant, dict) else quant
        raise UnsupportedConfigError(
            f"config field 'quantization_config' (quant_method={method!r}): quantized checkpoints are not "
            "supported yet; convert the weights to bf16/fp16/fp32 first"
        )
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedConfigError(f"config field 'hidden_act'={act!r}: only 'silu' is supported")
    if raw.get("pretraining_tp", 1) not in (1, None):
        raise UnsupportedConfigError("config field 'pretraining_tp' must be 1")
    if raw.get("mlp_bias"):
        raise UnsupportedConfigError("config field 'mlp_bias'=true is not supported")
    if model_type == "qwen2" and raw.get("use_sliding_window"):
        raise UnsupportedConfigError("config field 'use_sliding_window'=true (Qwen2) is not supported")
    if raw.get("partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedConfigError("config field 'partial_rotary_factor' must be 1.0")


def _rope_section(raw: dict[str, Any]) -> dict[str, Any]:
    """HF v5 writes 'rope_parameters' (with rope_theta inside); v4 wrote 'rope_scaling' + 'rope_theta'."""
    section = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    if "rope_theta" not in section:
        section["rope_theta"] = raw.get("rope_theta", 10000.0)
    rope_type = section.get("rope_type") or section.get("type") or "default"
    section["rope_type"] = rope_type
    return section


def _parse_rope(raw: dict[str, Any], rotary_dim: int, max_pos: int) -> RopeConfig:
    section = _rope_section(raw)
    rope_type = section["rope_type"]
    field_name = "rope_parameters" if "rope_parameters" in raw else "rope_scaling"
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise UnsupportedConfigError(
            f"config field '{field_name}.rope_type'={rope_type!r}: supported are {sorted(SUPPORTED_ROPE_TYPES)}"
        )
    params = {k: v for k, v in section.items() if k not in ("rope_type", "type", "rope_theta")}
    if rope_type in ("linear", "llama3") and "factor" not in params:
        raise UnsupportedConfigError(f"config field '{field_name}.factor' is missing for {rope_type} RoPE")
    if rope_type == "llama3":
        for key in ("low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
            if key not in params:
                raise UnsupportedConfigError(f"config field '{field_name}.{key}' is missing for llama3 RoPE")
    if rope_type == "yarn" and "original_max_position_embeddings" not in params:
        params["original_max_position_embeddings"] = raw.get("original_max_position_embeddings", max_pos)
    return RopeConfig(rope_type, float(section["rope_theta"]), rotary_dim, max_pos, params)


def _eos_ids(raw: dict[str, Any]) -> tuple[int, ...]:
    eos = raw.get("eos_token_id")
    if eos is None:
        return ()
    return tuple(eos) if isinstance(eos, list) else (int(eos),)


def _parse(raw: dict[str, Any]) -> ModelConfig:
    model_type = raw.get("model_type")
    if model_type not in LLAMA_FAMILY | MLA_FAMILY:
        raise UnsupportedConfigError(
            f"config field 'model_type'={model_type!r}: supported are {sorted(LLAMA_FAMILY | MLA_FAMILY)}"
        )
    _refuse_unsupported(raw, model_type)
    hidden = int(_require(raw, "hidden_size"))
    heads = int(_require(raw, "num_attention_heads"))
    max_pos = int(raw.get("max_position_embeddings", 4096))
    common = dict(
        model_type=model_type,
        vocab_size=int(_require(raw, "vocab_size")),
        hidden_size=hidden,
        num_layers=int(_require(raw, "num_hidden_layers")),
        num_heads=heads,
        intermediate_size=int(_require(raw, "intermediate_size")),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        max_position_embeddings=max_pos,
        eos_token_ids=_eos_ids(raw),
        checkpoint_dtype=str(raw.get("dtype") or raw.get("torch_dtype") or "float32"),
    )
    if model_type in MLA_FAMILY:
        return _parse_mla(raw, common)
    head_dim = int(raw.get("head_dim") or hidden // heads)
    sliding = raw.get("sliding_window") if model_type == "mistral" else None
    return ModelConfig(
        **common,
        num_kv_heads=int(raw.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        rope=_parse_rope(raw, head_dim, max_pos),
        qkv_bias=model_type == "qwen2" or bool(raw.get("attention_bias", False)),
        o_bias=model_type != "qwen2" and bool(raw.get("attention_bias", False)),
        sliding_window=int(sliding) if sliding else None,
    )


def _parse_mla(raw: dict[str, Any], common: dict[str, Any]) -> ModelConfig:
    if raw.get("attention_bias"):
        raise UnsupportedConfigError("config field 'attention_bias'=true is not supported for MLA")
    if raw.get("topk_method", "noaux_tc") != "noaux_tc":
        raise UnsupportedConfigError(f"config field 'topk_method'={raw['topk_method']!r}: only 'noaux_tc'")
    if raw.get("scoring_func", "sigmoid") != "sigmoid":
        raise UnsupportedConfigError(f"config field 'scoring_func'={raw['scoring_func']!r}: only 'sigmoid'")
    nope = int(_require(raw, "qk_nope_head_dim"))
    rope_dim = int(_require(raw, "qk_rope_head_dim"))
    experts = int(raw.get("n_routed_experts") or 0)
    n_group = int(raw.get("n_group") or 1)
    if experts and experts % n_group:
        raise UnsupportedConfigError(f"config field 'n_group'={n_group} must divide n_routed_experts={experts}")
    q_lora = raw.get("q_lora_rank")
    return ModelConfig(
        **common,
        num_kv_heads=1,
        head_dim=nope + rope_dim,
        rope=_parse_rope(raw, rope_dim, common["max_position_embeddings"]),
        q_lora_rank=int(q_lora) if q_lora else None,
        kv_lora_rank=int(_require(raw, "kv_lora_rank")),
        qk_nope_head_dim=nope,
        qk_rope_head_dim=rope_dim,
        v_head_dim=int(_require(raw, "v_head_dim")),
        rope_interleave=bool(raw.get("rope_interleave", True)),
        n_routed_experts=experts,
        n_shared_experts=int(raw.get("n_shared_experts") or 0),
        num_experts_per_tok=int(raw.get("num_experts_per_tok") or 0),
        moe_intermediate_size=int(raw.get("moe_intermediate_size") or 0),
        n_group=n_group,
        topk_group=int(raw.get("topk_group") or 1),
        norm_topk_prob=bool(raw.get("norm_topk_prob", True)),
        routed_scaling_factor=float(raw.get("routed_scaling_factor", 1.0)),
        first_k_dense_replace=int(raw.get("first_k_dense_replace") or 0),
        moe_layer_freq=int(raw.get("moe_layer_freq") or 1),
    )
