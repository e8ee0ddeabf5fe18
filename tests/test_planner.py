"""The planner: presets, layouts, memory accounting against the engine's, choose_plan, the CLI,
and profiles from bench JSON (on synthetic rows; the real ones are in test_planner_bench.py)."""
import itertools
import json
import random
from pathlib import Path

import pytest

from helix_core.config import ModelConfig
from helix_core.plan import Plan
from helix_core.planner import NoPlanError, choose, choose_plan, get_profile, load_model, profile_from_bench
from helix_core.planner.cli import main as plan_main, parse_count
from helix_core.planner.cost import CostOptions, Workload, attention_work, evaluate, memory
from helix_core.planner.fit import attention_case, attention_kernel_s, fit_attention, predict
from helix_core.planner.frontier import best_for_budget, pareto, sweep
from helix_core.planner.hardware import PROFILES
from helix_core.planner.layouts import ENGINE_KINDS, KINDS, Layout, candidates, layout_of_plan, layouts, refusal
from helix_core.planner.presets import PRESETS

from test_engine_memory import llama_weight_elements, mla_weight_elements


def test_presets_parse_with_the_engines_config_reader():
    r1 = load_model("DeepSeek-R1")
    assert (r1.num_layers, r1.hidden_size, r1.num_heads, r1.kv_lora_rank, r1.n_routed_experts) == (61, 7168, 128, 512, 256)
    assert sum(r1.is_moe_layer(i) for i in range(61)) == 58 and r1.cached_kv_heads == 1
    big = load_model("meta-llama-3.1-405B")
    assert (big.num_layers, big.hidden_size, big.num_kv_heads, big.intermediate_size) == (126, 16384, 8, 53248)
    mha = load_model("mha-16x512")
    assert (mha.num_heads, mha.num_kv_heads, mha.head_dim, mha.hidden_size) == (16, 16, 512, 8192)
    assert load_model("llama-3-8b", layers=2).num_layers == 2
    for name in PRESETS:
        assert isinstance(load_model(name), ModelConfig)
    with pytest.raises(ValueError, match="unknown model preset"):
        load_model("gpt-5")


@pytest.mark.parametrize("model,spec", [
    ("llama-3-8b", "tp:n=4"), ("llama-3-8b", "helix:kvp=2,tpa=4"), ("llama-3-8b", "tp:n=16"),
    ("llama-3.1-405b", "helix:kvp=8,tpa=8"), ("mha-16x512", "headslice:n=2,m=4"),
    ("deepseek-r1", "helix:kvp=8,tpa=1,ep=8"), ("deepseek-r1", "tp:n=8,ep=4"), ("deepseek-r1", "helix:kvp=64,tpa=1"),
])
def test_weight_bytes_match_the_engines_own_formula(model, spec):
    """tests/test_engine_memory.py checks these formulas against every rank's real bytes."""
    cfg = load_model(model)
    plan = Plan.parse(spec)
    plan.validate(cfg)
    held, _ = memory(cfg, layout_of_plan(plan), Workload(1024, 1, "fp32"))
    if cfg.is_mla:
        elements, bias = mla_weight_elements(cfg, plan, 0)
        expected = (elements + bias) * 4
    else:
        expected = llama_weight_elements(cfg, plan, 0) * 4
    assert held == pytest.approx(expected, rel=1e-3)


def test_kv_bytes_are_never_duplicated_under_helix_and_are_under_tp():
    cfg = load_model("llama-3-8b")  # 8 KV heads
    work = Workload(100_000, 4, "bf16")
    total = 4 * 100_000 * cfg.num_layers * 2 * 8 * 128 * 2
    assert memory(cfg, Layout("helix", 16, attn_tp=8, kvp=2), work)[1] == pytest.approx(total / 16)
    assert memory(cfg, Layout("tp", 16, attn_tp=16), work)[1] == pytest.approx(total / 8)  # duplicated x2
    # DP 8 over 4 sequences: a GPU holds one whole sequence's KV for half the KV heads
    assert memory(cfg, Layout("dp_attn", 16, attn_tp=2, dp=8), work)[1] == pytest.approx(total / 4 / 2)


