#!/usr/bin/env bash
# Paper Fig. 3, 5a, 6 and 8 at the paper's own depth, as curves over depth (issue 11): train the
# depth series, ResNet-20, 32, 44, 56 and 110 (9 to 54 blocks) on the full Fashion-MNIST with one
# recipe, plus stochastic depth at 20, 56 and 110 and the plain control.
# Effective-path training at 110 is trained by depth_series_effective_paths.sh, because its K
# comes from the effective range measured on the trained ResNet-110.
#
# Recipe, the same at every depth: He et al.'s SGD (lr 0.1, momentum 0.9, weight decay 1e-4,
# batch 128) with their ResNet-110 warm-up (lr 0.01 for 400 iterations = 0.853 epochs of 469
# iterations), then a cosine schedule, for 15 epochs (not 164: a 2-core CPU, no GPU); seed 0.
# Speed: bf16 autocast, channels_last and whole-batch tensor augmentation (benchmarks/README.md,
# "Training"); ResNet-20 is also trained in fp32 with the same seed to check that bf16 matches.
#
# Expected: the paper's claims (robustness to one deletion, short effective paths) grow with depth.
# On a CPU shared with other work, set OMP_NUM_THREADS to the cores that are free: an
# oversubscribed OpenMP pool makes each step many times slower.
#
# Every run writes its checkpoint (with optimizer state) after each epoch and continues with
# --resume, so re-running this script picks up where a killed run stopped and skips finished runs.
# Runs one after another, the cheap depths first (ResNet-110 trains in minutes on a GPU).
# RUNS="resnet56 sd56" trains only those runs, so that two one-thread streams can share the cores.
set -euo pipefail
OUT=${OUT:-results/depth/train}
EPOCHS=${EPOCHS:-15}
DATASET=${DATASET:-fashion-mnist}
RUNS=${RUNS:-}
BIN=${BIN:-ensemble-lesion}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1  # epoch lines reach the log as they happen
# Keep freed memory instead of returning it to the kernel at every step: the CPU otherwise
# spends much of its time on page faults (benchmarks/README.md; 12% faster steps measured here).
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-33554432}
export MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-4294967296}
export MALLOC_TOP_PAD_=${MALLOC_TOP_PAD_:-268435456}
recipe=(--dataset "$DATASET" --epochs "$EPOCHS" --schedule cosine --warmup-epochs 0.853 --seed 0
        --resume --workers 0)
fast=(--amp --channels-last --batch-augment)

run() {  # run NAME ARGS...: one training run, logged beside its checkpoint
    local name=$1; shift
    if [ -n "$RUNS" ] && [[ " $RUNS " != *" $name "* ]]; then return; fi
    local history="$OUT/$name.history.csv"
    # A finished run's resume state is removed once it is exported: its history says it is done.
    if [ -f "$history" ] && [ "$(($(wc -l < "$history") - 1))" -ge "$EPOCHS" ]; then
        echo "== $name: done ($EPOCHS epochs in $history)"; return
    fi
    echo "== $name: $BIN train ${recipe[*]} $* --out $OUT/$name.pt"
    "$BIN" train "${recipe[@]}" "$@" --out "$OUT/$name.pt" 2>&1 | tee -a "$OUT/$name.log"
}

run resnet20 --arch resnet20 "${fast[@]}"
run resnet20_fp32 --arch resnet20 --no-amp --no-channels-last --batch-augment
run resnet32 --arch resnet32 "${fast[@]}"
run sd20 --arch resnet20 --stochastic-depth 0.5 "${fast[@]}"
run plain20 --arch plain20 "${fast[@]}"
run resnet44 --arch resnet44 "${fast[@]}"
run resnet56 --arch resnet56 "${fast[@]}"
run sd56 --arch resnet56 --stochastic-depth 0.5 "${fast[@]}"
run resnet110 --arch resnet110 "${fast[@]}"
run sd110 --arch resnet110 --stochastic-depth 0.5 "${fast[@]}"
