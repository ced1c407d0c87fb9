#!/usr/bin/env bash
# Two GPUs on the TE path: the 1b preset at TP=2 with sequence parallel (30 iterations), and
# the 8b preset at TP=2 for its memory and TFLOP/s (6 iterations of global batch 2).
# Usage (repo root, 2-GPU machine, after prove_te.sh set it up): training/gpu/prove_tp2.sh [MBS]
source training/gpu/setup.sh
t0=$(date +%s)
run 1b_tp2_sp --model 1b --nproc-per-node 2 --tp 2 --fresh train.train_iters=30 \
  checkpoint.save=null train.micro_batch_size="${1:-4}" || true
run 8b_tp2 --model 8b --nproc-per-node 2 --tp 2 --fresh train.train_iters=6 \
  train.global_batch_size=2 checkpoint.save=null || true
echo "total seconds: $(( $(date +%s) - t0 ))"
