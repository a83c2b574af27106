"""Hand-written forward passes, written from each architecture's definition and independent of
the toolkit's decomposition, used as the truth that interventions are checked against.

Each ``*_forward(model, x, route)`` runs ``route``: a list of (block_module, keep) pairs in the
order to execute; a block with keep=False runs as its shortcut (plus any post-addition op).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock as TvBasic
from torchvision.models.resnet import Bottleneck as TvBottleneck

from resnet_ensemble.models import build_builtin
from resnet_ensemble.models.cifar import BasicBlock, FbPreActBlock, PlainBlock, PreActBlock


def reference_model(path: str | os.PathLike[str]) -> nn.Module:
    """A toolkit checkpoint's weights in a fresh model, read with plain ``torch.load`` rather
    than the toolkit's loader, in eval mode."""
    ckpt = torch.load(path, weights_only=True)
    model = build_builtin(ckpt["arch"], **ckpt["arch_kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def torchvision_resnet_blocks(model: nn.Module) -> list[nn.Module]:
    return [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]


def _tv_block(blk: nn.Module, x: Tensor, keep: bool) -> Tensor:
    identity = x if blk.downsample is None else blk.downsample(x)
    if not keep:
        return torch.relu(identity)
    if isinstance(blk, TvBottleneck):
        out = torch.relu(blk.bn1(blk.conv1(x)))
        out = torch.relu(blk.bn2(blk.conv2(out)))
        out = blk.bn3(blk.conv3(out))
    else:
        assert isinstance(blk, TvBasic)
        out = blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(x)))))
    return torch.relu(out + identity)


def torchvision_resnet_forward(
    model: nn.Module, x: Tensor, route: list[tuple[nn.Module, bool]]
) -> Tensor:
    h = model.maxpool(torch.relu(model.bn1(model.conv1(x))))
    for blk, keep in route:
        h = _tv_block(blk, h, keep)
    return model.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def cifar_blocks(model: nn.Module) -> list[nn.Module]:
    return [b for layer in (model.layer1, model.layer2, model.layer3) for b in layer]


def _option_a(x: Tensor, out_planes: int, *, zeros_after: bool = False) -> Tensor:
    x = x[:, :, ::2, ::2]
    extra = out_planes - x.shape[1]
    if zeros_after:  # fb.resnet.torch: nn.Concat(nn.Identity(), nn.MulConstant(0))
        return torch.cat([x, torch.zeros_like(x)[:, :extra]], dim=1)
    return torch.cat(
        [
            x.new_zeros(x.shape[0], extra // 2, *x.shape[2:]),
            x,
            x.new_zeros(x.shape[0], extra - extra // 2, *x.shape[2:]),
        ],
        dim=1,
    )


def _cifar_shortcut(blk: nn.Module, x: Tensor) -> Tensor:
    if not blk.downsamples:
        return x
    fb = isinstance(blk, FbPreActBlock)
    if blk.shortcut_kind == "A":
        return _option_a(x, blk.planes, zeros_after=fb)
    pre = torch.relu(blk.bn1(x)) if isinstance(blk, PreActBlock) and not fb else x
    out = blk.projection[0](pre)
    return blk.projection[1](out) if len(blk.projection) > 1 else out


def _cifar_block(blk: nn.Module, x: Tensor, keep: bool) -> Tensor:
    if isinstance(blk, PlainBlock):
        if not keep:
            return x
        return torch.relu(blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(x))))))
    short = _cifar_shortcut(blk, x)
    if isinstance(blk, PreActBlock):
        res = blk.conv2(torch.relu(blk.bn2(blk.conv1(torch.relu(blk.bn1(x))))))
        return short + res if keep else short
    assert isinstance(blk, BasicBlock)
    res = blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(x)))))
    res = res * blk.drop_path.survival
    return torch.relu(short + res) if keep else torch.relu(short)


def cifar_forward(model: nn.Module, x: Tensor, route: list[tuple[nn.Module, bool]]) -> Tensor:
    h = model.conv1(x)
    # The post-activation and fb.resnet.torch stems end with BN-ReLU; He et al.'s preact's not.
    if not model.preact or isinstance(model.layer1[0], FbPreActBlock):
        h = torch.relu(model.bn1(h))
    for blk, keep in route:
        h = _cifar_block(blk, h, keep)
    if model.preact:
        h = torch.relu(model.bn_final(h))
    return model.fc(h.mean(dim=(2, 3)))


def vit_units(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(layer, kind) for layer in model.encoder.layers for kind in ("attention", "mlp")]


def vit_forward(
    model: nn.Module, x: Tensor, route: list[tuple[tuple[nn.Module, str], bool]]
) -> Tensor:
    n, p = x.shape[0], model.patch_size
    h = model.conv_proj(x).flatten(2).transpose(1, 2)  # (B, tokens, D)
    h = torch.cat([model.class_token.expand(n, -1, -1), h], dim=1) + model.encoder.pos_embedding
    assert p > 0
    for (layer, kind), keep in route:
        if not keep:
            continue
        if kind == "attention":
            a = layer.ln_1(h)
            h = h + layer.self_attention(a, a, a, need_weights=False)[0]
        else:
            h = h + layer.mlp(layer.ln_2(h))
    return model.heads(model.encoder.ln(h)[:, 0])
