"""`pipe train` on a CPU machine: the blend resolved through the cache, the plan printed, and every
check that must fail before launch (tokenizer, layout, precision, data) failing there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import _selfmade_corpus, pipe
from test_train_data import publish_blend

from pipeline.cache import Cache
from pipeline.cli import main
from training.data import blend_per_split

REQUIRED = (
    "nproc_per_node",
    "tp",
    "pp",
    "dp",
    "model",
    "precision",
    "blend_json",
    "tokenizer",
    "torchrun",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return _selfmade_corpus(tmp_path_factory.mktemp("train-corpus"))


def test_dry_run_builds_nothing_then_uses_the_cached_counts(corpus, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = (
        "train",
        "--blend",
        corpus.blend,
        "--limit",
        "300",
        "--model",
        "tiny",
        "--nproc-per-node",
        "8",
        "--dry-run",
        "--json",
        "--quiet",
        "train.train_iters=20",
    )
    first = pipe(*args, cache=cache)
    assert first.code == 0, first.err
    plan = first.json
    assert all(k in plan for k in REQUIRED)
    assert (plan["nproc_per_node"], plan["tp"], plan["pp"], plan["dp"]) == (8, 2, 1, 4)
    assert plan["model"] == "tiny" and plan["precision"] == "bf16" and plan["train_iters"] == 20
    assert plan["tokenizer"] == str(corpus.tokenizer.resolve())
    assert (plan["vocab_size"], plan["eod_id"]) == (600, 2)
    # A dry run builds nothing: no data artifact, no run folder; the budget is an estimate.
    assert not [p for p in cache.glob("*") if not p.name.startswith(".")]
    assert not Path(plan["blend_json"]).exists() and not Path(plan["run_dir"]).exists()
    estimate = plan["token_budget"]
    assert estimate["estimated"].startswith("estimated from a sample of") and estimate["epochs"]
    assert estimate["train_consumed"] == 20 * 8 * 256 and plan["memory"]["fits"] is True
    assert "GPU visible here" in plan["memory"]["capacity_source"]  # no --gpu-memory given
    cmd = plan["torchrun"]
    assert "--nproc_per_node=8" in cmd and cmd[-3:-1] == ["-m", "training.entry"]
    assert cmd[-1] == str(Path(plan["run_dir"]) / "plan.json")

    made = pipe("tokenize", "--blend", corpus.blend, "--limit", "300", "--json", cache=cache)
    assert made.code == 0, made.err
    again = pipe(*args, cache=cache)
    assert again.code == 0, again.err
    # The same run as planned before the data existed: same key, blend.json where it said.
    assert again.json["run_key"] == plan["run_key"]
    blend_json = Path(again.json["blend_json"])
    assert blend_json == Path(plan["blend_json"]) and blend_json.is_file()
    art = Cache(cache).get("megatron_blend", plan["data_artifact"])
    assert art is not None and art.path / "blend.json" == blend_json  # lineage
    stats = art.manifest["stats"]
    budget = again.json["token_budget"]
    train_tokens = sum(d["tokens"] for d in stats["train"].values())
    assert budget["unknown"] is None and budget["train_tokens"] == train_tokens > 0
    assert budget["estimated"] is None
    assert estimate["train_tokens"] == pytest.approx(train_tokens, rel=0.1)
    assert budget["valid_tokens"] == sum(d["tokens"] for d in stats["valid"].values())
    assert budget["epochs"] == pytest.approx(20 * 8 * 256 / train_tokens)
    assert [d["name"] for d in budget["datasets"]] == ["alpha", "beta"]
    # The real tokenize output reaches Megatron's reader: two datasets weighted 0.7/0.3.
    train, valid, test = blend_per_split(blend_json)
    assert train[1] == [0.7, 0.3] and len(train[0]) == 2
    assert valid is not None
    # Pointing --blend at the artifact's blend.json gives the same plan without planning.
    direct = pipe(
        "train",
        "--blend",
        blend_json,
        "--model",
        "tiny",
        "--nproc-per-node",
        "8",
        "--dry-run",
        "--json",
        "train.train_iters=20",
        cache=cache,
    )
    assert direct.code == 0, direct.err
    assert direct.json["run_key"] == plan["run_key"]
    assert direct.json["token_budget"]["train_tokens"] == train_tokens


@pytest.fixture
def artifact(tmp_path: Path, small_tokenizer: Path):
    """A published megatron blend (real cache API) whose manifest claims `vocab`."""

    def make(vocab: int = 600, eod: int = 2) -> Path:
        return publish_blend(tmp_path, small_tokenizer, vocab, eod)

    return make


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["train", *map(str, args)])
    return result.exit_code, result.output


def test_direct_artifact_plan(artifact, tmp_path: Path) -> None:
    code, out = run(
        "--blend",
        artifact(),
        "--model",
        "tiny",
        "--nproc-per-node",
        "2",
        "--cache-dir",
        tmp_path / "cache",
        "--dry-run",
    )
    assert code == 0, out
    assert "TP=2 PP=1 DP=1" in out and "vocab 600, EOD 2" in out and "torchrun" in out


@pytest.mark.parametrize(
    ("extra", "vocab", "eod", "message"),
    [
        ((), 131072, 2, "has 600 tokens but the data was tokenized with a vocabulary of 131072"),
        ((), 600, 7, "ends documents with id 2 but the data used EOD id 7"),
        (
            ("--nproc-per-node", "6", "--tp", "4"),
            600,
            2,
            "world size 6 (1 node(s) x 6) is not divisible by TP x PP = 4 x 1 = 4",
        ),
        (("--nproc-per-node", "8", "--tp", "8"), 600, 2, "4 attention heads not divisible by TP=8"),
        (("--precision", "fp8"), 600, 2, "--precision fp8 needs Transformer Engine"),
        (("model.tensor_model_parallel_size=2",), 600, 2, "use --tp"),
        (("--mock",), 600, 2, "--mock trains on synthetic data; drop --blend"),
    ],
)
def test_refused_before_launch(
    artifact, tmp_path: Path, extra: tuple, vocab: int, eod: int, message: str
) -> None:
    blend_json = artifact(vocab, eod)
    args = ["--blend", blend_json, "--model", "tiny", "--cache-dir", tmp_path / "cache"]
    if "--nproc-per-node" not in extra:
        args += ["--nproc-per-node", "1"]
    code, out = run(*args, *extra)
    assert code == 1
    assert message in out
    assert not list((tmp_path / "cache").rglob("plan.json"))  # nothing was launched


def test_no_data_no_training(tmp_path: Path) -> None:
    code, out = run("--model", "tiny", "--nproc-per-node", "1", "--cache-dir", tmp_path)
    assert code == 1 and "pass --blend FILE (or --mock" in out
    code, out = run(
        "--mock",
        "--model",
        "tiny",
        "--nproc-per-node",
        "1",
        "--dry-run",
        "--json",
        "--cache-dir",
        tmp_path,
    )
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["mock"] is True
