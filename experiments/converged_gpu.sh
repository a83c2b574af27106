#!/usr/bin/env bash
# Paper Fig. 3, 6 and sec. 4.3 at 54 blocks, converged (issue 20), on one lent GPU in one command:
# the networks of the paper's comparison trained at once to a fixed epoch count
# (experiments/converged_train.py): the post-activation
# ResNet-110, fb.resnet.torch's pre-activation ResNet-110, stochastic depth at 110 and
# effective-path training at the paper's K = 23 of 54; then, in the time left, the analyses of
# the finished networks on the same GPU (experiments/converged_analyse.sh at GPU scale).
# Expected: 60 epochs bring the post-activation ResNet-110 to about 6% (6.68% after 36
# epochs at batch 256), the authors' pre-activation layout trains best, stochastic depth and
# effective-path training close the gap they showed at 23 and 15 epochs.
#
# Run HERE first:  FASHION_TRAIN_IMAGES=60000 bash benchmarks/gpu_prepare.sh   (the whole train
# split into .gpu_carry/), then on the GPU machine, with .gpu_carry carried:
#   bash experiments/converged_gpu.sh
# A rehearsal on a CPU at toy sizes: LIMIT=512 EPOCHS=2 DEVICE=cpu TEST_IMAGES=200
# SWEEP_IMAGES=100 GRADIENT_BATCHES=1 GRADIENT_IMAGES=8 SAMPLES_PER_LENGTH=1 bash ...
# Budget: every run stops after the epoch that passes TRAIN_SECONDS (resumably: its resume
# state comes back); the analyses get what is left of TOTAL_SECONDS. What comes back in $OUT
# (at most 8 files, 16 MiB each):
#   converged.tar   final float16 checkpoints, ResNet-110's snapshots, histories with
#                   sidecars, logs
#   analyses.tar    the analysis folders (tables, reports, figures) of the finished networks
#   resume_NAME.pt  the resume state of a run the deadline stopped (continue it with the same
#                   command: converged_train.py resumes)
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
EPOCHS=${EPOCHS:-60}
BATCH=${BATCH:-512}
LR=${LR:-0.2}
TRAIN_SECONDS=${TRAIN_SECONDS:-480}
TOTAL_SECONDS=${TOTAL_SECONDS:-575}
NETWORKS=${NETWORKS:-resnet110 fbpreresnet110 sd110 ep110k23}
DEVICE=${DEVICE:-auto}
DEST=${OUT:-runs/converged_gpu}
PY=${PYTHON:-python3}
ROOT=${ROOT:-runs/converged60}   # never the committed results/converged: copy back by hand
mkdir -p "$DEST" "$ROOT/train" "$ROOT/checkpoints"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
export RESNET_ENSEMBLE_CACHE=${RESNET_ENSEMBLE_CACHE:-/tmp/resnet_ensemble_cache}

# Fashion-MNIST where the toolkit looks for it (Debian's folder), from the carried copy.
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  mkdir -p "$FMNIST" && cp .gpu_carry/fashion-mnist/*.gz "$FMNIST/"
fi
nvidia-smi -L 2>&1 | head -2

for net in $NETWORKS; do
  snaps=""; [ "$net" = resnet110 ] && snaps=5,15,30
  # The deadline stops a run after an epoch; timeout is only the backstop.
  timeout $((TOTAL_SECONDS - 20)) "$PY" experiments/converged_train.py "$net" \
    --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" --device "$DEVICE" \
    --deadline-in "$TRAIN_SECONDS" --grace 0 --snapshots "$snaps" \
    --out "$ROOT/train" --exports "$ROOT/checkpoints" ${LIMIT:+--limit "$LIMIT"} \
    >"$ROOT/train/$net.log" 2>&1 &
done
while [ -n "$(jobs -r)" ]; do  # one line every 30 s: the newest epoch of each run
  sleep 30
  for net in $NETWORKS; do tail -n 1 "$ROOT/train/$net.log" 2>/dev/null | cut -c1-150; done
done
wait
echo "training done after $(($(date +%s) - start)) s"

finals=()
for net in $NETWORKS; do
  if [ -f "$ROOT/checkpoints/$net.pt" ]; then
    finals+=("$net")
  elif [ -f "$ROOT/train/$net.pt" ]; then
    cp "$ROOT/train/$net.pt" "$DEST/resume_$net.pt"
  fi
done
tar -cf "$DEST/converged.tar" "$ROOT"/checkpoints "$ROOT"/train/*.history.* "$ROOT"/train/*.log

# The analyses of the finished networks, one process each (a GPU process here waits on its
# kernel launches, so several share the GPU well), until TOTAL_SECONDS; each step resumes.
left=$((TOTAL_SECONDS - ($(date +%s) - start) - 15))
if [ "${ANALYSE:-1}" = 1 ] && [ "$left" -ge 30 ] && [ ${#finals[@]} -gt 0 ]; then
  echo "analyses of ${finals[*]} in $left s"
  for net in "${finals[@]}"; do
    [ "$net" = ep110k23 ] && continue  # trained on K blocks: evaluated by its own script
    ROOT="$ROOT" NETWORKS="$net" BIN="$PY -m resnet_ensemble" DEPTH=0 DEVICE="$DEVICE" \
      TEST_IMAGES=${TEST_IMAGES:-10000} SWEEP_IMAGES=${SWEEP_IMAGES:-2000} \
      GRADIENT_BATCHES=${GRADIENT_BATCHES:-8} GRADIENT_IMAGES=${GRADIENT_IMAGES:-128} \
      SAMPLES_PER_LENGTH=${SAMPLES_PER_LENGTH:-25} FULL=1 SAMPLES=30 \
      timeout "$left" bash experiments/converged_analyse.sh >"$ROOT/analyse_$net.log" 2>&1 &
  done
  wait
  tar -cf "$DEST/analyses.tar" --exclude='*.pt' "$ROOT"/*/tables "$ROOT"/*/*.md \
    "$ROOT"/*/*_figures "$ROOT"/analyse_*.log 2>/dev/null
fi
ls -la "$DEST"
echo "all done after $(($(date +%s) - start)) s"
