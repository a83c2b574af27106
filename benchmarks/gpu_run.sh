#!/usr/bin/env bash
# Run ON THE GPU MACHINE, from the repo root, with .gpu_carry/ carried (benchmarks/gpu_prepare.sh
# made it): installs any carried wheels, then runs benchmarks/gpu_check.py (at most 8 minutes)
# into $OUT (the run tool's folder that comes back), else benchmarks/gpu/latest, with its log.
#
#   bash benchmarks/gpu_run.sh [gpu_check.py options]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}  # on the GPU machine, the python3 that holds PyTorch
DEST=${OUT:-benchmarks/gpu/latest}
mkdir -p "$DEST"
if ls .gpu_carry/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gpu_check_site .gpu_carry/wheels/*.whl \
    && export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH} \
    || echo "gpu_run.sh: the carried wheels did not install; going on without them" >&2
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export RESNET_ENSEMBLE_CACHE=${RESNET_ENSEMBLE_CACHE:-/tmp/resnet_ensemble_cache}
nvidia-smi -L 2>&1 | head -4
"$PY" benchmarks/gpu_check.py --out "$DEST" "$@" 2>&1 | tee "$DEST/gpu_check.log"
