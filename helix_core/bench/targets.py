"""The speed issue's targets, judged from the JSON the benchmarks wrote: one table, each target's best
measurement, by how much it is met or missed, and the file and settings it came from.

    python -m helix_core.bench.targets out/*.json docs/results     # files, or folders of them at any depth

Reads `helix bench` rows (a JSON list; the HF peer's rows too), `bench_decode` reports (a dict with
"results"), and `scripts/gpu_serve_check.py` reports (a dict with "grpc_over_engine"); other JSON is skipped.
A target no file measures is listed as not measured, never as met. Each target takes the best row over
every file and setting (the table names the settings, so a result that needs a non-default flag says so).
The two-GPU and kernel targets are the issue's on H200s: measurements from other GPUs do not count for them
(bench rows name their GPU since 2026-12-05; the ones written before came from H200s). The one-GPU comparison
with transformers counts on any GPU, ours and HF's from the same one.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..engine import GQA_PAGE_SIZE

M = 1 << 20
K128 = 128 << 10
TARGET_GPU = "H200"  # the GPU the issue sets the two-GPU and kernel targets on


@dataclass
class Verdict:
    target: str
    measured: str  # the best measurement, in words; "not measured" where no file has one
    met: bool | None  # None: not measured
    source: str = ""  # file and the settings of the row behind `measured`


def json_files(paths: list[Path]) -> list[tuple[Path, str]]:
    """(file, the name it is cited by) for the files given (their names) and, for each folder given, the JSON
    files under it at any depth, in order (their paths below the folder: one-gpu-1205/kernel-gqa-32768.json)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [(file, str(file.relative_to(path))) for file in sorted(path.rglob("*.json"))]
        else:
            found.append((path, path.name))
    return found


def load(paths: list[Path]) -> tuple[list[dict], list[dict], list[dict]]:
    """(bench rows, kernel cases, serve reports) of the files and folders given, each tagged with the name its
    file is cited by in "_file" and, rows and cases, with the GPU they ran on in "_gpu" (`_gpu_group`)."""
    rows, kernels, serves = [], [], []
    for path, name in json_files(paths):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, list):
            rows += [{**r, "_file": name, "_gpu": _gpu_group(r.get("gpu_name", ""))}
                     for r in data if isinstance(r, dict) and "plan" in r and "shape" in r]
        elif isinstance(data, dict) and isinstance(data.get("results"), list):
            kernels += [{**case, "_file": name, "_gpu": _gpu_group(data.get("device", ""))}
                        for case in data["results"] if isinstance(case, dict)]
        elif isinstance(data, dict) and "grpc_over_engine" in data:
            serves.append({**data, "_file": name})
    return rows, kernels, serves


def _gpu_group(name: str) -> str:
    """TARGET_GPU for an H200, and for a row written before bench rows named their GPU (all of those ran on
    H200s); any other GPU's recorded name."""
    return TARGET_GPU if not name or TARGET_GPU in name else name


def _tokens(context: int) -> str:
    return f"{context // M}M" if context % M == 0 else f"{context // 1024}K"


def _best_pair(ours: list[dict], baselines: list[dict]) -> tuple[tuple[float, dict, dict], str] | None:
    """(our TTL / the baseline's, our row, the baseline's row) at its lowest, each of our rows against the
    baseline at its best (lowest TTL) at the same point (batch, context, layers) on the same GPU, preferring
    pairs from one file (one run), with a note where only pairs across runs exist; None without any pair."""
    def point(row):
        return row["batch"], row["context"], row.get("layers"), row["_gpu"]

    same_run, any_run = [], []
    for row in ours:
        for pairs, scope in ((same_run, row["_file"]), (any_run, None)):
            matching = [b for b in baselines if point(b) == point(row) and scope in (None, b["_file"])]
            if matching:
                base = min(matching, key=lambda b: b["ttl_median_s"])
                pairs.append((row["ttl_median_s"] / base["ttl_median_s"], row, base))
    if same_run:
        return min(same_run, key=lambda p: p[0]), ""
    return (min(any_run, key=lambda p: p[0]), " (across runs)") if any_run else None


