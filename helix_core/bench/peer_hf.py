"""The same shape in Hugging Face transformers on one GPU, static KV cache, as a peer baseline.

The static cache is filled with random data to the context (like our runs) and each step
decodes one token per sequence at the next position; CUDA events time `steps` forward calls.
"""
from __future__ import annotations

import statistics

import torch

from .shapes import SHAPES


def hf_config(shape: str, layers: int | None = None, **overrides):
    """The transformers config of a bench shape (overrides: e.g. smaller dims for a CPU test).

    A shape without routed experts must be dense in every layer: DeepSeek-V3's config otherwise
    turns layers >= first_k_dense_replace (3 by default) into MoE layers, which with 0 experts
    fail in transformers ("cannot reshape tensor of 0 elements into shape [-1, 8, 0]").
    """
    from transformers import AutoConfig

    raw = dict(SHAPES[shape])
    if layers:
        raw["num_hidden_layers"] = layers
    raw.update(overrides)
    model_type = raw.pop("model_type")
    if model_type == "deepseek_v3" and not raw.get("n_routed_experts"):
        raw["first_k_dense_replace"] = raw["num_hidden_layers"]
    return AutoConfig.for_model(model_type, **raw)


def time_hf(shape: str, layers: int | None, batch: int, context: int, dtype: str, steps: int) -> dict:
    from transformers import AutoModelForCausalLM, StaticCache

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    config = hf_config(shape, layers)
    device = torch.device("cuda", 0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation="sdpa").eval()
    cache = StaticCache(config=config, max_cache_len=context + steps + 8)
    ids = torch.ones(batch, 1, dtype=torch.long, device=device)
    times = []
    with torch.inference_mode():
        position = torch.full((batch, 1), context - 1, device=device)
        model(ids, position_ids=position, cache_position=torch.tensor([context - 1], device=device),
              past_key_values=cache, use_cache=True)  # allocates the cache
        for layer in cache.layers:
            for tensor in (layer.keys, layer.values):
                tensor.normal_()
        for step in range(steps + 3):
            pos = context + step
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(ids, position_ids=torch.full((batch, 1), pos, device=device),
                  cache_position=torch.tensor([pos], device=device), past_key_values=cache, use_cache=True)
            stop.record()
            torch.cuda.synchronize()
            if step >= 3:
                times.append(start.elapsed_time(stop) / 1e3)
    del model, cache
    torch.cuda.empty_cache()
    return {"shape": shape, "plan": "hf-transformers", "gpus": 1, "gpu_name": torch.cuda.get_device_name(device),
            "context": context, "batch": batch, "dtype": {"bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype),
            "layers": config.num_hidden_layers,
            "ttl_median_s": statistics.median(times), "ttl_p99_s": sorted(times)[int(0.99 * (len(times) - 1))],
            "tokens_per_s": batch / statistics.median(times), "kv": "random data (no prefill)",
            "peer": "transformers, static cache, sdpa"}
