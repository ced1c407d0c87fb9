"""Token budget of a launch plan: what the run reads against what the data holds.

A run that reads its train split several times over (GCIDE's 12.2 M tokens under 1000 x 32,768
= 2.7 epochs) overfits without a word; so `pipe train --dry-run` states the epochs, per dataset
too, since a blend samples each dataset by weight, not by size. Counts come from the megatron
blend's manifest; a blend that is not tokenized yet has none: then they are estimated from a
sample of its source (`estimated` says how), or unknown and the budget says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from training.data import SPLITS
from training.overrides import get_int, parse_overrides
from training.plan import TrainPlan

# What training/entry.py sets unless validation.* overrides say otherwise.
EVAL_ITERS = 10
MAX_EVAL_INTERVAL = 1000


@dataclass(frozen=True)
class DatasetShare:
    """One dataset of a split: its tokens, its blend weight, and how often the run reads it."""

    name: str
    tokens: int
    weight: float
    epochs: float


@dataclass(frozen=True)
class TokenBudget:
    """Tokens the run reads (train, and valid for evaluation) against the splits' sizes."""

    train_consumed: int  # train_iters x global batch x seq length
    tokens_per_iteration: int
    valid_consumed: int  # every evaluation Megatron sizes the valid dataset for
    evaluations: int
    train_tokens: int | None = None  # None: not known (see `unknown`)
    valid_tokens: int | None = None
    datasets: list[DatasetShare] = field(default_factory=list)
    unknown: str | None = None  # why the split sizes are not known
    estimated: str | None = None  # how the split sizes were estimated; None: counted

    @property
    def epochs(self) -> float | None:
        return self.train_consumed / self.train_tokens if self.train_tokens else None

    @property
    def iterations_per_epoch(self) -> int | None:
        if not self.train_tokens:
            return None
        return -(-self.train_tokens // self.tokens_per_iteration)

    def warnings(self) -> list[str]:
        """What a user should know before spending GPU hours: the data repeating."""
        out = []
        about = "~" if self.estimated else ""
        repeated = [d for d in self.datasets if d.epochs > 1]
        if repeated and self.epochs is not None:
            each = ", ".join(f"{d.name} {d.epochs:.2f}x" for d in repeated)
            out.append(
                f"the train data repeats: the run reads {self.train_consumed:,} tokens, "
                f"{about}{self.epochs:.2f} epochs of the {about}{self.train_tokens:,} in the "
                f"train split (per dataset: {each}); one epoch is {about}"
                f"{self.iterations_per_epoch:,} iterations"
                + (f" ({self.estimated})" if self.estimated else "")
            )
        per_evaluation = self.valid_consumed // self.evaluations if self.evaluations else 0
        if self.valid_tokens == 0 and self.evaluations:
            out.append("the valid split is empty: the run reports no validation loss")
        elif self.valid_tokens is not None and per_evaluation > self.valid_tokens:
            out.append(
                f"each evaluation reads {per_evaluation:,} tokens, more than the "
                f"{about}{self.valid_tokens:,} of the valid split: it scores the same text twice "
                f"or more (lower validation.eval_iters)"
            )
        return out

    def as_dict(self) -> dict:
        return asdict(self) | {
            "epochs": self.epochs,
            "iterations_per_epoch": self.iterations_per_epoch,
            "warnings": self.warnings(),
        }


def token_budget(
    plan: TrainPlan,
    splits: dict[str, dict[str, dict]] | None,
    unknown: str | None = None,
    estimated: str | None = None,
) -> TokenBudget:
    """The budget of `plan` on data whose `splits` are {split: {dataset: {tokens, weight}}}.

    `splits` None: sizes unknown, for the reason `unknown` gives; what the run reads is still
    stated. `estimated`: the sizes are an estimate, made as it says. Weights are the blend's,
    normalised within the split, as blend.json gives them.
    """
    overrides = parse_overrides(plan.overrides)
    default_interval = max(1, min(MAX_EVAL_INTERVAL, plan.train_iters // 2))
    # `validation.eval_interval=null` (or eval_iters=0) turns evaluation off.
    off = [o for o in overrides if o.key.startswith("validation.eval_") and o.value == "null"]
    interval = 0 if off else get_int(overrides, "validation.eval_interval", default_interval)
    eval_iters = 0 if off else get_int(overrides, "validation.eval_iters", EVAL_ITERS)
    # Megatron sizes the valid dataset for an evaluation every `interval` plus one at the end.
    evaluations = plan.train_iters // interval + 1 if interval > 0 and eval_iters > 0 else 0
    budget = TokenBudget(
        train_consumed=plan.train_iters * plan.tokens_per_iteration,
        tokens_per_iteration=plan.tokens_per_iteration,
        valid_consumed=evaluations * eval_iters * plan.tokens_per_iteration,
        evaluations=evaluations,
        unknown=unknown,
        estimated=estimated if splits is not None else None,
    )
    if splits is None:
        return budget
    train = splits.get("train", {})
    total_weight = sum(d["weight"] for d in train.values()) or 1.0
    shares = [
        DatasetShare(
            name=name,
            tokens=d["tokens"],
            weight=round(d["weight"] / total_weight, 6),
            epochs=d["weight"] / total_weight * budget.train_consumed / max(d["tokens"], 1),
        )
        for name, d in train.items()
    ]
    valid = splits.get("valid", {})
    return replace(
        budget,
        train_tokens=sum(d.tokens for d in shares),
        valid_tokens=sum(d["tokens"] for d in valid.values()),
        datasets=shares,
    )


def split_tokens(manifest: dict) -> dict[str, dict[str, dict]] | None:
    """{split: {dataset: {tokens, weight}}} from a megatron blend's manifest; None when it has
    no counts (e.g. a blend.json made by hand). Weights are the blend file's."""
    stats, weights = manifest["stats"], manifest.get("config", {}).get("weights")
    if not weights or any(split not in stats for split in SPLITS):
        return None
    return {
        split: {
            name: {"tokens": int(counts["tokens"]), "weight": float(weights[name])}
            for name, counts in stats[split].items()
        }
        for split in SPLITS
    }
