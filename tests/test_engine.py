"""The evaluation engine against an independent loop over hand-written forwards."""

from __future__ import annotations

import random
from typing import get_args

import pytest
import torch
from torch import nn

from resnet_ensemble.cli.common import STRATEGY_CHOICES
from resnet_ensemble.core.engine import (
    PrefixTree,
    Strategy,
    count_route_mistakes,
    evaluate_routes,
    naive_evaluate_routes,
)
from resnet_ensemble.core.interventions import Step
from resnet_ensemble.models import cifar_resnet

from .conftest import randomize_batchnorm
from .reference import cifar_blocks, cifar_forward


def _model() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(cifar_resnet(20, shortcut="B")).eval()


def _data(n_batches: int = 3, batch: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(n_batches)
    ]


def _reference_error(model: nn.Module, data, seq: list[int]) -> float:  # noqa: ANN001
    """Error of a route with the hand-written forward: listed blocks whole, in order; left-out
    blocks deleted in place (every left-out block here keeps the shape, or sits where it was)."""
    blocks = cifar_blocks(model)
    listed = set(seq)
    pending = [i for i in range(len(blocks)) if i not in listed]
    plan = []
    for b in seq:
        while pending and pending[0] < b:
            plan.append((blocks[pending.pop(0)], False))
        plan.append((blocks[b], True))
    plan += [(blocks[i], False) for i in pending]
    wrong = total = 0
    with torch.no_grad():
        for x, y in data:
            wrong += int((cifar_forward(model, x, plan).argmax(1) != y).sum())
            total += len(y)
    return wrong / total


def _random_routes(rnd: random.Random, count: int) -> list[list[int]]:
    stages = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # blocks 3 and 6 downsample
    routes = []
    for _ in range(count):
        seq = []
        for stage in stages:
            first, rest = stage[0], stage[1:]
            body = [b for b in rest if rnd.random() > 0.3]  # delete some
            body += rnd.sample(rest, k=rnd.randint(0, 2))  # repeat some
            rnd.shuffle(body)  # reorder within the stage
            seq += ([first] if rnd.random() > 0.2 or first == 0 else []) + body
        routes.append(seq)
    return routes


def test_engine_equals_hand_written_loop_on_random_routes() -> None:
    model, data = _model(), _data()
    routes = _random_routes(random.Random(0), 25) + [list(range(9)), [], [0, 0, 0]]
    errors = evaluate_routes(model, data, routes, strategy="prefix")
    expected = [_reference_error(model, data, r) for r in routes]
    assert errors == pytest.approx(expected, abs=1e-12)
    assert len(set(errors)) > 3  # the routes really differ


def test_mask_strategy_equals_prefix_strategy_on_deletions() -> None:
    model, data = _model(), _data()
    rnd = random.Random(1)
    routes = [[i for i in range(9) if rnd.random() > 0.4] for _ in range(12)]
    by_prefix = evaluate_routes(model, data, routes, strategy="prefix")
    by_mask = evaluate_routes(model, data, routes, strategy="mask", mask_chunk=5)
    assert by_mask == pytest.approx(by_prefix, abs=1e-12)
    assert by_prefix == pytest.approx([_reference_error(model, data, r) for r in routes], abs=1e-12)


def test_naive_loop_agrees() -> None:
    model, data = _model(), _data(2)
    routes = [list(range(9)), [0, 2, 1, 3, 4, 5, 6, 7, 8], [0, 1, 3, 5, 6]]
    assert naive_evaluate_routes(model, data, routes) == evaluate_routes(model, data, routes)


def test_each_shared_prefix_runs_once_per_batch() -> None:
    """Count residual-branch runs with hooks on each block's first conv (independent of the
    engine's own bookkeeping): single deletions of n blocks share the unlesioned prefix."""
    model = _model()
    calls = [0] * 9
    for i, blk in enumerate(cifar_blocks(model)):
        blk.conv1.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    n = 9
    routes = [list(range(n))] + [[j for j in range(n) if j != i] for i in range(n)]
    count_route_mistakes(model, _data(1), routes, strategy="prefix")
    # Block j runs whole once on the shared unlesioned path, plus once in every route that
    # deleted an earlier block i < j (its suffix after the deletion is its own).
    assert calls == [1 + j for j in range(n)]
    singles = [[Step(j, j != i) for j in range(n)] for i in range(n)]
    tree = PrefixTree([*singles, [Step(j) for j in range(n)]])
    # The unlesioned path (n steps), then route i's own suffix from its deleted step on.
    assert tree.evaluations == n + sum(n - i for i in range(n))


def test_routes_are_validated_before_any_image_is_read() -> None:
    model = _model()

    def data():  # noqa: ANN202
        raise AssertionError("data was touched")
        yield

    with pytest.raises(ValueError, match="block 12 in the route is out of range"):
        evaluate_routes(model, data(), [list(range(9)), [12]])


def test_model_is_left_as_it_was() -> None:
    model = _model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_routes(model, _data(1), [[0, 1, 2, 3, 4, 5, 6, 7, 8]], strategy="mask")
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_strategy_names_are_one_list_in_the_library_and_the_cli() -> None:
    """``engine.Strategy`` and the CLI's --strategy choices (spelled out so that --help does
    not import torch) are the same names."""
    assert list(get_args(Strategy)) == STRATEGY_CHOICES


def test_evaluate_routes_refuses_a_single_flat_route() -> None:
    from resnet_ensemble import evaluate_routes

    model = cifar_resnet(8).eval()
    data = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))]
    for one in ([0, 1, 2], range(3), (0, 2)):
        with pytest.raises(ValueError, match="wrap it in a list"):
            evaluate_routes(model, data, one)
    assert len(evaluate_routes(model, data, [[0, 1, 2], [0]])) == 2  # a list of routes runs


def test_the_package_lists_only_its_public_names() -> None:
    import resnet_ensemble

    public = [n for n in dir(resnet_ensemble) if not n.startswith("__")]
    assert public == sorted(n for n in resnet_ensemble.__all__ if not n.startswith("__"))
    assert not {"Any", "sys", "TYPE_CHECKING", "import_module"} & set(dir(resnet_ensemble))
