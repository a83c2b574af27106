"""lesion / reorder / route against hand-written forward passes (tests/reference.py)."""

from __future__ import annotations

import random

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from resnet_ensemble import lesion, reorder, residual_blocks, route
from resnet_ensemble.models import cifar_resnet, plain_net

from .conftest import randomize_batchnorm, tiny_vit
from .reference import (
    cifar_blocks,
    cifar_forward,
    torchvision_resnet_blocks,
    torchvision_resnet_forward,
    vit_forward,
    vit_units,
)

ATOL = 1e-5

BUILTINS = {
    "resnet14-A": dict(depth=14, shortcut="A"),
    "resnet14-B": dict(depth=14, shortcut="B"),
    "preresnet14-A": dict(depth=14, shortcut="A", preact=True),
    "preresnet14-B": dict(depth=14, shortcut="B", preact=True),
    "fbpreresnet14-A": dict(depth=14, shortcut="A", preact=True, layout="fb.resnet.torch"),
    "fbpreresnet14-B": dict(depth=14, shortcut="B", preact=True, layout="fb.resnet.torch"),
    "resnet14-stochastic-depth": dict(depth=14, stochastic_depth=0.5),
}


def _builtin(kwargs: dict) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(cifar_resnet(num_classes=10, **kwargs)).eval()


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_delete_each_block_matches_reference(name: str, images: torch.Tensor) -> None:
    model = _builtin(BUILTINS[name])
    blocks = cifar_blocks(model)
    with torch.no_grad():
        torch.testing.assert_close(
            model(images), cifar_forward(model, images, [(b, True) for b in blocks])
        )
        for i in range(len(blocks)):
            with lesion(model, drop=[i]):
                out = model(images)
            ref = cifar_forward(model, images, [(b, j != i) for j, b in enumerate(blocks)])
            torch.testing.assert_close(out, ref, rtol=0, atol=ATOL)
            assert not torch.allclose(out, model(images)), f"deleting block {i} changed nothing"


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_reorder_and_repeat_match_reference(name: str, images: torch.Tensor) -> None:
    model = _builtin(BUILTINS[name])
    blocks = cifar_blocks(model)  # 2 per stage; blocks 2 and 4 downsample
    order = [1, 0, 2, 3, 4, 5]  # only same-shape blocks can move: 0 and 1 in stage 0
    with torch.no_grad(), reorder(model, order):
        out = model(images)
    ref = cifar_forward(model, images, [(blocks[i], True) for i in order])
    torch.testing.assert_close(out, ref, rtol=0, atol=ATOL)
    seq = [0, 0, 1, 2, 3, 3, 3, 4]  # block 5 deleted, 0 twice, 3 three times
    with torch.no_grad(), route(model, seq):
        out = model(images)
    ref = cifar_forward(model, images, [(blocks[i], True) for i in seq] + [(blocks[5], False)])
    torch.testing.assert_close(out, ref, rtol=0, atol=ATOL)


# torchvision's ResNets: deleting blocks is in the contract table (tests/test_adapter_contract.py,
# resnet18 and resnet50, with their downsampling blocks); the deeper, wider and grouped nets
# repeat the same BasicBlock and Bottleneck classes, so they would re-test nothing.
@pytest.mark.parametrize("name", ["resnet34", "resnet50"])
def test_torchvision_reorder_and_repeat_match_reference(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.get_model(name, num_classes=10)).eval()
    x = torch.randn(2, 3, 32, 32)
    blocks = torchvision_resnet_blocks(model)
    order = list(range(len(blocks)))
    order[1], order[2] = order[2], order[1]  # layer1.1 <-> layer1.2
    order[8], order[12] = order[12], order[8]  # layer3.1 <-> layer3.5
    seq = order[:5] + [4, 4] + order[5:]  # and run layer2.1 twice more
    with torch.no_grad(), route(model, seq):
        out = model(x)
    ref = torchvision_resnet_forward(model, x, [(blocks[i], True) for i in seq])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=ATOL)


def test_vit_units_reorder_repeat_match_reference() -> None:
    model = tiny_vit()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    units = vit_units(model)
    found = residual_blocks(model)
    assert [b.name for b in found] == [
        "encoder.layers.encoder_layer_0.self_attention",
        "encoder.layers.encoder_layer_0.mlp",
        "encoder.layers.encoder_layer_1.self_attention",
        "encoder.layers.encoder_layer_1.mlp",
    ]
    with torch.no_grad():
        torch.testing.assert_close(model(x), vit_forward(model, x, [(u, True) for u in units]))
        for seq in ([1, 0, 3, 2], [3, 2, 1, 0], [0, 0, 1, 2, 3, 3], [2, 2]):
            with route(model, seq):
                out = model(x)
            ref = vit_forward(model, x, [(units[i], True) for i in seq])
            torch.testing.assert_close(out, ref, rtol=0, atol=ATOL)


