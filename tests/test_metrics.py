"""Metrics of evaluate_routes and sweeps against hand computations; transitions and owners on a
small hand-written model."""

from __future__ import annotations

from typing import get_args

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_ensemble import Anatomy, Block, evaluate_routes, lesion, register_adapter, route
from resnet_ensemble.blocks.registry import Transition
from resnet_ensemble.cli.common import METRIC_CHOICES
from resnet_ensemble.core.metrics import METRICS, MetricName, resolve_metric


def _classifier_data() -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g))]


def test_top5_loss_and_a_callable_equal_hand_computations(resnet8: nn.Module) -> None:
    data = _classifier_data()
    x, y = data[0]
    with torch.no_grad():
        logits = resnet8(x)
    top5 = float((~(logits.topk(5, 1).indices == y[:, None]).any(1)).float().mean())
    loss = float(F.cross_entropy(logits.double(), y))
    n = 3
    full = [list(range(n))]

    def margin(outputs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
        return outputs.gather(1, targets[:, None]).sum(), targets.numel()

    assert evaluate_routes(resnet8, data, full, metric="top5") == pytest.approx([top5])
    assert evaluate_routes(resnet8, data, full, metric="loss") == pytest.approx([loss], rel=1e-6)
    expected = float(logits.gather(1, y[:, None]).mean())
    assert evaluate_routes(resnet8, data, full, metric=margin) == pytest.approx([expected])
    with pytest.raises(ValueError, match="perplexity is for language models"):
        evaluate_routes(resnet8, data, full, metric="perplexity")
    with pytest.raises(ValueError, match="unknown metric 'top1'"):
        evaluate_routes(resnet8, data, full, metric="top1")


class _Res(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.f = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + torch.tanh(self.f(x))


class _Staged(nn.Module):
    """Two blocks, a widening transition, two blocks; block 0 has no owner in the adapter."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.ModuleList(_Res(4) for _ in range(2))
        self.widen = nn.Linear(4, 6)
        self.b = nn.ModuleList(_Res(6) for _ in range(2))
        self.out = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        for m in self.a:
            x = m(x)
        x = self.widen(x)
        for m in self.b:
            x = m(x)
        return self.out(x)


class _StagedAdapter:
    name = "staged-test"

    def matches(self, model: nn.Module) -> bool:
        return isinstance(model, _Staged)

    def anatomy(self, model: nn.Module) -> Anatomy:
        mods = [*model.a, *model.b]
        blocks = tuple(
            Block(
                i,
                f"blk{i}",
                int(i >= 2),
                False,
                m,
                lambda x, m=m: torch.tanh(m.f(x)),
                lambda x: x,
                owner=None if i == 0 else m,
            )
            for i, m in enumerate(mods)
        )
        widen = Transition(2, "widen", model.widen, model.widen)
        return Anatomy(
            blocks,
            lambda x: x,
            model.out,
            lambda: torch.zeros(1, 4),
            adapter=self.name,
            transitions=(widen,),
        )


register_adapter(_StagedAdapter())


def _by_hand(model: _Staged, x: Tensor, order: list[int]) -> Tensor:
    mods = [*model.a, *model.b]
    widened = False
    for i in order:
        if i >= 2 and not widened:
            x, widened = model.widen(x), True
        x = x + torch.tanh(mods[i].f(x))
    return model.out(x if widened else model.widen(x))


def test_a_block_without_owner_leaves_the_others_to_the_with_forms() -> None:
    torch.manual_seed(0)
    model = _Staged().eval()
    x = torch.randn(5, 4)
    with torch.no_grad():
        with lesion(model, drop=[1, 3]):
            got = model(x)
        torch.testing.assert_close(got, _by_hand(model, x, [0, 2]))
        with pytest.raises(ValueError, match=r"block 0 \(blk0\) names no owner"):
            with lesion(model, drop=[0]):
                pass
        # the engine runs the transition in place, also with blocks moved within a stage
        y = torch.tensor([0, 1, 2, 0, 1])
        (loss,) = evaluate_routes(model, [(x, y)], [[1, 0, 3, 2]], metric="loss")
        expected = F.cross_entropy(_by_hand(model, x, [1, 0, 3, 2]), y).item()
        assert loss == pytest.approx(expected, rel=1e-6)
        with pytest.raises(ValueError, match="block 0 .* names no owner"):
            with route(model, [1, 0, 2, 3]):
                pass


def test_sweep_table_and_sidecar_carry_the_metric(tmp_path) -> None:  # noqa: ANN001
    import json

    import pandas as pd
    from click.testing import CliRunner

    from resnet_ensemble.cli import cli
    from resnet_ensemble.results import sidecar_path
    from resnet_ensemble.studies.experiment import open_experiment

    out = tmp_path / "single.csv"
    args = ["sweep", "single", "--limit", "32", "--metric", "loss", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert "loss" in table.columns and "error" not in table.columns and "sum" in table.columns
    assert json.loads(sidecar_path(out).read_text())["metric"] == "loss"
    exp = open_experiment(limit=32, device="cpu")
    x, y = exp.first_images(32)
    with torch.no_grad(), lesion(exp.model, drop=[2]):
        expected = F.cross_entropy(exp.model(x).double(), y).item()
    row = table.loc[table["config"] == "drop=2"].iloc[0]
    assert row["loss"] == pytest.approx(expected, rel=1e-6)


def test_metric_names_are_one_list_in_the_library_and_the_cli() -> None:
    """``MetricName``, the metrics the library knows, and the CLI's --metric choices (spelled
    out so that --help does not import torch) are the same names."""
    assert list(get_args(MetricName)) == list(METRICS) == METRIC_CHOICES
    for name in METRIC_CHOICES:
        assert resolve_metric(name, "language").name == name
    with pytest.raises(ValueError, match="unknown metric 'top1'"):
        resolve_metric("top1")  # type: ignore[arg-type]
