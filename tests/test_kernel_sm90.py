"""The decode kernel's default launch configs, compiled for Hopper (sm_90a) without a GPU.

Triton compiles for a named target and its bundled ptxas assembles the result, so CI checks what a
GPU run would find first: a default that spills registers or needs more shared memory than a block
may have. Compiled in a child process: the kernel tests turn Triton's interpreter on, under which
Triton cannot compile for a GPU.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

if importlib.util.find_spec("triton") is None:  # not imported here: the kernel tests set the interpreter first
    pytest.skip("triton is not installed", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SNIPPET = """
import json, sys
from dataclasses import asdict
from helix_core.kernels import sm90_report as r
out = {}
for shape in ("gqa", "mla", "mla-64", "mha512"):
    spec = r.SHAPES[shape]
    for label, (bn, bh, warps, stages, parts, ahead, via_memory) in r.default_configs(shape):
        out[label] = asdict(r.decode_kernel_report(spec["dk"], spec["dv"], values_are_keys=spec["values_are_keys"],
                                                   block_n=bn, block_h=bh, num_warps=warps, num_stages=stages,
                                                   dv_parts=parts, pages_ahead=ahead, probs_via_memory=via_memory))
# GQA's default stages without the block table read ahead: Triton does not multi-buffer the K/V loads
out["gqa not ahead"] = asdict(r.decode_kernel_report(128, 128, values_are_keys=False, block_n=64, block_h=16,
                                                     num_warps=4, num_stages=3, pages_ahead=False))
# the long-context MLA tile before the value parts: 64 heads, one 64 x 512 accumulator over 8 warps
out["mla one part"] = asdict(r.decode_kernel_report(576, 512, values_are_keys=True, block_n=32, block_h=64,
                                                    num_warps=8, num_stages=2, dv_parts=1))
# the split merge: GQA's 128 values over 66 splits (batch 1 x 128K), MLA's 512 over 16 (4 x 128K)
out["merge 128 x 66"] = asdict(r.merge_kernel_report(128, 66))
out["merge 512 x 16"] = asdict(r.merge_kernel_report(512, 16))
out["merge 512 x 66 bf16"] = asdict(r.merge_kernel_report(512, 66, partials="bf16"))  # the MLA kernel's bf16 option
# programmatic dependent launch: the split kernel lets the merge start, the merge waits for its writes
out["gqa pdl"] = asdict(r.decode_kernel_report(128, 128, values_are_keys=False, block_n=64, block_h=16,
                                               num_warps=4, num_stages=3, pdl=True, pages_ahead=True))
out["merge 128 x 66 pdl"] = asdict(r.merge_kernel_report(128, 66, pdl=True))
# headslice's sliced kernels on a 2 x 2 rank of the 16 x 512 example (256 dims a slice), fp16
for kernel in ("scores", "values"):
    out[f"sliced {kernel}"] = asdict(r.sliced_kernel_report(kernel, 256))
    out[f"sliced {kernel} not ahead"] = asdict(r.sliced_kernel_report(kernel, 256, pages_ahead=False))
# the one-row projection kernel, with and without PDL, each way of building its input; RoPE + KV append
for mode in ("plain", "gated", "norm", "merge"):
    out[f"row {mode}"] = asdict(r.row_kernel_report(mode, pdl=False))
    out[f"row {mode} pdl"] = asdict(r.row_kernel_report(mode, pdl=True))
