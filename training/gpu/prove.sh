#!/usr/bin/env bash
# One GPU: tiny model 50 iterations with a checkpoint at 25, stop, resume to 50; then the 1b
# preset for 30 iterations (throughput). Logs and run records go to $OUT.
# Usage (repo root, GPU machine): training/gpu/prove.sh   (after prepare.sh where needed)
source training/gpu/setup.sh
summary() { python3 training/gpu/summarize.py "$@"; }
t0=$(date +%s)
# 1. tiny: stop at iteration 25 (train.exit_interval saves a checkpoint there) ...
$PIPE --blend "$BLEND" --model tiny --nproc-per-node 1 --cache-dir "$CACHE" --json \
  train.exit_interval=25 2>"$LOGS/tiny_a.log" | tail -n 1 | tee "$LOGS/tiny_a.json"
# ... the same command without the exit resumes the same run from 25 and finishes at 50.
$PIPE --blend "$BLEND" --model tiny --nproc-per-node 1 --cache-dir "$CACHE" --json \
  2>"$LOGS/tiny_b.log" | tail -n 1 | tee "$LOGS/tiny_b.json"
cp "$(python3 -c "import json; print(json.load(open('$LOGS/tiny_b.json'))['record'])")" \
  "$OUT/tiny_record.json"
# 2. 1b preset, 30 iterations, no checkpoint (20 GB of optimizer state is not the point here).
$PIPE --blend "$BLEND" --model 1b --nproc-per-node 1 --cache-dir "$CACHE" --json \
  train.train_iters=30 checkpoint.save=null 2>"$LOGS/1b.log" | tail -n 1 | tee "$LOGS/1b.json"
cp "$(python3 -c "import json; print(json.load(open('$LOGS/1b.json'))['record'])")" \
  "$OUT/1b_record.json"
summary "$OUT/tiny_record.json" "$OUT/1b_record.json" | tee "$OUT/summary.txt"
echo "total seconds: $(( $(date +%s) - t0 ))" | tee -a "$OUT/summary.txt"
