"""GPU kernels (Triton) for Helix serving.

Everything here imports on a machine without Triton or CUDA: Triton is imported only when a
kernel is first launched. `triton_available()` says whether it can be; callers keep the torch
reference path (helix_core.attention) as the fallback.

Entry points:
  paged_decode_attention(q, key_pages, value_pages, block_table, lengths, scale, kv_head_of_q)
                                         (decode_attention.py; its launch config: decode_launch.py)
  decode_attention_for_step(cache, layer, seq_ids, q, scale, kv_head_of_q, value_dim)
  build_block_table(cache, seq_ids, device)            (block_tables.py)
  HeadGroups(kv_head_of_q)               precomputed query-head grouping, no host sync per call (head_groups.py)
  merge_partials(outs, lses)             Triton LSE merge of disjoint KV shards, the KVP merge (split_merge.py)
  decode_kernel_usable(q)                whether the fast decode path applies to this tensor
  paged_sliced_attention(...)            (sliced_decode.py) headslice m > 1: partial q.k scores, a
                                         caller's all-reduce of them, then softmax and P.V
Micro-benchmarks (CUDA): bench_decode.py, bench_sliced.py, bench_small_linear.py.
"""
from __future__ import annotations

import os

_TRITON_OK: bool | None = None


def triton_available() -> bool:
    """True when `import triton` works (tried once; a broken install counts as unavailable)."""
    global _TRITON_OK
    if _TRITON_OK is None:
        try:
            import triton.language  # noqa: F401  (imports triton too)
            _TRITON_OK = True
        except Exception:  # not installed, broken install, missing driver libraries, ...
            _TRITON_OK = False
    return _TRITON_OK


def interpret_mode() -> bool:
    """Triton's CPU interpreter is on (TRITON_INTERPRET=1): kernels run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def next_pow2(n: int) -> int:
    """The least power of two >= n (1 for n <= 1): Triton's block sizes."""
    return 1 << max(0, int(n) - 1).bit_length()


_KERNEL_MODULES: dict = {}
_SM_COUNT: dict[int, int] = {}


def sm_count(device) -> int:
    """Streaming multiprocessors of a CUDA device (cached); 8 off-GPU (interpreter), small so
    tests exercise several splits cheaply."""
    if device.type != "cuda":
        return 8
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


_PDL_BY_DEVICE: dict[int, bool] = {}


def pdl_usable(device) -> bool:
    """Programmatic dependent launch is possible here: compiled Triton (not the interpreter) with grid
    dependency control (Triton 3.4+), on a CUDA device of compute capability 9.0 or newer."""
    if device.type != "cuda" or interpret_mode() or not triton_available():
        return False
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _PDL_BY_DEVICE:  # asked once per device: this runs on every decode call
        try:
            from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait  # noqa: F401
            has_gdc = True
        except ImportError:
            has_gdc = False
        _PDL_BY_DEVICE[index] = has_gdc and torch.cuda.get_device_capability(index)[0] >= 9
    return _PDL_BY_DEVICE[index]


def l2_prefetch_usable(device) -> bool:
    """Bulk L2 prefetches (cp.async.bulk.prefetch.L2) can be issued: compiled Triton on an sm_90+ GPU, the
    conditions of `pdl_usable`."""
    return pdl_usable(device)


def l2_prefetch_request(target, nbytes: int):
    """(target, bytes) that a kernel's L2 prefetch may take: the first min(nbytes, target's size) bytes rounded
    down to 16, of a contiguous tensor starting on 16 bytes (the bulk prefetch's alignment); None where that
    leaves nothing to ask for."""
    if target is None or not target.is_contiguous() or target.data_ptr() % 16:
        return None
    nbytes = min(int(nbytes), target.nbytes) // 16 * 16
    return (target, nbytes) if nbytes else None


def kernel_module(name: str):
    """The module of @triton.jit kernels `helix_core.kernels.<name>`, imported on first use and
    re-imported when TRITON_INTERPRET changed since (its INTERPRET records how it was built)."""
    import importlib

    if not triton_available():
        raise RuntimeError("Triton is not installed/importable: this kernel is unavailable (the torch "
                           "reference path is the fallback)")
    module = _KERNEL_MODULES.get(name)
    if module is None:
        module = importlib.import_module(f"{__name__}.{name}")
    elif module.INTERPRET != interpret_mode():
        module = importlib.reload(module)
    _KERNEL_MODULES[name] = module
    return module


_LAZY = {  # public name: the module that defines it (imported on first access: it imports torch)
    "paged_decode_attention": "decode_attention", "decode_kernel_usable": "decode_attention",
    "decode_attention_for_step": "block_tables", "build_block_table": "block_tables",
    "HeadGroups": "head_groups", "merge_partials": "split_merge", "DecodeConfig": "decode_launch",
    "choose_num_splits": "decode_launch",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)


__all__ = [  # noqa: RUF022
    "triton_available", "interpret_mode", "paged_decode_attention", "decode_attention_for_step",
    "build_block_table", "HeadGroups", "merge_partials", "decode_kernel_usable", "DecodeConfig",
    "choose_num_splits",
]