out["row norm pdl prefetch"] = asdict(r.row_kernel_report("norm", pdl=True, prefetch=True))
out["row merge pdl prefetch"] = asdict(r.row_kernel_report("merge", pdl=True, prefetch=True))
out["merge 128 x 66 pdl prefetch"] = asdict(r.merge_kernel_report(128, 66, pdl=True, prefetch=True))
out["rope append"] = asdict(r.rope_append_report())
# the sm_90 Gluon MLA kernel (Triton with Gluon only): pages of 64 and 16 keys (TMA), 4 (cp.async only), one split
from helix_core.kernels import mla_sm90
if mla_sm90.gluon_hopper_available():
    for page in (64, 16, 4):
        out[f"gluon mla page {page}"] = asdict(r.gluon_mla_report(page))
    out["gluon mla page 64 final"] = asdict(r.gluon_mla_report(64, final=True))
    out["gluon mla page 64 traced"] = asdict(r.gluon_mla_report(64, trace=True))
    out["gluon mla page 64 q tma"] = asdict(r.gluon_mla_report(64, q_tma=True))
    out["gluon mla page 64 bf16 partials"] = asdict(r.gluon_mla_report(64, partials="bf16"))
    for partials in ("fp32", "bf16"):
        out[f"gluon mla page 64 staged {partials}"] = asdict(r.gluon_mla_report(64, q_tma=True, staged_store=True,
                                                                                partials=partials))
    for page in (64, 16):  # the splits merged in the kernel: TMA tiles, and the 4-box tiles of 16-key pages
        out[f"gluon mla page {page} staged fused"] = asdict(r.gluon_mla_report(page, q_tma=True, staged_store=True,
                                                                               fused_merge=True))
    out["gluon mla page 64 staged fused 132"] = asdict(r.gluon_mla_report(64, q_tma=True, staged_store=True,
                                                                          fused_merge=True, merge_splits=132))
    out["gluon mla page 64 staged even splits"] = asdict(r.gluon_mla_report(64, q_tma=True, staged_store=True,
                                                                           even_splits=True))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path_factory.mktemp("triton-cache"))  # compile for real, not from a cache
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, env=env, timeout=600)
    if "no bundled ptxas" in run.stderr:
        pytest.skip("this Triton has no ptxas bundled")
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_default_configs_fit_an_sm90_block(reports):
    from helix_core.kernels.sm90_report import SHARED_LIMIT

    assert {k for k in reports if not k.startswith("gluon")} == {"gqa default", "mla default", "mla-64 default short", "mla-64 default long",
                            "mla one part", "merge 128 x 66", "merge 512 x 16", "merge 512 x 66 bf16", "gqa pdl",
                            "merge 128 x 66 pdl",
                            "gqa not ahead", "sliced scores", "sliced scores not ahead", "sliced values",
                            "sliced values not ahead", "rope append", "mha512 default",
                            *(f"row {mode}{pdl}" for mode in ("plain", "gated", "norm", "merge") for pdl in ("", " pdl")),
                            "row norm pdl prefetch", "row merge pdl prefetch", "merge 128 x 66 pdl prefetch"}
    for label, r in reports.items():
        if label in ("mla one part", "mla-64 default long"):
            continue  # below
        assert r["spill_bytes"] == 0, (label, r)
        assert r["registers"] <= 255 and r["shared_bytes"] <= SHARED_LIMIT, (label, r)
        if not label.startswith(("merge", "row", "rope")):
            assert r["cp_async"] > 0, (label, r)  # the KV loads are software-pipelined


def test_gluon_mla_kernel_is_warp_specialized_and_loads_by_tma(reports):
    """The sm_90 Gluon MLA kernel: two warpgroups with their own registers (setmaxnreg), each MMA a warpgroup's
    own 64-head tile ([4, 1]: no score computed twice), whole tiles loaded by TMA in boxes of min(page, 64)
    keys (four times the boxes at 16-key pages), cp.async only for the partial last tile, and for every
    tile where pages are too small for a box; no spills, within an sm_90 block's shared memory."""
    from helix_core.kernels.sm90_report import SHARED_LIMIT

    if "gluon mla page 64" not in reports:
        pytest.skip("this Triton has no Gluon")
    for label in ("gluon mla page 64", "gluon mla page 16", "gluon mla page 4", "gluon mla page 64 final"):
        r = reports[label]
        assert r["spill_bytes"] == 0 and r["registers"] <= 255 and r["shared_bytes"] <= SHARED_LIMIT, (label, r)
        assert r["wgmma"] > 0 and r["mma_sync"] == 0, (label, r)
        assert r["dot_warps"] == ["[4, 1]", "[4, 1]"], (label, r)
        assert r["setmaxnreg"] > 0 and r["cp_async"] > 0, (label, r)
    assert reports["gluon mla page 64"]["tma"] > 0
    assert reports["gluon mla page 16"]["tma"] == 4 * reports["gluon mla page 64"]["tma"]
    assert reports["gluon mla page 4"]["tma"] == 0
    q_tma = reports["gluon mla page 64 q tma"]  # 9 more boxes: Q's 576 dims in 64-dim boxes
    assert q_tma["tma"] == reports["gluon mla page 64"]["tma"] + 9 and q_tma["spill_bytes"] == 0
    assert q_tma["shared_bytes"] <= SHARED_LIMIT


def test_the_gluon_mla_trace_reads_clocks_only_when_asked(reports):
    """The measurement trace (TRACE_ON) adds clock reads, and nothing that costs shared memory or spills."""
    if "gluon mla page 64" not in reports:
        pytest.skip("this Triton has no Gluon")
    plain, traced = reports["gluon mla page 64"], reports["gluon mla page 64 traced"]
    assert plain["clock_reads"] == 0 and traced["clock_reads"] >= 9
    assert traced["spill_bytes"] == 0 and traced["shared_bytes"] == plain["shared_bytes"]
    assert traced["wgmma"] == plain["wgmma"] and traced["tma"] == plain["tma"]


