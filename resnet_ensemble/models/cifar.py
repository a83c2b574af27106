"""He et al. (2016) CIFAR ResNets, their pre-activation and stochastic-depth variants, and the
plain (no-shortcut) control network of Veit et al. (2016).

Holds:
- ``ShortcutA``: option-A shortcut, parameter-free stride-2 subsampling with zero-padded channels
- ``BasicBlock``: post-activation block, ``relu(shortcut(x) + residual(x))``
- ``PreActBlock``: pre-activation block (Identity Mappings), ``shortcut(x) + residual(x)``
- ``FbPreActBlock``: the same block as fb.resnet.torch's ``preresnet.lua`` builds it (the
  networks Veit et al. lesioned): the shortcut reads the raw input, option A appends its zeros
- ``PlainBlock``: the same two convolutions with no shortcut at all
- ``CifarResNet``: stem -> layer1..layer3 -> head, depth 6n + 2
- ``cifar_resnet`` and ``plain_net``: the builders

Every block exposes ``residual(x)``, ``shortcut(x)`` and ``post(z)`` so that the toolkit can
delete, reorder and decompose it without guessing (the native adapter in ``anatomy``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..archs import check_depth

ShortcutKind = Literal["A", "B"]
#: "he": He et al.'s own pre-activation CIFAR layout (stem = one convolution); "fb.resnet.torch":
#: ``preresnet.lua``'s (stem = conv-BN-ReLU; see ``FbPreActBlock``). Post-activation nets have one.
PreactLayout = Literal["he", "fb.resnet.torch"]
PREACT_LAYOUTS: tuple[str, ...] = ("he", "fb.resnet.torch")

__all__ = [
    "PREACT_LAYOUTS",
    "BasicBlock",
    "CifarResNet",
    "FbPreActBlock",
    "PlainBlock",
    "PreActBlock",
    "ShortcutA",
    "cifar_resnet",
    "plain_net",
    "survival_probabilities",
    "unscaled_residuals",
]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class ShortcutA(nn.Module):
    """Option A: subsample by the stride and zero-pad the new channels, adding no parameters.

    ``pad_at="both"`` puts half the zero channels before the input's and half after (the common
    PyTorch port); ``"end"`` appends them all after, as fb.resnet.torch's ``nn.Concat`` of the
    input and its zeroed copy does. The two differ only by a permutation of channels.
    """

    def __init__(
        self, in_planes: int, out_planes: int, stride: int, pad_at: Literal["both", "end"] = "both"
    ) -> None:
        super().__init__()
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride
        self.pad_at = pad_at

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_planes - self.in_planes
        before = 0 if self.pad_at == "end" else extra // 2
        return F.pad(x, (0, 0, 0, 0, before, extra - before))

    def extra_repr(self) -> str:
        return f"{self.in_planes}->{self.out_planes}, stride={self.stride}, pad_at={self.pad_at}"


def _projection(in_planes: int, out_planes: int, stride: int, *, with_bn: bool) -> nn.Module:
    conv = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_planes)) if with_bn else nn.Sequential(conv)


DropDraw = Literal["batch", "sample", "none"]


class _ResidualScale(nn.Module):
    """Stochastic depth (Huang et al. 2016) applied to a residual branch.

    ``draw`` says how training drops the branch:
    - ``"batch"`` (Huang et al.): one draw per block per mini-batch; a dropped block skips its
      residual branch altogether (the block asks ``drops_this_batch`` before computing it);
    - ``"sample"``: one draw per sample, as timm's ``drop_path``;
    - ``"none"``: training leaves the residual alone, because the trainer deletes blocks itself
      (effective-path training); only the evaluation scaling applies.
    Evaluation scales the residual by ``survival``, so that its expected contribution matches
    training.
    """

    def __init__(self, survival: float, draw: DropDraw = "batch") -> None:
        super().__init__()
        if draw not in ("batch", "sample", "none"):
            raise ValueError(f"draw must be 'batch', 'sample' or 'none', got {draw!r}")
        self.survival = survival
        self.draw = draw

    def drops_this_batch(self) -> bool:
        """Training with per-batch draws: True when this block is dropped for this mini-batch.
        Draws from torch's global generator, which the trainer seeds per epoch."""
        if not self.training or self.draw != "batch" or self.survival >= 1.0:
            return False
        return bool(torch.rand(()) >= self.survival)

    def forward(self, r: Tensor) -> Tensor:
        if self.survival >= 1.0:
            return r
        if not self.training:
            return r * self.survival
        if self.draw != "sample":  # per-batch: the block already skipped a dropped branch
            return r
        keep = torch.empty(r.shape[0], *([1] * (r.dim() - 1)), device=r.device, dtype=r.dtype)
        return r * keep.bernoulli_(self.survival)

    def extra_repr(self) -> str:
        return f"survival={self.survival:.4f}, draw={self.draw}"


