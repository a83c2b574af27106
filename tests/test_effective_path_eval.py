"""The three readings of an effective-path network, against the hand-written CIFAR forward of
tests/reference.py (residuals unscaled by setting each block's survival to 1 by hand)."""

from __future__ import annotations

import copy

import pytest
import torch

from resnet_ensemble.models import build_builtin
from resnet_ensemble.studies.effective_path_eval import (
    evaluate_effective_path_network,
    recalibrate_batchnorm,
)

from .reference import cifar_blocks, cifar_forward

K = 3


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_builtin("resnet14", num_classes=4, in_channels=1, active_blocks=K)
    with torch.no_grad():  # statistics that differ from the defaults, so recalibration shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _batches(seed: int, count: int = 2, size: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 1, 12, 12, generator=g), torch.randint(0, 4, (size,), generator=g))
        for _ in range(count)
    ]


def _unscaled_copy(model: torch.nn.Module) -> torch.nn.Module:
    twin = copy.deepcopy(model)
    for blk in cifar_blocks(twin):
        blk.drop_path.survival = 1.0
    return twin


def _error(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) != y).float().mean())


def test_three_readings_match_the_hand_written_forward() -> None:
    model = _network()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    test, train = _batches(1), _batches(2)
    x = torch.cat([b[0] for b in test])
    y = torch.cat([b[1] for b in test])
    table = evaluate_effective_path_network(model, test, train, K, draws=3, seed=5).set_index("way")
    blocks = cifar_blocks(model)
    with torch.no_grad():
        # Scaled: every block, residual times K / n (the reference scales by survival).
        scaled = cifar_forward(model, x, [(b, True) for b in blocks])
        assert table.loc["scaled", "error"] == pytest.approx(_error(scaled, y))
        # Sub-network average: the same K-block draws, unscaled, softmax averaged.
        twin = _unscaled_copy(model)
        g = torch.Generator().manual_seed(5)
        probs, singles = 0, []
        for _ in range(3):
            keep = set(torch.randperm(len(blocks), generator=g)[:K].tolist())
            route = [(b, i in keep) for i, b in enumerate(cifar_blocks(twin))]
            p = torch.softmax(cifar_forward(twin, x, route), 1)
            singles.append(_error(p, y))
            probs = probs + p
        assert table.loc["subnetwork_average", "error"] == pytest.approx(_error(probs / 3, y))
        assert table.loc["subnetwork_average", "single_subnetwork_error"] == pytest.approx(
            sum(singles) / 3
        )
    # The model is left as it was.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(b.drop_path.survival == pytest.approx(K / len(blocks)) for b in blocks)


def test_recalibration_on_one_batch_gives_that_batchs_statistics() -> None:
    model = _network()
    ((x, y),) = _batches(3, count=1, size=512)
    twin = _unscaled_copy(model)
    recalibrate_batchnorm(twin, [(x, y)])
    with torch.no_grad():
        # Training mode normalises by the batch's own statistics: what recalibration stores
        # (up to the unbiased variance, 512 / 511).
        train_mode = copy.deepcopy(_unscaled_copy(model)).train()(x)
        calibrated = twin(x)
    assert torch.allclose(calibrated, train_mode, atol=2e-2, rtol=2e-2)
    table = evaluate_effective_path_network(model, [(x, y)], [(x, y)], K, draws=1)
    recal = table.set_index("way").loc["recalibrated", "error"]
    assert recal == pytest.approx(_error(calibrated, y))


def test_bad_arguments_are_refused() -> None:
    model = _network()
    with pytest.raises(ValueError, match="active_blocks"):
        evaluate_effective_path_network(model, _batches(1), _batches(2), 99)
    with pytest.raises(ValueError, match="draws"):
        evaluate_effective_path_network(model, _batches(1), _batches(2), K, draws=0)
    with pytest.raises(ValueError, match="training images"):
        evaluate_effective_path_network(model, _batches(1), [], K)