def test_plain_net_deletion_is_identity_and_downsampling_cannot_be_deleted(
    images: torch.Tensor,
) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(plain_net(14)).eval()
    blocks = cifar_blocks(model)
    with torch.no_grad(), lesion(model, drop=[1]):
        out = model(images)
    ref = cifar_forward(model, images, [(b, i != 1) for i, b in enumerate(blocks)])
    torch.testing.assert_close(out, ref, rtol=0, atol=ATOL)
    assert not torch.allclose(out, model(images))
    with pytest.raises(ValueError, match=r"block 2 \(layer2\.0\) has no shortcut"):
        with lesion(model, drop=[2]):
            pass


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m: lesion(m, drop=[9]),
            r"block 9 in drop is out of range: the model has 9 blocks, 0\.\.8",
        ),
        (lambda m: lesion(m, drop=[-10]), r"block -10 in drop is out of range.*-9\.\.-1"),
        (lambda m: lesion(m, drop=[1.5]), r"block index 1\.5 in drop is not an integer"),
        (lambda m: lesion(m, drop=["layer9.0"]), r"no block named 'layer9\.0' in drop"),
        (lambda m: lesion(m, drop=[3, -6]), r"block 3 is listed more than once"),
        (lambda m: lesion(m, drop=[3, 3]), r"block 3 is listed more than once"),
        (
            lambda m: reorder(m, [0, 1, 2]),
            r"permutation of 0\.\.8 \(missing \[3, 4, 5, 6, 7, 8\]\)",
        ),
        (lambda m: reorder(m, [0, 0, 1, 2, 3, 4, 5, 6, 7]), r"repeated \[0\]"),
        (
            lambda m: reorder(m, [0, 1, 2, 4, 3, 5, 6, 7, 8]),
            r"block 4 \(layer2\.1\) cannot move to position 3, "
            r"where the tensor is 16x32x32 and it needs 32x16x16",
        ),
        (
            lambda m: route(m, [0, 1, 2, 3, 3, 4, 5, 6, 7, 8]),
            r"block 3 \(layer2\.0\) downsamples 16→32 channels; it cannot move to position 4",
        ),
        (
            lambda m: route(m, [0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 6]),
            r"block 6 \(layer3\.0\) downsamples 32→64",
        ),
    ],
)
def test_refusals_name_the_block_and_what_is_valid(call, message: str) -> None:  # noqa: ANN001
    model = _builtin(dict(depth=20))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        with call(model):
            pytest.fail("the body must not run")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any("forward" in vars(m) for m in model.modules())


def test_nesting_is_refused_and_the_outer_context_still_restores(
    images: torch.Tensor, resnet8: nn.Module
) -> None:
    clean = resnet8(images)
    with lesion(resnet8, drop=[0]):
        with pytest.raises(ValueError, match="already active"):
            with lesion(resnet8, drop=[1]):
                pass
    assert torch.equal(resnet8(images), clean)


def test_exception_inside_body_restores_model(images: torch.Tensor, resnet8: nn.Module) -> None:
    clean = resnet8(images)
    with pytest.raises(RuntimeError, match="boom"), route(resnet8, [0, 0, 1, 2]):
        raise RuntimeError("boom")
    assert torch.equal(resnet8(images), clean)
    assert not any("forward" in vars(m) for m in resnet8.modules())


def test_a_model_without_blocks_points_to_the_adapter() -> None:
    with pytest.raises(ValueError, match=r"no residual blocks found in Sequential.*adapters\.md"):
        residual_blocks(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()}
    state.update(
        {f"grad:{k}": p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    )
    return state


_interventions = st.lists(
    st.tuples(
        st.sampled_from(["lesion", "reorder", "route"]),
        st.lists(st.integers(min_value=-2, max_value=10), max_size=12),
        st.sampled_from([None, KeyError, KeyboardInterrupt]),  # raised inside the body
        st.sampled_from(["eval", "train"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_interventions, st.randoms(use_true_random=False))
def test_any_intervention_sequence_leaves_the_model_bit_identical(
    sequence, rnd: random.Random
) -> None:  # noqa: ANN001
    model = _builtin(dict(depth=20, shortcut="B"))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before, out_before = _snapshot(model), model(x)
    for kind, indices, raised, mode in sequence:
        if kind == "reorder" and rnd.random() < 0.5:
            indices = list(range(9))
            i, j = rnd.sample([0, 1, 2], 2)
            indices[i], indices[j] = indices[j], indices[i]
        ctx = {"lesion": lesion, "reorder": reorder, "route": route}[kind]
        model.train(mode == "train")
        try:
            with ctx(model, indices):
                model(x)  # a forward in train mode updates BN statistics only inside; see below
                if raised is not None:
                    raise raised("inside")
        except (ValueError, KeyError, KeyboardInterrupt):
            pass
        model.eval()
        if mode == "train":
            # A training-mode forward legitimately updates BN running stats: put back those
            # buffers only, so that any other change an intervention left behind (to a weight,
            # a module, a forward) still shows in the comparison below.
            with torch.no_grad():
                for name, buffer in model.named_buffers():
                    buffer.copy_(before[name])
    after = _snapshot(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(model(x), out_before)
    assert not any("forward" in vars(m) for m in model.modules())
