"""Hardware profiles: what the cost model knows about one GPU and its NVLink domain.

Public profiles hold vendor figures (dense tensor-core rates, no sparsity); a measured profile
comes from `helix bench` JSON (`profile_from_bench`): measured HBM bandwidth and matmul rate, the
rates our decode-attention kernels achieve (per kernel class: group size and head dim for the paged
kernel, and MLA; fitted to bench's attention_s), and
the step, layer and collective overheads of our own engine fitted to the recorded TTLs.
Every number and where it comes from is listed in docs/planner.md.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5}
_DTYPE_ALIASES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
                  "float8": "fp8", "float8_e4m3fn": "fp8", "e4m3": "fp8", "nvfp4": "fp4", "float4": "fp4"}


def normalize_dtype(name: str) -> str:
    key = str(name).lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {name!r}: choose one of {sorted(DTYPE_BYTES)}")
    return key


def dtype_bytes(name: str) -> float:
    return DTYPE_BYTES[normalize_dtype(name)]


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    hbm_bytes: float  # HBM per GPU
    hbm_bw: float  # B/s per GPU
    flops: dict[str, float]  # dense matmul FLOP/s per dtype; a missing dtype runs at the next wider one
    link_bw: float  # NVLink B/s per GPU and direction
    collective_latency_s: float  # fixed cost of one collective (all-reduce, all-to-all, all-gather)
    collective_latency_log2_s: float = 0.0  # extra per doubling of the group
    p2p_latency_s: float = 0.0  # one point-to-point send (pipeline stages)
    domain_gpus: int = 8  # GPUs of one NVLink domain; the model does not cover more
    mem_efficiency: float = 1.0  # reachable share of hbm_bw
    flop_efficiency: float = 1.0  # reachable share of the matmul rate
    kv_read_scale: float = 1.0  # time per KV byte read over time per weight byte (attention kernel vs GEMV)
    step_overhead_s: float = 0.0  # fixed cost of one decode step (launch, sampling, host)
    layer_overhead_s: float = 0.0  # fixed cost per layer and step (kernel launches)
    seq_layer_overhead_s: float = 0.0  # per sequence, layer and step
    memory_fraction: float = 0.9  # share of HBM the weights and the KV cache may fill
    # achieved decode-attention rates per kernel class (cost.kernel_class: "gqa-d128", "mha-d512", "mla", "mla-parts",
    # ...), measured: {"kv_Bps": KV bytes read per s, "flops": attention FLOP/s, "call_s": fixed time per
    # kernel call}; a class listed here costs max(KV bytes / kv_Bps, FLOPs / flops) + call_s per layer
    # (a missing rate: the HBM / matmul roofline); a class not listed, and every class of a public
    # profile (empty): the roofline of HBM bandwidth and matmul rate
    attention: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = "public specification"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def flops_for(self, dtype: str) -> float:
        order = ["fp4", "fp8", "bf16", "fp32"]
        key = normalize_dtype(dtype)
        key = "bf16" if key == "fp16" else key
        for candidate in order[order.index(key):]:
            if self.flops.get(candidate):
                return self.flops[candidate]
        raise ValueError(f"profile {self.name} has no matmul rate for {dtype} or wider")

    def attention_rates(self, kernel: str) -> dict[str, float] | None:
        """The achieved rates of one decode-attention kernel class, or None (roofline). A profile
        written before the paged kernel's classes carried group size and head dim has one "gqa" entry
        for all of them; it still applies to them."""
        rates = self.attention.get(kernel)
        if not rates and kernel.startswith(("gqa-", "mha-")):
            rates = self.attention.get("gqa")
        if not rates and kernel == "mla-parts":  # written before MLA's two-part tiles had a class
            rates = self.attention.get("mla")
        return rates or None

    def latency(self, group: int) -> float:
        if group <= 1:
            return 0.0
        return self.collective_latency_s + self.collective_latency_log2_s * math.log2(group)

    def replace(self, **changes) -> HardwareProfile:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> HardwareProfile:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown hardware profile fields {unknown}")
        values = dict(raw)
        values["notes"] = tuple(values.get("notes", ()))
        values["flops"] = {normalize_dtype(k): float(v) for k, v in values["flops"].items()}
        values["attention"] = {str(k): {str(n): float(v) for n, v in rates.items()}
                               for k, rates in (values.get("attention") or {}).items()}
        return cls(**values)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


# dense tensor-core rates (FP32: CUDA cores)
_HOPPER = {"fp32": 67e12, "bf16": 989e12, "fp8": 1979e12}  # H100/H200 SXM; no FP4
_BLACKWELL = {"fp32": 75e12, "bf16": 2.25e15, "fp8": 4.5e15, "fp4": 9e15}  # B200 (HGX)
_GB200 = {"fp32": 90e12, "bf16": 2.5e15, "fp8": 5e15, "fp4": 10e15}  # NVL72: 720 / 1440 PF FP8 / FP4 sparse / 72

_ASSUMED = {  # not on any datasheet: see docs/planner.md, "Assumptions"
    "collective_latency_s": 8e-6,  # one small all-reduce / all-to-all inside an NVLink domain
    "p2p_latency_s": 3e-6,
    "layer_overhead_s": 15e-6,  # kernel floor: ~10 kernels a layer at ~1.5 us each, CUDA graphs
}
PROFILES: dict[str, HardwareProfile] = {
    "h100": HardwareProfile("H100 SXM", 80e9, 3.35e12, dict(_HOPPER), 450e9, **_ASSUMED),
    "h200": HardwareProfile("H200 SXM", 141e9, 4.8e12, dict(_HOPPER), 450e9, **_ASSUMED),
    "b200": HardwareProfile("B200 (HGX, 8 GPUs)", 180e9, 8e12, dict(_BLACKWELL), 900e9, **_ASSUMED),
    "gb200-nvl72": HardwareProfile("GB200 NVL72", 186e9, 8e12, dict(_GB200), 900e9, domain_gpus=72, **_ASSUMED),
}
_PROFILE_ALIASES = {"gb200": "gb200-nvl72", "nvl72": "gb200-nvl72", "gb200nvl72": "gb200-nvl72"}


def get_profile(name_or_path: str | Path | HardwareProfile) -> HardwareProfile:
    """A public profile by name (h100, h200, b200, gb200-nvl72) or a profile JSON file."""
    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    text = str(name_or_path)
    key = text.lower().replace("_", "-").replace(" ", "-")
    key = _PROFILE_ALIASES.get(key.replace("-", ""), _PROFILE_ALIASES.get(key, key))
    if key in PROFILES:
        return PROFILES[key]
    path = Path(text)
    if path.is_file():
        return HardwareProfile.from_dict(json.loads(path.read_text()))
    raise ValueError(f"unknown hardware {text!r}: choose one of {sorted(PROFILES)} or give a profile JSON file")


# ---- profiles from `helix bench` -------------------------------------------------------------------
def measured_hbm(row: dict) -> float | None:
    value = row.get("hbm_bandwidth_Bps_measured") or row.get("hbm_Bps_measured")
    return float(value) if value else None


def load_bench_rows(json_paths) -> list[dict]:
    """The rows of the given bench JSON files (a list, or {"rows"|"runs": [...]}) that timed our engine
    on a GPU: an engine plan (not a peer such as 'hf-transformers'), a median TTL and a measured HBM
    bandwidth (CPU smoke rows have none)."""
    from ..plan import InvalidPlanError, Plan

    rows: list[dict] = []
    for path in json_paths:
        raw = json.loads(Path(path).read_text())
        items = raw if isinstance(raw, list) else raw.get("rows") or raw.get("runs") or []
        for row in items:
            if not (isinstance(row, dict) and row.get("ttl_median_s") and row.get("plan") and measured_hbm(row)):
                continue
            try:
                Plan.parse(str(row["plan"]))
            except InvalidPlanError:
                continue
            rows.append({**row, "_file": str(path)})
    return rows


def _base_for(rows: list[dict], base: str | None) -> HardwareProfile:
    if base:
        return get_profile(base)
    names = " ".join(str(r.get(k, "")) for r in rows for k in ("gpu", "device_name", "device")).lower()
    for key in ("gb200", "b200", "h100", "h200"):
        if key in names:
            return get_profile(key)
    return PROFILES["h200"]


def profile_from_bench(json_paths, base: str | None = None) -> HardwareProfile:
    """A profile of our own engine on the benchmarked GPU.

    HBM bandwidth and matmul rate are the medians of what bench measured. The decode-attention
    kernels' achieved rates (the paged GQA/MQA/MHA kernel: KV bytes/s, per group size and head dim;
    MLA: FLOP/s; each with a fixed time per call) are fitted to the rows' attention_s, per kernel
    class (fit.fit_attention). What no datasheet gives (overheads per step, per
    layer, per sequence and layer, per collective; the share of the copy bandwidth weight reads
    reach; KV reads against weight reads, only where a kernel class has no attention_s) is fitted to
    the recorded median TTLs by least squares on the relative error, the rest of the model held fixed.
    """
    from .fit import fit_attention, fit_overheads  # the fits evaluate the cost model, which needs this module

    paths = [str(p) for p in json_paths]
    rows = load_bench_rows(paths)
    if not rows:
        raise ValueError(f"no bench rows with ttl_median_s and plan in {paths}")
    profile = _base_for(rows, base)
    bw = [measured_hbm(r) for r in rows if measured_hbm(r)]
    flops = dict(profile.flops)
    by_dtype: dict[str, list[float]] = {}
    for r in rows:
        if r.get("matmul_flops_measured"):
            by_dtype.setdefault(normalize_dtype(r.get("dtype", "bf16")), []).append(float(r["matmul_flops_measured"]))
    for dtype, values in by_dtype.items():
        flops["bf16" if dtype == "fp16" else dtype] = statistics.median(values)
    link = [float(r["link_bandwidth_Bps_measured"]) for r in rows if r.get("link_bandwidth_Bps_measured")]
    profile = profile.replace(
        name=f"{profile.name} (measured)",
        hbm_bw=statistics.median(bw) if bw else profile.hbm_bw,
        flops=flops,
        link_bw=statistics.median(link) if link else profile.link_bw,
        collective_latency_log2_s=0.0,
        source="helix bench: " + ", ".join(Path(p).name for p in paths),
    )
    return fit_overheads(fit_attention(profile, rows), rows)
