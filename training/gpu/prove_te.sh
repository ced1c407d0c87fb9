#!/usr/bin/env bash
# The TE path on one GPU, two lanes at once on a 2-GPU host (one GPU each, 1b preset, 30
# iterations, no checkpoint). Lane 0: bare Megatron-Bridge then pipe train with the same
# settings (the thin-stage overhead), then micro batch 2. Lane 1: fp8, micro batch 8, the 3b
# preset. Also regenerates the Bridge field table on this image and diffs
# bare's config against pipe's. Records and logs: $OUT/logs-prove_te.tar.gz.
# Usage (repo root, GPU machine, after the bundle parts arrived): training/gpu/prove_te.sh
source training/gpu/setup.sh
t0=$(date +%s)
short="train.train_iters=30 checkpoint.save=null"
(
  python3 -m training.gen_bridge_fields "$LOGS/bridge_fields.json"
  python3 training/gpu/diff_bare_config.py "$BLEND" "$TOKENIZER" 4 > "$LOGS/config_diff.txt"
) > "$LOGS/tables.log" 2>&1 &
lane0() {
  export CUDA_VISIBLE_DEVICES=0
  mkdir -p "$LOGS/bare"
  date +%s.%N > "$LOGS/bare_mbs4.start"
  torchrun --nproc_per_node=1 --standalone training/gpu/bare_bridge.py "$BLEND" "$TOKENIZER" \
    "$LOGS/bare" 30 4 > "$LOGS/bare_mbs4.log" 2>&1 || echo "bare FAILED: $(tail -n 5 "$LOGS/bare_mbs4.log")"
  run pipe_mbs4 --model 1b --nproc-per-node 1 --fresh $short train.micro_batch_size=4 || true
  python3 training/gpu/compare_bare.py "$LOGS/bare_mbs4.log" "$LOGS/pipe_mbs4.log" 15 \
    > "$LOGS/records/compare_bare_mbs4.json" && cat "$LOGS/records/compare_bare_mbs4.json" || true
  run pipe_mbs2 --model 1b --nproc-per-node 1 --fresh $short || true
}
lane1() {
  export CUDA_VISIBLE_DEVICES=1
  run fp8_mbs4 --model 1b --nproc-per-node 1 --fresh --precision fp8 $short train.micro_batch_size=4 || true
  run pipe_mbs8 --model 1b --nproc-per-node 1 --fresh $short train.micro_batch_size=8 || true
  run 3b --model 3b --nproc-per-node 1 --fresh train.train_iters=10 checkpoint.save=null \
    train.global_batch_size=8 || true
}
lane0 > "$LOGS/lane0.out" 2>&1 &
lane1 > "$LOGS/lane1.out" 2>&1 &
wait
cat "$LOGS/lane0.out" "$LOGS/lane1.out"
cp "$LOGS/bridge_fields.json" "$LOGS/config_diff.txt" "$OUT/" 2>/dev/null || tail -n 5 "$LOGS/tables.log"
echo "total seconds: $(( $(date +%s) - t0 ))"
