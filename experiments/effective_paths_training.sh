#!/usr/bin/env bash
# Paper Sec. 4.3: train on short paths only. Each mini-batch runs a random 23 of ResNet-110's 54
# blocks and deletes the rest (mean path length 11.5). Expected: about the same test error as
# normal training (paper: 5.96% against 6.10%, not a significant difference).
# Quick (CPU): the defaults below (ResNet-20: 9 blocks, 4 active = the paper's 23/54 share).
# Paper scale (GPU): ARCH=resnet110 ACTIVE=23 DATASET=cifar10 EPOCHS=164 LIMIT=
set -euo pipefail
OUT=${OUT:-results/experiments/effective_paths}
ARCH=${ARCH:-resnet20}
ACTIVE=${ACTIVE:-4}
DATASET=${DATASET:-fashion-mnist}
EPOCHS=${EPOCHS:-3}
LIMIT=${LIMIT:-12000}
limit=(); [ -n "$LIMIT" ] && limit=(--limit "$LIMIT")

ensemble-lesion train --arch "$ARCH" --dataset "$DATASET" --epochs "$EPOCHS" --schedule cosine \
    "${limit[@]}" --out "$OUT/resnet.pt" --resume
ensemble-lesion train --arch "$ARCH" --dataset "$DATASET" --epochs "$EPOCHS" --schedule cosine \
    "${limit[@]}" --active-blocks "$ACTIVE" --out "$OUT/effective_paths.pt" --resume
# The two histories (train and test error per epoch) sit beside the checkpoints.
ensemble-lesion --model "$OUT/resnet.pt" --dataset "$DATASET"
ensemble-lesion --model "$OUT/effective_paths.pt" --dataset "$DATASET"
