#!/usr/bin/env bash
# Paper Fig. 3, 5a, 5b, 6 and 8 on every network of the depth series, then the series as curves
# over depth (issue 11).
# Expected: deleting one block costs less as the network deepens (the paper: no noticeable change
# at 54 blocks, except downsampling blocks); error rises smoothly with k; the single-path gradient
# falls exponentially with length, and the effective range becomes a small share of all paths.
#
# Runs on the committed inference checkpoints (results/depth/checkpoints/, written by
# depth_series_export.py), so it needs no training: each network gets
# `ensemble-lesion reproduce --model CKPT --out results/depth/NAME` (single and k-block deletion
# with k up to 20 or n/2, reordering, the path counts, both gradient estimators on random training
# batches, and the sub-networks where n <= MAX_EXHAUSTIVE), then `ensemble-lesion depth` puts them
# side by side. Finished stages are skipped on a re-run. The CPU scale below took about ten
# minutes per network on two cores; on a GPU raise it (TEST_IMAGES=10000 SAMPLES_PER_LENGTH=125
# MAX_EXHAUSTIVE=20).
set -euo pipefail
ROOT=${ROOT:-results/depth}
BIN=${BIN:-ensemble-lesion}
TEST_IMAGES=${TEST_IMAGES:-2000}
SAMPLES=${SAMPLES:-10}                    # draws per k (deletion) and per swap count (reordering)
GRADIENT_IMAGES=${GRADIENT_IMAGES:-128}   # per batch, the paper's mini-batch
GRADIENT_BATCHES=${GRADIENT_BATCHES:-8}   # random training batches
# Sampled single paths per length per batch; by default fewer the deeper the network (its cost
# grows as n^2): 12 up to 15 blocks (96 per length in all), 6 up to 27 (48), 3 beyond (24).
SAMPLES_PER_LENGTH=${SAMPLES_PER_LENGTH:-}
SIGN_DRAWS=${SIGN_DRAWS:-0}
MAX_EXHAUSTIVE=${MAX_EXHAUSTIVE:-15}      # all 2^n sub-networks up to this n
SUBNETWORK_IMAGES=${SUBNETWORK_IMAGES:-500}
NETWORKS=${NETWORKS:-resnet20 resnet32 resnet44 resnet56 resnet110 sd20 sd56 sd110 plain20 ep110}
ONLY=${ONLY:-}                            # e.g. ONLY=gradients: some stages now, the rest later
only=()
for stage in $ONLY; do only+=(--only "$stage"); done

for name in $NETWORKS; do
    ckpt="$ROOT/checkpoints/$name.pt"
    if [ ! -f "$ckpt" ]; then echo "== $name: no $ckpt yet, skipped"; continue; fi
    depth=${name//[!0-9]/}
    n=$(( 3 * (depth - 2) / 6 ))
    max_k=$(( n / 2 < 20 ? n / 2 : 20 ))
    per_length=${SAMPLES_PER_LENGTH:-$(( n <= 15 ? 12 : n <= 27 ? 6 : 3 ))}
    echo "== $name ($n blocks)"
    if [[ $name == plain* ]]; then  # no shortcuts, so no paths: the control needs its deletions only
        mkdir -p "$ROOT/$name/tables"
        [ -f "$ROOT/$name/tables/single_resnet.csv" ] || "$BIN" sweep single --model "$ckpt" \
            --dataset fashion-mnist --limit "$TEST_IMAGES" \
            --out "$ROOT/$name/tables/single_resnet.csv" > /dev/null
        continue
    fi
    "$BIN" reproduce --model "$ckpt" --dataset fashion-mnist --out "$ROOT/$name" \
        --test-images "$TEST_IMAGES" --samples "$SAMPLES" --max-k "$max_k" --max-swaps 20 \
        --gradient-images "$GRADIENT_IMAGES" --gradient-batches "$GRADIENT_BATCHES" \
        --samples-per-length "$per_length" --sign-draws "$SIGN_DRAWS" \
        --max-exhaustive "$MAX_EXHAUSTIVE" --subnetwork-images "$SUBNETWORK_IMAGES" \
        --subnetwork-samples 0 "${only[@]}" > /dev/null
done
"$BIN" depth "$ROOT" --overwrite
