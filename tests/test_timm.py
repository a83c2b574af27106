"""timm's ResNet family, ConvNeXt and ViT/DeiT against forward hooks that zero the residual
branch inside timm's own forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resnet_ensemble import (
    evaluate_routes,
    lesion,
    path_length_gradients,
    reorder,
    residual_blocks,
    route,
)
from resnet_ensemble.blocks.registry import anatomy

from .zoo_reference import no_patches, randomize_norms, same_state, state_copy, zeroed

timm = pytest.importorskip("timm")

RESNETS = {
    # name: (extra create_model kwargs, downsampling block indices)
    "resnet18": ({}, [2, 4, 6]),
    "resnet26d": ({"layers": (1, 1, 1, 1)}, [0, 1, 2, 3]),
    "seresnet18": ({}, [2, 4, 6]),
    "resnext50_32x4d": ({"layers": (1, 1, 2, 1)}, [0, 1, 2, 4]),
    "wide_resnet50_2": ({"layers": (1, 1, 1, 1)}, [0, 1, 2, 3]),
}


def _resnet(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=7, **RESNETS[name][0])
    return randomize_norms(model).eval()


def _resnet_branch_end(blk: torch.nn.Module) -> torch.nn.Module:
    if blk.se is not None:
        return blk.se
    return blk.bn3 if hasattr(blk, "bn3") else blk.bn2


@pytest.mark.parametrize("name", list(RESNETS))
def test_timm_resnets_lesion_equals_zeroed_branches(name: str) -> None:
    model = _resnet(name)
    tv_blocks = [
        b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer
    ]
    blocks = residual_blocks(model)
    assert [b.module for b in blocks] == tv_blocks
    assert [b.index for b in blocks if b.downsamples] == RESNETS[name][1]
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    before, state = model(x).detach(), state_copy(model)
    for drop in ([1], [0, len(blocks) - 1], RESNETS[name][1][1:2]):
        with torch.no_grad(), zeroed([_resnet_branch_end(tv_blocks[i]) for i in drop]):
            expected = model(x)
        with torch.no_grad(), lesion(model, drop=drop):
            got = model(x)
        assert not torch.allclose(expected, before, atol=1e-4)  # the deletion matters
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(model(x).detach(), before) and same_state(model, state)
    assert no_patches(model)


def test_timm_resnet_reorder_equals_timm_blocks_called_in_that_order() -> None:
    model = _resnet("resnet18")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = model.maxpool(model.act1(model.bn1(model.conv1(x))))
        h = model.layer1[0](model.layer1[1](h))  # blocks 1, 0
        expected = model.forward_head(model.layer4(model.layer3(model.layer2(h))))
        with reorder(model, [1, 0, 2, 3, 4, 5, 6, 7]):
            got = model(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_timm_resnet_engine_loss_equals_the_hooked_model() -> None:
    model = _resnet("resnet18")
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


def test_convnext_stage_downsampling_is_a_transition_and_lesion_equals_zeroed_branches() -> None:
    model = _convnext()
    found = anatomy(model)
    assert len(found.blocks) == 2 + 2 + 6 + 2
    assert [(t.name, t.before) for t in found.transitions] == [
        ("stages.1.downsample", 2),
        ("stages.2.downsample", 4),
        ("stages.3.downsample", 10),
    ]
    assert [b.stage for b in found.blocks] == [0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3]
    convnext_blocks = [b for st in model.stages for b in st.blocks]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    before = model(x).detach()
    for drop in ([2], [0, 4, 11], [3, 9, 10]):
        with torch.no_grad(), zeroed([convnext_blocks[i].mlp for i in drop]):
            expected = model(x)
        with torch.no_grad(), lesion(model, drop=drop):
            got = model(x)
        assert not torch.allclose(expected, before, atol=1e-4)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(model(x).detach(), before) and no_patches(model)


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
def test_timm_vit_units_and_lesion_with_attn_mask(name: str) -> None:
    model = _vit(name)
    blocks = residual_blocks(model)
    assert [b.name for b in blocks] == [
        f"blocks.{i}.{part}" for i in range(3) for part in ("attn", "mlp")
    ]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    tokens = model.patch_embed.num_patches + model.num_prefix_tokens
    mask = torch.rand(tokens, tokens, generator=torch.Generator().manual_seed(8)) > 0.3
    mask |= torch.eye(tokens, dtype=torch.bool)
    before = model(x, attn_mask=mask).detach()
    ends = [m for blk in model.blocks for m in (blk.ls1, blk.ls2)]
    for drop in ([0], [3], [1, 4, 5]):
        with torch.no_grad(), zeroed([ends[i] for i in drop]):
            expected = model(x, attn_mask=mask)
            plain = model(x)
        with torch.no_grad(), lesion(model, drop=drop):
            got = model(x, attn_mask=mask)
            got_plain = model(x)
        assert not torch.allclose(expected, plain, atol=1e-4)  # the mask matters
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_plain, plain, atol=1e-5, rtol=1e-5)
    assert torch.equal(model(x, attn_mask=mask).detach(), before) and no_patches(model)
