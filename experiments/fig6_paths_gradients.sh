#!/usr/bin/env bash
# Paper Fig. 6: path lengths, and the gradient carried by paths of each length. Exact per-length
# gradients and the paper's sampled estimator side by side.
# Expected: (a) path lengths follow Binomial(n, 1/2), 95% of ResNet-110's paths are 19-35 blocks
# long; (b) the gradient of a single path falls exponentially with its length; (c) weighted by
# the number of paths, nearly all gradient comes from paths 5-17 blocks long (0.45% of paths).
# Paper scale: MODEL=r110.pt DATASET=cifar10 IMAGES=128 SAMPLES=1000 bash experiments/fig6_paths_gradients.sh
set -euo pipefail
OUT=${OUT:-results/experiments/fig6}
MODEL=${MODEL:-embedded}
IMAGES=${IMAGES:-64}
SAMPLES=${SAMPLES:-200}
data=(); [ -n "${DATASET:-}" ] && data=(--dataset "$DATASET")

ensemble-lesion paths --model "$MODEL" --out "$OUT/paths.csv" --overwrite
ensemble-lesion gradients --model "$MODEL" "${data[@]}" --images "$IMAGES" \
    --samples-per-length "$SAMPLES" --out "$OUT/gradients.csv" --report "$OUT/gradients.md" --overwrite
ensemble-lesion plot "$OUT/paths.csv" "$OUT/gradients.csv" --out "$OUT/figures" --overwrite
