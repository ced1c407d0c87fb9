#!/usr/bin/env bash
# `pipe bench tokenize` on a lent GPU host's 16 CPU cores, to say how pipe scales with cores.
# The image has torch, pyarrow and tokenizers but not megatron-core, GigaToken or pipe's small
# dependencies: carry them, with the corpus and the tokenizer, in the git-ignored .devbench/
# (wheels/: `pip download --no-deps` of megatron-core 0.19.2, gigatoken, awkward, awkward-cpp,
# isal, xxhash, click, rich, markdown-it-py, mdurl, pygments, psutil, fsspec, cloudpickle, dill
# at uv.lock's versions; gcide.jsonl.gz; tok/ = nemotron-nano-compat), about 35 MB.
# Usage (device run, carry [".devbench"]): training/gpu/bench_tokenize.sh
set -euo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .devbench/wheels/*.whl
export PYTHONPATH=/tmp/site:$PWD
echo "cores: $(nproc)"
bench() {
  python3 -m pipeline.cli bench tokenize --corpus .devbench/gcide.jsonl.gz \
    --tokenizer .devbench/tok --hf-max-scale 0 --json "$@"
}
bench --scales 4,16 --rounds 2 | tee "$out/all_cores.txt"
for w in 1 4; do bench --scales 16 --rounds 1 --workers "$w" | tee "$out/workers_$w.txt"; done
