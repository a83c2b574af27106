"""Three test-time readings of a network trained on K random blocks per mini-batch.

Veit et al. (sec. 4.3) train ResNet-110 on K = 23 of its 54 blocks per mini-batch and report its
test error without saying how the network was evaluated. Each reading answers a different
question, so all three are measured side by side:

- ``scaled``: every block runs, its residual scaled by K / n (the model's own evaluation, as
  stochastic depth does): the expected residual of training, with the BatchNorm statistics
  training accumulated;
- ``recalibrated``: every block runs unscaled, with every BatchNorm's statistics re-estimated on
  training images for that full network: the deep network itself;
- ``subnetwork_average``: the softmax averaged over random K-block sub-networks, each run
  unscaled with the training statistics: the ensemble of the networks training saw.

The model is never left modified: the recalibration works on a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from ..blocks.registry import residual_blocks
from ..core.interventions import lesion
from ..models.cifar import unscaled_residuals

__all__ = ["EFFECTIVE_PATH_WAYS", "evaluate_effective_path_network", "recalibrate_batchnorm"]

EFFECTIVE_PATH_WAYS = ("scaled", "recalibrated", "subnetwork_average")

Batch = tuple[Tensor, Tensor]


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Batch]) -> nn.Module:
    """Set every BatchNorm's running statistics to the cumulative average over ``batches``
    (forward passes in training mode, no gradient), weights untouched; returns ``model`` in
    evaluation mode. The caller owns the model: pass a copy to keep the original."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative moving average: every batch weighs the same
    model.train()
    seen = 0
    with torch.no_grad():
        for x, _ in batches:
            model(x)
            seen += int(x.shape[0])
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    if seen == 0:
        raise ValueError("need at least one batch of training images to recalibrate BatchNorm")
    return model.eval()


def _probabilities(model: nn.Module, batches: Sequence[Batch]) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        probs = [torch.softmax(model(x).float(), dim=1) for x, _ in batches]
    return torch.cat(probs), torch.cat([y for _, y in batches])


def _error(probs: Tensor, targets: Tensor) -> float:
    return float((probs.argmax(1) != targets).float().mean())


def evaluate_effective_path_network(
    model: nn.Module,
    test_batches: Sequence[Batch],
    train_batches: Sequence[Batch],
    active_blocks: int,
    *,
    draws: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """The test error of an effective-path network read three ways (``EFFECTIVE_PATH_WAYS``),
    one row each: way, error, images, and for the sub-network average the number of draws and
    the mean error of a single sub-network.

    Args:
        test_batches: the (images, labels) to score, on the model's device.
        train_batches: training images (no augmentation) for the BatchNorm recalibration.
        active_blocks: K, the blocks kept per mini-batch in training.
        draws: random K-block sub-networks averaged (each keeps K blocks drawn uniformly).

    Raises:
        ValueError: K outside 1..n, fewer than one draw, or no test or training images.
    """
    n = len(residual_blocks(model))
    if not 1 <= active_blocks <= n:
        raise ValueError(f"active_blocks must be in 1..{n}, got {active_blocks}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    if not test_batches:
        raise ValueError("need at least one batch of test images")
    was_training = model.training
    model.eval()
    try:
        rows = []
        probs, targets = _probabilities(model, test_batches)
        rows.append({"way": "scaled", "error": _error(probs, targets)})

        full = copy.deepcopy(model)
        with unscaled_residuals(full):
            recalibrate_batchnorm(full, train_batches)
            probs, _ = _probabilities(full, test_batches)
        rows.append({"way": "recalibrated", "error": _error(probs, targets)})
        del full

        generator = torch.Generator().manual_seed(seed)
        total, single_errors = None, []
        with unscaled_residuals(model):
            for _ in range(draws):
                keep = set(torch.randperm(n, generator=generator)[:active_blocks].tolist())
                with lesion(model, drop=[i for i in range(n) if i not in keep]):
                    probs, _ = _probabilities(model, test_batches)
                single_errors.append(_error(probs, targets))
                total = probs if total is None else total + probs
        assert total is not None
        rows.append(
            {
                "way": "subnetwork_average",
                "error": _error(total / draws, targets),
                "draws": draws,
                "single_subnetwork_error": sum(single_errors) / draws,
            }
        )
    finally:
        model.train(was_training)
    frame = pd.DataFrame(rows)
    frame["images"] = int(targets.numel())
    frame["active_blocks"], frame["blocks"] = active_blocks, n
    return frame