class _CifarBlock(nn.Module):
    """Shared layout: two 3x3 convolutions with a BatchNorm each, an optional shortcut, and an
    optional post op.

    ``preact`` puts each BatchNorm before its convolution (so the first normalises the block's
    input) and leaves the BatchNorm out of a projection shortcut; ``has_shortcut = False``
    builds none.
    """

    downsamples: bool
    preact = False
    has_shortcut = True
    zero_pad_at: Literal["both", "end"] = "both"  # where option A puts its zero channels
    projection_norm = True  # option B: a BatchNorm after the 1x1 convolution
    stem_norm = True  # the network's stem ends with BN-ReLU (post-activation, fb.resnet.torch)

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        shortcut: ShortcutKind = "A",
        survival: float = 1.0,
        draw: DropDraw = "batch",
    ) -> None:
        super().__init__()
        self.in_planes, self.planes, self.stride = in_planes, planes, stride
        self.downsamples = stride != 1 or in_planes != planes
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.conv2 = _conv3x3(planes, planes)
        self.drop_path = _ResidualScale(survival, draw)
        self.shortcut_kind = shortcut
        self.bn1 = nn.BatchNorm2d(in_planes if self.preact else planes)
        self.bn2 = nn.BatchNorm2d(planes)
        if self.downsamples and self.has_shortcut:
            self.projection = (
                ShortcutA(in_planes, planes, stride, self.zero_pad_at)
                if shortcut == "A"
                else _projection(in_planes, planes, stride, with_bn=self.projection_norm)
            )

    def residual(self, x: Tensor) -> Tensor:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def shortcut(self, x: Tensor) -> Tensor:
        return self.projection(x) if self.downsamples else x

    def post(self, z: Tensor) -> Tensor:
        return z

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_path.drops_this_batch():  # stochastic depth: the branch is not computed
            return self.post(self.shortcut(x))
        return self.post(self.shortcut(x) + self.residual(x))


class BasicBlock(_CifarBlock):
    """He et al. (2016): ``relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x))))))``."""

    def residual(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.drop_path(self.bn2(self.conv2(out)))

    def post(self, z: Tensor) -> Tensor:
        return F.relu(z)


class PreActBlock(_CifarBlock):
    """He et al. (Identity Mappings, 2016): ``shortcut(x) + conv2(relu(bn2(conv1(relu(bn1(x))))))``.

    A projection shortcut (option B) reads the pre-activated input, as in the authors' code; the
    parameter-free option A reads ``x`` itself.
    """

    preact = True
    projection_norm = False
    stem_norm = False  # the first block's BN-ReLU normalises the stem's convolution

    def residual(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        return self.drop_path(self.conv2(F.relu(self.bn2(out))))

    def shortcut(self, x: Tensor) -> Tensor:
        if not self.downsamples:
            return x
        if self.shortcut_kind == "A":
            return self.projection(x)
        return self.projection(F.relu(self.bn1(x)))


class FbPreActBlock(PreActBlock):
    """fb.resnet.torch's ``preresnet.lua`` basic block, in the networks Veit et al. trained.

    The residual branch is ``PreActBlock``'s, BN-ReLU-conv-BN-ReLU-conv, in every block. What
    differs is around it: the network's stem is conv-BN-ReLU, so the first block's BN-ReLU
    follows a BN-ReLU; a shortcut always reads the raw block input (option B: a 1x1 convolution
    and a BatchNorm); option A appends its zero channels after the input's.
    """

    zero_pad_at = "end"
    projection_norm = True
    stem_norm = True

    def shortcut(self, x: Tensor) -> Tensor:
        return self.projection(x) if self.downsamples else x


class PlainBlock(_CifarBlock):
    """The control: ``relu(bn2(conv2(relu(bn1(conv1(x))))))`` with no shortcut.

    ``has_shortcut = False`` tells the toolkit that deleting this block leaves the identity (and
    is impossible where the block changes the shape).
    """

    has_shortcut = False

    def __init__(self, in_planes: int, planes: int, stride: int = 1, **_: object) -> None:
        super().__init__(in_planes, planes, stride)

    def residual(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)))

    def shortcut(self, x: Tensor) -> Tensor:
        if self.downsamples:
            raise ValueError("a plain block that changes the shape has no shortcut")
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x)


