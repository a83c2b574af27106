#!/usr/bin/env bash
# Run HERE (the machine with internet and the repo), before a GPU session: puts into .gpu_carry/
# (ignored by git) what the GPU machine lacks, for the run tool's `carry`:
#   commit.txt       the commit (and whether the tree was dirty) the reports will name
#   fashion-mnist/   the 10,000 Fashion-MNIST test images (t10k-*.gz, 4.3 MB) and the first
#                    10,000 training images (FASHION_TRAIN_IMAGES; 4.4 MB): the paper section
#                    never trains, but draws its gradient batches from the train split, and all
#                    60,000 (26 MB) would crowd the 64 MiB the working tree may take
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
TRAIN=${FASHION_TRAIN_IMAGES:-10000}  # reproduce's gradient batches are drawn from the train split
KINDS=${DEVICE_KINDS:-/work/.library/device/KINDS.md}
rm -rf "$CARRY"
mkdir -p "$CARRY"

{ git rev-parse HEAD; [ -z "$(git status --porcelain --untracked-files=no)" ] || echo dirty; } \
  | paste -sd' ' >"$CARRY/commit.txt"

# -- Fashion-MNIST: the test split as it is, the first $TRAIN training images ---------------
if [ -f "$FMNIST/t10k-images-idx3-ubyte.gz" ] && [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  mkdir -p "$CARRY/fashion-mnist"
  cp "$FMNIST"/t10k-images-idx3-ubyte.gz "$FMNIST"/t10k-labels-idx1-ubyte.gz "$CARRY/fashion-mnist/"
  "$PY" - "$FMNIST" "$CARRY/fashion-mnist" "$TRAIN" <<'EOF'
import gzip, struct, sys
from pathlib import Path
src, out, keep = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
# IDX files: a big-endian header (magic, count[, rows, cols]) and then one byte per pixel/label.
for name, header in (("train-images-idx3-ubyte", 16), ("train-labels-idx1-ubyte", 8)):
    data = gzip.decompress((src / f"{name}.gz").read_bytes())
    count = struct.unpack(">I", data[4:8])[0]
    keep = min(keep, count)
    item = (len(data) - header) // count
    head = data[:4] + struct.pack(">I", keep) + data[8:header]
    (out / f"{name}.gz").write_bytes(gzip.compress(head + data[header:header + keep * item], 6))
print(f"fashion-mnist: the 10,000 test images and the first {keep:,} training images")
EOF
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