def _settings(row: dict) -> str:
    keys = ("hopb_pieces", "all_reduce", "exchange", "o_projection", "merge_in_projection", "l2_prefetch_mib")
    return ", ".join(f"{k}={row[k]}" for k in keys if row.get(k) not in (None, "", 0.0, False))


def _source(row: dict) -> str:
    settings = _settings(row)
    return row["_file"] + (f" ({settings})" if settings else "")


def _rows(rows, shape, plan_kind, gpus, batch=None, context=None, min_tokens=None, layers=None):
    found = []
    for r in rows:
        if r.get("shape") != shape or r.get("gpus") != gpus or not r.get("ttl_median_s"):
            continue
        if not str(r.get("plan", "")).startswith(plan_kind):
            continue
        if batch is not None and (r.get("batch"), r.get("context")) != (batch, context):
            continue
        if min_tokens is not None and r["batch"] * r["context"] < min_tokens:
            continue
        if layers is not None and r.get("layers") != layers:
            continue
        found.append(r)
    return found


def roofline_target(rows, batch, context, floor) -> Verdict:
    name = f"llama3-8b 2 GPUs, {batch} x {_tokens(context)}, roofline / TTL >= {floor:.2f}"
    found = [r for r in _rows(rows, "llama3-8b", "helix", 2, batch, context) if r.get("pct_roofline")]
    if not found:
        return Verdict(name, "not measured", None)
    best = max(found, key=lambda r: r["pct_roofline"])
    share = best["pct_roofline"]
    return Verdict(name, f"{share:.3f} ({best['ttl_median_s'] * 1e3:.3f} ms; {share - floor:+.3f})", share >= floor,
                   _source(best))


def roofline_ratio(helix: dict, tp: dict, matmul_key: str = "matmul_flops_measured") -> float | None:
    """Helix's roofline TTL over TP's, both at the helix row's measured rates (HBM and `matmul_key`): the least
    TTL ratio the two plans' bytes and FLOPs per GPU allow, whatever the kernels. None where a row lacks them."""
    hbm, matmul = helix.get("hbm_Bps_measured"), helix.get(matmul_key)
    work = ("bytes_per_gpu", "flops_per_gpu")
    if not hbm or not matmul or not all(row.get(key) for row in (helix, tp) for key in work):
        return None

    def roofline(row):
        return max(row["bytes_per_gpu"] / hbm, row["flops_per_gpu"] / matmul)
    return roofline(helix) / roofline(tp)


def _bound_words(helix: dict, tp: dict) -> str:
    burst, sustained = roofline_ratio(helix, tp), roofline_ratio(helix, tp, "matmul_flops_sustained")
    if burst is None:
        return ""
    words = f"; the rooflines allow {burst:.3f}"
    return words + (f" ({sustained:.3f} at the sustained matmul rate)" if sustained is not None else "")


def plan_ratio_target(rows, shape, ceiling, layers=None) -> Verdict:
    """Helix KVP=2 TTL over TP=2 TTL at the same point (batch x context >= 4M), the best pair; with the ratio of
    the two plans' rooflines, so a miss says how much of it the hardware leaves to win."""
    name = f"{shape} 2 GPUs, >= 4M tokens, helix TTL <= {ceiling} x TP"
    best = _best_pair(_rows(rows, shape, "helix", 2, min_tokens=4 * M, layers=layers),
                      _rows(rows, shape, "tp", 2, min_tokens=4 * M, layers=layers))
    if best is None:
        return Verdict(name, "not measured", None)
    (ratio, h, t), note = best
    return Verdict(name, f"{ratio:.3f} ({h['ttl_median_s'] * 1e3:.2f} against {t['ttl_median_s'] * 1e3:.2f} ms at "
                         f"{h['batch']} x {_tokens(h['context'])}; {ratio - ceiling:+.3f}{_bound_words(h, t)}){note}",
                   ratio <= ceiling, f"helix {_source(h)}; tp {_source(t)}")


