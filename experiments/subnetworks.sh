#!/usr/bin/env bash
# The unraveled view (paper Sec. 3): every one of the 2^n sub-networks, each a subset of kept
# blocks, evaluated through the engine's prefix tree; beyond MAX_EXHAUSTIVE blocks it samples.
# Expected: error falls smoothly as more blocks are kept, and the average of all sub-networks'
# softmax outputs is close to the full network's, as an ensemble's would be.
set -euo pipefail
OUT=${OUT:-results/experiments/subnetworks}
MODEL=${MODEL:-embedded}
LIMIT=${LIMIT:-500}
data=(); [ -n "${DATASET:-}" ] && data=(--dataset "$DATASET")

# --out writes the path-count table there and the sub-network table beside it, as .subnetworks.csv
ensemble-lesion paths --model "$MODEL" "${data[@]}" --exhaustive --limit "$LIMIT" --out "$OUT/paths.csv" --overwrite
ensemble-lesion plot "$OUT/paths.csv" "$OUT/paths.subnetworks.csv" --out "$OUT/figures" --overwrite
