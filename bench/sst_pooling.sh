#!/usr/bin/env bash
# SST-2 recipe variants over seeds, measured on dev (issue #14's SST levers): pooling, max against
# attention or mean (POOLINGS="max attention mean"), and the earlier recipe's dropout, 0.5, against 0.3 or
# 0.65 (POOLINGS="max dropout0.3 dropout0.65").
#
#   bash bench/sst_pooling.sh                          # CPU, one run at a time (10 runs of ~15 min here)
#   PARALLEL=1 bash bench/sst_pooling.sh               # all runs at once
#   DEVICE=cuda PARALLEL=1 bash bench/sst_pooling.sh
#
# Each run is the earlier `sentiment` recipe (bench/configs/sst2-phrases-max.json: max pooling,
# SST phrases, dropout 0.5) or the same with one setting changed (bench/configs/sst2-phrases-*.json;
# models/sentiment/train.json has been `dropout0.3`'s since these runs), trained on train alone
# for the recipe's 8 epochs, seeds $SEEDS. The figure is the final epoch's weights (the run's
# checkpoint, no selection on dev), scored with `bilstm-nlp evaluate` (accuracy, macro-F1); the
# epoch dev picks (the model the run folder keeps) is scored too, for information only. Then
# bench/sst_pooling.py writes bench/results/sst_pooling.json and prints the table.
#
# TRAIN and DEV point at the SST files (default ../shared/corpora/sst/). EPOCHS overrides the
# recipe's 8 (a quick check of the script; the summary then expects that many). TIMEOUT caps each
# training in seconds (0: none): a run stopped early is reported as incomplete, never averaged.
set -euo pipefail
# Configured by environment variables only (-h/--help prints this header).
source "$(dirname "$0")/_env_only.sh"
env_only_arguments "$0" "$@"
DEVICE=${DEVICE:-cpu}
PARALLEL=${PARALLEL:-0}
SEEDS=${SEEDS:-"1 2 3 4 5"}
POOLINGS=${POOLINGS:-"max attention"}
RUNS=${RUNS:-runs}
PYTHON=${PYTHON:-python}
TRAIN=${TRAIN:-../shared/corpora/sst/train.txt}
DEV=${DEV:-../shared/corpora/sst/dev.txt}
EPOCHS=${EPOCHS:-8}
TIMEOUT=${TIMEOUT:-0}
RESULTS=${RESULTS:-bench/results/sst_pooling.json}
mkdir -p "$RUNS"

config_of() {  # the config of a variant: bench/sst_pooling.py's table, the one list of them
    "$PYTHON" bench/sst_pooling.py --config-of "$1"
}

run_one() {  # run_one POOLING SEED: train, then score the final and the dev-picked weights
    local pooling=$1 seed=$2 config
    config=$(config_of "$pooling")
    local name="sst2-$pooling-s$seed"
    local out="$RUNS/$name"
    # A run the timeout stops keeps the checkpoint of its last whole epoch; the summary says so.
    timeout "$TIMEOUT" "$PYTHON" -m bilstm_nlp.cli train --config "$config" \
        --train "$TRAIN" --dev "$DEV" --no-train-with-dev --epochs "$EPOCHS" --seed "$seed" \
        --device "$DEVICE" --threads 1 --no-progress --output "$out" >"$RUNS/$name.log" 2>&1 ||
        echo "training exited with status $?" >>"$RUNS/$name.log"
    if [ -d "$out/checkpoint/model" ]; then
        # Its config records the epoch the checkpoint holds, which the summary checks.
        cp "$out/checkpoint/model/config.json" "$RUNS/$name.final_config.json"
        "$PYTHON" -m bilstm_nlp.cli evaluate "$out/checkpoint/model" "$DEV" --json --threads 1 \
            >"$RUNS/$name.final_dev.json" 2>>"$RUNS/$name.log" || true
    fi
    if [ -f "$out/config.json" ]; then
        "$PYTHON" -m bilstm_nlp.cli evaluate "$out" "$DEV" --json --threads 1 \
            >"$RUNS/$name.best_dev.json" 2>>"$RUNS/$name.log" || true
    fi
}

# Every setting that decides what is trained and where it is written, so the recorded command
# reruns into the same runs and results file.
command="DEVICE=${DEVICE@Q} PARALLEL=${PARALLEL@Q} SEEDS=${SEEDS@Q} POOLINGS=${POOLINGS@Q}"
command+=" EPOCHS=${EPOCHS@Q} TIMEOUT=${TIMEOUT@Q} TRAIN=${TRAIN@Q} DEV=${DEV@Q} RUNS=${RUNS@Q}"
command+=" RESULTS=${RESULTS@Q} bash bench/sst_pooling.sh"
start=$(date +%s)
for pooling in $POOLINGS; do
    config_of "$pooling" >/dev/null
    for seed in $SEEDS; do
        if [ "$PARALLEL" = 1 ]; then run_one "$pooling" "$seed" & else run_one "$pooling" "$seed"; fi
    done
done
wait
"$PYTHON" bench/sst_pooling.py --runs "$RUNS" --seeds $SEEDS --poolings $POOLINGS \
    --epochs "$EPOCHS" --device "$DEVICE" --parallel "$PARALLEL" \
    --wall-seconds $(($(date +%s) - start)) --command "$command" --out "$RESULTS"
