#!/usr/bin/env bash
# The synthetic science run of docs/results.md (issue 5, item 8): simulate pre-campaign training,
# held-out and campaign data, train the full model (configs/paper.yaml architecture and losses,
# a shortened schedule) on 2 MPI ranks, the base model and its six loss ablations at an equal
# shorter budget (configs/sweep_ablations.yaml), then evaluate everything into one report.
#
#   bash benchmarks/science_run.sh [OUT]          # default OUT=runs/science; about 1.5 h on 2 cores
#
# Sizes (environment): N_TRAIN (40000), N_EVAL (30000 patches simulated per held-out/campaign
# file), EPOCHS (24), EVAL_POINTS (20000 of them evaluated: every criterion exact over all pairs,
# ~2e8 pairs, for 3 baselines + 8 models + the campaign rows). Each step is skipped when its output
# is complete, so an interrupted run continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/science}
N_TRAIN=${N_TRAIN:-40000}
N_EVAL=${N_EVAL:-30000}
EPOCHS=${EPOCHS:-24}
EVAL_POINTS=${EVAL_POINTS:-20000}
BIN=${BIN:-.venv/bin}
mkdir -p "$OUT"
log() { echo "science_run: $(date -u +%H:%M:%S) $*" >&2; }
export OMP_NUM_THREADS=1
CFG=(--config configs/paper.yaml)

if ! ls "$OUT"/train.rank*.h5 >/dev/null 2>&1; then
  log "simulate $N_TRAIN pre-campaign training patches on 2 ranks"
  "$BIN/mpiexec" -n 2 "$BIN/mummi-ml" simulate "${CFG[@]}" --no-progress \
    --preset pre-campaign --patches "$N_TRAIN" --out "$OUT/train.h5"
fi
pids=()
if [ ! -f "$OUT/heldout.h5" ]; then
  log "simulate $N_EVAL held-out pre-campaign patches (+ 20 histories) and $N_EVAL campaign patches"
  "$BIN/mummi-ml" simulate "${CFG[@]}" --no-progress --set continuum.seed=1001 \
    --replica-offset 100 --preset pre-campaign --patches "$N_EVAL" --histories 20 \
    --out "$OUT/heldout.h5" --plot "$OUT/figures_pre" & pids+=($!)
fi
if [ ! -f "$OUT/campaign.h5" ]; then
  "$BIN/mummi-ml" simulate "${CFG[@]}" --no-progress --set continuum.seed=2002 \
    --replica-offset 200 --preset campaign --patches "$N_EVAL" \
    --out "$OUT/campaign.h5" --plot "$OUT/figures_campaign" & pids+=($!)
fi
for p in "${pids[@]}"; do wait "$p"; done

# Full model: the paper's losses and architecture; the paper's lr values with the switches at
# 1/4, 7/12 and 5/6 of the epochs (the paper: 10, 20, 30 of 60).
B1=$((EPOCHS / 4)); B2=$((EPOCHS * 7 / 12)); B3=$((EPOCHS * 5 / 6))
if [ ! -f "$OUT/model/metric.json" ]; then
  log "train the full model: $EPOCHS epochs, lr switches after $B1 $B2 $B3, 2 ranks"
  "$BIN/mpiexec" -n 2 "$BIN/mummi-ml" train "${CFG[@]}" --no-progress --resume \
    --set train.epochs="$EPOCHS" --set "train.lr_boundaries=[$B1,$B2,$B3]" \
    --data "$OUT/train.rank*.h5" --out "$OUT/model"
fi
log "base model + six loss ablations at an equal budget (configs/sweep_ablations.yaml), 2 ranks"
"$BIN/mpiexec" -n 2 "$BIN/mummi-ml" sweep --config configs/sweep_ablations.yaml --no-progress \
  --data "$OUT/train.rank*.h5" --eval-data "$OUT/heldout.h5" --out "$OUT/sweep"

S=$OUT/sweep/runs
log "evaluate"
unset OMP_NUM_THREADS
"$BIN/mummi-ml" evaluate "${CFG[@]}" --set evaluate.n_points="$EVAL_POINTS" --model "$OUT/model" \
  --data "$OUT/heldout.h5" --campaign "$OUT/campaign.h5" --histories "$OUT/heldout.histories.h5" \
  --ablation "all three (sweep budget)=$S/base" \
  --ablation "L_inv=$S/ablation_L_inv" --ablation "L_rad=$S/ablation_L_rad" \
  --ablation "L_lab=$S/ablation_L_lab" --ablation "L_inv+L_rad=$S/ablation_L_inv+L_rad" \
  --ablation "L_inv+L_lab=$S/ablation_L_inv+L_lab" --ablation "L_rad+L_lab=$S/ablation_L_rad+L_lab" \
  --out "$OUT/report"
log "done: $OUT/report/report.html"
