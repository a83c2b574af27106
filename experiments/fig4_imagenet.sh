#!/usr/bin/env bash
# Paper Fig. 4: single-block deletion on ImageNet (the paper used a pre-activation ResNet-200).
# Expected: the same pattern as on CIFAR-10 (Fig. 3), with the downsampling blocks mattering
# more. Needs ImageNet's validation set as a folder of class folders and a torchvision state dict:
#   IMAGENET=/data/imagenet/val WEIGHTS=resnet152-f82ba261.pth bash experiments/fig4_imagenet.sh
# It runs the lesion sweeps, the paths and the gradient analysis, no training.
set -euo pipefail
: "${IMAGENET:?set IMAGENET to a folder of class folders (ImageNet val)}"
: "${WEIGHTS:?set WEIGHTS to a torchvision state dict, e.g. resnet152-f82ba261.pth}"
ARCH=${ARCH:-resnet152}
OUT=${OUT:-results/imagenet_$ARCH}

ensemble-lesion reproduce --dataset imagenet --data-dir "$IMAGENET" \
    --model "torchvision:$ARCH" --weights-file "$WEIGHTS" --out "$OUT" ${TEST_IMAGES:+--test-images "$TEST_IMAGES"}
