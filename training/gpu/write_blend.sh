#!/usr/bin/env bash
# Write DIR/gcide.json: GCIDE (DIR/gcide.jsonl.gz) with the tokenizer in DIR/tokenizer,
# 5% of documents for validation, no test split.
set -euo pipefail
dir=$1
cat > "$dir/gcide.json" <<JSON
{"name": "gcide", "tokenizer": "$dir/tokenizer", "split": {"valid": 0.05, "test": 0.0},
 "datasets": [{"name": "gcide", "files": "$dir/gcide.jsonl.gz", "format": "jsonl"}]}
JSON
