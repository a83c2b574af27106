"""Make the embedded held-out test subset: 2,000 Fashion-MNIST test images shipped in the package.

The subset is *stratified*: for each of the 10 classes, 200 of that class's 1,000 test images
are drawn without replacement with ``numpy.random.default_rng(0)`` (classes visited in order
0..9, each drawing from its indices in ascending order); the 2,000 chosen indices are then
sorted. The real test split is read through torchvision (``resnet_ensemble.data.datasets``), from
``--data-dir`` or the Debian package ``dataset-fashion-mnist``.

Writes ``resnet_ensemble/assets/fashion_mnist_test_subset.npz`` atomically (temp file, then
rename) with ``np.savez_compressed``: ``images`` uint8 (2000, 28, 28), ``labels`` int64 (2000,),
``indices`` int64 (2000,) into the test split, and ``seed`` int64 ().

    python experiments/make_embedded_subset.py [--data-dir DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from resnet_ensemble.atomic import atomic_write
from resnet_ensemble.data.datasets import embedded_subset_path, open_fashion_mnist

PER_CLASS = 200
SEED = 0


def choose_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` indices of each class, drawn with a fixed seed, sorted (stratified)."""
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: Debian's)")
    parser.add_argument("--out", type=Path, default=embedded_subset_path())
    args = parser.parse_args()

    test = open_fashion_mnist("test", data_dir=args.data_dir)
    images = test.data.numpy()
    labels = test.targets.numpy().astype(np.int64)
    indices = choose_indices(labels, PER_CLASS, SEED)

    def write(f) -> None:
        np.savez_compressed(
            f,
            images=images[indices],
            labels=labels[indices],
            indices=indices,
            seed=np.int64(SEED),
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, write)
    counts = np.bincount(labels[indices], minlength=10)
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(indices)} images "
        f"from {len(labels)} test images, per class {counts.tolist()}"
    )


if __name__ == "__main__":
    main()
