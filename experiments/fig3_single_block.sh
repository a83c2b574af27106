#!/usr/bin/env bash
# Paper Fig. 3: test error when one residual block is deleted, ResNet against the plain control.
# Expected: the ResNet's error barely moves for any block except the downsampling blocks (a
# modest rise); the plain network (no shortcuts) falls to chance level for any deleted layer.
#
# Paper scale (GPU):  ensemble-lesion train --arch resnet110 --dataset cifar10 --download --out r110.pt
#                     ensemble-lesion train --arch plain110  --dataset cifar10 --download --out plain110.pt
#                     MODEL=r110.pt PLAIN=plain110.pt DATASET=cifar10 bash experiments/fig3_single_block.sh
set -euo pipefail
OUT=${OUT:-results/experiments/fig3}
MODEL=${MODEL:-embedded}
DATASET=${DATASET:-}          # empty: the dataset the checkpoint was trained on (embedded subset)
PLAIN=${PLAIN:-}              # a trained plain-network checkpoint; empty skips the control
data=(); [ -n "$DATASET" ] && data=(--dataset "$DATASET")

ensemble-lesion sweep single --model "$MODEL" "${data[@]}" --out "$OUT/single_resnet.csv" --overwrite
tables=("$OUT/single_resnet.csv")
if [ -n "$PLAIN" ]; then
  ensemble-lesion sweep single --model "$PLAIN" "${data[@]}" --out "$OUT/single_plain.csv" --overwrite
  tables+=("$OUT/single_plain.csv")
fi
ensemble-lesion plot "${tables[@]}" --out "$OUT/figures" --overwrite