def test_engine_layouts_are_exactly_those_the_engine_validates():
    for name in ("llama-3-8b", "deepseek-r1", "mha-16x512", "llama-3.1-405b"):
        cfg = load_model(name)
        for n in (1, 2, 3, 4, 6, 8, 12, 16, 64):
            for layout in candidates(cfg, n, ENGINE_KINDS):
                plan = layout.engine_plan()
                try:
                    plan.validate(cfg)
                    ok = True
                except ValueError:
                    ok = False
                assert ok == (refusal(cfg, layout) is None), (name, plan.spec())
    # layouts the engine cannot run have no engine plan
    assert all(lay.engine_plan() is None for lay in candidates(load_model("llama-3-8b"), 8, ("pp", "dp_attn", "medha")))


def test_medha_keeps_tp_within_the_kv_heads_and_helix_keeps_tpa_there():
    cfg = load_model("llama-3.1-405b")
    assert {lay.attn_tp for lay in layouts(cfg, 64, ("medha",))} <= {1, 2, 4, 8}
    assert {lay.attn_tp for lay in layouts(cfg, 64, ("helix",))} <= {1, 2, 4, 8}
    assert not layouts(load_model("deepseek-r1"), 8, ("headslice",))  # MLA has no head dims to slice


def test_hopb_never_slows_a_step_and_helps_when_the_exchange_is_big():
    cfg = load_model("deepseek-r1")
    hw = get_profile("gb200-nvl72")
    lay = Layout("helix", 16, attn_tp=1, kvp=16)
    for batch in (1, 4, 32, 128):
        work = Workload(1_000_000, batch, "fp4")
        on = evaluate(cfg, lay, hw, work)
        off = evaluate(cfg, lay, hw, work, CostOptions(hopb=False))
        assert on.ttl_s <= off.ttl_s and off.hopb_pieces == 1
    assert on.ttl_s < 0.97 * off.ttl_s and on.hopb_pieces > 1


def test_short_context_prefers_tp_long_context_prefers_helix_beyond_the_kv_heads():
    assert choose_plan(load_model("llama-3-8b"), 8, "h200", context=4096, batch=1).kind == "tp"
    plan = choose_plan("llama-3.1-405b", 16, "gb200-nvl72", context=131072, batch=8)
    assert plan.kind == "helix" and plan.groups <= 8 and plan.world_size == 16
    plan = choose_plan("deepseek-r1", 16, "gb200-nvl72", context=131072, batch=4)
    assert plan.kind == "helix" and plan.kvp == 16


def test_short_context_high_concurrency_deepseek_prefers_data_parallel_attention():
    cfg = load_model("deepseek-r1")
    points = sweep(cfg, get_profile("gb200-nvl72"), 4096, gpus=(8, 16), batches=(256, 1024, 2048), weight_dtype="fp8")
    assert max(points, key=lambda p: p.gpu).layout.kind == "dp_attn"


def test_choose_plan_refuses_what_does_not_fit_and_reports_a_missed_budget():
    with pytest.raises(NoPlanError, match="no plan fits"):
        choose("deepseek-r1", 8, "h200", context=4096, batch=1)  # 1.3 TB of bf16 weights on 8 x 141 GB
    with pytest.raises(NoPlanError, match="positions"):
        choose("llama-3-8b", 8, "h200", context=100_000, batch=1)
    with pytest.raises(NoPlanError, match="engine runs"):
        choose("llama-3-8b", 8, "h200", context=4096, batch=1, dtype="fp4")
    with pytest.raises(NoPlanError, match="NVLink domain"):
        choose("llama-3-8b", 16, "h200", context=4096, batch=1)
    with pytest.raises(NoPlanError, match="meets TTL") as err:
        choose("llama-3-8b", 8, "h200", context=8192, batch=8, ttl_budget_s=1e-4)
    assert err.value.best is not None and err.value.best.plan.world_size == 8


