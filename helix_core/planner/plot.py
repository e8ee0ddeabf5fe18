"""Pareto frontiers as a PNG (matplotlib, imported only here and only when asked for)."""
from __future__ import annotations

from .frontier import Point, pareto


def plot_frontiers(series: dict[str, list[Point]], path: str, title: str = "",
                   ttl_budget_s: float | None = None, best: Point | None = None) -> str:
    """One step line per series (its Pareto frontier): tokens/s/GPU against tokens/s/user, log axes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib") from err
    fig, ax = plt.subplots(figsize=(7.5, 5))
    styles = [{"linewidth": 2.5}, {"linewidth": 1.5}, {"linewidth": 1.2, "linestyle": "--"}]
    for i, (label, points) in enumerate(series.items()):
        front = pareto(points)[::-1]  # ascending tokens/s/user; the best throughput at >= x is the next point's
        if not front:
            continue
        ax.step([p.user for p in front], [p.gpu for p in front], where="pre", marker=".", label=label,
                **styles[i % len(styles)])
    if ttl_budget_s:
        ax.axvline(1.0 / ttl_budget_s, color="grey", linestyle="--", linewidth=1,
                   label=f"TTL budget {ttl_budget_s * 1e3:g} ms")
    if best is not None:
        ax.plot([best.user], [best.gpu], "k*", markersize=12, label=f"chosen: {best.layout.spec()}, B={best.batch}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens/s/user (interactivity)")
    ax.set_ylabel("tokens/s/GPU (throughput)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