def peer_target(rows, shape, context, factor, layers=None) -> Verdict:
    name = f"{shape} 1 GPU, 1 x {_tokens(context)}, HF transformers TTL >= {factor}x ours"
    pair = _best_pair(_rows(rows, shape, "helix", 1, 1, context, layers=layers),
                      _rows(rows, shape, "hf-transformers", 1, 1, context, layers=layers))
    if pair is None:
        return Verdict(name, "not measured", None)
    (_, best, peer), note = pair
    speedup = peer["ttl_median_s"] / best["ttl_median_s"]
    return Verdict(name, f"{speedup:.1f}x ({best['ttl_median_s'] * 1e3:.3f} against {peer['ttl_median_s'] * 1e3:.2f} "
                         f"ms){note}", speedup >= factor, f"ours {_source(best)}; hf {peer['_file']}")


def _kernel_best(case: dict) -> dict | None:
    ok = [c for c in case.get("configs", []) if c.get("ok") and (c.get("graph_s") or c.get("eager_s"))]
    return min(ok, key=_seconds) if ok else None


def _seconds(config: dict) -> float:
    """A kernel config's time: in a CUDA graph where it was timed so, else eager."""
    return config.get("graph_s") or config["eager_s"]


def _engine_gqa(case: dict, best: dict | None) -> bool:
    """A GQA point (KV heads > 1) with a passing config, in the layout the engine serves (its pages, not head-major)."""
    return (not case.get("mla") and case.get("kv_heads", 0) >= 2 and best is not None
            and "head-major" not in case.get("case", "") and case.get("page_size") == GQA_PAGE_SIZE)


def gqa_kernel_targets(kernels) -> list[Verdict]:
    verdicts = []
    best_by_case: dict[str, tuple[float, dict]] = {}  # each GQA point (KV heads > 1) at >= 128K: its best run
    for case in kernels:
        best = _kernel_best(case)
        if not _engine_gqa(case, best) or case.get("context", 0) < K128:
            continue
        rate = best.get("graph_tbps") or best["eager_tbps"]
        if rate > best_by_case.get(case["case"], (0.0, None))[0]:
            best_by_case[case["case"]] = (rate, case)
    name = f"GQA decode kernel >= 4.2 TB/s of KV at >= 128K (every point, its best run; the engine's pages of {GQA_PAGE_SIZE})"
    if best_by_case:
        worst, case = min(best_by_case.values(), key=lambda p: p[0])
        verdicts.append(Verdict(name, f"{worst:.3f} TB/s at the slowest of {len(best_by_case)} points ({case['case']})",
                                worst >= 4.2, case["_file"]))
    else:
        verdicts.append(Verdict(name, "not measured", None))
    name = (f"GQA decode kernel faster than SDPA (enable_gqa) at 32K, batch 1 (each at its best over the runs; the "
            f"engine's pages of {GQA_PAGE_SIZE})")
    by_shape: dict[tuple, list[tuple[dict, dict]]] = {}  # a shape's cases (every run of it) and their best configs
    for case in kernels:
        best = _kernel_best(case)
        if (not _engine_gqa(case, best) or case.get("context") != 32 << 10 or case.get("batch") != 1
                or not case.get("sdpa_enable_gqa_s")):
            continue
        shape = tuple(case.get(key) for key in ("heads", "kv_heads", "dk", "dv", "dtype"))
        by_shape.setdefault(shape, []).append((case, best))
    margins = []
    for runs in by_shape.values():
        # each side's fastest run of the shape: a run where SDPA happened to be slow must not flatter the kernel
        ours_case, ours_best = min(runs, key=lambda p: _seconds(p[1]))
        sdpa_case = min((case for case, _ in runs), key=lambda case: case["sdpa_enable_gqa_s"])
        ours, sdpa = _seconds(ours_best), sdpa_case["sdpa_enable_gqa_s"]
        margins.append((ours / sdpa, ours, sdpa, ours_case, sdpa_case))
    if margins:
        ratio, ours, sdpa, ours_case, sdpa_case = max(margins, key=lambda m: m[0])  # the shape it does worst on
        files = {ours_case["_file"], sdpa_case["_file"]}
        verdicts.append(Verdict(name, f"{ours * 1e6:.1f} against {sdpa * 1e6:.1f} us ({ratio - 1:+.1%}; "
                                      f"{ours_case['case']})", ratio < 1, "; ".join(sorted(files))))
    else:
        verdicts.append(Verdict(name, "not measured", None))
    return verdicts


