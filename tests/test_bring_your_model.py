"""Every example of docs/bring_your_model.md runs, and says what the page says it does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from resnet_ensemble import residual_blocks

DOC = Path(__file__).resolve().parents[1] / "docs" / "bring_your_model.md"


def _example(heading: str) -> dict:
    text = DOC.read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


def test_timm_example() -> None:
    pytest.importorskip("timm")
    ns = _example("timm")
    assert ns["logits"].shape == (2, 1000)
    assert 0.0 <= ns["full"] <= 1.0 and 0.0 <= ns["without_1"] <= 1.0
    assert [t.before for t in ns["found"].transitions] == [2, 4, 10]


def test_hugging_face_example() -> None:
    pytest.importorskip("transformers")
    ns = _example("Hugging Face")
    assert ns["out"].logits.shape == (4, 16, 100)
    assert ns["full"] > 1.0 and ns["without_2"] > 1.0  # perplexities


def test_own_class_example_deletes_the_unit_in_the_models_own_call() -> None:
    ns = _example("Your own class: an adapter")
    net, x = ns["net"], ns["x"]
    with torch.no_grad():
        h = net.inp(x.flatten(1))
        for i, u in enumerate(net.units):
            h = h if i == 1 else h + u.f(h)
        expected = net.out(h)
    torch.testing.assert_close(ns["logits"], expected)
    assert [b.name for b in residual_blocks(net)] == [f"units.{i}" for i in range(4)]
    y = ns["y"]
    assert ns["errors"][1] == pytest.approx(float((expected.argmax(1) != y).float().mean()))
