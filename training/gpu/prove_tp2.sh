#!/usr/bin/env bash
# Several GPUs on the TE path: the 1b preset at TP=2 with sequence parallel (2 GPUs, 30
# iterations), TP=2 x DP=2 (when 4 GPUs are visible), and the 8b preset at TP=2 for its memory
# and TFLOP/s (6 iterations of global batch 2).
# Usage (repo root, GPU machine, after setup as in training/README.md): prove_tp2.sh [MBS]
source training/gpu/setup.sh
t0=$(date +%s)
gpus=$(python3 -c 'import torch; print(torch.cuda.device_count())')
short="train.train_iters=30 checkpoint.save=null train.micro_batch_size=${1:-4}"
run 1b_tp2_sp --model 1b --nproc-per-node 2 --tp 2 --fresh $short || true
if [ "$gpus" -ge 4 ]; then
  run 1b_tp2dp2 --model 1b --nproc-per-node 4 --tp 2 --fresh $short || true
fi
run 8b_tp2 --model 8b --nproc-per-node 2 --tp 2 --fresh train.train_iters=6 \
  train.global_batch_size=2 checkpoint.save=null || true
echo "total seconds: $(( $(date +%s) - t0 ))"
