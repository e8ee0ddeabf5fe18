"""PNG plots of TTL against context, one line per plan and batch, from `helix bench` JSON.

    python -m helix_core.bench.plot docs/results/bench-2gpu.json --out docs/results
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def plot(rows: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_shape: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_shape[row["shape"]].append(row)
    written = []
    for shape, shape_rows in by_shape.items():
        lines: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for row in shape_rows:
            label = f"{row['plan']} ({row['gpus']} GPU) batch {row['batch']}"
            if row.get("hopb_pieces", 1) > 1:
                label += f", HOP-B {row['hopb_pieces']}"
            lines[label].append((row["context"], row["ttl_median_s"] * 1e3))
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for label, points in sorted(lines.items()):
            points.sort()
            axes.plot([c for c, _ in points], [t for _, t in points], marker="o", label=label)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("context (tokens per sequence)")
        axes.set_ylabel("TTL median (ms)")
        axes.set_title(f"{shape}: token-to-token latency")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
        path = out_dir / f"ttl-{shape}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helix_core.bench.plot")
    parser.add_argument("json", nargs="+")
    parser.add_argument("--out", default=".")
    args = parser.parse_args(argv)
    rows = [row for path in args.json for row in json.loads(Path(path).read_text())]
    for path in plot(rows, Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
