#!/usr/bin/env bash
# Several GPUs of one host: TP=2 (2 GPUs), then TP=2 x DP=2 (4 GPUs, if there are 4).
# Usage (repo root, GPU machine): training/gpu/prove_parallel.sh
source training/gpu/setup.sh
gpus=$(python3 -c 'import torch; print(torch.cuda.device_count())')
t0=$(date +%s)
run() {  # name, then pipe train arguments
  local name=$1; shift
  $PIPE --blend "$BLEND" --cache-dir "$CACHE" --json --fresh "$@" 2>"$LOGS/$name.log" |
    tail -n 1 > "$LOGS/$name.json"
  cp "$(python3 -c "import json; print(json.load(open('$LOGS/$name.json'))['record'])")" \
    "$OUT/${name}_record.json"
}
run tiny_tp2 --model tiny --nproc-per-node 2 --tp 2
run 1b_tp2 --model 1b --nproc-per-node 2 --tp 2 train.train_iters=30 checkpoint.save=null
records=("$OUT/tiny_tp2_record.json" "$OUT/1b_tp2_record.json")
if [ "$gpus" -ge 4 ]; then
  run 1b_tp2dp2 --model 1b --nproc-per-node 4 train.train_iters=30 checkpoint.save=null
  records+=("$OUT/1b_tp2dp2_record.json")
else
  run 1b_dp2 --model 1b --nproc-per-node 2 --tp 1 train.train_iters=30 checkpoint.save=null
  records+=("$OUT/1b_dp2_record.json")
fi
python3 training/gpu/summarize.py "${records[@]}" | tee "$OUT/summary.txt"
echo "total seconds: $(( $(date +%s) - t0 ))" | tee -a "$OUT/summary.txt"
