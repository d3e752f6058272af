#!/usr/bin/env bash
# A short seeded training at each given commit, to see which commits change a seeded run (the
# README's reproducibility passage): the `ner` recipe on the first 1/16 of CoNLL-2003 train (the
# learning curve's subset: run `python bench/learning_curve.py` once to write it), the first 420
# blank-line blocks of dev, 2 epochs, seed 1, 1 thread. Prints each commit's two epoch losses and
# dev F1; equal lines mean the commits train identically.
#
#   bash bench/seeded_run_at.sh 003151b^ 003151b e81929f^ e81929f 9d06f42^ 9d06f42 d27f063^ d27f063
#
# Each commit is checked out in a temporary git worktree and imported from there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-$root/.venv/bin/python}
subset=$root/runs/learning-curve/train-0.0625.txt
[ -f "$subset" ] || { echo "$subset is missing: run python bench/learning_curve.py first" >&2; exit 2; }
work=$(mktemp -d)
trap 'for w in "$work"/tree-*; do git -C "$root" worktree remove --force "$w" 2>/dev/null || true; done; rm -rf "$work"' EXIT
"$python" - "$root/../shared/corpora/conll2003/dev.txt" "$work/dev.txt" <<'PY'
import sys
blocks = open(sys.argv[1], encoding="utf-8").read().split("\n\n")
open(sys.argv[2], "w", encoding="utf-8").write("\n\n".join(blocks[:420]) + "\n")
PY
for commit in "$@"; do
    hash=$(git rev-parse --short "$commit")
    tree=$work/tree-$hash
    [ -d "$tree" ] || git worktree add -q --detach "$tree" "$hash"
    # From inside the worktree, so that its bilstm_nlp is the one imported.
    (cd "$tree" && "$python" -m bilstm_nlp.cli train --config "$root/bench/configs/ner.json" \
        --train "$subset" --dev "$work/dev.txt" --epochs 2 --seed 1 --threads 1 \
        --output "$work/run-$hash" --no-progress >/dev/null 2>"$work/err-$hash") \
        || { echo "$commit ($hash): training failed: $(tail -1 "$work/err-$hash")"; continue; }
    "$python" -c '
import json, sys
log = [json.loads(line) for line in open(sys.argv[2])]
print(sys.argv[1], "  ".join("epoch %d: loss %r dev %.2f" % (e["epoch"], e["loss"], e["dev_score"]) for e in log))
' "$commit ($hash)" "$work/run-$hash/train_log.jsonl"
done
