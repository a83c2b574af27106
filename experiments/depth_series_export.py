"""Export the finished runs of the depth series as committed inference checkpoints.

``ensemble-lesion train`` writes the optimizer's momentum, the RNG states and the history into
its checkpoint so that ``--resume`` continues exactly. The analyses need only the weights and
what rebuilds the model. To keep the whole series (eleven networks, 9 to 54 blocks) under the
30 MB the repository allows, the weights are stored in float16 (BatchNorm statistics included);
they are loaded back into float32, and every committed analysis runs from these files, so the
committed tables are exactly what the files give. The float16 rounding moves test error by at
most a few images: each file's metadata gives the test error before and after it.

    python experiments/depth_series_export.py [--train results/depth/train] \\
        [--out results/depth/checkpoints]

A run is exported once its history holds all its epochs; unfinished runs are left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
from pathlib import Path

import torch

from resnet_ensemble.checkpoints import file_sha256, load_checkpoint, save_checkpoint
from resnet_ensemble.experiment import Experiment, open_experiment
from resnet_ensemble.models import unscaled_residuals


def _test_error(exp: Experiment, *, unscaled: bool = False) -> float:
    """Top-1 error of ``exp.model`` on its whole test split; ``unscaled``: without the residual
    scaling of a stochastic-depth or effective-path network (``models.unscaled_residuals``)."""
    wrong = total = 0
    scaling = unscaled_residuals(exp.model) if unscaled else contextlib.nullcontext()
    with torch.no_grad(), scaling:
        for x, y in exp.loader():
            wrong += int((exp.model(x).argmax(1) != y).sum())
            total += len(y)
    return wrong / total


def _round_to_float16(model: torch.nn.Module) -> None:
    """Round every floating-point weight and buffer to the nearest float16 value, in place and
    still in float32: exactly what loading the float16 file gives back."""
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(value.half())


def export(train_ckpt: Path, out: Path) -> bool:
    raw = load_checkpoint(train_ckpt)
    metadata = dict(raw["metadata"])
    history = train_ckpt.with_name(f"{train_ckpt.stem}.history.csv")
    rows = list(csv.DictReader(history.open())) if history.exists() else []
    if len(rows) < int(metadata["epochs"]):
        print(f"skip {train_ckpt}: {len(rows)} of {metadata['epochs']} epochs")
        return False
    exp = open_experiment(str(train_ckpt), dataset=raw["dataset"], device="cpu")
    metadata["trained_sha256"] = exp.loaded.sha256
    metadata["weights_dtype"] = "float16"
    metadata["test_error_float32"] = _test_error(exp)
    _round_to_float16(exp.model)
    metadata["test_error_float16"] = _test_error(exp)
    if (raw.get("arch_kwargs") or {}).get("active_blocks"):  # the paper does not say which
        metadata["test_error_float16_unscaled"] = _test_error(exp, unscaled=True)
    save_checkpoint(
        out,
        exp.model.half(),
        arch=raw["arch"],
        arch_kwargs=raw["arch_kwargs"],
        dataset=raw["dataset"],
        metadata=metadata,
        epoch=raw.get("epoch"),
        normalization=(raw["normalization"]["mean"], raw["normalization"]["std"]),
    )
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {file_sha256(out)[:12]}): test "
        f"error {100 * metadata['test_error_float32']:.2f}% in float32, "
        f"{100 * metadata['test_error_float16']:.2f}% with the float16 weights"
    )
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=Path("results/depth/train"))
    parser.add_argument("--out", type=Path, default=Path("results/depth/checkpoints"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for ckpt in sorted(args.train.glob("*.pt")):
        target = args.out / ckpt.name
        if target.exists():
            print(f"have {target}")
            continue
        export(ckpt, target)


if __name__ == "__main__":
    main()
