"""Built-in CIFAR ResNets against He et al.'s published layouts and hand-written blocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resnet_ensemble.models import (
    build_builtin,
    cifar_resnet,
    plain_net,
    survival_probabilities,
    unscaled_residuals,
)
from resnet_ensemble.models.cifar import BasicBlock, PlainBlock, PreActBlock

from .conftest import randomize_batchnorm


@pytest.mark.parametrize(("depth", "params"), [(20, 0.27e6), (32, 0.46e6), (56, 0.85e6)])
def test_parameter_counts_match_he_et_al(depth: int, params: float) -> None:
    # He et al. 2016, Table 6 (option A shortcuts): 0.27M, 0.46M, 0.85M.
    model = cifar_resnet(depth)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(params, rel=0.02)


def test_resnet110_has_54_blocks_of_two_convs() -> None:
    model = cifar_resnet(110)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 54
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * 54  # stem + two per block; option A adds none


def test_basic_block_matches_hand_written_forward() -> None:
    torch.manual_seed(0)
    for shortcut in ("A", "B"):
        blk = randomize_batchnorm(BasicBlock(16, 32, stride=2, shortcut=shortcut)).eval()
        x = torch.randn(2, 16, 8, 8)
        out = F.relu(blk.bn1(blk.conv1(x)))
        out = blk.bn2(blk.conv2(out))
        if shortcut == "A":
            short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
        else:
            short = blk.projection[1](blk.projection[0](x))
        torch.testing.assert_close(blk(x), F.relu(out + short), rtol=0, atol=1e-6)


def test_preact_block_matches_hand_written_forward() -> None:
    torch.manual_seed(0)
    blk = randomize_batchnorm(PreActBlock(16, 16)).eval()
    x = torch.randn(2, 16, 8, 8)
    out = blk.conv2(F.relu(blk.bn2(blk.conv1(F.relu(blk.bn1(x))))))
    torch.testing.assert_close(blk(x), x + out, rtol=0, atol=1e-6)


def _fb_preresnet_lua_forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """fb.resnet.torch's models/preresnet.lua (CIFAR branch), written out from the Lua: stem
    conv-BN-ReLU; every basic block ConcatTable(BN-ReLU-conv-BN-ReLU-conv, shortcut(x)) then
    CAddTable; option A = 1x1 average pooling with the stride, then Concat(identity, x * 0)
    along the channels; a final BN-ReLU, average pooling and the linear layer."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    def bn(name: str, h: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            h,
            buffers[f"{name}.running_mean"],
            buffers[f"{name}.running_var"],
            params[f"{name}.weight"],
            params[f"{name}.bias"],
            training=False,
        )

    h = F.relu(bn("bn1", F.conv2d(x, params["conv1.weight"], padding=1)))
    planes_in = 16
    for stage, planes in enumerate((16, 32, 64), start=1):
        for i in range(len(getattr(model, f"layer{stage}"))):
            name = f"layer{stage}.{i}"
            stride = 2 if stage > 1 and i == 0 else 1
            s = F.relu(bn(f"{name}.bn1", h))
            s = F.conv2d(s, params[f"{name}.conv1.weight"], stride=stride, padding=1)
            s = F.conv2d(F.relu(bn(f"{name}.bn2", s)), params[f"{name}.conv2.weight"], padding=1)
            if planes != planes_in:
                short = F.avg_pool2d(h, 1, stride)
                short = torch.cat([short, short * 0], dim=1)  # 16 -> 32, 32 -> 64
            else:
                short = h
            h, planes_in = s + short, planes
    h = F.relu(bn("bn_final", h))
    return F.linear(h.mean(dim=(2, 3)), params["fc.weight"], params["fc.bias"])


def test_fbpreresnet_matches_preresnet_lua() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(build_builtin("fbpreresnet20", in_channels=3)).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _fb_preresnet_lua_forward(model, x), rtol=0, atol=1e-5)
    # He et al.'s own pre-activation layout is another network: no BN-ReLU in its stem.
    assert isinstance(build_builtin("preresnet20").bn1, torch.nn.Identity)
    assert isinstance(model.bn1, torch.nn.BatchNorm2d)
    # Option A adds no parameters: 16 more than preresnet20 (the stem's BatchNorm).
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in build_builtin("preresnet20").parameters()) + 32


def test_fb_layout_needs_preactivation() -> None:
    with pytest.raises(ValueError, match="pre-activation layout"):
        cifar_resnet(20, layout="fb.resnet.torch")
    with pytest.raises(ValueError, match="layout must be one of"):
        cifar_resnet(20, preact=True, layout="torch7")


