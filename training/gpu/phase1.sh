#!/usr/bin/env bash
# Phase 1: the 1b preset for 2,000 iterations on all of ../shared/corpora blended (bundle.sh),
# DP over the GPUs here, evaluation every 100 iterations. A device call lasts at most 10
# minutes, so the run goes in two calls: the first stops at STOP (train.exit_interval saves a
# checkpoint there), the second runs the same command without STOP and resumes from it, which
# is also the stop/resume proof. Writes the record and each checkpoint's size on disk.
# Usage (repo root, GPU machine): training/gpu/phase1.sh STOP [MBS]; then phase1.sh "" [MBS]
# (the same MBS both times: it is part of the run's key; this session ran with MBS 8).
source training/gpu/setup.sh
t0=$(date +%s)
stop=${1:-}
gpus=$(python3 -c 'import torch; print(torch.cuda.device_count())')
args=(--model 1b --nproc-per-node "$gpus" --tp 1 train.train_iters=2000
  validation.eval_interval=100 checkpoint.save_interval=2000)
[ -n "${2:-}" ] && args+=(train.micro_batch_size="$2")   # else the preset's, fitted to DP
[ -n "$stop" ] && args+=(train.exit_interval="$stop")
name=phase1_${stop:-end}
run "$name" "${args[@]}"
path=$(python3 -c "import json; print(json.load(open('$LOGS/$name.json'))['path'])")
du -sb "$path"/checkpoints/iter_* | tee "$LOGS/records/${name}_checkpoints.txt"
cp "$path"/logs/launch-*.log "$LOGS/" || true
echo "total seconds: $(( $(date +%s) - t0 ))"
