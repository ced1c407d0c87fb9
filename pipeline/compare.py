"""Runs side by side: their settings (what differs between them) and their figures.

The differing settings are found by diffing the runs' own recorded plans, so a sweep file or a
label can never claim a difference the runs do not have. Losses are compared at iterations
every run reached, so a longer run does not look better just by having trained longer.
"""

from __future__ import annotations

from typing import Any

from pipeline.runs import Run

# MFU is measured against what a large bf16 matmul reaches on the GPUs, as the README and
# training/RESULTS.md do (~790 TFLOP/s on the lent H200s; the datasheet's dense figure is 989).
PEAK_TFLOPS = 790.0
GIB = 1024**3
# Plan fields that say where or how a run was launched, not what it is: never a "difference".
_WHERE = {"run_dir", "blend_json", "torchrun", "env", "rendezvous", "resume_iteration"}
# What runs are compared on, in table order: (metrics key, heading, format).
METRICS = (
    ("seconds_per_iteration", "s/iteration", "{:.4f}"),
    ("tokens_per_second", "tokens/s", "{:,.0f}"),
    ("tflops_per_gpu", "TFLOP/s/GPU", "{:.1f}"),
    ("mfu", "MFU", "{:.1%}"),
    ("peak_memory_allocated_gib", "peak memory GiB (allocated)", "{:.2f}"),
    ("peak_memory_reserved_gib", "peak memory GiB (reserved)", "{:.2f}"),
    ("train_loss", "train loss", "{:.4f}"),
    ("valid_loss", "valid loss", "{:.4f}"),
    ("iterations", "iterations", "{}"),
    ("checkpoint_gib", "checkpoint GiB", "{:.2f}"),
    ("startup_seconds", "start-up s", "{:.1f}"),
)


def formatted(value: Any, fmt: str = "{}") -> str:
    """A figure as the tables show it; "-" where the run does not have it."""
    return "-" if value is None else fmt.format(value)


def settings(run: Run) -> dict[str, Any]:
    """The run's plan as flat `a.b` keys (switches by value, not their reasons), plus its GPU."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and set(value) == {"value", "why"}:
            flat[prefix] = value["value"]
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, list):
            flat[prefix] = " ".join(map(str, value))
        else:
            flat[prefix] = value

    walk("", {k: v for k, v in run.config.items() if k not in _WHERE})
    if gpu := ((run.record or {}).get("meta") or {}).get("gpu"):
        flat["gpu"] = gpu
    return flat


def differing(runs: list[Run]) -> list[str]:
    """Settings whose values are not the same in every run that has a record."""
    recorded = [settings(r) for r in runs if r.record]
    if len(recorded) < 2:
        return []
    keys = sorted(set().union(*recorded))
    return [k for k in keys if len({repr(s.get(k)) for s in recorded}) > 1]


def matched_iteration(runs: list[Run], series: str) -> int | None:
    """The last iteration at which every recorded run has a `series` ("steps"/"valid") loss."""
    sets = [
        {x["iteration"] for x in r.record.get(series, []) if x.get("loss") is not None}
        for r in runs
        if r.record
    ]
    common = set.intersection(*sets) if sets else set()
    return max(common) if common else None


def loss_at(run: Run, series: str, iteration: int | None) -> float | None:
    if iteration is None or not run.record:
        return None
    return next(
        (x["loss"] for x in run.record.get(series, []) if x["iteration"] == iteration), None
    )


def metrics(run: Run, peak_tflops: float, train_at: int | None, valid_at: int | None) -> dict:
    """The figures one run is compared on (None where its record does not say)."""
    s = run.summary
    tflops = s.get("tflops_per_gpu")
    launches = (run.record or {}).get("launches") or []
    return {
        "seconds_per_iteration": s.get("seconds_per_iteration"),
        "tokens_per_second": s.get("tokens_per_second"),
        "tflops_per_gpu": tflops,
        "mfu": tflops / peak_tflops if tflops else None,
        "peak_memory_allocated_gib": s.get("peak_memory_allocated_gib"),
        "peak_memory_reserved_gib": s.get("peak_memory_reserved_gib"),
        "train_loss": loss_at(run, "steps", train_at),
        "valid_loss": loss_at(run, "valid", valid_at),
        "iterations": s.get("iterations"),
        "checkpoint_gib": run.checkpoint_bytes / GIB if run.checkpoint_bytes else None,
        "startup_seconds": launches[0].get("startup_seconds") if launches else None,
    }


def comparison(runs: list[Run], peak_tflops: float = PEAK_TFLOPS) -> dict[str, Any]:
    """Everything `pipe runs compare` shows, as one JSON-ready object."""
    diff = differing(runs)
    train_at = matched_iteration(runs, "steps")
    valid_at = matched_iteration(runs, "valid")
    rows = []
    for r in runs:
        flat = settings(r)
        rows.append(
            {
                "label": r.label,
                "key": r.key,
                "path": str(r.path) if r.path else None,
                "status": r.status,
                "reason": r.reason,
                "sweep": {k: r.sweep.get(k) for k in ("variable", "value")} if r.sweep else None,
                "differing": {k: flat.get(k) for k in diff} if r.record else {},
                "metrics": metrics(r, peak_tflops, train_at, valid_at),
            }
        )
    return {
        "differing": diff,
        "matched": {"train_iteration": train_at, "valid_iteration": valid_at},
        "peak_tflops": peak_tflops,
        "runs": rows,
    }


def key_settings(run: Run) -> dict[str, Any]:
    """What `pipe runs ls` shows of a run: model, layout, precision, batch, progress, speed."""
    c, s = run.config, run.summary
    layout = f"TP{c['tp']} PP{c['pp']} DP{c['dp']} ({c['world_size']} GPUs)" if "tp" in c else None
    return {
        "model": c.get("model"),
        "layout": layout,
        "precision": c.get("precision"),
        "batch": f"{c['global_batch_size']}/{c['micro_batch_size']}" if c else None,
        "seq_length": c.get("seq_length"),
        "iterations": f"{s.get('iterations', 0)}/{c.get('train_iters', '?')}" if c else None,
        "last_loss": s.get("last_loss"),
        "tokens_per_second": s.get("tokens_per_second"),
        "data": c.get("data_artifact") or ("mock" if c.get("mock") else None),
    }