def test_plain_block_has_no_shortcut() -> None:
    torch.manual_seed(0)
    blk = randomize_batchnorm(PlainBlock(16, 16)).eval()
    x = torch.randn(2, 16, 8, 8)
    expected = F.relu(blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(x))))))
    assert torch.equal(blk(x), expected)
    assert not torch.allclose(blk(x), expected + x)


def test_plain_net_and_resnet_share_their_layout() -> None:
    resnet, plain = cifar_resnet(20), plain_net(20)
    shapes = lambda m: [p.shape for n, p in m.named_parameters() if "projection" not in n]  # noqa: E731
    assert shapes(resnet) == shapes(plain)


def test_stochastic_depth_linear_decay_and_test_time_scaling() -> None:
    probs = survival_probabilities(54, 0.5)
    assert probs[0] == pytest.approx(1 - 0.5 / 54) and probs[-1] == pytest.approx(0.5)
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(8, stochastic_depth=0.5)).eval()
    blk = model.layer3[0]  # the last of three blocks: survival 0.5
    x = torch.randn(2, 32, 16, 16)
    full = blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(x)))))
    torch.testing.assert_close(blk.residual(x), 0.5 * full)


def test_stochastic_depth_per_sample_draws_keep_or_drop_each_image() -> None:
    torch.manual_seed(0)
    model = cifar_resnet(8, stochastic_depth=0.5, stochastic_depth_draw="sample")
    blk = randomize_batchnorm(model).eval().layer3[0]
    x = torch.randn(4, 32, 16, 16)
    full = blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(x)))))
    blk.drop_path.train()  # training draws keep-or-drop per sample, with no rescaling
    torch.manual_seed(3)
    draws = torch.stack([blk.residual(x) for _ in range(200)])  # (200, B, C, H, W)
    kept = (draws == full).flatten(2).all(-1)
    dropped = (draws == 0).flatten(2).all(-1)
    assert bool((kept | dropped).all())
    assert kept.float().mean().item() == pytest.approx(0.5, abs=0.1)
    assert bool((kept.any(1) & dropped.any(1)).any())  # some draws mix kept and dropped images


def test_stochastic_depth_per_batch_drops_the_whole_block_by_default() -> None:
    """Huang et al.: one draw per block per mini-batch; a dropped block is its shortcut only
    (with the ReLU after the addition), for every image of the batch."""
    torch.manual_seed(0)
    blk = randomize_batchnorm(cifar_resnet(8, stochastic_depth=0.5)).eval().layer3[0]
    x = torch.randn(4, 32, 16, 16)
    shortcut = blk.projection(x)  # option A: subsample and zero-pad
    residual = blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(x)))))
    blk.drop_path.train()
    torch.manual_seed(5)
    outs = torch.stack([blk(x) for _ in range(200)])
    kept = (outs == F.relu(shortcut + residual)).flatten(1).all(-1)
    dropped = (outs == F.relu(shortcut)).flatten(1).all(-1)
    assert bool((kept ^ dropped).all())  # never a mix within a batch
    assert kept.float().mean().item() == pytest.approx(0.5, abs=0.1)
    blk.drop_path.eval()
    torch.testing.assert_close(blk(x), F.relu(shortcut + 0.5 * residual))


@pytest.mark.parametrize("name", ["resnet20", "preresnet32", "fbpreresnet110", "plain20"])
def test_builtin_names(name: str) -> None:
    model = build_builtin(name, num_classes=7, in_channels=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


@pytest.mark.parametrize("bad", ["resnet21", "resnet", "vgg16", "resnet2"])
def test_bad_builtin_names(bad: str) -> None:
    with pytest.raises(ValueError, match="6n"):
        build_builtin(bad)


def test_unscaled_residuals_drops_the_test_time_scaling_and_restores_it() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(8, active_blocks=2)).eval()  # K/n = 2/3
    blk = model.layer1[0]
    x = torch.randn(2, 16, 8, 8)
    full = blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(x)))))
    torch.testing.assert_close(blk.residual(x), full * (2 / 3))
    with unscaled_residuals(model):
        torch.testing.assert_close(blk.residual(x), full)
    torch.testing.assert_close(blk.residual(x), full * (2 / 3))
    with pytest.raises(RuntimeError), unscaled_residuals(model):
        raise RuntimeError("the body fails")
    assert all(
        m.survival == pytest.approx(2 / 3) for m in model.modules() if hasattr(m, "survival")
    )
