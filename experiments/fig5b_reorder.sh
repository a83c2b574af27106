#!/usr/bin/env bash
# Paper Fig. 5b: error against Kendall tau after k random swaps of same-shape blocks.
# Expected: the error rises smoothly as tau falls from 1 (the trained order).
# Paper scale: MODEL=r110.pt DATASET=cifar10 MAX_SWAPS=20 SAMPLES=10 bash experiments/fig5b_reorder.sh
set -euo pipefail
OUT=${OUT:-results/experiments/fig5b}
MODEL=${MODEL:-embedded}
MAX_SWAPS=${MAX_SWAPS:-10}
SAMPLES=${SAMPLES:-5}
data=(); [ -n "${DATASET:-}" ] && data=(--dataset "$DATASET")

ensemble-lesion sweep reorder --model "$MODEL" "${data[@]}" --max-swaps "$MAX_SWAPS" \
    --samples "$SAMPLES" --out "$OUT/reorder_resnet.csv" --overwrite
ensemble-lesion plot "$OUT/reorder_resnet.csv" --out "$OUT/figures" --overwrite