def test_never_recommends_a_plan_that_does_not_fit_or_that_the_engine_refuses():
    rng = random.Random(7)
    cases = [("llama-3-8b", "h100"), ("llama-3-8b", "h200"), ("mha-16x512", "h200"), ("llama-3.1-405b", "gb200-nvl72"),
             ("deepseek-r1", "gb200-nvl72"), ("deepseek-r1", "b200"), ("llama-3.1-405b", "b200")]
    checked = 0
    for _ in range(150):
        model, hw_name = rng.choice(cases)
        cfg, hw = load_model(model), get_profile(hw_name)
        gpus = rng.choice([1, 2, 3, 4, 6, 8, 16, 32, 64])
        context = rng.choice([512, 4096, 32768, 131072])
        batch = rng.choice([1, 2, 5, 16, 64, 256])
        try:
            choice = choose(cfg, gpus, hw, context=min(context, cfg.max_position_embeddings), batch=batch)
        except NoPlanError:
            continue
        choice.plan.validate(cfg)  # the engine accepts it
        assert choice.plan.world_size == gpus <= hw.domain_gpus
        assert choice.cost.weight_bytes + choice.cost.kv_bytes <= hw.hbm_bytes * hw.memory_fraction
        checked += 1
    assert checked > 40
    # every engine point of a sweep is valid and fits, too
    cfg = load_model("llama-3.1-405b")
    for p in sweep(cfg, get_profile("gb200-nvl72"), 131072, batches=(1, 8, 64), weight_dtype="fp8"):
        assert p.cost.fits
        if p.layout.engine:
            p.layout.engine_plan().validate(cfg)


