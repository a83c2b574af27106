#!/usr/bin/env bash
# Paper Fig. 8: single-block deletion, a normal ResNet against one trained with stochastic depth
# (Huang et al. 2016, survival probability falling linearly to 0.5).
# Expected: the stochastic-depth network is more robust to deleting any one block, and depends
# less on the downsampling blocks.
# Quick (CPU, minutes): the defaults below. Paper scale (GPU): ARCH=resnet110 DATASET=cifar10 EPOCHS=164
set -euo pipefail
OUT=${OUT:-results/experiments/fig8}
ARCH=${ARCH:-resnet20}
DATASET=${DATASET:-fashion-mnist}
EPOCHS=${EPOCHS:-3}
LIMIT=${LIMIT:-12000}          # training images; empty for all
limit=(); [ -n "$LIMIT" ] && limit=(--limit "$LIMIT")

ensemble-lesion train --arch "$ARCH" --dataset "$DATASET" --epochs "$EPOCHS" --schedule cosine \
    "${limit[@]}" --out "$OUT/resnet.pt" --resume
ensemble-lesion train --arch "$ARCH" --dataset "$DATASET" --epochs "$EPOCHS" --schedule cosine \
    "${limit[@]}" --stochastic-depth 0.5 --out "$OUT/stochastic_depth.pt" --resume
ensemble-lesion sweep single --model "$OUT/resnet.pt" --limit 2000 --out "$OUT/single_resnet.csv" --overwrite
ensemble-lesion sweep single --model "$OUT/stochastic_depth.pt" --limit 2000 \
    --out "$OUT/single_stochastic_depth.csv" --overwrite
ensemble-lesion plot "$OUT/single_resnet.csv" "$OUT/single_stochastic_depth.csv" --out "$OUT/figures" --overwrite
