#!/usr/bin/env bash
# Paper Fig. 5a: error against the number k of randomly deleted (non-downsampling) blocks.
# Expected: a smooth rise with k, no cliff, since deleting k blocks still leaves 2^(n-k) paths.
# Paper scale: MODEL=r110.pt DATASET=cifar10 MAX_K=20 SAMPLES=10 bash experiments/fig5a_delete_k.sh
set -euo pipefail
OUT=${OUT:-results/experiments/fig5a}
MODEL=${MODEL:-embedded}
MAX_K=${MAX_K:-10}
SAMPLES=${SAMPLES:-5}
data=(); [ -n "${DATASET:-}" ] && data=(--dataset "$DATASET")

ensemble-lesion sweep multi --model "$MODEL" "${data[@]}" --max-k "$MAX_K" --samples "$SAMPLES" \
    --out "$OUT/multi_resnet.csv" --overwrite
ensemble-lesion plot "$OUT/multi_resnet.csv" --out "$OUT/figures" --overwrite
