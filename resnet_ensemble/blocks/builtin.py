"""The built-in adapters: the toolkit's own CIFAR ResNets, torchvision's ResNets and ViT.

- ``NativeAdapter``: blocks with ``residual``/``shortcut``/``post`` methods in a model with
  ``stem``/``head`` (the built-in CIFAR ResNets, and any model written to that protocol)
- ``TorchvisionResNetAdapter``: ResNet-18 to 152, Wide ResNets, ResNeXts
- ``TorchvisionViTAdapter``: VisionTransformer, two units per encoder layer (attention, MLP)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .submodules import int_attribute, module_sequence, optional_submodule, tensor_fn
from .types import Anatomy, Block, TensorFn

__all__ = ["NativeAdapter", "TorchvisionResNetAdapter", "TorchvisionViTAdapter"]


def _qualified_names(model: nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules()}


def _param_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype if p.dtype.is_floating_point else torch.float32
    return torch.device("cpu"), torch.float32


def _example(model: nn.Module, size: tuple[int, ...]) -> Callable[[], Tensor]:
    def make() -> Tensor:
        device, dtype = _param_device_dtype(model)
        return torch.zeros(1, *size, device=device, dtype=dtype)

    return make


class NativeAdapter:
    """Models that describe themselves: blocks with ``residual``, ``shortcut`` and ``post``
    methods (and ``has_shortcut = False`` for a block without one), and a model with ``stem``,
    ``head`` and ``example_input_size``. The built-in CIFAR ResNets follow it."""

    name = "native"

    @staticmethod
    def _is_block(m: nn.Module) -> bool:
        return all(callable(getattr(m, a, None)) for a in ("residual", "shortcut", "post"))

    def matches(self, model: nn.Module) -> bool:
        has_ends = callable(getattr(model, "stem", None)) and callable(getattr(model, "head", None))
        return has_ends and any(self._is_block(m) for m in model.modules())

    def anatomy(self, model: nn.Module) -> Anatomy:
        blocks: list[Block] = []
        stage_of: dict[str, int] = {}
        for name, m in model.named_modules():
            if m is model or not self._is_block(m):
                continue
            container = name.rsplit(".", 1)[0] if "." in name else ""
            stage = stage_of.setdefault(container, len(stage_of))
            has_shortcut = getattr(m, "has_shortcut", True)
            blocks.append(
                Block(
                    index=len(blocks),
                    name=name,
                    stage=stage,
                    downsamples=bool(getattr(m, "downsamples", False)),
                    module=m,
                    residual=m.residual,
                    shortcut=m.shortcut if has_shortcut else None,
                    post=m.post,
                    owner=m,
                    parts=(m,),
                )
            )
        size = tuple(getattr(model, "example_input_size", (3, 32, 32)))
        stem, head = tensor_fn(model, "stem"), tensor_fn(model, "head")
        return Anatomy(tuple(blocks), stem, head, _example(model, size), self.name)


class TorchvisionResNetAdapter:
    """torchvision ResNet, Wide ResNet and ResNeXt: BasicBlock and Bottleneck, whose output is
    ``relu(downsample(x) + bn_last(conv_last(...)))``; the final ReLU is the block's post op."""

    name = "torchvision-resnet"

    def matches(self, model: nn.Module) -> bool:
        from torchvision.models import ResNet

        return isinstance(model, ResNet)

    @staticmethod
    def _residual(blk: nn.Module) -> TensorFn:
        from torchvision.models.resnet import Bottleneck

        if isinstance(blk, Bottleneck):

            def bottleneck(x: Tensor) -> Tensor:
                m = blk.get_submodule
                out = F.relu(m("bn1")(m("conv1")(x)))
                out = F.relu(m("bn2")(m("conv2")(out)))
                return m("bn3")(m("conv3")(out))

            return bottleneck

        def basic(x: Tensor) -> Tensor:
            m = blk.get_submodule
            return m("bn2")(m("conv2")(F.relu(m("bn1")(m("conv1")(x)))))

        return basic

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = _qualified_names(model)
        blocks: list[Block] = []
        m = model.get_submodule  # typed Module, where ``model.conv1`` is ``Tensor | Module``
        for stage, layer in enumerate(m(f"layer{i}") for i in (1, 2, 3, 4)):
            for blk in module_sequence(layer):
                # F.relu, not torchvision's in-place ReLU: a deleted block's post op would
                # otherwise overwrite its own input.
                residual = self._residual(blk)
                downsample = optional_submodule(blk, "downsample")
                block = Block.whole(
                    len(blocks), names[id(blk)], stage, blk, residual, downsample, F.relu
                )
                blocks.append(block)

        def stem(x: Tensor) -> Tensor:
            return m("maxpool")(m("relu")(m("bn1")(m("conv1")(x))))

        def head(h: Tensor) -> Tensor:
            return m("fc")(torch.flatten(m("avgpool")(h), 1))

        # The first convolution's channels: a ResNet adapted to 1-channel images takes those.
        size = (int_attribute(m("conv1"), "in_channels"), 64, 64)
        return Anatomy(tuple(blocks), stem, head, _example(model, size), self.name)


class TorchvisionViTAdapter:
    """torchvision VisionTransformer: encoder layer i holds unit 2i, ``x + attention(ln_1(x))``,
    and unit 2i + 1, ``x + mlp(ln_2(x))``."""

    name = "torchvision-vit"

    def matches(self, model: nn.Module) -> bool:
        from torchvision.models import VisionTransformer

        return isinstance(model, VisionTransformer)

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = _qualified_names(model)
        blocks: list[Block] = []
        m = model.get_submodule  # typed Module, where ``model.encoder`` is ``Tensor | Module``
        for layer in module_sequence(m("encoder.layers")):

            def attention(x: Tensor, layer: nn.Module = layer) -> Tensor:
                sub = layer.get_submodule
                h = sub("ln_1")(x)
                h, _ = sub("self_attention")(h, h, h, need_weights=False)
                return sub("dropout")(h)

            def mlp(x: Tensor, layer: nn.Module = layer) -> Tensor:
                return layer.get_submodule("mlp")(layer.get_submodule("ln_2")(x))

            sub = layer.get_submodule
            for module, residual, parts in (
                (sub("self_attention"), attention, (sub("ln_1"), sub("self_attention"))),
                (sub("mlp"), mlp, (sub("ln_2"), sub("mlp"))),
            ):
                name = names[id(module)]
                blocks.append(Block.unit(len(blocks), name, module, residual, layer, parts))

        def stem(x: Tensor) -> Tensor:
            h = tensor_fn(model, "_process_input")(x)
            token = model.get_parameter("class_token")
            h = torch.cat([token.expand(h.shape[0], -1, -1), h], dim=1)
            return m("encoder.dropout")(h + model.get_parameter("encoder.pos_embedding"))

        def head(h: Tensor) -> Tensor:
            return m("heads")(m("encoder.ln")(h)[:, 0])

        image_size = int_attribute(model, "image_size")
        size = (int_attribute(m("conv_proj"), "in_channels"), image_size, image_size)
        return Anatomy(tuple(blocks), stem, head, _example(model, size), self.name)
