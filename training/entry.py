"""What torchrun runs on every rank: plan.json -> Megatron-Bridge ConfigContainer -> pretrain.

Usage (pipe train builds this command): torchrun ... -m training.entry <run_dir>/plan.json

The config starts from Bridge's `vanilla_gpt_pretrain_config` (it needs no hub), takes the
preset's Llama shape, the layout, precision, data and tokenizer from the plan, then the user's
dotlist overrides last. Megatron-Bridge is imported here and nowhere else in pipe.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from training.compat import allow_bridge_without_te, use_prebuilt_dataset_helpers
from training.data import blend_per_split
from training.plan import CHECKPOINTS, TrainPlan, read_plan
from training.recorder import callbacks

TENSORBOARD = "tensorboard"


def _activation(name: str) -> Any:
    import torch.nn.functional as F

    return {"silu": F.silu, "gelu": F.gelu}[name]


def _bridge_blend_per_split(blend_json: str) -> list:
    """Bridge's own reader when every split has data; ours (same parser, empty -> None) if not.

    Bridge's `get_blend_and_blend_per_split` fails on an empty split list, which blend.json has
    when a blend asks for no test (or valid) data. Both go through megatron-core's
    `get_blend_from_list`; when Bridge's reader can be used, the two must agree.
    """
    from megatron.bridge.data.loaders import get_blend_and_blend_per_split

    ours = blend_per_split(blend_json)
    if all(b is not None for b in ours):
        blend, theirs = get_blend_and_blend_per_split(per_split_data_args_path=blend_json)
        if blend is not None or [tuple(b) for b in theirs] != [tuple(b) for b in ours]:
            raise RuntimeError(f"Bridge read {blend_json} as {blend}/{theirs}, pipe as {ours}")
        return theirs
    return ours


def build_config(plan: TrainPlan) -> Any:
    """The Megatron-Bridge ConfigContainer for a plan."""
    from megatron.bridge.models.gpt_provider import local_layer_spec
    from megatron.bridge.recipes.gpt.vanilla_gpt import vanilla_gpt_pretrain_config
    from megatron.bridge.training.config import TokenizerConfig
    from megatron.bridge.training.utils.omegaconf_utils import process_config_with_overrides

    cfg = vanilla_gpt_pretrain_config()
    preset = plan.preset
    run_dir = Path(plan.run_dir)

    model = cfg.model
    for key, value in _provider_fields(preset).items():
        setattr(model, key, _activation(value) if key == "activation_func" else value)
    model.tensor_model_parallel_size = plan.tp
    model.pipeline_model_parallel_size = plan.pp
    model.seq_length = plan.seq_length
    model.vocab_size = None  # from the tokenizer, padded for TP by Bridge
    if not plan.transformer_engine:
        # Megatron's local (non-TE) modules; the default spec always picks TE layers.
        model.transformer_layer_spec = local_layer_spec
        model.transformer_impl = "local"

    cfg.train.train_iters = plan.train_iters
    cfg.train.global_batch_size = plan.global_batch_size
    cfg.train.micro_batch_size = plan.micro_batch_size
    interval = max(1, min(1000, plan.train_iters // 2))
    cfg.validation.eval_interval = interval
    cfg.validation.eval_iters = 10

    cfg.optimizer.lr = preset["lr"]
    cfg.optimizer.min_lr = preset["min_lr"]
    cfg.scheduler.lr_warmup_iters = max(1, round(preset["warmup_fraction"] * plan.train_iters))
    cfg.scheduler.lr_decay_iters = plan.train_iters
    apply_switches(cfg, plan.switches)

    cfg.dataset.seq_length = plan.seq_length
    # Megatron caches sample indices beside the data by default: that would write into the
    # (published, shared) tokenize artifact. The run owns its own cache.
    cfg.dataset.path_to_cache = str(run_dir / "dataset_cache")
    cfg.dataset.blend = None
    cfg.dataset.blend_per_split = None if plan.mock else _bridge_blend_per_split(plan.blend_json)
    cfg.dataset.split = "9999,8,2" if plan.mock else None

    if plan.mock:
        cfg.tokenizer = TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=plan.vocab_size)
    else:
        cfg.tokenizer = TokenizerConfig(
            tokenizer_type="HuggingFaceTokenizer", tokenizer_model=plan.tokenizer
        )

    cfg.logger.log_interval = 1
    cfg.logger.log_throughput = True
    cfg.logger.tensorboard_dir = str(run_dir / TENSORBOARD)

    cfg.checkpoint.save = str(run_dir / CHECKPOINTS)
    cfg.checkpoint.load = str(run_dir / CHECKPOINTS)  # no tracker file yet: starts fresh
    cfg.checkpoint.save_interval = interval
    cfg.checkpoint.ckpt_format = "torch_dist"
    cfg.checkpoint.async_save = False

    cfg.mixed_precision = plan.mixed_precision

    cfg = process_config_with_overrides(cfg, cli_overrides=list(plan.overrides))
    if not plan.mock and cfg.dataset.blend is None and cfg.dataset.blend_per_split is None:
        # megatron-core would silently train on mock data.
        raise RuntimeError("no blend reached the dataset config; refusing to train on mock data")
    return cfg


def apply_switches(cfg: Any, switches: dict[str, dict]) -> None:
    """Set the plan's TE/apex-dependent switches (training/switches.py decided them)."""
    for key, entry in switches.items():
        section, name = key.split(".", 1)
        setattr(getattr(cfg, section), name, entry["value"])


def _provider_fields(preset: dict) -> dict[str, Any]:
    from training.presets import ModelPreset

    return ModelPreset(**preset).provider_fields()


MIN_BRIDGE = (0, 6)


def check_bridge_version() -> str:
    """This entry uses Bridge 0.6's callbacks and recipe layout; say so rather than fail deep."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("megatron-bridge")
    except PackageNotFoundError:
        raise SystemExit(
            "pipe train needs megatron-bridge >= 0.6 (pip install "
            "'megatron-bridge>=0.6.2'); it is not installed"
        ) from None
    parts = tuple(int(x) for x in found.split(".")[:2] if x.isdigit())
    if parts < MIN_BRIDGE:
        raise SystemExit(f"pipe train needs megatron-bridge >= 0.6, found {found}")
    return found


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: torchrun ... -m training.entry RUN_DIR/plan.json")
    check_bridge_version()
    plan = read_plan(argv[0])
    if not plan.transformer_engine:
        allow_bridge_without_te()
    from megatron.bridge.training.gpt_step import forward_step
    from megatron.bridge.training.pretrain import pretrain

    use_prebuilt_dataset_helpers()
    cfg = build_config(plan)
    print(
        f"pipe: plan {json.dumps({k: plan.as_dict()[k] for k in ('model', 'tp', 'pp', 'dp')})}",
        flush=True,
    )
    pretrain(cfg, forward_step, callbacks=callbacks(plan))


if __name__ == "__main__":  # torch_dist checkpoint workers re-import this module
    main(sys.argv[1:])
