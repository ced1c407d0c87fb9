"""Bare Megatron-Bridge: the 1b run `pipe train` makes, with no pipe code, to measure pipe's cost.

Same recipe (`vanilla_gpt_pretrain_config`), same Llama-3.2-1B shape, same blend.json and
tokenizer, same TE switches as pipe's plan on a TE-without-apex host with 1 GPU, same logging,
evaluation and (no) checkpointing. Written out literally on purpose: nothing here imports pipe.
The only non-Bridge lines are the two every run on the lent image needs (Bridge's `make` of the
prebuilt dataset helpers, and the empty test split that Bridge's blend reader refuses).

Usage: torchrun --nproc_per_node=1 --standalone training/gpu/bare_bridge.py BLEND_JSON TOKENIZER
       OUT_DIR ITERS MICRO_BATCH
Megatron logs `elapsed time per iteration (ms)` every iteration; compare_bare.py reads those
lines from this log and from pipe's log alike.
"""

from __future__ import annotations

import json
import sys

import torch.nn.functional as F
from megatron.bridge.recipes.gpt.vanilla_gpt import vanilla_gpt_pretrain_config
from megatron.bridge.training.config import TokenizerConfig
from megatron.bridge.training.gpt_step import forward_step
from megatron.bridge.training.pretrain import pretrain
from megatron.core.datasets.utils import get_blend_from_list


def main(blend_json: str, tokenizer: str, out: str, iters: int, micro_batch: int) -> None:
    import megatron.bridge.training.initialize as init

    init.compile_helpers = lambda: None  # the megatron-core wheel ships them prebuilt

    cfg = vanilla_gpt_pretrain_config()
    m = cfg.model
    m.num_layers, m.hidden_size, m.ffn_hidden_size = 16, 2048, 8192
    m.num_attention_heads, m.num_query_groups, m.kv_channels = 32, 8, 64
    m.seq_length, m.rotary_base = 2048, 500000
    m.normalization, m.activation_func, m.gated_linear_unit = "RMSNorm", F.silu, True
    m.position_embedding_type = "rope"
    m.add_bias_linear = m.add_qkv_bias = False
    m.share_embeddings_and_output_weights = True
    m.hidden_dropout = m.attention_dropout = 0.0
    m.layernorm_epsilon, m.init_method_std = 1e-5, 0.02
    m.tensor_model_parallel_size = m.pipeline_model_parallel_size = 1
    m.vocab_size = None
    # TE without apex, 1 GPU (what pipe's plan decides there).
    m.gradient_accumulation_fusion = False
    m.masked_softmax_fusion = False
    m.persist_layer_norm = False
    m.sequence_parallel = False
    m.apply_rope_fusion = True
    m.cross_entropy_loss_fusion = True
    m.bias_activation_fusion = True
    m.bias_dropout_fusion = True
    cfg.optimizer.use_distributed_optimizer = cfg.ddp.use_distributed_optimizer = True
    cfg.ddp.overlap_grad_reduce = cfg.ddp.overlap_param_gather = False

    cfg.train.train_iters, cfg.train.global_batch_size = iters, 16
    cfg.train.micro_batch_size = micro_batch
    cfg.validation.eval_interval, cfg.validation.eval_iters = max(1, iters // 2), 10
    cfg.optimizer.lr, cfg.optimizer.min_lr = 3e-4, 3e-5
    cfg.scheduler.lr_warmup_iters = max(1, round(0.01 * iters))
    cfg.scheduler.lr_decay_iters = iters

    splits = json.load(open(blend_json))
    cfg.dataset.seq_length = 2048
    cfg.dataset.path_to_cache = f"{out}/dataset_cache"
    cfg.dataset.blend, cfg.dataset.split = None, None
    cfg.dataset.blend_per_split = [
        get_blend_from_list(splits[k]) if splits.get(k) else None
        for k in ("train", "valid", "test")
    ]
    cfg.tokenizer = TokenizerConfig(
        tokenizer_type="HuggingFaceTokenizer", tokenizer_model=tokenizer
    )
    cfg.logger.log_interval, cfg.logger.log_throughput = 1, True
    cfg.logger.tensorboard_dir = f"{out}/tensorboard"
    cfg.checkpoint.save = cfg.checkpoint.load = None
    cfg.mixed_precision = "bf16_mixed"
    pretrain(cfg, forward_step)


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    a = sys.argv[1:]
    main(a[0], a[1], a[2], int(a[3]), int(a[4]))
