"""Model presets: dense Llama-style GPTs built from Megatron-Bridge's vanilla GPT provider.

The Llama recipes in Megatron-Bridge fetch a Hugging Face config from the hub while they build;
these presets name the same shapes as plain numbers so a run needs no network. The vocabulary is
not part of a preset: it always comes from the tokenizer the data was tokenized with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelPreset:
    """One model shape plus the batch and learning-rate defaults that suit it."""

    name: str
    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    kv_channels: int
    seq_length: int
    rotary_base: int
    tie_embeddings: bool
    global_batch_size: int
    micro_batch_size: int
    train_iters: int
    lr: float
    min_lr: float
    warmup_fraction: float
    description: str

    def provider_fields(self) -> dict[str, object]:
        """Fields to set on `GPTModelProvider` (a Megatron-Core `TransformerConfig`)."""
        return {
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "ffn_hidden_size": self.ffn_hidden_size,
            "num_attention_heads": self.num_attention_heads,
            "num_query_groups": self.num_query_groups,
            "kv_channels": self.kv_channels,
            "seq_length": self.seq_length,
            "normalization": "RMSNorm",
            "activation_func": "silu",
            "gated_linear_unit": True,
            "position_embedding_type": "rope",
            "rotary_base": self.rotary_base,
            "add_bias_linear": False,
            "add_qkv_bias": False,
            "share_embeddings_and_output_weights": self.tie_embeddings,
            "hidden_dropout": 0.0,
            "attention_dropout": 0.0,
            "layernorm_epsilon": 1e-5,
            "init_method_std": 0.02,
        }

    def num_params(self, vocab_size: int) -> int:
        """Parameter count for a vocabulary: embeddings, attention, SwiGLU MLP and norms."""
        h, kv = self.hidden_size, self.kv_channels
        q = self.num_attention_heads * kv
        k_v = 2 * self.num_query_groups * kv
        attn = h * (q + k_v) + q * h
        mlp = 3 * h * self.ffn_hidden_size
        norms = 2 * h
        embed = vocab_size * h * (1 if self.tie_embeddings else 2)
        return self.num_layers * (attn + mlp + norms) + embed + h

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name="tiny",
            num_layers=2,
            hidden_size=256,
            ffn_hidden_size=1024,
            num_attention_heads=4,
            num_query_groups=2,
            kv_channels=64,
            seq_length=256,
            rotary_base=10000,
            tie_embeddings=True,
            global_batch_size=8,
            micro_batch_size=2,
            train_iters=50,
            lr=1e-3,
            min_lr=1e-4,
            warmup_fraction=0.1,
            description="smoke test: 2 layers, hidden 256; trains in seconds",
        ),
        ModelPreset(
            name="1b",
            num_layers=16,
            hidden_size=2048,
            ffn_hidden_size=8192,
            num_attention_heads=32,
            num_query_groups=8,
            kv_channels=64,
            seq_length=2048,
            rotary_base=500000,
            tie_embeddings=True,
            global_batch_size=16,
            # Measured on one H200 with TE (training/gpu/results/h200x2_te_*): micro batch 8
            # runs at 486 TFLOP/s/GPU (61% of 790), 4 at 459, 2 at 390; 60 GiB allocated,
            # so it fits 80 GB GPUs. Not a model-quality choice: the global batch is unchanged.
            micro_batch_size=8,
            train_iters=1000,
            lr=3e-4,
            min_lr=3e-5,
            warmup_fraction=0.01,
            description="Llama-3.2-1B shape",
        ),
        ModelPreset(
            name="3b",
            num_layers=28,
            hidden_size=3072,
            ffn_hidden_size=8192,
            num_attention_heads=24,
            num_query_groups=8,
            kv_channels=128,
            seq_length=4096,
            rotary_base=500000,
            tie_embeddings=True,
            global_batch_size=32,
            micro_batch_size=1,
            train_iters=1000,
            lr=3e-4,
            min_lr=3e-5,
            warmup_fraction=0.01,
            description="Llama-3.2-3B shape",
        ),
        ModelPreset(
            name="8b",
            num_layers=32,
            hidden_size=4096,
            ffn_hidden_size=14336,
            num_attention_heads=32,
            num_query_groups=8,
            kv_channels=128,
            seq_length=8192,
            rotary_base=500000,
            tie_embeddings=False,
            global_batch_size=64,
            micro_batch_size=1,
            train_iters=1000,
            lr=3e-4,
            min_lr=3e-5,
            warmup_fraction=0.01,
            description="Llama-3.1-8B shape",
        ),
    )
}


def get_preset(name: str) -> ModelPreset:
    """The preset by name, or a ValueError listing the names there are."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(PRESETS)}") from None
