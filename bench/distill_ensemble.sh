#!/usr/bin/env bash
# An ensemble of one recipe's runs distilled into one model of the same size, measured on dev.
#
#   bash bench/distill_ensemble.sh             # CPU, one run at a time (5 runs of 13-25 min here)
#   PARALLEL=1 bash bench/distill_ensemble.sh  # all teachers at once, then all students
#   DEVICE=cuda PARALLEL=1 bash bench/distill_ensemble.sh
#   NAME=sst2 CONFIG=bench/configs/sst2-phrases-dropout0.3.json DEV=../shared/corpora/sst/dev.txt \
#       SEEDS="1 2 3" PARALLEL=1 bash bench/distill_ensemble.sh     # the `sentiment` recipe
#
# Teachers: $CONFIG (default the `ner` recipe until 2026-12-05, bench/configs/ner-40-epochs.json)
# on train alone, seeds $SEEDS, the last epoch's weights (the run's checkpoint: no selection on
# dev). Students: the same recipe, seeds $STUDENT_SEEDS, taught by all teachers with the teachers'
# share of the target at each of $WEIGHTS. Then bench/ensemble.py scores every teacher, their
# ensemble and the students on $DEV (bench/results/ensemble.json, or $ENSEMBLE_OUT); each
# student's last-epoch figure is in its train_log.jsonl too. Runs are $RUNS/$NAME-teacher-* and
# $RUNS/$NAME-student-*; a run whose folder already has its card (it finished) is not trained
# again, so an interrupted experiment goes on where it stopped.
# WITH_DEV=1 also trains the teachers and students on train + dev (the shipped protocol).
# MAX_MINUTES caps each training (0: none); a capped run says so in its log. EPOCHS overrides
# the recipe's epochs (a quick check of the script).
set -euo pipefail
# Configured by environment variables only (-h/--help prints this header).
source "$(dirname "$0")/_env_only.sh"
env_only_arguments "$0" "$@"
DEVICE=${DEVICE:-cpu}
PARALLEL=${PARALLEL:-0}
SEEDS=${SEEDS:-"1 2 3"}
WEIGHTS=${WEIGHTS:-"0.5"}
STUDENT_SEEDS=${STUDENT_SEEDS:-"1 2"}
WITH_DEV=${WITH_DEV:-0}
MAX_MINUTES=${MAX_MINUTES:-0}
STUDENT_MAX_MINUTES=${STUDENT_MAX_MINUTES:-$MAX_MINUTES}
RUNS=${RUNS:-runs}
PYTHON=${PYTHON:-python}
CONFIG=${CONFIG:-bench/configs/ner-40-epochs.json}
NAME=${NAME:-ner}
DEV=${DEV:-../shared/corpora/conll2003/dev.txt}
EPOCHS=${EPOCHS:-}
ENSEMBLE_OUT=${ENSEMBLE_OUT:-bench/results/ensemble.json}
mkdir -p "$RUNS"

train() {  # train OUTPUT LOG ARGS...
    local output=$1 log=$2
    shift 2
    if [ -f "$output/README.md" ]; then
        echo "$output has finished: not trained again"
        return
    fi
    "$PYTHON" -m bilstm_nlp.cli train --config "$CONFIG" --device "$DEVICE" --no-progress \
        --output "$output" ${EPOCHS:+--epochs "$EPOCHS"} "$@" >"$log" 2>&1
}

launch() {  # in the background when PARALLEL=1
    if [ "$PARALLEL" = 1 ]; then "$@" & else "$@"; fi
}

protocols=(alone)
[ "$WITH_DEV" = 1 ] && protocols+=(with-dev)
for protocol in "${protocols[@]}"; do
    flag=--no-train-with-dev
    [ "$protocol" = with-dev ] && flag=--train-with-dev
    for seed in $SEEDS; do
        out="$RUNS/$NAME-teacher-$protocol-s$seed"
        launch train "$out" "$out.log" $flag --seed "$seed" --max-minutes "$MAX_MINUTES"
    done
done
wait
for protocol in "${protocols[@]}"; do
    flag=--no-train-with-dev
    [ "$protocol" = with-dev ] && flag=--train-with-dev
    teachers=()
    for seed in $SEEDS; do
        teachers+=(--distill-from "$RUNS/$NAME-teacher-$protocol-s$seed/checkpoint/model")
    done
    for weight in $WEIGHTS; do
        for seed in $STUDENT_SEEDS; do
            out="$RUNS/$NAME-student-$protocol-w$weight-s$seed"
            launch train "$out" "$out.log" $flag --seed "$seed" \
                --max-minutes "$STUDENT_MAX_MINUTES" "${teachers[@]}" --distill-weight "$weight"
        done
    done
done
wait
members=()
for seed in $SEEDS; do members+=("$RUNS/$NAME-teacher-alone-s$seed/checkpoint/model"); done
students=()
for weight in $WEIGHTS; do
    for seed in $STUDENT_SEEDS; do
        students+=("$RUNS/$NAME-student-alone-w$weight-s$seed/checkpoint/model")
    done
done
# Every setting that decides what is trained and where it is written, so the recorded command
# reruns into the same runs and results file.
command="DEVICE=${DEVICE@Q} PARALLEL=${PARALLEL@Q} SEEDS=${SEEDS@Q} WEIGHTS=${WEIGHTS@Q}"
command+=" STUDENT_SEEDS=${STUDENT_SEEDS@Q} WITH_DEV=${WITH_DEV@Q} MAX_MINUTES=${MAX_MINUTES@Q}"
command+=" STUDENT_MAX_MINUTES=${STUDENT_MAX_MINUTES@Q} CONFIG=${CONFIG@Q} NAME=${NAME@Q}"
command+=" DEV=${DEV@Q} EPOCHS=${EPOCHS@Q} RUNS=${RUNS@Q} ENSEMBLE_OUT=${ENSEMBLE_OUT@Q}"
command+=" bash bench/distill_ensemble.sh"
"$PYTHON" bench/ensemble.py --models "${members[@]}" --students "${students[@]}" \
    --dev "$DEV" --device "$DEVICE" --command "$command" --out "$ENSEMBLE_OUT"
