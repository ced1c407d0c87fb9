# Sourced by prove.sh / prove_parallel.sh on the GPU machine, from the repo root.
# Brings what is missing and sets: OUT, CACHE, BLEND, PIPE (the pipe command), PYTHONPATH.
set -Eeuo pipefail
export OUT=${OUT:-$PWD/out} && mkdir -p "$OUT"
# Logs gather in LOGS and leave as one tarball: the device tool returns at most 8 files.
export LOGS=/tmp/pipe-prove && rm -rf "$LOGS" && mkdir -p "$LOGS"
pack() {
  local code=$?
  if [ "$code" != 0 ]; then
    echo "FAILED (exit $code); log tails:"
    for f in "$LOGS"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 60 "$f"; }; done
  fi
  tar -C "$LOGS" -czf "$OUT/logs.tar.gz" . || true
}
trap pack EXIT
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# Never NVLink multicast on shared hosts (also set by pipe train's launch env).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ -d .whl ] && ! python3 -c 'import megatron.bridge' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'
  python3 -c 'import pyarrow, ray, datasets, click, rich, transformers' 2>&1 | tail -n 1 || true
  python3 -m pip list 2>/dev/null | grep -iE '^(megatron|transformer|torch |ray |pyarrow|datasets|click|rich|hydra|omegaconf|nvidia-resiliency)' || true
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
root=/tmp/pipe-gpu
if [ -f .gpu/pipe-gpu.tar.gz ]; then
  rm -rf "$root" && tar -C / -xzf .gpu/pipe-gpu.tar.gz   # tokenized here by prepare.sh
  BLEND=$(python3 -c "import json; print(json.load(open('$root/tokenize.json'))['blend_json'])")
else
  # pipe tokenize right here (needs ray, pyarrow, datasets and the shared corpus + tokenizer).
  shared=${PIPE_SHARED:-../shared}
  rm -rf "$root" && mkdir -p "$root/tokenizer"
  cp "$shared"/tokenizers/nemotron-nano-compat/tokenizer*.json "$root/tokenizer/"
  cp "$shared"/corpora/gcide.jsonl.gz "$root/"
  training/gpu/write_blend.sh "$root"
  BLEND=$(python3 -m pipeline.cli tokenize --blend "$root/gcide.json" --limit "${LIMIT:-500}" \
    --cache-dir "$root/cache" --quiet --json | tail -n 1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["blend_json"])')
fi
export BLEND CACHE=$root/cache
if python3 -m pipeline.cli train --help >/dev/null 2>&1; then
  PIPE="python3 -m pipeline.cli train"
else
  PIPE="python3 -m pipeline.cli_train"   # before `train` is registered in pipeline/cli.py
fi
export PIPE
echo "blend.json: $BLEND"