def test_pareto_and_budget():
    cfg = load_model("llama-3.1-405b")
    points = sweep(cfg, get_profile("gb200-nvl72"), 1_000_000, weight_dtype="fp4")
    front = pareto(points)
    assert all(a.user > b.user and a.gpu < b.gpu for a, b in itertools.pairwise(front))
    for p in points:  # some frontier point is at least as good in both
        assert any(q.user >= p.user and q.gpu >= p.gpu for q in front)
    budget = front[len(front) // 2].ttl_s
    best = best_for_budget(points, budget)
    assert best.ttl_s <= budget and best.gpu == max(p.gpu for p in points if p.ttl_s <= budget)


def test_profile_from_bench_recovers_overheads_and_matches_every_row(tmp_path):
    """Rows shaped like `helix bench`'s (its shapes, fields and plans, HOP-B on and off, an HF peer
    row and a CPU smoke row, which are skipped), timed by a known profile with 3% noise."""
    truth = get_profile("h200").replace(hbm_bw=4.2e12, mem_efficiency=0.85, kv_read_scale=1.25,
                                        step_overhead_s=120e-6, layer_overhead_s=22e-6, seq_layer_overhead_s=0.3e-6,
                                        collective_latency_s=18e-6, flops={"bf16": 700e12, "fp8": 1400e12})
    rng = random.Random(5)
    rows = []
    grid = [("llama3-8b", 32, ["helix:kvp=2,tpa=1", "tp:n=2"], [(1, 131072), (8, 131072), (1, 1 << 20)], [2, 1]),
            ("mqa-8b", 32, ["helix:kvp=2,tpa=1", "tp:n=2"], [(4, 1 << 20)], [2, 1]),
            ("deepseek-mla", 4, ["helix:kvp=2,tpa=1", "tp:n=2", "helix:kvp=1,tpa=1"], [(4, 1 << 20), (1, 32768)], [2]),
            ("mha16x512", 8, ["headslice:n=1,m=2", "headslice:n=2,m=1", "helix:kvp=2,tpa=1"], [(8, 10000)], [2])]
    for shape, layers, plans, points, hopbs in grid:
        for spec in plans:
            for batch, context in points:
                for hopb in hopbs:
                    row = {"shape": shape, "layers": layers, "plan": spec, "gpus": Plan.parse(spec).world_size,
                           "context": context, "batch": batch, "dtype": "bfloat16", "hopb_pieces": hopb,
                           "hbm_Bps_measured": 4.2e12, "matmul_flops_measured": 700e12}
                    row["ttl_median_s"] = predict(truth, row) * rng.uniform(0.97, 1.03)
                    rows.append(row)
    peer = {"shape": "llama3-8b", "plan": "hf-transformers", "gpus": 1, "context": 131072, "batch": 1,
            "ttl_median_s": 1.0, "hbm_Bps_measured": 4e12}
    cpu = {**rows[0], "hbm_Bps_measured": None, "ttl_median_s": 5.0}
    path = tmp_path / "bench-synthetic.json"
    path.write_text(json.dumps(rows + [peer, cpu]))
    fitted = profile_from_bench([path])
    assert fitted.hbm_bw == 4.2e12 and fitted.flops["bf16"] == 700e12
    assert fitted.kv_read_scale == pytest.approx(1.25, rel=0.15)
    assert fitted.mem_efficiency == pytest.approx(0.85, rel=0.15)
    for row in rows:
        assert predict(fitted, row) == pytest.approx(row["ttl_median_s"], rel=0.08)
    fitted.save(tmp_path / "h200-measured.json")
    assert get_profile(str(tmp_path / "h200-measured.json")) == fitted


def _bench_row(shape, layers, spec, batch, context, hopb):
    return {"shape": shape, "layers": layers, "plan": spec, "gpus": Plan.parse(spec).world_size, "context": context,
            "batch": batch, "dtype": "bfloat16", "hopb_pieces": hopb, "hbm_Bps_measured": 4.3e12,
            "matmul_flops_measured": 790e12}


def test_profile_from_bench_fits_attention_rates_per_kernel_class(tmp_path, capsys):
    """Rows with attention_s (as `helix bench` writes on a GPU): the paged kernel is fitted as KV
    bytes/s per group size and head dim, MLA decode as FLOP/s, each with a time per kernel call; the
    MHA class, whose rows all do the same work per call, takes the GQA class's per-call time and gets
    its rate alone; the cost model uses them, the KV-read scale is then not fitted, and `--compare`
    prints measured against modelled."""
    truth = get_profile("h200").replace(
        hbm_bw=4.3e12, mem_efficiency=0.95, step_overhead_s=600e-6, layer_overhead_s=15e-6,
        seq_layer_overhead_s=4e-6, collective_latency_s=18e-6, flops={"bf16": 790e12, "fp8": 1580e12},
        attention={"gqa-d128": {"kv_Bps": 4.3e12, "call_s": 14e-6}, "mha-d512": {"kv_Bps": 3.2e12, "call_s": 14e-6},
                   "mla": {"flops": 84e12, "call_s": 47e-6}})
    rng = random.Random(7)
    rows = []
    for shape, layers, plans, points in [
            ("llama3-8b", 32, ["helix:kvp=2,tpa=1", "tp:n=2", "helix:kvp=1,tpa=1"], [(1, 131072), (8, 131072), (1, 1 << 20)]),
            ("mqa-8b", 32, ["helix:kvp=2,tpa=1", "tp:n=2"], [(4, 1 << 20)]),
            ("deepseek-mla", 4, ["helix:kvp=2,tpa=1", "tp:n=2", "helix:kvp=1,tpa=1"], [(4, 1 << 20), (1, 32768)]),
            ("mha16x512", 8, ["headslice:n=2,m=1", "helix:kvp=2,tpa=1"], [(8, 10000)])]:
        for spec in plans:
            for batch, context in points:
                for hopb in (2, 1):
                    row = _bench_row(shape, layers, spec, batch, context, hopb)
                    row["attention_s"] = attention_kernel_s(truth, row) * rng.uniform(0.98, 1.02)
                    row["ttl_median_s"] = predict(truth, row) * rng.uniform(0.97, 1.03)
                    rows.append(row)
    path = tmp_path / "bench-synthetic.json"
    path.write_text(json.dumps(rows))
    fitted = profile_from_bench([path])
    # deepseek-mla: helix (128 heads a GPU) is the two-part class, TP=2 (64) the one-part class; the truth
    # has one MLA rate, which the two-part class takes by fallback
    assert set(fitted.attention) == {"gqa-d128", "mha-d512", "mla", "mla-parts"}
    gqa, mha, mla = fitted.attention["gqa-d128"], fitted.attention["mha-d512"], fitted.attention["mla"]
    assert set(gqa) == set(mha) == {"kv_Bps", "call_s"} and set(mla) == {"flops", "call_s"}
    assert fitted.attention["mla-parts"]["flops"] == pytest.approx(84e12, rel=0.05)
    assert gqa["kv_Bps"] == pytest.approx(4.3e12, rel=0.05) and gqa["call_s"] == pytest.approx(14e-6, abs=5e-6)
    assert mha["call_s"] == gqa["call_s"] and mha["kv_Bps"] == pytest.approx(3.2e12, rel=0.05)
    assert mla["flops"] == pytest.approx(84e12, rel=0.05) and mla["call_s"] == pytest.approx(47e-6, abs=10e-6)
    assert fitted.kv_read_scale == 1.0  # every kernel class has a measured rate: nothing left for it to do
    for row in rows:
        assert predict(fitted, row) == pytest.approx(row["ttl_median_s"], rel=0.08)
        assert attention_kernel_s(fitted, row) == pytest.approx(row["attention_s"], rel=0.06)
    mla_row = next(r for r in rows if r["shape"] == "deepseek-mla" and r["context"] == 1 << 20)
    assert predict(get_profile("h200"), mla_row) < 0.4 * mla_row["ttl_median_s"]  # the HBM roofline: far too fast
    fitted.save(tmp_path / "h200-measured.json")
    assert get_profile(str(tmp_path / "h200-measured.json")) == fitted
    assert plan_main(["--bench", str(path), "--compare"]) == 0
    text = capsys.readouterr().out
    assert "attention mla: " in text and "TFLOP/s" in text and text.count("| bench-synthetic.json |") == len(rows)


def test_attention_kernel_class_is_the_group_size_and_head_dim_on_the_gpu():
    """The paged kernel packs the query heads of one KV head into blocks of >= 16 rows and picks its
    tiles by head dim, so its class is (group size on the GPU, head dim): g >= 2 gqa (MQA too), g = 1
    mha; TP beyond the KV heads leaves heads / t query heads on a GPU's one KV head. MLA is its own
    class; headslice with m > 1 runs the sliced kernels over its dims of a head (the torch fallback in
    bench rows from before them)."""
    work = Workload(32768, 2, "bf16")

    def kernel(model, spec, layers=2, sliced_kernels=True):
        return attention_work(load_model(model, layers), layout_of_plan(Plan.parse(spec)), work,
                              sliced_kernels=sliced_kernels).kernel

    assert kernel("llama-3-8b", "tp:n=2") == kernel("llama-3-8b", "helix:kvp=2,tpa=1") == "gqa-d128"
    assert kernel("llama-3-8b", "tp:n=16") == "gqa-d128"  # 2 query heads on the one KV head it holds
    assert kernel("llama-3-8b", "tp:n=32") == "mha-d128"  # 1 query head on its KV head
    assert kernel("mha-16x512", "headslice:n=2,m=1") == kernel("mha-16x512", "helix:kvp=2,tpa=1") == "mha-d512"
    assert kernel("mha-16x512", "headslice:n=2,m=4") == "sliced-d128"
    assert kernel("mha-16x512", "headslice:n=2,m=4", sliced_kernels=False) == "fallback"
    assert kernel("deepseek-r1", "helix:kvp=2,tpa=1") == "mla-parts"  # 128 heads a GPU: two-part tiles
    assert kernel("deepseek-r1", "tp:n=2") == "mla"  # 64 heads a GPU


def test_bench_rows_say_whether_headslice_ran_the_sliced_kernels():
    """Rows written since the sliced kernels carry attention_path; a headslice m > 1 row without it
    ran the torch path and is modelled as such (its attention is not fitted as the kernels' rate)."""
    row = _bench_row("mha16x512", 8, "headslice:n=2,m=2", 8, 10000, 1)
    assert attention_case(row).kernel == "fallback"
    assert attention_case({**row, "attention_path": "triton-sliced"}).kernel == "sliced-d256"
    old, new = predict(get_profile("h200"), row), predict(get_profile("h200"), {**row, "attention_path": "triton-sliced"})
    assert new < old / 2


def test_sliced_kernels_modelled_against_their_measured_time():
    """On one H200 (docs/results/sliced-1gpu, bench_sliced / bench_decode) a rank of headslice 2x2 on
    the 16 x 512 example (8 heads x 256 dims, 8 x 10000 keys) took 196.6 us and a rank of helix
    KVP=4 (16 heads x 512 dims, 8 x 2500 keys), which reads the same KV bytes, 194.2 us. The model's
    attention phase of the two (roofline: KV bytes, plus the sliced kernels' fp32 scores) must keep
    that ratio within 5%."""
    results = Path(__file__).resolve().parents[1] / "docs" / "results" / "sliced-1gpu"
    sliced = json.loads((results / "sliced-2x2.json").read_text())
    helix = json.loads((results / "helix-kvp4.json").read_text())
    measured = sliced["configs"][0]["graph_s"] / helix["results"][0]["configs"][0]["graph_s"]
    cfg = load_model("mha-16x512", 1)
    work = Workload(10000, 8, "fp16")
    no_overheads = CostOptions(comm=False, lm_head=False, hopb=False)
    kernels = [evaluate(cfg, layout_of_plan(Plan.parse(spec)), get_profile("h200"), work, no_overheads)
               .attention_kernel_s for spec in ("headslice:n=2,m=2", "helix:kvp=4,tpa=1")]
    modelled = kernels[0] / kernels[1]
    assert modelled == pytest.approx(measured, rel=0.05)


def test_an_unseparated_kernel_class_shares_its_familys_call_time():
    """A class whose rows all do the same work per call cannot tell its rate from its per-call time:
    it takes the per-call time of the separated classes of the paged kernel and fits the rate alone
    (least squares on the relative error); a profile's legacy "gqa" entry still applies to the
    paged kernel's classes."""
    base = get_profile("h200").replace(hbm_bw=4.3e12)
    rows = []
    for shape, layers, spec, batch, context, measured in [
            ("llama3-8b", 32, "tp:n=2", 1, 1 << 20, 16.07e-3), ("llama3-8b", 4, "tp:n=2", 2, 32768, 0.18e-3),
            ("mha16x512", 8, "headslice:n=2,m=1", 8, 10000, 3.52e-3),
            ("mha16x512", 8, "helix:kvp=2,tpa=1", 8, 10000, 3.21e-3)]:
        row = _bench_row(shape, layers, spec, batch, context, 1)
        row["attention_s"] = measured
        rows.append(row)
    fitted = fit_attention(base, rows)
    gqa, mha = fitted.attention["gqa-d128"], fitted.attention["mha-d512"]
    assert gqa["call_s"] > 0 and mha["call_s"] == gqa["call_s"]
    work = attention_case(rows[2])
    assert work.kv_bytes == attention_case(rows[3]).kv_bytes == 8 * 10000 * 8 * 2 * 512 * 2 * 8
    modelled = work.kv_bytes / mha["kv_Bps"] + 8 * mha["call_s"]
    a, b = 3.52e-3, 3.21e-3  # equal work: one time for both, minimizing (t/a - 1)^2 + (t/b - 1)^2
    assert modelled == pytest.approx((1 / a + 1 / b) / (1 / a ** 2 + 1 / b ** 2), rel=1e-9)
    assert attention_kernel_s(fitted, rows[2]) == pytest.approx(modelled)
    legacy = base.replace(attention={"gqa": dict(gqa)})
    assert legacy.attention_rates("gqa-d128") == legacy.attention_rates("mha-d512") == gqa
    assert legacy.attention_rates("mla") is None


def test_public_profiles_keep_the_roofline_for_attention():
    """Vendor profiles carry no measured attention rates: attention is max(HBM bytes, matmul FLOPs)."""
    assert all(p.attention == {} for p in PROFILES.values())
    cfg, hw = load_model("llama-3-8b"), get_profile("h200")
    work = Workload(1 << 20, 4, "bf16")
    layout = Layout("helix", 2, attn_tp=1, kvp=2)
    cost = evaluate(cfg, layout, hw, work, CostOptions(hopb=1, comm=False, lm_head=False))
    assert cost.attention_s - evaluate(cfg, layout, hw, Workload(0, 4, "bf16"), CostOptions(
        hopb=1, comm=False, lm_head=False)).attention_s == pytest.approx(cost.kv_read_s)


def test_mla_attention_flops_per_gpu_equal_for_helix_and_tp_on_two_gpus():
    """Absorbed MLA: helix KVP=2 (all 128 heads over half the tokens) and TP=2 (64 heads over all the
    tokens) do the same attention FLOPs per GPU, so with the kernel compute-bound only the kernel's rate
    per class can tell them apart: with one rate for both (a profile fitted before the two-part class)
    they tie; with the H200 rates of 2026-12-03 (223 TFLOP/s for 128 heads a GPU, 163 for 64) helix's
    attention is 0.73x TP's."""
    from helix_core.planner.presets import model_of_bench_row

    cfg = model_of_bench_row({"shape": "deepseek-mla", "layers": 4})
    work = Workload(1 << 20, 4, "bf16")
    helix = attention_work(cfg, Layout("helix", 2, attn_tp=1, kvp=2), work)
    tp = attention_work(cfg, Layout("tp", 2, attn_tp=2), work)
    assert (helix.kernel, tp.kernel) == ("mla-parts", "mla") and helix.flops == tp.flops
    assert helix.flops == 2 * 128 * (576 + 512) * (1 << 19) * 4 * 4 and helix.kv_bytes == tp.kv_bytes / 2
    options = CostOptions(hopb=1, comm=False, lm_head=False)

    def attention_s(hw, layout):
        return evaluate(cfg, layout, hw, work, options).attention_s

    one_rate = get_profile("h200").replace(attention={"mla": {"flops": 84e12, "call_s": 0.0}})
    assert attention_s(one_rate, Layout("helix", 2, attn_tp=1, kvp=2)) == pytest.approx(
        attention_s(one_rate, Layout("tp", 2, attn_tp=2)), rel=0.02)
    per_class = get_profile("h200").replace(attention={"mla": {"flops": 163e12, "call_s": 0.0},
                                                       "mla-parts": {"flops": 223e12, "call_s": 0.0}})
    ratio = attention_s(per_class, Layout("helix", 2, attn_tp=1, kvp=2)) / attention_s(per_class, Layout("tp", 2, attn_tp=2))
    assert ratio == pytest.approx(163 / 223, rel=0.03)


def test_hopb_pieces_pay_one_attention_call_each():
    """With a measured time per kernel call, HOP-B's p pieces cost p calls a layer (the engine runs
    the attention kernel once per piece); bench measured +0.48 ms for 2 pieces on 32 layers."""
    cfg = load_model("llama-3-8b")
    hw = get_profile("h200").replace(attention={"gqa-d128": {"kv_Bps": 4.3e12, "call_s": 14e-6}}, collective_latency_s=0.0,
                                     link_bw=1e18)
    work = Workload(131072, 8, "bf16")
    layout = Layout("helix", 2, attn_tp=1, kvp=2)
    one, two = (evaluate(cfg, layout, hw, work, CostOptions(hopb=p)) for p in (1, 2))
    assert two.hopb_pieces == 2 and two.ttl_s - one.ttl_s == pytest.approx(32 * 14e-6, rel=0.05)


def test_cli_prints_the_best_layout_and_the_frontier(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert plan_main(["--model", "llama-3.1-405b", "--hardware", "gb200-nvl72", "--gpus", "64", "--context", "1M",
                      "--dtype", "fp4", "--ttl-budget-ms", "20", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "best engine layout for TTL <= 20 ms: helix:kvp=" in text and "Pareto frontier" in text
    assert "exceeds the model's 131,072 positions" in text
    saved = json.loads(out.read_text())
    assert saved["best_engine"]["ttl_s"] <= 0.020 and saved["best_engine"]["engine_plan"].startswith("helix")
    assert plan_main(["--model", "nonsense"]) == 2
    assert parse_count("1M") == 1_000_000 and parse_count("128Ki") == 131072 and parse_count("4k") == 4000


@pytest.mark.parametrize("flag,value", [("--gpus", "0"), ("--context", "-5"), ("--batch", "0"), ("--context", "lots")])
def test_counts_below_one_are_usage_errors_naming_the_flag(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        plan_main(["--model", "llama-3-8b", flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}: {value!r} is not a count of at least 1" in capsys.readouterr().err


def test_cli_writes_a_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "frontier.png"
    assert plan_main(["--model", "deepseek-r1", "--hardware", "gb200", "--gpus", "16", "--context", "128k",
                      "--dtype", "fp8", "--plot", str(png), "--ttl-budget-ms", "30"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_all_kinds_are_modelled_on_a_dense_and_a_moe_model():
    hw = get_profile("gb200-nvl72")
    for name in ("llama-3.1-405b", "deepseek-r1"):
        cfg = load_model(name)
        seen = {p.layout.kind for p in sweep(cfg, hw, 131072, gpus=(8, 16, 64), batches=(1, 8), weight_dtype="fp4")}
        # MLA: no head dims to slice, and Medha's TP group is capped by the one KV head, so its FFN
        # would sit on a single GPU, which DeepSeek-R1 does not fit
        assert seen == set(KINDS) - ({"headslice", "medha"} if cfg.is_mla else set()), (name, seen)