@pytest.mark.parametrize("partials, elem", [("fp32", 4), ("bf16", 2)])
def test_the_gluon_mla_staged_store_writes_whole_sectors_in_the_same_shared_memory(reports, partials, elem):
    """A warpgroup's [64 heads, 256 values] outputs are 64 x 256 x elem / 128 = 128 x elem bytes a thread. Stored
    from the MMA layout, a thread holds 2 adjacent values a row (8 bytes in fp32, 4 in bf16: half a 32-byte
    sector per 4 threads); staged through shared memory it writes 4 adjacent values (16 / 8 bytes: whole sectors),
    in half the instructions, reusing the key buffers (no shared memory added) and spilling nothing."""
    if "gluon mla page 64" not in reports:
        pytest.skip("this Triton has no Gluon")
    per_thread = 2 * 128 * elem  # both partitions' code: each thread runs one of them
    direct = reports["gluon mla page 64" if partials == "fp32" else "gluon mla page 64 bf16 partials"]
    staged = reports[f"gluon mla page 64 staged {partials}"]
    # besides, warpgroup 0 writes the 64 LSEs once: a thread of the MMA layout holds 2 rows, so two 4-byte stores
    lse_stores = {4: 2}

    def outputs(report):
        stores = dict(report["global_stores"])
        for size, count in lse_stores.items():
            stores[size] -= count
        return {size: count for size, count in stores.items() if count}
    assert outputs(direct) == {2 * elem: per_thread // (2 * elem)}
    assert outputs(staged) == {4 * elem: per_thread // (4 * elem)}
    assert staged["shared_bytes"] == reports["gluon mla page 64 q tma"]["shared_bytes"]
    assert staged["spill_bytes"] == 0 and staged["registers"] <= 255
    assert staged["wgmma"] == direct["wgmma"] and staged["tma"] == direct["tma"] + 9  # + Q's boxes


@pytest.mark.parametrize("page, splits", [(64, ""), (16, ""), (64, " 132")])
def test_the_gluon_mla_fused_merge_adds_a_grid_barrier_and_nothing_to_the_tile_loop(reports, page, splits):
    """The kernel that merges its own splits: the same MMAs and TMA copies as the kernel before it, no spills
    (its merge runs past the partitions, out of their registers), no more shared memory, and its grid barrier:
    an arrival and a departure (atomic adds), the last one's reset (an exchange), an acquiring poll, and the trap
    that ends a wait gone on for seconds (kept by the compiler); also with 132 splits (a 64-head block's one
    wave: more chunks of splits a row, a wider LSE pass)."""
    if "gluon mla page 64" not in reports:
        pytest.skip("this Triton has no Gluon")
    plain = reports["gluon mla page 64 staged fp32"] if page == 64 else reports["gluon mla page 16"]
    fused = reports[f"gluon mla page {page} staged fused{splits}"]
    assert fused["spill_bytes"] == 0 and fused["registers"] <= 255, fused
    assert fused["shared_bytes"] == reports["gluon mla page 64 staged fp32"]["shared_bytes"]
    assert fused["wgmma"] == plain["wgmma"] and fused["setmaxnreg"] == plain["setmaxnreg"]
    assert fused["tma"] == plain["tma"] + (9 if page == 16 else 0)  # + Q's boxes (page 16's plain has none)
    assert plain["global_atomics"] == 0 and plain["acquire_loads"] == 0 and plain["traps"] == 0
    assert fused["global_atomics"] == 3 and fused["acquire_loads"] >= 1 and fused["traps"] == 1


def test_mla_uses_hopper_tensor_cores_with_registers_to_spare(reports):
    long, one_part = reports["mla default"], reports["mla one part"]
    assert long["wgmma"] > 0 and long["mma_sync"] == 0  # 128 heads: warpgroup MMA, not the Ampere path
    # why the values are in two parts: one part's accumulator takes (nearly) every register
    assert one_part["registers"] >= 250
    assert long["registers"] < one_part["registers"]
    assert reports["gqa default"]["mma_sync"] > 0  # 16-row head blocks: below the 64-row wgmma tile


def test_tp_sharded_mla_tile_splits_the_scores_over_both_warpgroups(reports):
    """64 heads a GPU (deepseek-mla under TP=2) take the one-part 64-head tile with P through memory: in
    registers the score dot stacks all 8 warps along the 64 heads ([8, 1]: both warpgroups compute every
    score); through memory both dots spread them [4, 2], so the tile issues about half the warpgroup MMAs.
    Its 64 x 512 accumulator holds 255 registers with Triton 3.6 (no spills; 3.9 spills 16 bytes, 132 for
    the register-P tile): a Triton upgrade needs a new sweep."""
    tp, one_part = reports["mla-64 default long"], reports["mla one part"]
    assert one_part["dot_warps"] == ["[4, 2]", "[8, 1]"]
    assert tp["dot_warps"] == ["[4, 2]", "[4, 2]"]
    assert tp["wgmma"] < 0.6 * one_part["wgmma"]
    assert tp["cp_async"] > one_part["cp_async"]  # three K buffers: the P reads are not pipelined, the K loads are
    assert tp["registers"] >= 250 and tp["shared_bytes"] <= 232448 and tp["wgmma"] > 0


def test_pdl_variants_carry_grid_dependency_control(reports):
    """Only the PDL variants hold griddepcontrol instructions, and they cost the kernels nothing else."""
    for plain, pdl in (("gqa default", "gqa pdl"), ("merge 128 x 66", "merge 128 x 66 pdl")):
        assert reports[plain]["griddepcontrol"] == 0, plain
        assert reports[pdl]["griddepcontrol"] >= 1, pdl
        assert reports[pdl]["spill_bytes"] == 0
        assert reports[pdl]["shared_bytes"] == reports[plain]["shared_bytes"]


def test_one_row_projections_wait_for_the_previous_kernel_only_with_pdl(reports):
    """The PDL variant of the one-row kernel lets its dependent launch and waits once (after its first
    weight tile); the fused inputs cost no spills."""
    for mode in ("plain", "gated", "norm", "merge"):
        plain, pdl = reports[f"row {mode}"], reports[f"row {mode} pdl"]
        assert plain["griddepcontrol"] == 0 and pdl["griddepcontrol"] == 2, mode
        assert plain["spill_bytes"] == 0 and pdl["spill_bytes"] == 0, mode


def test_gqa_default_multi_buffers_kv_tiles(reports):
    """Why GQA reads the block table a tile ahead: only then do three stages give two K/V buffers (two
    64-key x 128-dim bf16 K and V tiles are 64 KB); with the tile's own block-table load in the way, Triton
    keeps one buffer (32 KB) whatever the stage count."""
    ahead, not_ahead = reports["gqa default"], reports["gqa not ahead"]
    tile_pair = 2 * 64 * 128 * 2
    assert ahead["shared_bytes"] >= 2 * tile_pair
    assert tile_pair <= not_ahead["shared_bytes"] < 2 * tile_pair
    assert ahead["cp_async"] > not_ahead["cp_async"]


def test_sliced_kernels_multi_buffer_by_default(reports):
    """The same for headslice's kernels, each holding one 64-key x 256-dim fp16 tile (K or V, 32 KB)."""
    tile = 64 * 256 * 2
    for kernel in ("scores", "values"):
        ahead, not_ahead = reports[f"sliced {kernel}"], reports[f"sliced {kernel} not ahead"]
        assert ahead["shared_bytes"] >= 2 * tile, kernel
        assert tile <= not_ahead["shared_bytes"] < 2 * tile, kernel
        assert ahead["cp_async"] > not_ahead["cp_async"], kernel


def test_one_row_projection_and_split_merge_can_end_with_an_l2_prefetch(reports):
    """The prefetch variants of the one-row kernel and of the split merge: one bulk L2 prefetch a thread
    (cp.async.bulk.prefetch.L2, sm_90), in no other variant; no spills, and the one-row kernel with no more
    registers than it needs at its widest without it (the look-ahead variant's 96)."""
    for mode in ("norm", "merge"):
        with_prefetch = reports[f"row {mode} pdl prefetch"]
        assert with_prefetch["l2_prefetch"] == 1 and with_prefetch["spill_bytes"] == 0, (mode, with_prefetch)
        assert with_prefetch["griddepcontrol"] == 2 and with_prefetch["registers"] <= 96, (mode, with_prefetch)
    merge = reports["merge 128 x 66 pdl prefetch"]  # the split merge before a KVP exchange
    assert merge["l2_prefetch"] == 1 and merge["spill_bytes"] == 0 and merge["griddepcontrol"] == 1, merge
    assert all(r.get("l2_prefetch", 0) == 0 for label, r in reports.items() if "prefetch" not in label)