def mla_kernel_target(kernels) -> Verdict:
    name = "MLA decode kernel >= 70% of the matrix rate (a matmul timed as long), every point, its best run"
    best_by_case: dict[str, tuple[float, dict]] = {}
    for case in kernels:
        share = case.get("default_share_of_matmul") if case.get("mla") else None
        if share and share > best_by_case.get(case["case"], (0.0, None))[0]:
            best_by_case[case["case"]] = (share, case)
    if not best_by_case:
        return Verdict(name, "not measured", None)
    worst, case = min(best_by_case.values(), key=lambda p: p[0])
    return Verdict(name, f"{worst:.1%} at the lowest of {len(best_by_case)} points ({case['case']}; best "
                         f"{max(s for s, _ in best_by_case.values()):.1%})", worst >= 0.70, case["_file"])


def grpc_target(serves) -> Verdict:
    name = "gRPC client TTL within 5% (or 50 us) of the engine alone"
    if not serves:
        return Verdict(name, "not measured", None)

    def excess(report):
        return report["grpc_client_ttl_median_s"] - report["engine_alone_ttl_median_s"]
    best = min(serves, key=excess)
    allowed = max(0.05 * best["engine_alone_ttl_median_s"], 50e-6)
    return Verdict(name, f"{best['grpc_over_engine']:.3f}x ({best['grpc_client_ttl_median_s'] * 1e3:.3f} against "
                         f"{best['engine_alone_ttl_median_s'] * 1e3:.3f} ms)", excess(best) <= allowed,
                   best["_file"])


def judge(paths: list[Path]) -> list[Verdict]:
    rows, kernels, serves = load(paths)
    h200_rows = [row for row in rows if row["_gpu"] == TARGET_GPU]
    h200_kernels = [case for case in kernels if case["_gpu"] == TARGET_GPU]
    return [
        roofline_target(h200_rows, 1, M, 0.85),
        roofline_target(h200_rows, 8, K128, 0.85),
        roofline_target(h200_rows, 1, K128, 0.70),
        plan_ratio_target(h200_rows, "mqa-8b", 0.6),
        plan_ratio_target(h200_rows, "deepseek-mla", 0.8),
        *gqa_kernel_targets(h200_kernels),
        mla_kernel_target(h200_kernels),
        peer_target(rows, "llama3-8b", K128, 5),
        peer_target(rows, "deepseek-mla", 32 << 10, 6, layers=4),
        grpc_target(serves),
    ]


def markdown(verdicts: list[Verdict]) -> str:
    lines = ["| target | measured | met? | from |", "|---|---|---|---|"]
    for v in verdicts:
        met = "not measured" if v.met is None else ("yes" if v.met else "no")
        lines.append(f"| {v.target} | {v.measured} | {met} | {v.source} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="benchmark JSON files, or folders holding them")
    parser.add_argument("--json", action="store_true", help="one JSON object per target instead of the table")
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.files if not path.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    verdicts = judge(args.files)
    if args.json:
        for v in verdicts:
            print(json.dumps(v.__dict__))
    else:
        print(markdown(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
