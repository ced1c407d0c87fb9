#!/usr/bin/env bash
# Issue 6, scaled to the 4-GPU host that is lent when 8 GPUs are not: the seed plan's 1b run
# in the default layout (TP=2 x DP=2 on 4 GPUs; TP=2 x DP=4 on 8) for 100 iterations, the
# seed's other layouts (all-TP: TP=4; all-DP: TP=1 x DP=4) and the 3b preset at TP=2.
# On an 8-GPU host it runs the seed plan itself (NPROC=8: TP=2 x DP=4, TP=4 x DP=2, TP=1 x DP=8).
# Usage (repo root, GPU machine, after prepare.sh 2000): training/gpu/prove_seed_x4.sh
source training/gpu/setup.sh
n=${NPROC:-$(python3 -c 'import torch; print(torch.cuda.device_count())')}
iters=${ITERS:-100}
short=${SHORT_ITERS:-30}
t0=$(date +%s)
records=()
run() {  # name, then pipe train arguments
  local name=$1; shift
  $PIPE --blend "$BLEND" --cache-dir "$CACHE" --json --fresh --nproc-per-node "$n" "$@" \
    checkpoint.save=null 2>"$LOGS/$name.log" | tail -n 1 > "$LOGS/$name.json"
  cp "$(python3 -c "import json; print(json.load(open('$LOGS/$name.json'))['record'])")" \
    "$OUT/${name}_record.json"
  records+=("$OUT/${name}_record.json")
  echo "$name done at $(( $(date +%s) - t0 )) s"
}
run 1b_default --model 1b train.train_iters="$iters"
run 1b_tp$n --model 1b --tp "$n" train.train_iters="$short"
run 1b_dp$n --model 1b --tp 1 train.train_iters="$short"
run 3b_tp2 --model 3b --tp 2 train.train_iters="${ITERS_3B:-20}" train.global_batch_size=16
python3 training/gpu/summarize.py "${records[@]}" | tee "$OUT/summary.txt"
echo "total seconds: $(( $(date +%s) - t0 ))" | tee -a "$OUT/summary.txt"
