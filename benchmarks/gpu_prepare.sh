#!/usr/bin/env bash
# Run HERE (the machine with internet and the repo), before a GPU session: puts into .gpu_carry/
# (ignored by git) what the GPU machine lacks, for the run tool's `carry`:
#   commit.txt       the commit (and whether the tree was dirty) the reports will name
#   fashion-mnist/   the 10,000 Fashion-MNIST test images (t10k-*.gz, 4.3 MB); the train split is
#                    a valid one-image stand-in (the paper section analyses and never trains,
#                    and the real 26 MB would crowd the 64 MiB the working tree may take)
#   checkpoints/     resnet110.pt of the depth series, only when git ignores it (tracked and
#                    untracked-but-not-ignored files travel with the working tree anyway)
#   wheels/          pure-Python wheels of dependencies the GPU machine does not have
#                    (none as of 2026-11: see benchmarks/README.md, "GPU check")
# Then prints what will travel, against the 64 MiB limit.
#
#   bash benchmarks/gpu_prepare.sh
#   FASHION_MNIST_DIR=/elsewhere VENDOR_WHEELS="click==8.1.8" bash benchmarks/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu_carry
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
FMNIST=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
KINDS=${DEVICE_KINDS:-/work/.library/device/KINDS.md}
rm -rf "$CARRY"
mkdir -p "$CARRY"

{ git rev-parse HEAD; [ -z "$(git status --porcelain --untracked-files=no)" ] || echo dirty; } \
  | paste -sd' ' >"$CARRY/commit.txt"

# -- Fashion-MNIST: the test split as it is, the train split as a one-image stand-in ----------
if [ -f "$FMNIST/t10k-images-idx3-ubyte.gz" ] && [ -f "$FMNIST/t10k-labels-idx1-ubyte.gz" ]; then
  mkdir -p "$CARRY/fashion-mnist"
  cp "$FMNIST"/t10k-images-idx3-ubyte.gz "$FMNIST"/t10k-labels-idx1-ubyte.gz "$CARRY/fashion-mnist/"
  "$PY" - "$CARRY/fashion-mnist" <<'EOF'
import gzip, struct, sys
from pathlib import Path
out = Path(sys.argv[1])
# IDX: magic (0x0803 images / 0x0801 labels), counts, then the bytes: one blank image, label 0.
(out / "train-images-idx3-ubyte.gz").write_bytes(
    gzip.compress(struct.pack(">IIII", 2051, 1, 28, 28) + bytes(28 * 28)))
(out / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(struct.pack(">II", 2049, 1) + b"\0"))
EOF
  echo "fashion-mnist: test split from $FMNIST (train split: a one-image stand-in)"
else
  echo "fashion-mnist: not found in $FMNIST (set FASHION_MNIST_DIR); the paper section will use" \
       "the 2,000 embedded test images instead" >&2
fi

# -- the depth series' ResNet-110 ---------------------------------------------------------------
ckpt=""
for c in results/depth/checkpoints/resnet110.pt results/depth/train/resnet110.pt; do
  [ -f "$c" ] && { ckpt=$c; break; }
done
if [ -z "$ckpt" ]; then
  echo "checkpoint: no results/depth/{checkpoints,train}/resnet110.pt yet; the paper section" \
       "will time a random-init ResNet-110 (labelled so)" >&2
elif git check-ignore -q "$ckpt"; then
  mkdir -p "$CARRY/checkpoints" && cp "$ckpt" "$CARRY/checkpoints/resnet110.pt"
  echo "checkpoint: $ckpt is ignored by git, copied into $CARRY/checkpoints/"
else
  echo "checkpoint: $ckpt travels with the working tree"
fi

# -- wheels of dependencies the GPU machine lacks -------------------------------------------------
wanted=${VENDOR_WHEELS:-$("$PY" - "$KINDS" <<'EOF'
import re, sys
from pathlib import Path
text = Path("pyproject.toml").read_text()
deps = re.findall(r'"([A-Za-z0-9_.\-]+)[^"]*"', re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M).group(1))
deps += ["pytest", "hypothesis"]  # the CUDA tests
kinds = Path(sys.argv[1])
if not kinds.exists():
    sys.exit(0)  # no list to compare with: vendor nothing, gpu_check's env section will tell
listed = re.search(r"Packages: (.*?)\.\s*$", kinds.read_text(), re.M)
have = {p.strip().lower() for p in listed.group(1).split(",")} if listed else set()
print(" ".join(d for d in deps if d.lower() not in have))
EOF
)}
if [ -n "$wanted" ]; then
  mkdir -p "$CARRY/wheels"
  # Pure-Python wheels only (py3-none-any): the GPU machine runs Python 3.12 on x86-64.
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation py --abi none --platform any -d "$CARRY/wheels" $wanted
  echo "wheels: $(ls "$CARRY/wheels" | paste -sd' ')"
else
  echo "wheels: none needed (every dependency is preinstalled on the GPU machine)"
fi

# -- what travels ----------------------------------------------------------------------------------
tree=$( { git ls-files -z; git ls-files -z -o --exclude-standard; } \
        | xargs -0 -r du -cb 2>/dev/null | awk '/\ttotal$/ {s += $1} END {print s + 0}')
carry=$(du -sb "$CARRY" | cut -f1)
total=$(( (tree + carry) / 1048576 ))
echo "travels: working tree $((tree / 1048576)) MiB + $CARRY $((carry / 1048576)) MiB = $total MiB" \
     "(limit 64 MiB)"
[ "$total" -lt 62 ] || { echo "too large for the run tool: leave something out" >&2; exit 1; }
echo "device command: bash benchmarks/gpu_run.sh   (carry: [\"$CARRY\"], timeout_s: 560)"
