"""Export the finished runs of the depth series as committed inference checkpoints.

``ensemble-lesion train`` writes the optimizer's momentum, the RNG states and the history into
its checkpoint so that ``--resume`` continues exactly. The analyses need only the weights and
what rebuilds the model. To keep the whole series (eleven networks, 9 to 54 blocks) under the
30 MB the repository allows, the weights are stored in float16 (BatchNorm statistics included),
except a tensor with a value beyond float16's range (65,504), which stays in float32 (it would
become infinite: stochastic depth at 110 has a BatchNorm running variance above it). They are
loaded back into float32, and every committed analysis runs from these files, so the
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

from resnet_ensemble.models import unscaled_residuals
from resnet_ensemble.models.checkpoints import file_sha256, load_checkpoint, save_checkpoint
from resnet_ensemble.studies.experiment import Experiment, open_experiment


def _test_error(exp: Experiment, *, unscaled: bool = False) -> float:
    """Top-1 error of ``exp.model`` on its whole test split; ``unscaled``: without the residual
    scaling of a stochastic-depth or effective-path network (``models.unscaled_residuals``)."""
    wrong = total = 0
    scaling = unscaled_residuals(exp.model) if unscaled else contextlib.nullcontext()
    with torch.no_grad(), scaling:
        for x, y in exp.loader():
            x, y = x.to(exp.device), y.to(exp.device)
            wrong += int((exp.model(x).argmax(1) != y).sum())
            total += len(y)
    return wrong / total


FLOAT16_MAX = torch.finfo(torch.float16).max


def _round_to_float16(model: torch.nn.Module) -> list[str]:
    """Round every floating-point weight and buffer that fits float16's range to the nearest
    float16 value, in place and still in float32: exactly what loading the file gives back.
    Returns the names of the tensors that do not fit, which are stored in float32."""
    kept = []
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            if value.numel() and float(value.abs().max()) > FLOAT16_MAX:
                kept.append(name)
            else:
                value.copy_(value.half())
    return kept


def _store_as_float16(model: torch.nn.Module, keep_float32: list[str]) -> torch.nn.Module:
    """Cast the floating-point tensors to float16, except those named in ``keep_float32``."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        if tensor.is_floating_point() and name not in keep_float32:
            tensor.data = tensor.data.half()
    return model


def export(train_ckpt: Path, out: Path, *, device: str = "cpu", finished_only: bool = True) -> bool:
    """Write ``train_ckpt``'s weights in float16 to ``out``, with the test error before and
    after the rounding in its metadata. ``finished_only=False`` exports a run part-way (a
    snapshot of training at its current epoch); the metadata's ``epoch`` says which."""
    raw = load_checkpoint(train_ckpt)
    metadata = dict(raw["metadata"])
    history = train_ckpt.with_name(f"{train_ckpt.stem}.history.csv")
    rows = list(csv.DictReader(history.open())) if history.exists() else []
    if finished_only and len(rows) < int(metadata["epochs"]):
        print(f"skip {train_ckpt}: {len(rows)} of {metadata['epochs']} epochs")
        return False
    exp = open_experiment(str(train_ckpt), dataset=raw["dataset"], device=device)
    metadata["trained_sha256"] = exp.loaded.sha256
    metadata["weights_dtype"] = "float16"
    metadata["test_error_float32"] = _test_error(exp)
    kept = _round_to_float16(exp.model)
    if kept:
        metadata["float32_tensors"] = kept
    metadata["test_error_float16"] = _test_error(exp)
    if (raw.get("arch_kwargs") or {}).get("active_blocks"):  # the paper does not say which
        metadata["test_error_float16_unscaled"] = _test_error(exp, unscaled=True)
    save_checkpoint(
        out,
        _store_as_float16(exp.model, kept),
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
