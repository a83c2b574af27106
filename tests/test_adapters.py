"""The adapter protocol, with the worked example of the package's docs/adapters.md run for real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from resnet_ensemble import lesion, residual_blocks
from resnet_ensemble.core.engine import evaluate_routes

DOC = Path(__file__).resolve().parents[1] / "resnet_ensemble" / "docs" / "adapters.md"


def _doc_example() -> dict:
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[1]
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


def test_worked_example_runs_and_engine_matches_a_hand_written_loop() -> None:
    ns = _doc_example()
    model = ns["model"]
    assert [b.name for b in residual_blocks(model)] == ["fs.0", "fs.1", "fs.2", "fs.3"]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)

    def by_hand(deleted: set[int]) -> float:
        with torch.no_grad():
            h = model.inp(x.flatten(1))
            for i, f in enumerate(model.fs):
                h = h if i in deleted else h + f(h)
            return float((model.out(h).argmax(1) != y).float().mean())

    routes = [[0, 1, 2, 3], [0, 2, 3], [1, 3], []]
    expected = [by_hand({0, 1, 2, 3} - set(r)) for r in routes]
    assert evaluate_routes(model, [(x, y)], routes) == pytest.approx(expected, abs=1e-12)


def test_without_an_owner_the_with_forms_refuse_instead_of_guessing() -> None:
    model = _doc_example()["model"]
    with pytest.raises(ValueError, match=r"block 1 \(fs\.1\) names no owner module"):
        with lesion(model, drop=[1]):
            pass
