#!/usr/bin/env bash
# Run HERE (network + uv environment): everything the TE path needs on a lent GPU host, in
# parts that fit the 64 MiB a device call carries. Fetches the Megatron-Bridge wheels (.whl),
# Transformer Engine 2.20.2 (core wheel transformer-engine-cu13, 276 MB; transformer-engine;
# nvidia-cudnn-frontend; nvdlfw-inspect) and the prebuilt TE torch extension from
# ../shared/wheels; assembles and tokenizes all of ../shared/corpora (assemble_corpus.py, then
# the real `pipe tokenize`) into /tmp/pipe-gpu; packs all of it into one tar and splits it into
# .big0/part_0, .big1/part_1, ... (git-ignored). See training/README.md for the calls.
# Usage: training/gpu/bundle.sh   (PART_MB=60 by default)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
shared=${PIPE_SHARED:-../shared}
root=/tmp/pipe-gpu
mkdir -p .git/info && touch .git/info/exclude
for d in /.whl/ /.whl-te/ /.whl-extra/ /.gpu/ '/.big*/'; do grep -qxF "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
[ -f .whl/megatron_bridge-0.6.2-py3-none-any.whl ] || training/gpu/fetch_wheels.sh .whl
mkdir -p .whl-te
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl-te transformer-engine-cu13==2.20.2 transformer-engine==2.20.2 nvdlfw-inspect==0.2.2 \
  nvidia-cudnn-frontend==1.32.0
cp "$shared"/wheels/transformer_engine_torch-2.20.2-cp312-cp312-linux_x86_64.whl .whl-te/
mkdir -p .whl-extra   # pipe's own needs the GPU image lacks (carried with each call: 0.3 MB)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl-extra isal cloudpickle
rm -rf "$root" && mkdir -p "$root/tokenizer" .gpu
cp "$shared"/tokenizers/nemotron-nano-compat/tokenizer*.json "$root/tokenizer/"
python3 training/gpu/assemble_corpus.py "$shared/corpora" "$root/tokenizer" "$root/corpus"
HF_HUB_OFFLINE=1 uv run pipe tokenize --blend "$root/corpus/all.json" --cache-dir "$root/cache" \
  --quiet --json | tail -n 1 > "$root/tokenize.json"
cat "$root/tokenize.json"
# The GPU side needs the tokens, the blend and the tokenizer; not the sources or downloads.
tar -C / -czf .gpu/pipe-gpu.tar.gz --exclude="${root#/}/cache/download" \
  --exclude="${root#/}/corpus" "${root#/}"
rm -rf .big[0-9]* /tmp/pipe-bundle.tar
tar -cf /tmp/pipe-bundle.tar .whl .whl-te .gpu
sha256sum /tmp/pipe-bundle.tar | cut -d' ' -f1 > /tmp/pipe-bundle.sha256
split -b "${PART_MB:-60}M" -d -a 1 /tmp/pipe-bundle.tar /tmp/pipe-bundle.part_
n=0
for p in /tmp/pipe-bundle.part_*; do
  mkdir -p ".big$n" && mv "$p" ".big$n/" && n=$((n + 1))
done
cp /tmp/pipe-bundle.sha256 ".big$((n - 1))/bundle.sha256"   # travels with the last part
du -sh .whl .whl-te .gpu/pipe-gpu.tar.gz .big*
