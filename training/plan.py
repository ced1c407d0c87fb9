"""The launch plan: everything `pipe train` decides before torchrun starts, as one JSON object.

The plan is written into the run directory and is the entry's only input, so what `--dry-run`
prints is exactly what the GPUs will run. Nothing here imports Megatron-Bridge.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from training.layout import Layout, ModelDims, resolve_layout
from training.options import PRECISION_RECIPES as PRECISION_RECIPES
from training.options import PlanError as PlanError
from training.options import check_precision
from training.options import resolve_nproc as resolve_nproc
from training.overrides import Override, get_int, parse_overrides
from training.presets import get_preset
from training.switches import Installed, decide, resolve

# Environment every launch gets unless the caller already set it (Bridge's recipe defaults;
# NCCL_NVLS_ENABLE=0 also keeps NVLink multicast off on shared hosts).
LAUNCH_ENV = {
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",
    "NCCL_NVLS_ENABLE": "0",
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
}

PLAN_FILE = "plan.json"
CHECKPOINTS = "checkpoints"
TRACKER = "latest_checkpointed_iteration.txt"


@dataclass(frozen=True)
class DataSource:
    """The data side of a run: blend.json, the tokenizer it was made with, and its artifact."""

    blend_json: str | None
    tokenizer: str
    vocab_size: int
    eod_id: int
    artifact: str | None = None


@dataclass(frozen=True)
class Rendezvous:
    """torchrun's multi-node flags, passed through; one node needs none of them."""

    nnodes: int = 1
    node_rank: int = 0
    endpoint: str | None = None
    rdzv_id: str | None = None
    backend: str = "c10d"

    def args(self, default_id: str) -> list[str]:
        if self.nnodes == 1 and self.endpoint is None:
            return ["--standalone"]
        if self.endpoint is None:
            raise PlanError(f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT")
        return [
            f"--nnodes={self.nnodes}",
            f"--node-rank={self.node_rank}",
            f"--rdzv-backend={self.backend}",
            f"--rdzv-endpoint={self.endpoint}",
            f"--rdzv-id={self.rdzv_id or default_id}",
        ]


@dataclass(frozen=True)
class TrainPlan:
    """A resolved run: model, layout, precision, data, overrides, where it lives, how it starts."""

    model: str
    preset: dict
    num_params: int
    precision: str
    mixed_precision: str
    transformer_engine: bool
    layer_spec: str
    nnodes: int
    nproc_per_node: int
    world_size: int
    tp: int
    pp: int
    dp: int
    seq_length: int
    global_batch_size: int
    micro_batch_size: int
    train_iters: int
    tokens_per_iteration: int
    mock: bool
    blend_json: str | None
    tokenizer: str
    vocab_size: int
    eod_id: int
    data_artifact: str | None
    overrides: list[str]
    rendezvous: dict
    installed: dict = field(default_factory=dict)
    switches: dict = field(default_factory=dict)
    run_dir: str = ""
    resume_iteration: int | None = None
    torchrun: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """What decides the trained weights: the run key hashes this (not where or how wide).

        Layout is left out on purpose: torch_dist checkpoints reshard, so a run may resume on
        another GPU count. The layer spec is in: TE and local layers name their weights
        differently, so a run made with one cannot resume with the other. Run-control overrides
        (logging, exit, save cadence) are left out too, so stopping a run early and starting it
        again resumes the same run.
        """
        return {
            "model": self.model,
            "preset": self.preset,
            "precision": self.precision,
            "layer_spec": self.layer_spec,
            "mock": self.mock,
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "data_artifact": self.data_artifact,
            "global_batch_size": self.global_batch_size,
            "seq_length": self.seq_length,
            "train_iters": self.train_iters,
            "overrides": sorted(o for o in self.overrides if not _run_control(o)),
        }


_RUN_CONTROL_PREFIXES = (
    "logger.",
    "train.exit_",
    "checkpoint.save_interval",
    "checkpoint.async_save",
    "validation.",
    "profiling.",
)


def _run_control(text: str) -> bool:
    return text.lstrip("+").startswith(_RUN_CONTROL_PREFIXES)


def build_plan(
    *,
    model: str,
    data: DataSource,
    nproc_per_node: int,
    tp: int | None = None,
    pp: int = 1,
    precision: str = "bf16",
    overrides: list[str] | tuple[str, ...] = (),
    mock: bool = False,
    rendezvous: Rendezvous | None = None,
    installed: Installed | None = None,
) -> TrainPlan:
    """Resolve preset, overrides, layout, precision and switches; raises PlanError/ValueError.

    `installed` is what this machine has (probed when None; tests pass each combination).
    """
    preset = get_preset(model)
    parsed: list[Override] = parse_overrides(list(overrides))
    installed = Installed.probe() if installed is None else installed
    has_te = installed.transformer_engine
    recipe = check_precision(precision, has_te)
    rdzv = rendezvous or Rendezvous()
    if not mock and not data.blend_json:
        raise PlanError("no blend.json: pass --blend (or --mock to train on synthetic data)")
    p = preset
    dims = ModelDims(
        num_layers=get_int(parsed, "model.num_layers", p.num_layers),
        num_attention_heads=get_int(parsed, "model.num_attention_heads", p.num_attention_heads),
        num_query_groups=get_int(parsed, "model.num_query_groups", p.num_query_groups),
        global_batch_size=get_int(parsed, "train.global_batch_size", p.global_batch_size),
        micro_batch_size=get_int(parsed, "train.micro_batch_size", 0),
    )
    if not dims.micro_batch_size:
        # The preset's micro batch is the largest that pays (see presets.py); with more DP
        # ranks each gets fewer sequences, so take the largest micro batch that divides them.
        one = replace(dims, micro_batch_size=1)
        per_rank = (
            dims.global_batch_size // resolve_layout(nproc_per_node, rdzv.nnodes, tp, pp, one).dp
        )
        mbs = max(d for d in range(1, p.micro_batch_size + 1) if per_rank % d == 0)
        dims = replace(dims, micro_batch_size=mbs)
    layout: Layout = resolve_layout(nproc_per_node, rdzv.nnodes, tp, pp, dims)
    seq = get_int(parsed, "model.seq_length", preset.seq_length)
    dataset_seq = get_int(parsed, "dataset.seq_length", seq)
    if dataset_seq != seq:
        raise PlanError(f"model.seq_length={seq} and dataset.seq_length={dataset_seq} differ")
    iters = get_int(parsed, "train.train_iters", preset.train_iters)
    if iters < 1:
        raise PlanError(f"train.train_iters must be at least 1, got {iters}")
    norm = next((o.value for o in parsed if o.key == "model.normalization"), "RMSNorm")
    switches = resolve(decide(installed, tp=layout.tp, dp=layout.dp, normalization=norm), parsed)
    return TrainPlan(
        model=preset.name,
        preset=preset.as_dict(),
        num_params=preset.num_params(data.vocab_size),
        precision=precision,
        mixed_precision=recipe,
        transformer_engine=has_te,
        layer_spec="transformer_engine" if has_te else "local",
        nnodes=layout.nnodes,
        nproc_per_node=layout.nproc_per_node,
        world_size=layout.world_size,
        tp=layout.tp,
        pp=layout.pp,
        dp=layout.dp,
        seq_length=seq,
        global_batch_size=dims.global_batch_size,
        micro_batch_size=dims.micro_batch_size,
        train_iters=iters,
        tokens_per_iteration=dims.global_batch_size * seq,
        mock=mock,
        blend_json=data.blend_json,
        tokenizer=data.tokenizer,
        vocab_size=data.vocab_size,
        eod_id=data.eod_id,
        data_artifact=data.artifact,
        overrides=[o.text for o in parsed],
        rendezvous=asdict(rdzv),
        installed=installed.as_dict(),
        switches=switches,
    )


def resume_iteration(run_dir: Path) -> int | None:
    """The iteration a run directory's last checkpoint holds, if it has one."""
    tracker = run_dir / CHECKPOINTS / TRACKER
    try:
        text = tracker.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def torchrun_executable() -> list[str]:
    """`torchrun` beside this Python, else on PATH, else `python -m torch.distributed.run`."""
    beside = Path(sys.executable).parent / "torchrun"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def place(plan: TrainPlan, run_dir: Path, run_key: str) -> TrainPlan:
    """Bind the plan to its run directory: resume point, torchrun command, launch environment."""
    rdzv = Rendezvous(**plan.rendezvous)
    command = [
        *torchrun_executable(),
        f"--nproc_per_node={plan.nproc_per_node}",
        *rdzv.args(default_id=run_key),
        "-m",
        "training.entry",
        str(run_dir / PLAN_FILE),
    ]
    return replace(
        plan,
        run_dir=str(run_dir),
        resume_iteration=resume_iteration(run_dir),
        torchrun=command,
        env=dict(LAUNCH_ENV),
    )


def write_plan(plan: TrainPlan) -> Path:
    path = Path(plan.run_dir) / PLAN_FILE
    path.write_text(json.dumps(plan.as_dict(), indent=2) + "\n")
    return path


def read_plan(path: str | Path) -> TrainPlan:
    return TrainPlan(**json.loads(Path(path).read_text()))
