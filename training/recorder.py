"""The Bridge callback that writes a run's record lines (see training/record.py).

Runs inside the training ranks (imports torch and Bridge lazily, from the callbacks only).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from training import record
from training.launch import LAUNCHED_AT
from training.plan import TrainPlan


class RunRecorder:
    """Bridge callback: one JSON line per train step and eval, and each rank's peak memory.

    The last rank writes the lines: it sits on the last pipeline stage, where the loss is.
    """

    def __init__(self, plan: TrainPlan) -> None:
        self.plan = plan
        self.folder = Path(plan.run_dir) / record.RECORD_DIR
        self.rank = 0
        self.writer = False
        self.launch = 0
        self.t0 = 0.0

    def on_train_start(self, ctx: Any) -> None:
        import torch
        from megatron.bridge.training.utils.flop_utils import num_floating_point_operations

        self.rank = torch.distributed.get_rank()
        world = torch.distributed.get_world_size()
        self.writer = self.rank == world - 1
        cfg = ctx.state.cfg
        gbs = cfg.train.global_batch_size
        if self.writer:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.launch = len(record.read_lines(self.folder / record.META))
            record.append_line(
                self.folder / record.META,
                {
                    "launch": self.launch,
                    "start_iteration": ctx.state.train_state.step,
                    "world_size": world,
                    "tp": cfg.model.tensor_model_parallel_size,
                    "pp": cfg.model.pipeline_model_parallel_size,
                    "global_batch_size": gbs,
                    "seq_length": cfg.model.seq_length,
                    "tokens_per_iteration": gbs * cfg.model.seq_length,
                    "flops_per_iteration": _flops(num_floating_point_operations, cfg, gbs),
                    "vocab_size": cfg.model.vocab_size,
                    "gpu": torch.cuda.get_device_name(),
                    "torch": torch.__version__,
                    "time": time.time(),
                    "launched_at": _launched_at(),
                },
            )

    def on_train_step_start(self, ctx: Any) -> None:
        self.t0 = time.perf_counter()

    def on_train_step_end(self, ctx: Any) -> None:
        import torch

        torch.cuda.synchronize()
        seconds = time.perf_counter() - self.t0
        self._write_memory()
        if not self.writer:
            return
        loss = (ctx.loss_dict or {}).get("lm loss")
        try:
            lr = ctx.optimizer.param_groups[0]["lr"]
        except (AttributeError, IndexError, KeyError, TypeError):
            lr = None
        record.append_line(
            self.folder / record.STEPS,
            {
                "iteration": ctx.state.train_state.step + 1,  # Bridge counts up after this event
                "launch": self.launch,
                "seconds": seconds,
                "loss": None if loss is None else float(loss),
                "lr": lr,
                "grad_norm": None if ctx.grad_norm is None else float(ctx.grad_norm),
                "skipped": bool(ctx.skipped_iter),
                "time": time.time(),
            },
        )

    def on_eval_end(self, ctx: Any) -> None:
        loss = (ctx.total_loss_dict or {}).get("lm loss")
        if self.writer and loss is not None:
            record.append_line(
                self.folder / record.VALID,
                {"iteration": ctx.state.train_state.step, "loss": float(loss)},
            )

    def on_train_end(self, ctx: Any) -> None:
        self._write_memory()

    def _write_memory(self) -> None:
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        record.write_json(
            self.folder / f"memory-rank{self.rank}.json",
            {
                "rank": self.rank,
                "max_allocated_bytes": torch.cuda.max_memory_allocated(),
                "max_reserved_bytes": torch.cuda.max_memory_reserved(),
            },
        )


def _launched_at() -> float | None:
    """When `pipe train` started torchrun (training/launch.py sets it), for start-up time."""
    value = os.environ.get(LAUNCHED_AT)
    return float(value) if value else None


def _flops(count: Any, cfg: Any, batch: int) -> float | None:
    """Model FLOPs per iteration by Bridge's own formula; None (not a crash) if it cannot."""
    try:
        return float(count(cfg, batch))
    except Exception as exc:  # a record must never stop a training run
        print(f"pipe: cannot count FLOPs ({type(exc).__name__}: {exc})", flush=True)
        return None


def callbacks(plan: TrainPlan) -> Any:
    from megatron.bridge.training.callbacks import CallbackManager

    recorder = RunRecorder(plan)
    manager = CallbackManager()
    for event in (
        "on_train_start",
        "on_train_step_start",
        "on_train_step_end",
        "on_eval_end",
        "on_train_end",
    ):
        manager.register(event, getattr(recorder, event))
    return manager
