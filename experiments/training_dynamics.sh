#!/usr/bin/env bash
# Paper Fig. 3, 5b and 6 at every kept epoch of one training run (issue 20): how the ensemble
# behaviour emerges in training (no paper has this curve).
# One training run of the post-activation ResNet-110 (54 blocks) on Fashion-MNIST, analysed at
# every kept epoch from its committed float16 snapshots: epoch 0 (the initialisation, BatchNorm
# statistics calibrated on training images), 5, 15 and the end.
# At each epoch:
#   - every block deleted alone (paper Fig. 3): mean and median error ÷ the full network's;
#   - reordering by the authors' protocol (--keep-stage-first: swaps within a stage that never
#     move its first block), 1 to 10 swaps, 30 draws each: the median error after 1, 3, 10;
#   - the gradient per path length on random training batches, exactly and by the paper's
#     sampled estimator: the effective range both ways and the single-path decay per block.
# Expected: at initialisation the single-path gradient already falls with length (the
# binomial structure of the unrolled network); training shapes robustness to deletion and
# reordering, which the paper reports for the trained network.
# Then `ensemble-lesion dynamics` draws the table, the figure and summary.md from the folders.
#
#   bash experiments/training_dynamics.sh
#   SNAPSHOTS="0:a.pt 10:b.pt" ROOT=elsewhere bash experiments/training_dynamics.sh
# Every step resumes (sweeps with --resume; a finished gradient table is kept), so a killed run
# continues where it stopped. The CPU scale below takes about 15 minutes per epoch on one core;
# on a GPU raise it (TEST_IMAGES=10000 SWAP_IMAGES=10000 SAMPLES_PER_LENGTH=125).
set -euo pipefail
ROOT=${ROOT:-results/converged/dynamics}
CKPTS=${CKPTS:-results/converged/checkpoints}
BIN=${BIN:-ensemble-lesion}
SNAPSHOTS=${SNAPSHOTS:-"0:$CKPTS/resnet110_e0.pt 5:$CKPTS/resnet110_23ep_e5.pt 15:$CKPTS/resnet110_23ep_e15.pt 23:$CKPTS/resnet110_23ep.pt"}
TEST_IMAGES=${TEST_IMAGES:-1000}          # single deletions
SWAP_IMAGES=${SWAP_IMAGES:-500}           # reordering: 300 routes
SWAP_SAMPLES=${SWAP_SAMPLES:-30}          # draws per number of swaps: a stable median
MAX_SWAPS=${MAX_SWAPS:-10}
GRADIENT_BATCHES=${GRADIENT_BATCHES:-4}   # random training batches of 128 images
SAMPLES_PER_LENGTH=${SAMPLES_PER_LENGTH:-3}
GRADIENTS=${GRADIENTS:-1}                 # 0: deletions and swaps of every epoch first
DRAW=${DRAW:-1}                           # 0: leave the table and figure to a later run
data=(--dataset fashion-mnist --device "${DEVICE:-cpu}")
read -r -a bin <<<"$BIN"                  # BIN may be a command line: "python3 -m resnet_ensemble"

for pair in $SNAPSHOTS; do
  epoch=${pair%%:*}; ckpt=${pair#*:}
  tables="$ROOT/e$epoch/tables"
  mkdir -p "$tables"
  echo "== epoch $epoch: $ckpt"
  "${bin[@]}" sweep single --model "$ckpt" "${data[@]}" --limit "$TEST_IMAGES" --resume \
    --out "$tables/single_resnet.csv" > /dev/null
  "${bin[@]}" sweep reorder --model "$ckpt" "${data[@]}" --limit "$SWAP_IMAGES" --resume \
    --keep-stage-first --max-swaps "$MAX_SWAPS" --samples "$SWAP_SAMPLES" \
    --out "$tables/reorder_resnet.csv" > /dev/null
  [ "$GRADIENTS" = 0 ] || [ -f "$tables/gradients.csv" ] || "${bin[@]}" gradients --model "$ckpt" "${data[@]}" \
    --images 128 --batches "$GRADIENT_BATCHES" --samples-per-length "$SAMPLES_PER_LENGTH" \
    --out "$tables/gradients.csv" --report "$ROOT/e$epoch/gradients.md" > /dev/null
done
[ "$DRAW" = 0 ] || "${bin[@]}" dynamics "$ROOT" --overwrite
