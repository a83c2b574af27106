#!/usr/bin/env bash
# Paper Fig. 3, 6 and 8 at 54 blocks without the training-length confound (issue 20), on one lent
# GPU in one command: the three networks of the paper's comparison at 54 blocks trained at
# once (experiments/converged_train.py: ResNet-110, fb.resnet.torch's pre-activation ResNet-110,
# stochastic depth at 110), then the GPU check (benchmarks/gpu_check.py) in the time left.
# Expected: longer training lowers every network's error below the depth series' 15 epochs, and
# the authors' pre-activation layout trains best (the paper: 6.10% for ResNet-110 on CIFAR-10).
#
# Run HERE first:  FASHION_TRAIN_IMAGES=60000 bash benchmarks/gpu_prepare.sh   (the whole train
# split into .gpu_carry/), then on the GPU machine, with .gpu_carry carried:
#   bash experiments/converged_gpu.sh
# LIMIT=256 GPU_CHECK_ARGS=--dry-run rehearses it all on a CPU at toy sizes.
# Budget: TRAIN_SECONDS for training (each run picks the epochs that fit, at most 164), the rest
# of TOTAL_SECONDS for the GPU check. What comes back (at most 8 files, 16 MiB each, in $OUT):
#   converged.tar    the final float16 checkpoints, histories with sidecars, logs
#   snapshots.tar    ResNet-110's float16 checkpoints at epochs 5, 15 and 30
#   resume_NAME.pt   the resume state of a run the deadline stopped (continue with --resume)
#   gpu/             gpu_check.json, gpu_check.md and its log
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
TRAIN_SECONDS=${TRAIN_SECONDS:-440}
TOTAL_SECONDS=${TOTAL_SECONDS:-585}
DEST=${OUT:-runs/converged_gpu}
PY=${PYTHON:-python3}
RUNS=results/converged
mkdir -p "$DEST" "$RUNS/train" "$RUNS/checkpoints"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
export RESNET_ENSEMBLE_CACHE=${RESNET_ENSEMBLE_CACHE:-/tmp/resnet_ensemble_cache}

# Fashion-MNIST where the toolkit looks for it (Debian's folder), from the carried copy.
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  mkdir -p "$FMNIST" && cp .gpu_carry/fashion-mnist/*.gz "$FMNIST/"
fi
nvidia-smi -L 2>&1 | head -2

for net in resnet110 fbpreresnet110 sd110; do
  snaps=""; [ "$net" = resnet110 ] && snaps=5,15,30
  # The deadline stops a run after an epoch; timeout is only the backstop.
  timeout $((TRAIN_SECONDS + 75)) "$PY" experiments/converged_train.py "$net" \
    --deadline-in "$TRAIN_SECONDS" --snapshots "$snaps" ${LIMIT:+--limit "$LIMIT"} \
    >"$RUNS/train/$net.log" 2>&1 &
done
while [ -n "$(jobs -r)" ]; do  # one line a minute: the newest epoch of each run
  sleep 60
  for net in resnet110 fbpreresnet110 sd110; do
    tail -n 1 "$RUNS/train/$net.log" 2>/dev/null | cut -c1-160
  done
done
wait
echo "training done after $(($(date +%s) - start)) s"

finals=(); resume=()
for net in resnet110 fbpreresnet110 sd110; do
  if [ -f "$RUNS/checkpoints/$net.pt" ]; then
    finals+=("$RUNS/checkpoints/$net.pt")
  elif [ -f "$RUNS/train/$net.pt" ]; then
    cp "$RUNS/train/$net.pt" "$DEST/resume_$net.pt"
  fi
done
tar -cf "$DEST/converged.tar" "${finals[@]}" "$RUNS"/train/*.history.* "$RUNS"/train/*.log
ls "$RUNS"/checkpoints/*_e*.pt >/dev/null 2>&1 && tar -cf "$DEST/snapshots.tar" "$RUNS"/checkpoints/*_e*.pt
ls -la "$DEST"

left=$((TOTAL_SECONDS - ($(date +%s) - start)))
sections=env,sweeps,gradients  # the trainings above measured training on this GPU already
[ "$left" -ge 250 ] && sections=$sections,training
if [ "$left" -ge 60 ]; then
  mkdir -p "$DEST/gpu"
  # GPU_CHECK_ARGS=--dry-run: toy sizes on a CPU (a rehearsal of this script)
  "$PY" benchmarks/gpu_check.py --out "$DEST/gpu" --sections "$sections" --budget "$left" \
    ${GPU_CHECK_ARGS:-} 2>&1 | tee "$DEST/gpu/gpu_check.log"
else
  echo "no time left for the GPU check ($left s)"
fi
