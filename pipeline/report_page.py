"""The HTML of `pipe report`: one self-contained page (inline CSS, plots as embedded PNG).

Nothing is fetched when the page opens, so it can be mailed, archived or opened offline. Every
figure comes from the artifacts' manifests, their bin/idx (document lengths) and the runs'
records; what is not built yet is said on the page, not silently left out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.compare import METRICS, comparison, formatted
from pipeline.lineage import Lineage
from pipeline.plots import length_histogram, png_bytes, removal_bars, run_plots
from stages.megatron_blend import BLEND_JSON
from stages.splits import SPLITS

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em}
th{background:#f2f2f2;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.missing{color:#b00020;font-weight:bold}.diff{background:#fff3b0}.failed{color:#b00020}
.flow{font-family:monospace;background:#f7f7f7;padding:.6em;display:inline-block}
img{max-width:100%;display:block;margin:.6em 0}code{background:#f2f2f2;padding:0 .2em}
"""

_MISSING = object()  # a cell of an artifact that is not built yet


def render(lineage: Lineage) -> str:
    """The whole page for one lineage."""
    body = [
        f"<h1>pipe report: {escape(lineage.title)}</h1>",
        f"<p>Written {datetime.now(UTC).isoformat(timespec='seconds')} from the artifact "
        "cache. Plots are embedded; this file needs no network.</p>",
        _lineage(lineage),
        _data(lineage),
        _lengths(lineage),
        _curation(lineage),
        _runs(lineage),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>pipe report: {escape(lineage.title)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def image(fig: Any, alt: str) -> str:
    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    return f"<img class='plot' alt='{escape(alt)}' src='data:image/png;base64,{data}'>"


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric_from: int = 1,
    marked: int = 0,
) -> str:
    """An HTML table; cells from column `numeric_from` on are right-aligned numbers, and the
    first `marked` rows are highlighted."""
    out = ["<table><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for i, row in enumerate(rows):
        out.append("<tr class='diff'>" if i < marked else "<tr>")
        cells = [
            f"<td class='n'>{_cell(v)}</td>" if j >= numeric_from else f"<td>{_cell(v)}</td>"
            for j, v in enumerate(row)
        ]
        out += [*cells, "</tr>"]
    return "".join(out + ["</table>"])


def _lineage(lin: Lineage) -> str:
    stages = [s for s in ("download", "curate", "tokenize", "megatron_blend") if lin.of(s)]
    flow = " -> ".join(stages + [f"train ({len(lin.runs)} run{'s' if len(lin.runs) != 1 else ''})"])
    rows = [
        (
            n.stage,
            n.name,
            n.key,
            n.artifact.manifest.get("created", "") if n.artifact else _MISSING,
            " ".join(p[:8] for p in n.parents) or "-",
        )
        for n in lin.nodes
    ]
    rows += [(f"train ({r.status})", r.label, r.key or "-", r.created or "-", "") for r in lin.runs]
    notice = ""
    if lin.missing:
        names = ", ".join(f"{n.stage} {n.name}" for n in lin.missing)
        notice = f"<p class='missing'>Not built yet: {escape(names)}. Run `pipe tokenize` "
        notice += "with the same blend file and options to build them.</p>"
    return f"<h2>Lineage</h2><p class='flow'>{escape(flow)}</p>{notice}" + table(
        ("stage", "name", "key", "created", "parents"), rows, numeric_from=99
    )


def _data(lin: Lineage) -> str:
    tokens = [n for n in lin.of("tokenize") if n.artifact]
    if not tokens:
        return "<h2>Data</h2><p class='missing'>No dataset is tokenized yet.</p>"
    shares = _sampling_shares(lin)
    rows = []
    for split in SPLITS:
        total = sum(n.stats[split]["tokens"] for n in tokens) or 1
        for n in tokens:
            s = n.stats[split]
            share = shares.get(split, {}).get(n.key)
            rows.append(
                (
                    split,
                    n.name,
                    s["docs"],
                    s["tokens"],
                    f"{s['tokens'] / total:.1%}",
                    "-" if share is None else f"{share:.1%}",
                )  # fmt: skip
            )
    note = "" if shares else "<p class='missing'>The blend is not built: no sampling shares.</p>"
    return (
        "<h2>Data</h2><p>Sampling share: the dataset's weight in blend.json for that split "
        "(its share of training samples); token share: its share of the split's tokens.</p>"
        + note
        + table(
            ("split", "dataset", "documents", "tokens", "token share", "sampling share"),
            rows,
            numeric_from=2,
        )  # fmt: skip
    )


def _sampling_shares(lin: Lineage) -> dict[str, dict[str, float]]:
    """split -> tokenize key -> weight, read from the built blend.json(s)."""
    shares: dict[str, dict[str, float]] = {}
    for blend in lin.of("megatron_blend"):
        if not blend.artifact:
            continue
        per_split = json.loads((blend.artifact.path / BLEND_JSON).read_text())
        for split, pairs in per_split.items():
            for weight, prefix in zip(pairs[::2], pairs[1::2], strict=True):
                shares.setdefault(split, {})[Path(prefix).parent.name] = float(weight)
    return shares


def _lengths(lin: Lineage) -> str:
    from pipeline.inspect import open_dataset

    tokens = [n for n in lin.of("tokenize") if n.artifact]
    if not tokens:
        return ""
    lengths = {n.name: open_dataset(n.artifact.path / "train")[1] for n in tokens}
    rows = [
        (name, len(v), int(v.min()), int(np.median(v)), int(v.max())) for name, v in lengths.items()
    ]
    return (
        "<h2>Document lengths</h2>"
        + table(("dataset", "train documents", "min", "median", "max"), rows)
        + image(length_histogram(lengths), "document length histogram")
    )


def _curation(lin: Lineage) -> str:
    curated = [n for n in lin.of("curate") if n.artifact]
    if not curated:
        return "<h2>Curation</h2><p>No dataset of this blend is curated.</p>"
    rows = [
        (
            n.name,
            step["step"],
            step["docs"],
            step["chars"],
            f"{step['docs'] / max(1, n.stats['docs_in']):.1%}",
        )  # fmt: skip
        for n in curated
        for step in n.stats["removed"]
    ]
    kept = [(n.name, n.stats["docs_in"], n.stats["docs"]) for n in curated]
    removed = {n.name: n.stats["removed"] for n in curated}
    return (
        "<h2>Curation</h2>"
        + table(("dataset", "documents in", "documents kept"), kept)
        + table(
            ("dataset", "step", "documents removed", "characters removed", "of input"),
            rows,
            numeric_from=2,
        )  # fmt: skip
        + image(removal_bars(removed), "curation removals per step")
    )


def _runs(lin: Lineage) -> str:
    if not lin.runs:
        return "<h2>Training runs</h2><p>No training run of this data yet (`pipe train`).</p>"
    result = comparison(lin.runs)
    diff = result["differing"]
    head = ["", *(r["label"] for r in result["runs"])]
    rows: list[list[Any]] = [[k, *(r["differing"].get(k) for r in result["runs"])] for k in diff]
    rows.append(["status", *(_status(r) for r in result["runs"])])
    at = {"train_loss": result["matched"]["train_iteration"]}
    at["valid_loss"] = result["matched"]["valid_iteration"]
    for key, heading, fmt in METRICS:
        label = f"{heading} @{at[key]}" if at.get(key) else heading
        rows.append([label, *(formatted(r["metrics"][key], fmt) for r in result["runs"])])
    plots = "".join(image(fig, stem.replace("_", " ")) for stem, fig in run_plots(lin.runs).items())
    return (
        "<h2>Training runs</h2><p>Settings that differ between runs come first (highlighted); "
        "train and valid loss at the last iteration every run reached; MFU of "
        f"{result['peak_tflops']:.0f} TFLOP/s per GPU.</p>"
        + table(head, rows, marked=len(diff))
        + plots
    )


def _status(row: dict[str, Any]) -> str:
    return f"{row['status']}: {row['reason']}" if row["reason"] else row["status"]


def _cell(value: Any) -> str:
    if value is _MISSING:
        return "<span class='missing'>not built</span>"
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return escape(str(value))
