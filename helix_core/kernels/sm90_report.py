"""What ptxas says about a decode-kernel launch config, compiled for Hopper (sm_90a) on any machine.

No GPU needed: Triton compiles the kernel for a named target and its bundled ptxas assembles it.
The report (registers a thread, spill bytes, shared memory, tensor-core and async-copy instructions)
is what decides the MLA tiles (docs/benchmarks.md, 2026-12-03): a 64 x 512 fp32 accumulator over
8 warps takes 254 registers; 128 heads with the values in two parts 235 and no spills.

    python -m helix_core.kernels.sm90_report                      # the default configs of the bench shapes
    python -m helix_core.kernels.sm90_report --shape mla --config 32,128,8,2,2   # block_n,block_h,warps,stages,dv_parts
    python -m helix_core.kernels.sm90_report --config 64,16,4,3,1,1   # GQA, the block table read a tile ahead
    python -m helix_core.kernels.sm90_report --shape mla --config 32,64,8,3,1,1,1   # P through memory
    python -m helix_core.kernels.sm90_report --gluon-mla          # the sm_90 Gluon MLA kernel (Triton 3.5+)

Arguments are specialized the way Triton's launcher specializes them for the engine's tensors:
pointers and the page / row strides divisible by 16; the per-split LSE strides not.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

ARCH = 90
SHARED_LIMIT = 232448  # bytes of shared memory one block may use on sm_90 (227 KB)
_POINTER_TYPES = {"BLOCK_TABLE": "*i32", "LENGTHS": "*i32", "GROUP_KV": "*i32", "GROUP_HEADS": "*i32",
                  "COUNTERS": "*i32", "A_SCRATCH": "*fp32", "OUT": "*fp32", "LSE": "*fp32", "FOUT": "*fp32",
                  "FLSE": "*fp32"}
_NOT_ALIGNED = {"qk_scale", "num_splits", "stride_lh", "stride_ls", "stride_flh"}  # splits: any count


@dataclass(frozen=True)
class KernelReport:
    registers: int
    spill_bytes: int
    shared_bytes: int
    wgmma: int  # Hopper warpgroup MMA instructions in the PTX
    mma_sync: int  # Ampere-style MMA instructions
    cp_async: int  # asynchronous global-to-shared copies (software-pipelined loads)
    griddepcontrol: int  # programmatic-dependent-launch instructions (launch_dependents / wait)
    dot_warps: tuple[str, ...] = ()  # warpsPerCTA of each Hopper MMA layout in the TTGIR (e.g. "[4, 2]")
    tma: int = 0  # TMA (bulk tensor) copies in the PTX
    l2_prefetch: int = 0  # bulk L2 prefetches (cp.async.bulk.prefetch.L2) in the PTX
    setmaxnreg: int = 0  # register re-allocations between warp-specialized partitions
    clock_reads: int = 0  # reads of %clock64 / %globaltimer (a measurement trace)
    # global stores in the PTX by the bytes each thread writes (e.g. {8: 128, 16: 64}): how wide the stores are
    global_stores: tuple[tuple[int, int], ...] = ()
    global_atomics: int = 0  # atom.global instructions in the PTX (the fused merge's grid barrier)
    acquire_loads: int = 0  # ld.global.*.acquire in the PTX (a barrier's polling)
    traps: int = 0  # trap instructions in the PTX (a bounded wait's failure)

    def fits(self) -> bool:
        return self.spill_bytes == 0 and self.shared_bytes <= SHARED_LIMIT


def _ptxas_candidates() -> list[str]:
    import triton

    found = glob.glob(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas*"))
    return sorted(found, key=lambda p: "blackwell" not in p)  # the newest first: it reads the newest PTX


def _assemble(ptx: str) -> str:
    """ptxas -v output for the PTX, from the first bundled ptxas that accepts its version."""
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as fh:
            fh.write(ptx)
        for ptxas in _ptxas_candidates():
            run = subprocess.run([ptxas, "-v", f"--gpu-name=sm_{ARCH}a", src, "-o", os.path.join(tmp, "k.o")],
                                 capture_output=True, text=True, timeout=300)
            if run.returncode == 0:
                return run.stderr + run.stdout
            errors.append(f"{os.path.basename(ptxas)}: {run.stderr.strip()[-300:]}")
    raise RuntimeError("no bundled ptxas assembled the kernel: " + " | ".join(errors or ["none found"]))


def decode_kernel_report(dk: int, dv: int, *, values_are_keys: bool, block_n: int, block_h: int, num_warps: int,
                         num_stages: int, dv_parts: int = 1, page_size: int = 16, dtype: str = "bf16",
                         pdl: bool = False, pages_ahead: bool = False, probs_via_memory: bool = False) -> KernelReport:
    """Compile the split kernel of `paged_decode_attention` for one launch config and assemble it
    (pdl: the variant that lets a programmatic-dependent merge launch early)."""
    from .decode_launch import split_kernel_constants

    consts = split_kernel_constants(dk, dv, values_are_keys, False, dv_parts, page_size, block_n, block_h,
                                    num_warps, num_stages, upcast=False, probs_via_memory=probs_via_memory)
    options = {"num_warps": consts.pop("num_warps"), "num_stages": consts.pop("num_stages")}
    consts.update(FINAL=False, FUSED=False, MERGE_H=2, MERGE_S=2, MERGE_LS=2, PDL=pdl,
                  PAGES_AHEAD=bool(pages_ahead))
    types = dict(_POINTER_TYPES, Q=f"*{dtype}", K=f"*{dtype}", V=f"*{dtype}", P_SCRATCH=f"*{dtype}", qk_scale="fp32")
    return _report("_decode_split_kernel", consts, options, types, _NOT_ALIGNED)


def merge_kernel_report(dv: int, parts: int, pdl: bool = False, prefetch: bool = False,
                        partials: str = "fp32") -> KernelReport:
    """The split merge of `paged_decode_attention` (`split_merge.launch_merge`'s config) for Dv value dims and `parts`
    splits, on partials laid out [B, H, parts, Dv] (pdl: launched as a programmatic dependent; prefetch: the
    variant that ends by asking for a bf16 tensor's first bytes in L2; partials: their dtype)."""
    from .split_merge import merge_kernel_constants

    consts = merge_kernel_constants(dv, parts, lse_in_log2=True, pdl=pdl, prefetch=prefetch,
                                    partial_bits=32 if partials == "fp32" else 16)
    options = {"num_warps": consts.pop("num_warps"), "num_stages": 3, "launch_pdl": consts.pop("launch_pdl")}
    types = {"PART_OUT": f"*{partials}", "PART_LSE": "*fp32", "OUT": "*fp32", "LSE": "*fp32", "next_ptr": "*bf16"}
    return _report("_merge_kernel", consts, options, types,
                   {"num_parts", "stride_pl_p", "stride_pl_0", "stride_pl_1", "stride_l_0", "stride_l_1",
                    "prefetch_bytes"})


def sliced_kernel_report(kernel: str, dim: int, *, max_group: int = 1, page_size: int = 16, dtype: str = "fp16",
                         pages_ahead: bool | None = None) -> KernelReport:
    """One of headslice's sliced kernels ("scores": partial q.k over `dim` key dims; "values": softmax and
    P.V over `dim` value dims) with `paged_sliced_attention`'s default config for that width (pages_ahead:
    override the block-table mode)."""
    from . import next_pow2
    from .decode_launch import DecodeConfig
    from .sliced_decode import sliced_launch

    consts = sliced_launch(DecodeConfig(pages_ahead=pages_ahead), max_group, dim, dtype == "fp32",
                                 page_size, upcast=False)
    options = {"num_warps": consts.pop("num_warps"), "num_stages": consts.pop("num_stages")}
    pointers = {"BLOCK_TABLE": "*i32", "LENGTHS": "*i32", "GROUP_KV": "*i32", "GROUP_HEADS": "*i32",
                "SCORES": "*fp32"}
    if kernel == "scores":
        consts.update(DK=dim, BLOCK_DK=max(16, next_pow2(dim)), QK_FP32=False)
        types = dict(pointers, Q=f"*{dtype}", K=f"*{dtype}")
        return _report("_partial_scores_kernel", consts, options, types, {"num_splits", "num_keys"},
                       module="_triton_sliced")
    consts.update(DV=dim, BLOCK_DV=max(16, next_pow2(dim)), FINAL=False)
    types = dict(pointers, V=f"*{dtype}", OUT="*fp32", LSE="*fp32", qk_scale="fp32")
    return _report("_softmax_values_kernel", consts, options, types,
                   {"qk_scale", "num_splits", "num_keys", "stride_lh", "stride_ls"}, module="_triton_sliced")


def gluon_mla_report(page_size: int = 64, *, final: bool = False, tma: bool = True, dtype: str = "bf16",
                     trace: bool = False, q_tma: bool = False, staged_store: bool = False,
                     partials: str = "fp32", fused_merge: bool = False, merge_splits: int = 66,
                     probe: int = 0, even_splits: bool = False) -> KernelReport:
    """The sm_90 Gluon MLA kernel (kernels/_gluon_mla.py) as `mla_sm90.launch` builds it for a cache of
    `page_size`-key pages (tma: whole tiles by TMA where the page size allows; final: one split; trace: with
    the programs' clock readings written out; q_tma: the queries by TMA too; staged_store: the outputs through
    shared memory; partials: the dtype the outputs are written in; fused_merge: the splits merged by the kernel
    itself, merge_splits of them (66: 128 heads' one wave at batch 1; 132: 64 heads'); probe: the PROBE bits,
    measurement only; even_splits: split lengths within a tile of each other)."""
    import torch

    from . import mla_sm90

    pages = torch.empty(2, page_size, 1, mla_sm90.KEY_DIM, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)
    from triton.runtime.jit import mangle_type

    rows = mla_sm90.tma_box_rows(pages) if tma else 0
    consts = dict(PAGE_SIZE=page_size, TMA_ROWS=rows, FINAL=final, PROBE=probe, WORKER_REGS=mla_sm90.WORKER_REGS,
                  TRACE_ON=trace, Q_TMA=q_tma, STAGED_STORE=staged_store, FUSED_MERGE=fused_merge,
                  MERGE_P=mla_sm90.merge_width(merge_splits) if fused_merge else 16, EVEN_SPLITS=even_splits)
    types = dict(_POINTER_TYPES, Q=f"*{dtype}", K=f"*{dtype}", OUT=f"*{partials}", LSE="*fp32", TRACE="*i64",
                 qk_scale="fp32", FOUT=f"*{dtype}", FLSE="*fp32", COUNTERS="*i32")
    types["K_DESC"] = mangle_type(mla_sm90.key_descriptor(pages, rows)) if rows else f"*{dtype}"
    query = torch.empty(1, 128, mla_sm90.KEY_DIM, dtype=pages.dtype)
    types["Q_DESC"] = mangle_type(mla_sm90.query_descriptor(query)) if q_tma else f"*{dtype}"
    return _report("_mla_decode_kernel", consts, {"num_warps": 4}, types,
                   _NOT_ALIGNED | {"K_DESC", "Q_DESC", "q_rows_per_seq"}, module="_gluon_mla")


def row_kernel_report(input_mode: str = "plain", *, pdl: bool = True, block_n: int = 8, block_k: int = 512,
                      num_warps: int = 4, num_stages: int = 4, dtype: str = "bf16", ahead: bool = False,
                      k: int = 4096, prefetch: bool = False) -> KernelReport:
    """The one-row projection kernel of kernels/small_linear.py (input_mode: plain, gated, norm, or merge:
    the KVP merge of 2 partials of 128-value heads, from an exchange buffer whose head stride is 129 values),
    unsplit, on whole tiles, for rows of k values (the norm statistics' step depends on it); prefetch: the
    variant that ends by asking for another tensor's first bytes in L2."""
    from . import kernel_module
    from .small_linear import norm_block

    mode = kernel_module("_triton_gemv").INPUT_MODES[input_mode]
    consts = dict(BLOCK_N=block_n, BLOCK_K=block_k, EVEN=True, INPUT=mode, HAS_B=input_mode == "norm", PDL=pdl,
                  RTNE_BY_BITS=False, AHEAD=ahead, NORM_BLOCK=norm_block(k), PREFETCH=prefetch, NUM_WARPS=num_warps)
    if input_mode == "merge":
        consts.update(PARTS=2, DV=128)
    options = {"num_warps": num_warps, "num_stages": num_stages, "launch_pdl": pdl}
    types = {name: f"*{dtype}" for name in ("a_ptr", "b_ptr", "norm_ptr", "total_ptr", "w_ptr", "y_ptr", "next_ptr")}
    if input_mode == "merge":
        types["a_ptr"] = "*fp32"
    types["eps"] = "fp32"
    return _report("_row_kernel", consts, options, types, {"eps", "stride_ys", "stride_head", "prefetch_bytes"},
                   module="_triton_gemv")


def rope_append_report(dim: int = 128, value_dim: int = 128, dtype: str = "bf16") -> KernelReport:
    """The fast path's RoPE + KV append kernel (kernels/rope_append.py) for heads of `dim` dims."""
    from . import next_pow2
    from .rope_append import BLOCK_H

    consts = dict(HALF=dim // 2, BLOCK_H=BLOCK_H, BLOCK_HALF=next_pow2(dim // 2), BLOCK_DV=next_pow2(value_dim),
                  RTNE_BY_BITS=False)
    types = {name: f"*{dtype}" for name in ("q_ptr", "k_ptr", "v_ptr", "q_out_ptr", "key_ptr", "value_ptr")}
    types.update(cos_ptr="*fp32", sin_ptr="*fp32", slot_ptr="*i64")
    return _report("_rope_append_kernel", consts, {"num_warps": 4, "num_stages": 1}, types, set(),
                   module="_triton_rope_append")


def _report(name: str, consts: dict, options: dict, types: dict, not_aligned: set,
            module: str = "_triton_decode") -> KernelReport:
    """Compile kernel `name` of `module` with these constants for sm_90a; arguments not in `types`
    are i32, and all but `not_aligned` are specialized as multiples of 16."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from . import interpret_mode, kernel_module

    if module.startswith("_gluon"):  # Gluon kernels build their IR from a source type of their own
        from triton.experimental.gluon._runtime import GluonASTSource as ASTSource

    if interpret_mode():  # triton.language's own jit helpers (tl.cdiv) are then interpreter functions
        raise RuntimeError("unset TRITON_INTERPRET to compile kernels for sm_90")
    kernel = getattr(kernel_module(module), name)
    names = kernel.arg_names
    missing = set(consts) - set(names)
    if missing:
        raise ValueError(f"constants {name} does not take: {sorted(missing)}")
    signature, attrs = {}, {}
    for index, arg in enumerate(names):
        if arg in consts:
            signature[arg] = "constexpr"
            continue
        signature[arg] = types.get(arg, "i32")
        if arg not in not_aligned:
            attrs[(index,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn=kernel, signature=signature, attrs=attrs,
                       constexprs={(names.index(k),): v for k, v in consts.items()})
    compiled = triton.compile(source, target=GPUTarget("cuda", ARCH, 32), options=options)
    ptx = compiled.asm["ptx"]
    info = _assemble(ptx)
    registers = re.search(r"Used (\d+) registers", info)
    spills = re.search(r"(\d+) bytes spill stores", info)
    if registers is None:
        raise RuntimeError(f"no register count in the ptxas report: {info[-500:]}")
    return KernelReport(registers=int(registers.group(1)), spill_bytes=int(spills.group(1)) if spills else 0,
                        shared_bytes=int(compiled.metadata.shared), wgmma=ptx.count("wgmma.mma_async"),
                        mma_sync=len(re.findall(r"\bmma\.sync", ptx)), cp_async=ptx.count("cp.async.cg"),
                        griddepcontrol=ptx.count("griddepcontrol."),
                        dot_warps=tuple(re.findall(r"nvidia_mma<\{versionMajor = 3[^}]*warpsPerCTA = (\[[0-9, ]+\])",
                                                   compiled.asm["ttgir"])),
                        tma=ptx.count("cp.async.bulk.tensor"), setmaxnreg=ptx.count("setmaxnreg."),
                        l2_prefetch=ptx.count("cp.async.bulk.prefetch.L2"),
                        clock_reads=ptx.count("%clock64") + ptx.count("%globaltimer"),
                        global_stores=_global_stores(ptx), global_atomics=ptx.count("atom.global"),
                        acquire_loads=len(re.findall(r"ld\.global(\.[a-z]+)*\.acquire", ptx)),
                        traps=len(re.findall(r"\btrap;", ptx)))


def _global_stores(ptx: str) -> tuple[tuple[int, int], ...]:
    """(bytes a thread, count) of the PTX's st.global instructions, narrowest first."""
    counts: dict[int, int] = {}
    for vec, bits in re.findall(r"\bst\.global(?:\.[a-z0-9_]+)*?(?:\.v(\d))?\.[bfu](\d+)\b", ptx):
        size = int(vec or 1) * int(bits) // 8
        counts[size] = counts.get(size, 0) + 1
    return tuple(sorted(counts.items()))


# the bench shapes: llama3-8b's GQA (group 4, 128 dims), DeepSeek-V3's absorbed MLA (128 heads, 576 / 512)
# and its TP=2 shard (64 heads a GPU), the 16 x 512 MHA example
SHAPES = {"gqa": dict(dk=128, dv=128, values_are_keys=False, heads=32, kv_heads=8),
          "mla": dict(dk=576, dv=512, values_are_keys=True, heads=128, kv_heads=1),
          "mla-64": dict(dk=576, dv=512, values_are_keys=True, heads=64, kv_heads=1),
          "mha512": dict(dk=512, dv=512, values_are_keys=False, heads=16, kv_heads=16)}


def default_configs(shape: str) -> list[tuple[str, tuple[int, ...]]]:
    """(label, (block_n, block_h, num_warps, num_stages, dv_parts, pages_ahead, probs_via_memory)) of the defaults `resolve_launch`
    picks for a shape: one per side of the long-context switch where there is one."""
    import torch

    from .decode_launch import DecodeConfig, long_context_keys, resolve_launch
    from .head_groups import HeadGroups

    spec = SHAPES[shape]
    groups = HeadGroups.from_group_size(spec["heads"], spec["heads"] // spec["kv_heads"])
    switch = long_context_keys(spec["dk"], spec["dv"], groups.max_group, torch.bfloat16)
    lengths = [("", 131072)] if switch is None else [("short", switch - 1), ("long", switch)]
    out = []
    for label, length in lengths:
        launch = resolve_launch(spec["dk"], spec["dv"], groups, 1, length, False, DecodeConfig(), torch.device("cpu"),
                                spec["values_are_keys"])
        out.append((f"{shape} default{' ' + label if label else ''}",
                    (launch.block_n, launch.block_h, launch.num_warps, launch.num_stages, launch.dv_parts,
                     launch.pages_ahead, launch.probs_via_memory)))
    return out


def _print_gluon_mla() -> int:
    failed = 0
    print(f"{'page':>4} regs  spill  shared_KB  wgmma  cp.async  tma  setmaxnreg  MMA warps (TTGIR)")
    for page in (64, 16, 4):
        r = gluon_mla_report(page)
        failed += not r.fits()
        print(f"{page:4d} {r.registers:4d} {r.spill_bytes:6d} {r.shared_bytes / 1024:10.1f} {r.wgmma:6d} {r.cp_async:9d} "
              f"{r.tma:4d} {r.setmaxnreg:11d}  {' '.join(r.dot_warps) or '-'}")
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="gqa",
                   help="gqa: 32 q / 8 KV heads x 128; mla: 128 heads over a 576 / 512 latent; mla-64: 64 heads; "
                        "mha512: 16 heads x 512")
    p.add_argument("--config", action="append", default=[],
                   help="block_n,block_h,num_warps,num_stages[,dv_parts[,pages_ahead[,probs_via_memory]]]; repeatable "
                        "(default: the defaults)")
    p.add_argument("--gluon-mla", action="store_true",
                   help="the sm_90 Gluon MLA kernel instead (pages of 64, 16 and 4 keys; needs Triton with Gluon)")
    args = p.parse_args(argv)
    if args.gluon_mla:
        return _print_gluon_mla()
    shape = args.shape
    spec = SHAPES[shape]
    configs = []
    for text in args.config:
        values = tuple(int(v) for v in text.split(","))
        if len(values) not in (4, 5, 6, 7):
            p.error(f"--config {text}: give block_n,block_h,num_warps,num_stages[,dv_parts[,pages_ahead"
                    "[,probs_via_memory]]]")
        configs.append((text, values + (1, 0, 0)[len(values) - 4:]))
    configs = configs or default_configs(shape)
    failed = 0
    print(f"{'config':28s} regs  spill  shared_KB  wgmma  mma.sync  cp.async  MMA warps (TTGIR)")
    for label, (bn, bh, warps, stages, parts, ahead, via_memory) in configs:
        try:
            r = decode_kernel_report(spec["dk"], spec["dv"], values_are_keys=spec["values_are_keys"], block_n=bn,
                                     block_h=bh, num_warps=warps, num_stages=stages, dv_parts=parts, pages_ahead=ahead,
                                     probs_via_memory=bool(via_memory))
        except Exception as exc:  # e.g. ptxas out of registers for a config
            failed += 1
            print(f"{label:28s} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        failed += not r.fits()
        print(f"{label:28s} {r.registers:4d} {r.spill_bytes:6d} {r.shared_bytes / 1024:10.1f} {r.wgmma:6d} "
              f"{r.mma_sync:9d} {r.cp_async:9d}  {' '.join(r.dot_warps) or '-'}"
              f"{'' if r.fits() else '  (spills or over the shared limit)'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
