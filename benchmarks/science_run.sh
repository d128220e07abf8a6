#!/usr/bin/env bash
# The synthetic science run of docs/results.md (issue 15, item 4): simulate pre-campaign
# training, held-out and campaign data; train three models on the same data and budget:
#   paper      the paper's model: learned invariance, L_inv + L_rad + L_lab (configs/paper.yaml)
#   group_rl   invariance by construction (model.invariance: group), L_rad + L_lab (w_inv = 0)
#   group_all  invariance by construction, all three losses
# then evaluate each (baselines, pre-campaign Table 1, campaign shift, time vs ground truth) on
# the same EVAL_POINTS held-out points, and once more all three side by side (one Table 1).
#
#   bash benchmarks/science_run.sh [OUT]          # default OUT=runs/science
#
# Sizes (environment): N_TRAIN (40000), N_EVAL (24000 patches simulated per held-out/campaign
# file), EPOCHS (30), GROUP_EPOCHS (EPOCHS: the group models' epochs), EVAL_POINTS (20000
# evaluated: every criterion exact over ~2e8 pairs), THREADS (2: training runs in one process
# with THREADS threads, the fastest setting on a quiet 2-core machine, docs/results.md; 1 when
# the cores are shared), SEPARATE_REPORTS (1: also evaluate the two other models on their own,
# with their shift and time sections). Each step is skipped when its output is complete, so an interrupted run
# continues where it stopped. Every step's wall time goes to OUT/timings.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/science}
N_TRAIN=${N_TRAIN:-40000}
N_EVAL=${N_EVAL:-24000}
EPOCHS=${EPOCHS:-30}
GROUP_EPOCHS=${GROUP_EPOCHS:-$EPOCHS}
SEPARATE_REPORTS=${SEPARATE_REPORTS:-1}
EVAL_POINTS=${EVAL_POINTS:-20000}
THREADS=${THREADS:-2}
BIN=${BIN:-.venv/bin}
mkdir -p "$OUT"
log() { echo "science_run: $(date -u +%H:%M:%S) $*" >&2; }
timed() {  # timed LABEL CMD...: run CMD, append "LABEL seconds" to OUT/timings.txt
    local label=$1 t0=$SECONDS; shift
    "$@"
    echo "$label $((SECONDS - t0))" >>"$OUT/timings.txt"
}
CFG=(--config configs/paper.yaml)

if ! ls "$OUT"/train.rank*.h5 >/dev/null 2>&1; then
  log "simulate $N_TRAIN pre-campaign training patches on 2 ranks"
  OMP_NUM_THREADS=1 timed simulate_train "$BIN/mpiexec" -n 2 "$BIN/mummi-ml" simulate "${CFG[@]}" \
    --no-progress --preset pre-campaign --patches "$N_TRAIN" --out "$OUT/train.h5"
fi
pids=()
if [ ! -f "$OUT/heldout.h5" ]; then
  log "simulate $N_EVAL held-out pre-campaign patches (+ 20 histories) and $N_EVAL campaign patches"
  OMP_NUM_THREADS=1 timed simulate_heldout "$BIN/mummi-ml" simulate "${CFG[@]}" --no-progress \
    --set continuum.seed=1001 --replica-offset 100 --preset pre-campaign --patches "$N_EVAL" \
    --histories 20 --out "$OUT/heldout.h5" --plot "$OUT/figures_pre" & pids+=($!)
fi
if [ ! -f "$OUT/campaign.h5" ]; then
  OMP_NUM_THREADS=1 timed simulate_campaign "$BIN/mummi-ml" simulate "${CFG[@]}" --no-progress \
    --set continuum.seed=2002 --replica-offset 200 --preset campaign --patches "$N_EVAL" \
    --out "$OUT/campaign.h5" --plot "$OUT/figures_campaign" & pids+=($!)
fi
for p in "${pids[@]}"; do wait "$p"; done

# The paper's learning rates with the switches at 1/4, 7/12 and 5/6 of the epochs (the paper:
# 10, 20, 30 of 60).
train() {  # train NAME EPOCHS [--set ...]
    local name=$1 epochs=$2; shift 2
    local b1=$((epochs / 4)) b2=$((epochs * 7 / 12)) b3=$((epochs * 5 / 6))
    if [ ! -f "$OUT/$name/metric.json" ]; then
        log "train $name: $epochs epochs, lr switches after $b1 $b2 $b3, 1 process x $THREADS threads"
        timed "train_$name" "$BIN/mummi-ml" train "${CFG[@]}" --no-progress --resume \
          --set train.epochs="$epochs" --set "train.lr_boundaries=[$b1,$b2,$b3]" \
          --set train.num_threads="$THREADS" "$@" \
          --data "$OUT/train.rank*.h5" --out "$OUT/$name"
    fi
}
train paper "$EPOCHS"
train group_rl "$GROUP_EPOCHS" --set model.invariance=group --set loss.w_inv=0
train group_all "$GROUP_EPOCHS" --set model.invariance=group

evaluate() {  # evaluate NAME OUTDIR [--ablation ...]
    local name=$1 dir=$2; shift 2
    if [ ! -f "$dir/metrics.json" ]; then
        log "evaluate $name -> $dir"
        timed "evaluate_$name" "$BIN/mummi-ml" evaluate "${CFG[@]}" --no-progress \
          --set evaluate.n_points="$EVAL_POINTS" --set evaluate.tsne_points=2000 \
          --model "$OUT/$name" --data "$OUT/heldout.h5" --campaign "$OUT/campaign.h5" \
          --histories "$OUT/heldout.histories.h5" "$@" --out "$dir"
    fi
}
evaluate group_all "$OUT/report" \
  --ablation "paper's model (learned invariance)=$OUT/paper" \
  --ablation "group, L_rad + L_lab=$OUT/group_rl"
if [ "$SEPARATE_REPORTS" = 1 ]; then
  evaluate paper "$OUT/report_paper"
  evaluate group_rl "$OUT/report_group_rl"
fi
log "done: $OUT/report/report.html ($OUT/report_paper, $OUT/report_group_rl); timings in $OUT/timings.txt"
