#!/usr/bin/env bash
# Issue 13's sweep on 2 x H200: `pipe sweep training/sweeps/1b.json` (the 1b preset on both GPUs,
# TP=1 x DP=2, 30 iterations per variant, no checkpoints), then each run's record.json, the
# sweep record and a one-line summary per variant in $OUT/records.tar.gz (logs:
# $OUT/logs-sweep.tar.gz).
# Serial: every variant uses both GPUs (the base layout is 2 GPUs), so two cannot share the host.
# Time: about 45-60 s per launch (start-up ~35 s + 30 iterations), 11 launches (nvfp4 is
# refused on Hopper without launching). The sweep stops itself, cleanly (Ctrl-C, exit 130),
# SWEEP_SECONDS after this script started (default 540, inside a 10-minute device call); the
# variant it was running is left pending. Call the script again on the warm machine to resume:
# finished variants are reused from the cache, recorded failures kept (pass --retry-failed).
# Usage (repo root, GPU machine, after the bundle parts arrived as in training/README.md):
#   training/gpu/sweep.sh [SWEEP_FILE] [pipe sweep options, e.g. --only base,tp2]
t_start=$(date +%s)
source training/gpu/setup.sh
file=${1:-training/sweeps/1b.json}
[ $# -gt 0 ] && shift
name=$(python3 -c 'import json, pathlib, sys; p = pathlib.Path(sys.argv[1]); print(json.loads(p.read_text()).get("name", p.stem))' "$file")
left=$(( ${SWEEP_SECONDS:-540} - ($(date +%s) - t_start) ))
echo "sweep $name: $left s left for it"
code=0
# timeout sends SIGINT: pipe sweep stops the running launch and keeps its record whole.
COLUMNS=200 timeout -s INT "$left" python3 -m pipeline.cli sweep "$file" --blend "$BLEND" \
  --cache-dir "$CACHE" --json "$@" 2> "$LOGS/sweep.log" | tail -n 1 > "$LOGS/sweep.json" || code=$?
record="$CACHE/sweeps/$name.json"
if [ ! -f "$record" ]; then
  echo "sweep $name did not start (exit $code):"; tail -n 30 "$LOGS/sweep.log"; exit 1
fi
cp "$record" "$LOGS/records/sweep_$name.json"
# Each run's record (finished or failed), and the last lines of a failed launch's log.
python3 - "$record" "$LOGS/records" <<'EOF'
import json, pathlib, shutil, sys
record, out = json.loads(pathlib.Path(sys.argv[1]).read_text()), pathlib.Path(sys.argv[2])
for v in record["variants"]:
    run = pathlib.Path(v["run_path"]) if v["run_path"] else None
    if run and (run / "record.json").is_file():
        shutil.copy(run / "record.json", out / f"{v['name']}_record.json")
    logs = sorted((run / "logs").glob("launch-*.log")) if run else []
    if v["status"] == "failed" and logs:
        lines = logs[-1].read_text(errors="replace").splitlines()[-200:]
        (out / f"{v['name']}_launch_tail.log").write_text("\n".join(lines) + "\n")
EOF
tar -C "$LOGS" -czf "$OUT/records.tmp" records && mv "$OUT/records.tmp" "$OUT/records.tar.gz"
python3 - "$record" <<'EOF'
import json, pathlib, subprocess, sys
record = json.loads(pathlib.Path(sys.argv[1]).read_text())
for v in record["variants"]:
    line = f"{v['name']:>20} {v['status']:>7}: "
    rec = pathlib.Path(v["run_path"] or "/nonexistent") / "record.json"
    if v["status"] != "failed" and rec.is_file():
        line += subprocess.run([sys.executable, "training/gpu/summarize.py", "--short", str(rec)],
                               capture_output=True, text=True).stdout.strip()
    else:
        line += str(v["reason"])
    print(line)
print("pending:", ", ".join(record["pending"]) or "none")
EOF
grep -A 40 "sweep $name" "$LOGS/sweep.log" | grep -E '^[┏┃┡│└]' || true
echo "total seconds: $(( $(date +%s) - t_start ))"
case $code in
  0) echo "sweep $name: finished, no failures" ;;
  1) echo "sweep $name: finished; failed variants are recorded above" ;;
  124|130) echo "sweep $name: stopped for time; run training/gpu/sweep.sh again to resume" ;;
  *) echo "sweep $name: exit $code"; tail -n 30 "$LOGS/sweep.log"; exit "$code" ;;
esac
