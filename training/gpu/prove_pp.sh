#!/usr/bin/env bash
# Four GPUs of one host: pipeline parallel (PP=2, and TP=2 x PP=2 on the 1b preset), and a run
# stopped on 1 GPU at iteration 25 then resumed on 2 GPUs with TP=2 (torch_dist resharding):
# the run key leaves the layout out, so this must continue the same run.
# Usage (repo root, GPU machine): training/gpu/prove_pp.sh
source training/gpu/setup.sh
t0=$(date +%s)
run() {  # name, then pipe train arguments
  local name=$1; shift
  $PIPE --blend "$BLEND" --cache-dir "$CACHE" --json "$@" 2>"$LOGS/$name.log" |
    tail -n 1 > "$LOGS/$name.json"
  cat "$LOGS/$name.json"
}
record() { cp "$(python3 -c "import json; print(json.load(open('$LOGS/$1.json'))['record'])")" "$OUT/$2"; }
run tiny_pp2 --model tiny --nproc-per-node 2 --tp 1 --pp 2 --fresh
record tiny_pp2 tiny_pp2_record.json
run 1b_tp2pp2 --model 1b --nproc-per-node 4 --pp 2 --fresh train.train_iters=30 checkpoint.save=null
record 1b_tp2pp2 1b_tp2pp2_record.json
run tiny_reshard_a --model tiny --nproc-per-node 1 --fresh train.exit_interval=25 train.train_iters=40
if run tiny_reshard_b --model tiny --nproc-per-node 2 --tp 2 train.train_iters=40; then
  record tiny_reshard_b tiny_reshard_record.json
else
  echo "RESHARD FAILED: resuming a TP=1 run with TP=2"; tail -n 40 "$LOGS/tiny_reshard_b.log"
fi
python3 training/gpu/summarize.py "$OUT"/*_record.json | tee "$OUT/summary.txt"
echo "total seconds: $(( $(date +%s) - t0 ))" | tee -a "$OUT/summary.txt"