@contextlib.contextmanager
def unscaled_residuals(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate a stochastic-depth or effective-path network without the test-time scaling of
    its residuals (survival probability, or K/n), restoring it afterwards.

    The paper does not say how it evaluated its effective-path network; the scaled evaluation
    (the default, as stochastic depth does) matches the activations its BatchNorm statistics
    saw in training, and this gives the other reading for comparison.
    """
    scales = [m for m in model.modules() if isinstance(m, _ResidualScale)]
    before = [m.survival for m in scales]
    try:
        for m in scales:
            m.survival = 1.0
        yield model
    finally:
        for m, value in zip(scales, before, strict=True):
            m.survival = value


def survival_probabilities(num_blocks: int, final: float | None) -> list[float]:
    """Huang et al.'s linear decay: block l (1-based) of L survives with 1 - l/L * (1 - final)."""
    if final is None:
        return [1.0] * num_blocks
    if not 0.0 < final <= 1.0:
        raise ValueError(f"stochastic depth survival must be in (0, 1], got {final}")
    return [1.0 - (i + 1) / num_blocks * (1.0 - final) for i in range(num_blocks)]


def _active_block_survival(
    active: int, num_blocks: int, stochastic_depth: float | None
) -> list[float]:
    """Effective-path training (Veit et al., Sec. 6) runs K of the n blocks per mini-batch, so
    each block is present with probability K/n. As in stochastic depth, evaluation runs every
    block with its residual scaled by that probability; without the scaling the full network's
    activations are far from what its BatchNorm statistics saw in training."""
    if stochastic_depth is not None:
        raise ValueError("choose stochastic_depth or active_blocks, not both")
    if not 1 <= active <= num_blocks:
        raise ValueError(f"active_blocks must be in 1..{num_blocks}, got {active}")
    return [active / num_blocks] * num_blocks


class CifarResNet(nn.Module):
    """A CIFAR ResNet of depth 6n + 2: a 3x3 stem, three stages of n blocks (16, 32, 64
    channels), global average pooling and a linear classifier.

    ``stem`` and ``head`` are methods so that the toolkit can run the blocks in any order between
    them, and cache the stem's output once for many routes.
    """

    # The stages, registered by name in ``__init__`` (``layer1`` .. ``layer3``, the names the
    # checkpoints use): declared here so that their calls type-check as Sequential calls.
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(
        self,
        block: type[_CifarBlock],
        depth: int,
        num_classes: int = 10,
        in_channels: int = 3,
        shortcut: ShortcutKind = "A",
        stochastic_depth: float | None = None,
        active_blocks: int | None = None,
        stochastic_depth_draw: Literal["batch", "sample"] = "batch",
    ) -> None:
        super().__init__()
        if stochastic_depth_draw not in ("batch", "sample"):
            raise ValueError(
                f"stochastic_depth_draw must be 'batch' or 'sample', got {stochastic_depth_draw!r}"
            )
        problem = check_depth(depth)
        if problem:
            raise ValueError(problem)
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.depth, self.in_channels, self.num_classes = depth, in_channels, num_classes
        self.preact = issubclass(block, PreActBlock)
        self.layout: PreactLayout | None = (
            ("fb.resnet.torch" if block is FbPreActBlock else "he") if self.preact else None
        )
        n = (depth - 2) // 6
        if active_blocks is None:
            survival = iter(survival_probabilities(3 * n, stochastic_depth))
        else:
            survival = iter(_active_block_survival(active_blocks, 3 * n, stochastic_depth))
        self.conv1 = _conv3x3(in_channels, 16)
        # He et al.'s pre-activation network starts its first block with BN-ReLU, so its stem
        # is the conv; fb.resnet.torch's stem ends with BN-ReLU all the same.
        self.stem_norm = block.stem_norm
        self.bn1: nn.Module = nn.BatchNorm2d(16) if self.stem_norm else nn.Identity()
        planes_in = 16
        for stage, planes in enumerate((16, 32, 64)):
            blocks = []
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(
                    block(
                        planes_in,
                        planes,
                        stride,
                        shortcut=shortcut,
                        survival=next(survival),
                        # Effective-path training: the trainer deletes blocks itself.
                        draw=stochastic_depth_draw if active_blocks is None else "none",
                    )
                )
                planes_in = planes
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.bn_final: nn.Module = nn.BatchNorm2d(64) if self.preact else nn.Identity()
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def example_input_size(self) -> tuple[int, int, int]:
        """A (C, H, W) the network accepts; used to probe block shapes."""
        return (self.in_channels, 32, 32)

    def stem(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 16, H, W)
        out = self.bn1(self.conv1(x))
        return F.relu(out) if self.stem_norm else out

    def head(self, h: Tensor) -> Tensor:  # (B, 64, H/4, W/4) -> (B, num_classes)
        if self.preact:
            h = F.relu(self.bn_final(h))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def cifar_resnet(
    depth: int,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: ShortcutKind = "A",
    preact: bool = False,
    stochastic_depth: float | None = None,
    active_blocks: int | None = None,
    stochastic_depth_draw: Literal["batch", "sample"] = "batch",
    layout: PreactLayout = "he",
) -> CifarResNet:
    """He et al.'s CIFAR ResNet of the given depth (20, 32, 44, 56, 110, 1202, ...).

    Args:
        shortcut: "A" (parameter-free, as the paper's ResNet-110) or "B" (1x1 projection).
        preact: use pre-activation blocks (He et al., Identity Mappings).
        stochastic_depth: final survival probability of Huang et al.'s linear decay (e.g. 0.5),
            or None for an ordinary ResNet.
        stochastic_depth_draw: "batch" drops each block once per mini-batch, as Huang et al.
            did (and skips its computation); "sample" draws per sample, as timm's drop_path.
        active_blocks: K for a network trained on K random blocks per mini-batch (effective-path
            training): evaluation scales every residual by K/n. Training itself is the
            trainer's (``ensemble-lesion train --active-blocks K``).
        layout: with ``preact``, "he" (He et al.'s own CIFAR code: the stem is one
            convolution) or "fb.resnet.torch" (``preresnet.lua``, the layout of the networks
            Veit et al. lesioned; ``FbPreActBlock``). The built-in name ``fbpreresnet110``.
    Example:
        >>> model = cifar_resnet(110)   # 54 blocks, as in Veit et al.
    """
    if layout not in PREACT_LAYOUTS:
        raise ValueError(f"layout must be one of {PREACT_LAYOUTS}, got {layout!r}")
    if layout != "he" and not preact:
        raise ValueError(f"layout {layout!r} is a pre-activation layout: pass preact=True")
    block: type[_CifarBlock] = BasicBlock
    if preact:
        block = FbPreActBlock if layout == "fb.resnet.torch" else PreActBlock
    return CifarResNet(
        block,
        depth,
        num_classes,
        in_channels,
        shortcut,
        stochastic_depth,
        active_blocks,
        stochastic_depth_draw,
    )


def plain_net(depth: int, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """The same network with every shortcut removed: the paper's control, where deleting any
    layer should be fatal."""
    return CifarResNet(PlainBlock, depth, num_classes, in_channels)
