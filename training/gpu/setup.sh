# Sourced by the prove*.sh / phase1.sh scripts on the GPU machine, from the repo root.
# Brings what is missing and sets: OUT, LOGS, CACHE, BLEND, TOKENIZER, PIPE, PYTHONPATH.
# Idempotent on a warm machine: the bundle, the wheels and the data are unpacked once, so a
# later call keeps the runs (and checkpoints) an earlier call left in the cache.
set -Eeuo pipefail
export OUT=${OUT:-$PWD/out} && mkdir -p "$OUT"
# Logs gather in LOGS and leave as one tarball: the device tool returns at most 8 files.
name=$(basename "${BASH_SOURCE[1]:-setup}" .sh)
export LOGS=/tmp/pipe-prove/$name && rm -rf "$LOGS" && mkdir -p "$LOGS/records"
pack() {
  local code=$?
  if [ "$code" != 0 ]; then
    echo "FAILED (exit $code); log tails:"
    for f in "$LOGS"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 40 "$f"; }; done
  fi
  tar -C "$LOGS" -czf "$OUT/logs-$name.tar.gz" . || true
}
trap pack EXIT
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# Never NVLink multicast on shared hosts (also set by pipe train's launch env).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# 1. The bundle (bundle.sh), carried in parts by earlier calls into /tmp/big.
bundle=/tmp/bundle
if [ -d /tmp/big ] && [ ! -f "$bundle/.done" ]; then
  cat /tmp/big/pipe-bundle.part_* > /tmp/pipe-bundle.tar
  echo "$(cat /tmp/big/bundle.sha256)  /tmp/pipe-bundle.tar" | sha256sum -c -
  mkdir -p "$bundle" && tar -C "$bundle" -xf /tmp/pipe-bundle.tar
  rm -f /tmp/pipe-bundle.tar && touch "$bundle/.done"
fi
[ -f "$bundle/.done" ] && src=$bundle || src=$PWD
# 2. Wheels: Megatron-Bridge and its needs (.whl), Transformer Engine (.whl-te) if carried.
if [ ! -f /tmp/site/.pipe-installed ] && [ -d "$src/.whl" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$src"/.whl/*.whl $(ls "$src"/.whl-te/*.whl 2>/dev/null || true)
  touch /tmp/site/.pipe-installed
fi
# pipe's own small needs that an older bundle lacks (isal, cloudpickle: bundle.sh's .whl-extra,
# carried by the call itself, 0.3 MB).
if [ -d .whl-extra ] && [ ! -f /tmp/site/.pipe-extra ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl-extra/*.whl && touch /tmp/site/.pipe-extra
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'
  python3 -c 'import transformer_engine.pytorch as te; print("transformer_engine", te.__version__)' 2>&1 | tail -n 1 || true
  python3 -c 'import apex' 2>&1 | tail -n 1 || true
  python3 -m pip list --path /tmp/site 2>/dev/null | grep -iE '^(megatron|transformer|nvidia-cudnn)' || true
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
# 3. Data: tokenized here by bundle.sh (or prepare.sh) with the real pipe tokenize.
root=/tmp/pipe-gpu
# A call may carry a newer .gpu/pipe-gpu.tar.gz itself (18 MB; made with the pipe of this tree):
# it replaces the bundle's data and the runs made on it.
data=$src/.gpu/pipe-gpu.tar.gz
[ -f .gpu/pipe-gpu.tar.gz ] && data=$PWD/.gpu/pipe-gpu.tar.gz
digest=$(sha256sum "$data" | cut -d' ' -f1)
if [ ! -f "$root/tokenize.json" ] || [ "$(cat "$root/.from" 2>/dev/null)" != "$digest" ]; then
  rm -rf "$root" && tar -C / -xzf "$data" && echo "$digest" > "$root/.from"
fi
BLEND=$(python3 -c "import json; print(json.load(open('$root/tokenize.json'))['blend_json'])")
export BLEND CACHE=$root/cache TOKENIZER=$root/tokenizer
export PIPE="python3 -m pipeline.cli train"
echo "blend.json: $BLEND"
# Run `pipe train` and keep its record: NAME, then pipe train arguments. Prints the outcome;
# a failed run prints its log's tail and returns 1 (the caller decides whether to go on).
run() {
  local name=$1; shift
  date +%s.%N > "$LOGS/$name.start"
  if ! $PIPE --blend "$BLEND" --cache-dir "$CACHE" --json "$@" 2>"$LOGS/$name.log" |
    tail -n 1 > "$LOGS/$name.json"; then
    echo "$name FAILED:"; grep -v ' iteration ' "$LOGS/$name.log" | tail -n 25; return 1
  fi
  local rec
  rec=$(python3 -c "import json; print(json.load(open('$LOGS/$name.json'))['record'])")
  cp "$rec" "$LOGS/records/${name}_record.json"
  # Records so far, refreshed after each run: they come back even if the call is cut off.
  tar -C "$LOGS" -czf "$OUT/records-$name.tmp" records && mv "$OUT/records-$name.tmp" "$OUT/records.tar.gz"
  echo "$name: $(python3 training/gpu/summarize.py --short "$LOGS/records/${name}_record.json")"
}
