"""The embedded default keeps the promises of its model card (resnet_ensemble/assets/README.md).

The errors are measured with the hand-written forward pass from tests/reference.py on weights
read with plain ``torch.load``, not with the toolkit's loader or engine.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from resnet_ensemble.data.datasets import FASHION_MNIST_SYSTEM_DIR, load_dataset
from resnet_ensemble.models.specs import EMBEDDED_CHECKPOINT

from .reference import cifar_blocks, cifar_forward, reference_model

CARD = EMBEDDED_CHECKPOINT.parent / "README.md"


def _card_error(row_start: str) -> float:
    """The test error (in %) that the model card's table gives on the row starting so."""
    for line in CARD.read_text().splitlines():
        if line.startswith(f"| {row_start}"):
            return float(re.findall(r"([\d.]+)%", line)[-1])
    raise AssertionError(f"no row '{row_start}' in {CARD}")


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return reference_model(EMBEDDED_CHECKPOINT)


def _error_pct(model: nn.Module, dataset: str) -> float:
    data = load_dataset(dataset, "test")
    plan = [(blk, True) for blk in cifar_blocks(model)]
    loader = torch.utils.data.DataLoader(data, batch_size=500)
    wrong = 0
    with torch.no_grad():
        for x, y in loader:
            wrong += int((cifar_forward(model, x, plan).argmax(1) != y).sum())
    return 100 * wrong / len(data)


def test_the_package_stays_under_5_mb() -> None:
    assert sum(p.stat().st_size for p in EMBEDDED_CHECKPOINT.parent.iterdir()) < 5_000_000


def test_the_subset_error_is_the_cards(model: nn.Module) -> None:
    assert _error_pct(model, "embedded") == pytest.approx(
        _card_error("the embedded subset"), abs=0.005
    )


@pytest.mark.skipif(
    not FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_the_full_test_set_error_is_the_cards_and_at_most_7_percent(model: nn.Module) -> None:
    measured = _error_pct(model, "fashion-mnist")
    assert measured == pytest.approx(_card_error("full Fashion-MNIST"), abs=0.005)
    assert measured <= 7.0
