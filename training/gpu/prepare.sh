#!/usr/bin/env bash
# Run HERE (a machine with network and the uv environment), before calling the GPU machine.
# 1. Fetches the Megatron-Bridge wheels into .whl/ (training/gpu/fetch_wheels.sh).
# 2. Tokenizes GCIDE with the nemotron-nano-compat tokenizer using the real `pipe tokenize`
#    into /tmp/pipe-gpu (cache + a copy of the tokenizer), and packs that folder into
#    .gpu/pipe-gpu.tar.gz. Artifacts name absolute paths (blend.json prefixes, the tokenizer
#    folder), so the GPU script unpacks it at the same absolute place: /tmp/pipe-gpu.
#    This is for GPU machines without Ray (the lent device image has none); where `import ray`
#    works, prove.sh tokenizes on the GPU machine itself when no bundle is carried.
# Usage: training/gpu/prepare.sh [LIMIT]   (documents of GCIDE; default 500)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
limit=${1:-500}
shared=${PIPE_SHARED:-../shared}
root=/tmp/pipe-gpu
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
training/gpu/fetch_wheels.sh .whl
rm -rf "$root" && mkdir -p "$root/tokenizer" .gpu
cp "$shared"/tokenizers/nemotron-nano-compat/tokenizer*.json "$root/tokenizer/"
cp "$shared"/corpora/gcide.jsonl.gz "$root/"
training/gpu/write_blend.sh "$root"
HF_HUB_OFFLINE=1 uv run pipe tokenize --blend "$root/gcide.json" --limit "$limit" \
  --cache-dir "$root/cache" --quiet --json | tail -n 1 > "$root/tokenize.json"
cat "$root/tokenize.json"
rm "$root/gcide.jsonl.gz"   # the GPU side needs the tokens, not the source text
tar -C / -czf .gpu/pipe-gpu.tar.gz "${root#/}"
du -sh .whl .gpu/pipe-gpu.tar.gz
