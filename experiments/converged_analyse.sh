#!/usr/bin/env bash
# Paper Fig. 3 and 6 at 54 blocks, on the converged networks (issue 20): the post-activation
# ResNet-110 (60 epochs, and continued by SWA: resnet110_swa), fb.resnet.torch's
# pre-activation ResNet-110 and stochastic depth at 110, from their committed float16
# checkpoints, then the series side by side (`ensemble-lesion depth`).
# Per network: every block deleted alone (Fig. 3) and the gradient per path length on random
# training batches (Fig. 6: exact decomposition and the paper's sampled estimator); with
# FULL=1 also k-block deletion by the authors' protocol (--eligible not-stage-first, 30 draws per
# k) and reordering (--keep-stage-first, 30 draws per swap count).
# Expected (the paper, ResNet-110 on CIFAR-10): one deletion costs little except at
# downsampling blocks; most of the gradient comes from paths much shorter than the typical one;
# stochastic depth is more robust than the ResNet.
# Every step resumes (sweeps with --resume; a finished gradient table is kept). On a CPU core
# a network takes about 20 minutes without FULL; on a GPU set TEST_IMAGES=10000
# SAMPLES_PER_LENGTH=125 FULL=1.
set -euo pipefail
ROOT=${ROOT:-results/converged}
BIN=${BIN:-ensemble-lesion}
NETWORKS=${NETWORKS:-resnet110 resnet110_swa fbpreresnet110 sd110}
TEST_IMAGES=${TEST_IMAGES:-2000}          # single deletions
SWEEP_IMAGES=${SWEEP_IMAGES:-2000}        # k-deletion and reordering (FULL=1)
GRADIENT_BATCHES=${GRADIENT_BATCHES:-4}   # random training batches of GRADIENT_IMAGES images
GRADIENT_IMAGES=${GRADIENT_IMAGES:-128}
SAMPLES_PER_LENGTH=${SAMPLES_PER_LENGTH:-3}
SAMPLES=${SAMPLES:-30}                    # draws per k and per swap count (FULL=1)
FULL=${FULL:-0}
DEPTH=${DEPTH:-1}                         # 0: leave the side-by-side series to a later run
data=(--dataset fashion-mnist --device "${DEVICE:-auto}")
read -r -a bin <<<"$BIN"                  # BIN may be a command line: "python3 -m resnet_ensemble"

for name in $NETWORKS; do
  ckpt="$ROOT/checkpoints/$name.pt"
  if [ ! -f "$ckpt" ]; then echo "== $name: no $ckpt yet, skipped"; continue; fi
  tables="$ROOT/$name/tables"
  mkdir -p "$tables"
  echo "== $name"
  "${bin[@]}" sweep single --model "$ckpt" "${data[@]}" --limit "$TEST_IMAGES" --resume \
    --out "$tables/single_resnet.csv" > /dev/null
  [ -f "$tables/gradients.csv" ] || "${bin[@]}" gradients --model "$ckpt" "${data[@]}" \
    --images "$GRADIENT_IMAGES" --batches "$GRADIENT_BATCHES" --samples-per-length "$SAMPLES_PER_LENGTH" \
    --out "$tables/gradients.csv" --report "$ROOT/$name/gradients.md" > /dev/null
  if [ "$FULL" = 1 ]; then
    "${bin[@]}" sweep multi --model "$ckpt" "${data[@]}" --limit "$SWEEP_IMAGES" --resume \
      --eligible not-stage-first --max-k 20 --samples "$SAMPLES" \
      --out "$tables/multi_resnet.csv" > /dev/null
    "${bin[@]}" sweep reorder --model "$ckpt" "${data[@]}" --limit "$SWEEP_IMAGES" --resume \
      --keep-stage-first --max-swaps 20 --samples "$SAMPLES" \
      --out "$tables/reorder_resnet.csv" > /dev/null
  fi
done
[ "$DEPTH" = 0 ] || "${bin[@]}" depth "$ROOT" --overwrite
