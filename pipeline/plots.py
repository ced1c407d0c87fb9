"""The plots of `pipe runs compare --plots` and `pipe report`, drawn with matplotlib (Agg).

Figures are built with `matplotlib.figure.Figure`, not pyplot: no global state, no display
needed, and nothing kept alive between plots. Each function draws one figure from data it is
given; writing it (a PNG file, or bytes to embed in HTML) is the caller's choice.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from pipeline.runs import Run

SIZE = (7.5, 4.2)
DPI = 110


def loss_curves(runs: Sequence[Run], x: str = "iteration") -> Figure:
    """Train loss (lines) and valid loss (dots on dashes) per run, against iterations or tokens.

    The legend names each run once (its colour) and sits beside the axes: a sweep's dozen runs
    would otherwise cover the curves they label."""
    fig = Figure(figsize=(SIZE[0] + 2, SIZE[1]), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for run, color in zip(runs, run_colors(len(runs)), strict=True):
        if not run.record:
            continue
        per_iteration = 1 if x == "iteration" else _tokens_per_iteration(run)
        steps = [s for s in run.record.get("steps", []) if s.get("loss") is not None]
        ax.plot(
            [s["iteration"] * per_iteration for s in steps],
            [s["loss"] for s in steps],
            color=color,
            linewidth=1.2,
            label=run.label,
        )
        valid = run.record.get("valid", [])
        if valid:
            ax.plot(
                [v["iteration"] * per_iteration for v in valid],
                [v["loss"] for v in valid],
                color=color,
                linestyle="--",
                marker="o",
                markersize=3,
            )
    ax.set_xlabel("iteration" if x == "iteration" else "tokens")
    ax.set_ylabel("loss")
    what = "iteration" if x == "iteration" else "tokens"
    ax.set_title(f"Loss vs {what} (train: lines, valid: dots on dashes)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def run_colors(n: int) -> list[Any]:
    """One distinct colour per run, the same run the same colour in every plot: matplotlib's ten
    default colours, then tab20's strong hues followed by its light ones (a sweep has 12 runs)."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    if n <= 20:
        tab20 = colormaps["tab20"]
        return [tab20(i) for i in [*range(0, 20, 2), *range(1, 20, 2)][:n]]
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def throughput_bars(runs: Sequence[Run]) -> Figure:
    """Tokens/s and TFLOP/s per GPU, one bar per run (runs without figures get none)."""
    return _bars(
        runs,
        [("tokens_per_second", "tokens/s"), ("tflops_per_gpu", "TFLOP/s per GPU")],
        "Throughput (steady state)",
    )


def memory_bars(runs: Sequence[Run]) -> Figure:
    """Peak GPU memory per run: allocated and reserved (GiB, the largest rank)."""
    return _bars(
        runs,
        [
            ("peak_memory_allocated_gib", "allocated GiB"),
            ("peak_memory_reserved_gib", "reserved GiB"),
        ],
        "Peak memory per GPU",
    )


def length_histogram(lengths: Mapping[str, np.ndarray]) -> Figure:
    """Document lengths in tokens per dataset, on log-spaced bins (lengths span decades)."""
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.add_subplot()
    top = max((int(v.max()) for v in lengths.values() if len(v)), default=1)
    low = min((int(v.min()) for v in lengths.values() if len(v)), default=1)
    # from the shortest document to the longest: 40 bins on the decades the data spans
    bins = np.unique(np.logspace(np.log10(max(low, 1)), np.log10(max(top, 2)), 40).astype(int))
    bins[-1] = max(top, 2) + 1  # (the longest document falls inside the last bin)
    for name, values in lengths.items():
        ax.hist(values, bins=bins, alpha=0.55, label=f"{name} ({len(values):,} docs)")
    ax.set_xscale("log")
    ax.set_xlabel("document length (tokens)")
    ax.set_ylabel("documents")
    ax.set_title("Document lengths (train split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def removal_bars(removed: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Documents each curation step removed, per dataset (steps in the order they ran)."""
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.add_subplot()
    labels = [f"{ds}: {step['step']}" for ds, steps in removed.items() for step in steps]
    counts = [step["docs"] for steps in removed.values() for step in steps]
    ax.barh(range(len(labels)), counts, color="C3")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("documents removed")
    ax.set_title("Curation: documents removed per step")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_png(fig: Figure, path: Path) -> Path:
    """Write beside, then rename: a reader never finds half a PNG."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(png_bytes(fig))
    tmp.replace(path)
    return path


def run_plots(runs: Sequence[Run]) -> dict[str, Figure]:
    """The comparison's figures by file stem (what --plots writes and the report embeds)."""
    return {
        "loss_vs_iteration": loss_curves(runs, "iteration"),
        "loss_vs_tokens": loss_curves(runs, "tokens"),
        "throughput": throughput_bars(runs),
        "memory": memory_bars(runs),
    }


def _bars(runs: Sequence[Run], fields: list[tuple[str, str]], title: str) -> Figure:
    fig = Figure(figsize=(SIZE[0], SIZE[1] * 0.4 + 0.35 * len(runs) * len(fields)), dpi=DPI)
    axes = fig.subplots(len(fields), 1, squeeze=False)[:, 0]
    labels = [r.label for r in runs]
    for ax, (field, name) in zip(axes, fields, strict=True):
        values = [r.summary.get(field) or 0.0 for r in runs]
        bars = ax.barh(range(len(runs)), values, color=run_colors(len(runs)))
        ax.bar_label(bars, labels=[_short(v) for v in values], fontsize=7, padding=2)
        ax.set_yticks(range(len(runs)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(name)
        ax.margins(x=0.15)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_title(title)
    fig.tight_layout()
    return fig


def _short(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value else "-"


def _tokens_per_iteration(run: Run) -> int:
    meta = (run.record or {}).get("meta") or {}
    return int(meta.get("tokens_per_iteration") or run.config.get("tokens_per_iteration") or 1)
