"""timm's ResNet, ConvNeXt and ViT/DeiT beyond the lesion contract (which is in
tests/test_adapter_contract.py): reorder and the engine against timm's own blocks and forward
hooks that zero a branch, ConvNeXt's transitions, path gradients, ViT units and masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resnet_ensemble import (
    evaluate_routes,
    path_length_gradients,
    reorder,
    residual_blocks,
    route,
)
from resnet_ensemble.blocks.registry import anatomy

from .zoo_reference import randomize_norms, zeroed

timm = pytest.importorskip("timm")


def _resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=7)
    return randomize_norms(model).eval()


def test_timm_resnet_reorder_equals_timm_blocks_called_in_that_order() -> None:
    model = _resnet()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = model.maxpool(model.act1(model.bn1(model.conv1(x))))
        h = model.layer1[0](model.layer1[1](h))  # blocks 1, 0
        expected = model.forward_head(model.layer4(model.layer3(model.layer2(h))))
        with reorder(model, [1, 0, 2, 3, 4, 5, 6, 7]):
            got = model(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_timm_resnet_engine_loss_equals_the_hooked_model() -> None:
    model = _resnet()
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(4, 3, 64, 64, generator=g), torch.randint(0, 7, (4,), generator=g))]
    blocks = residual_blocks(model)
    with torch.no_grad(), zeroed([blocks[3].module.bn2]):
        expected = F.cross_entropy(model(data[0][0]), data[0][1]).item()
    (got,) = evaluate_routes(model, data, [[0, 1, 2, 4, 5, 6, 7]], metric="loss")
    assert got == pytest.approx(expected, rel=1e-5)


def _convnext(**kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=6, **kwargs)
    return randomize_norms(model).eval()


def test_convnext_stage_downsampling_is_a_transition() -> None:
    found = anatomy(_convnext())
    assert len(found.blocks) == 2 + 2 + 6 + 2
    assert [(t.name, t.before) for t in found.transitions] == [
        ("stages.1.downsample", 2),
        ("stages.2.downsample", 4),
        ("stages.3.downsample", 10),
    ]
    assert [b.stage for b in found.blocks] == [0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3]


def test_convnext_reorder_runs_the_downsampling_in_place() -> None:
    model = _convnext()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    s = model.stages
    with torch.no_grad():
        h = s[0].blocks[0](s[0].blocks[1](model.stem(x)))
        h = s[1].blocks[0](s[1].blocks[1](s[1].downsample(h)))  # 3 before 2, after stages.1.down
        expected = model.forward_head(model.norm_pre(s[3](s[2](h))))
        with route(model, [1, 0, 3, 2, *range(4, 12)]):
            got = model(x)
        # the engine follows the same route
        (loss,) = evaluate_routes(
            model, [(x, torch.tensor([0, 1]))], [[1, 0, 3, 2, *range(4, 12)]], metric="loss"
        )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert loss == pytest.approx(F.cross_entropy(expected, torch.tensor([0, 1])).item(), rel=1e-5)
    with pytest.raises(
        ValueError, match=r"block 1 \(stages.0.blocks.1\) cannot move to position 2"
    ):
        with route(model, [0, 2, 1, *range(3, 12)]):
            pass


def test_convnext_path_gradients_sum_to_the_ordinary_gradient() -> None:
    model = _convnext(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32))
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(2, 3, 32, 32, generator=g), torch.tensor([1, 4])
    per_length = path_length_gradients(model, x, y)
    leaf = x.clone().requires_grad_()
    F.cross_entropy(model(leaf), y).backward()
    assert per_length.shape == (5, 2, 3, 32, 32)
    torch.testing.assert_close(per_length.sum(0), leaf.grad, atol=1e-6, rtol=1e-4)


VITS = ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"]


def _vit(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(
        name, pretrained=False, num_classes=5, img_size=32, depth=3, init_values=0.5
    )
    return randomize_norms(model).eval()


@pytest.mark.parametrize("name", VITS)
def test_timm_vit_units_and_the_attn_mask_reaches_attention(name: str) -> None:
    """The units' names; and the mask changes the output, so that the contract table's rows
    that call timm ViTs with ``attn_mask`` would see a lesion that dropped it."""
    model = _vit(name)
    assert [b.name for b in residual_blocks(model)] == [
        f"blocks.{i}.{part}" for i in range(3) for part in ("attn", "mlp")
    ]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    tokens = model.patch_embed.num_patches + model.num_prefix_tokens
    mask = torch.rand(tokens, tokens, generator=torch.Generator().manual_seed(8)) > 0.3
    mask |= torch.eye(tokens, dtype=torch.bool)
    with torch.no_grad():
        assert not torch.allclose(model(x, attn_mask=mask), model(x), atol=1e-4)
