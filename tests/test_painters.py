"""The Painters operations (skip, repeat, reverse, shuffle, parallel) against an independent
reference: the model's own layer list rebuilt the way Sun et al. do it (layers removed, repeated,
permuted, or wrapped in a module that runs them side by side and averages their outputs), run
by transformers' own forward. Then the engine against ``route``, the text form, and refusals."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from resnet_ensemble import evaluate_routes, route
from resnet_ensemble.core.interventions import Parallel, parse_route, plan_route
from resnet_ensemble.core.painters import (
    layer_units,
    painters_route,
    parallel,
    repeat,
    shuffle,
    skip,
)
from resnet_ensemble.models import cifar_resnet

from .conftest import randomize_batchnorm

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from .test_hf import _decoder, _tokens  # noqa: E402

LAYERS = 4


def _lm(kind: str) -> nn.Module:
    model = _decoder(kind)
    # Four layers, so that a middle range has neighbours on both sides.
    torch.manual_seed(1)
    cfg = model.config
    if kind == "gpt2":
        cfg.n_layer = LAYERS
    else:
        cfg.num_hidden_layers = LAYERS
    fresh = type(model)(cfg)
    from .zoo_reference import randomize_norms

    return randomize_norms(fresh).eval()


class _SideBySide(nn.Module):
    """Painters' parallel layers: each reads the same input, the outputs are averaged."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.inner = nn.ModuleList(layers)
        self.attention_type = getattr(layers[0], "attention_type", None)

    def forward(self, h: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return torch.stack([layer(h, *args, **kwargs) for layer in self.inner]).mean(dim=0)


@contextlib.contextmanager
def _layer_list(model: nn.Module, layers: list[nn.Module]) -> Iterator[None]:
    base = model.base_model
    attr = "h" if hasattr(base, "h") else "layers"
    old = getattr(base, attr)
    key = "n_layer" if hasattr(model.config, "n_layer") else "num_hidden_layers"
    old_n = getattr(model.config, key)
    setattr(base, attr, nn.ModuleList(layers))
    setattr(model.config, key, len(layers))
    try:
        yield
    finally:
        setattr(base, attr, old)
        setattr(model.config, key, old_n)


def _reference(model: nn.Module, op: str) -> list[nn.Module]:
    base = model.base_model
    ls = list(base.h if hasattr(base, "h") else base.layers)
    return {
        "skip": [ls[0], ls[3]],
        "repeat": [ls[0], ls[1], ls[1], ls[1], ls[2], ls[3]],
        "reverse": [ls[0], ls[2], ls[1], ls[3]],
        "shuffle": None,
        "parallel": [ls[0], _SideBySide(ls[1:3]), ls[3]],
    }[op]


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("op", ["skip", "repeat", "reverse", "shuffle", "parallel"])
def test_painters_operations_equal_a_rebuilt_layer_list(kind: str, op: str) -> None:
    model = _lm(kind)
    ids = _tokens(7, batch=2, length=6)
    if op == "repeat":
        r = repeat(model, 1, times=3)
    elif op == "shuffle":
        r = shuffle(model, 0, 4, seed=3)
    else:
        r = painters_route(model, op, 1, 3)
    layers = _reference(model, op)
    if op == "shuffle":  # the reference follows the drawn order of whole layers
        order = [r[i] // 2 for i in range(0, len(r), 2)]
        assert sorted(order) == [0, 1, 2, 3] and order != [0, 1, 2, 3]
        assert all(r[2 * k + 1] == r[2 * k] + 1 for k in range(4))  # units stay with layers
        base = model.base_model
        ls = list(base.h if hasattr(base, "h") else base.layers)
        layers = [ls[i] for i in order]
    with torch.no_grad(), _layer_list(model, layers):
        expected = model(ids, use_cache=False).logits
    with torch.no_grad():
        plain = model(ids).logits
        with route(model, r):
            got = model(ids).logits
    assert not torch.allclose(expected, plain, atol=1e-4)  # the operation changes something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # The engine, from the same route, gives the perplexity of the reference's logits.
    logp = expected[:, :-1].double().log_softmax(-1)
    nll = -logp.gather(-1, ids[:, 1:, None]).mean()
    (ppl,) = evaluate_routes(model, [ids], [r], metric="perplexity")
    assert ppl == pytest.approx(math.exp(float(nll)), rel=1e-6)


def test_layers_of_a_transformer_are_unit_pairs_and_of_a_resnet_single_blocks() -> None:
    assert layer_units(_lm("llama")) == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert layer_units(_lm("llama"), by="unit")[:2] == [(0,), (1,)]
    net = cifar_resnet(20, num_classes=10)
    assert layer_units(net) == [(i,) for i in range(9)]


def test_parallel_blocks_of_a_resnet_equal_the_hand_computed_average() -> None:
    torch.manual_seed(0)
    net = randomize_batchnorm(cifar_resnet(20, num_classes=10)).eval()
    x = torch.randn(3, 3, 32, 32)
    from resnet_ensemble.blocks.registry import anatomy

    found = anatomy(net)
    b = found.blocks
    with torch.no_grad():
        h = found.stem(x)
        h = b[1](b[0](h))
        h = (b[2](h) + b[1](h) + b[2](b[1](h))) / 3  # branches: [2], [1], [1, 2]
        for i in range(3, 9):
            h = b[i](h)
        expected = found.head(h)
        r = [0, 1, Parallel([2, 1, [1, 2]]), *range(3, 9)]
        with route(net, r):
            got = net(x)
        (err,) = evaluate_routes(net, [(x, expected.argmax(1))], [r])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert err == 0.0


def test_painters_refusals_name_what_cannot_apply() -> None:
    net = cifar_resnet(20, num_classes=10)  # blocks 3 and 6 downsample
    with pytest.raises(ValueError, match="parallel.*cannot apply.*block 4 .*needs 32x16x16"):
        parallel(net, 2, 5)
    with pytest.raises(ValueError, match="reversing.*cannot apply"):
        painters_route(net, "reverse", 2, 5)
    with pytest.raises(ValueError, match=r"range 3\.\.12 .* within the model's 9 layers"):
        skip(net, 3, 12)
    with pytest.raises(ValueError, match="at least 2"):
        parallel(net, 1, 2)
    with pytest.raises(ValueError, match="unknown operation"):
        painters_route(net, "melt", 1, 2)
    with pytest.raises(ValueError, match="needs two or more"):
        plan_route(__import__("resnet_ensemble").anatomy(net), [0, Parallel([1])])
    with pytest.raises(ValueError, match="out of range"):
        with route(net, [0, (1, 99)]):
            pass
    assert skip(net, 4, 6) == [0, 1, 2, 3, 6, 7, 8]  # within a stage it runs
    assert parallel(net, 0, 3)[0] == Parallel([0, 1, 2])


def test_route_text_form() -> None:
    assert parse_route("0-2,4x2,[5|6-7],9") == [0, 1, 2, 4, 4, Parallel([5, [6, 7]]), 9]
    assert parse_route("3-1") == [3, 2, 1]
    assert repr(Parallel([5, [6, 7]])) == "[5|6,7]"
    with pytest.raises(ValueError, match="cannot read '\\$'"):
        parse_route("0,$")
    with pytest.raises(ValueError, match="block name 'a' given, but no model"):
        parse_route("0,a")  # a name needs the model's blocks to be looked up in
    with pytest.raises(ValueError, match="unclosed"):
        parse_route("0,[1|2")
    with pytest.raises(ValueError, match="out of range"):
        parse_route("0-9", n=5)
