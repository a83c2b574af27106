"""Residual anatomy: find the residual blocks of a model and split each into its parts.

Holds:
- ``Block``: one residual unit, ``y = post(shortcut(x) + residual(x))``, with its index, qualified
  name, stage and whether its shortcut downsamples
- ``Anatomy``: the ordered blocks plus the model's ``stem`` (input -> first block) and ``head``
  (last block -> logits), so that blocks can be run in any order between them
- ``Transition``: a module that runs between two blocks (a ConvNeXt or Swin stage's
  downsampling); it belongs to no block and runs in place in every route
- ``CallContext``: the keyword arguments of the model's current call that blocks read (attention
  masks, rotary positions), so that blocks follow the model's own call
- ``Adapter`` and ``register_adapter``: how a model family is taken apart (the package's
  ``docs/adapters.md``)
- ``anatomy(model)`` and ``residual_blocks(model)``
- ``resolve_block``: a block named by index (negative from the end) or by name -> its index
- ``block_shapes(model)``: each block's input and output shape, probed once, for validating orders

Built-in adapters: the native protocol (blocks with ``residual``/``shortcut``/``post`` methods and
a model with ``stem``/``head``, as the built-in CIFAR ResNets), torchvision ResNets (ResNet-18 to
152, Wide ResNets, ResNeXts) and torchvision's VisionTransformer (two units per encoder layer);
timm's and Hugging Face's families live in ``resnet_ensemble.adapters``. The types are defined in
``block_types`` (below both this registry and the zoo adapters) and re-exported here.
"""

from __future__ import annotations

import difflib
import numbers
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .block_types import (
    ADAPTER_DOC,
    Adapter,
    Anatomy,
    Block,
    CallContext,
    TensorFn,
    Transition,
)
from .runtime import eval_mode

__all__ = [
    "Adapter",
    "Anatomy",
    "Block",
    "BlockShapes",
    "CallContext",
    "Transition",
    "anatomy",
    "block_shapes",
    "fold_transitions",
    "register_adapter",
    "residual_blocks",
    "resolve_block",
]


def _check_transitions(found: Anatomy) -> None:
    n = len(found.blocks)
    for t in found.transitions:
        if not 1 <= t.before < n:
            raise ValueError(
                f"transition {t.name} runs before block {t.before}, but transitions run between "
                f"blocks, before one of 1..{n - 1}; fold it into the stem or the head"
            )
    befores = [t.before for t in found.transitions]
    if befores != sorted(befores):
        raise ValueError("an adapter's transitions must be listed in forward order")


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
        return Anatomy(tuple(blocks), model.stem, model.head, _example(model, size), self.name)


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
                out = F.relu(blk.bn1(blk.conv1(x)))
                out = F.relu(blk.bn2(blk.conv2(out)))
                return blk.bn3(blk.conv3(out))

            return bottleneck

        def basic(x: Tensor) -> Tensor:
            return blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(x)))))

        return basic

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = _qualified_names(model)
        blocks: list[Block] = []
        for stage, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
            for blk in layer:
                # F.relu, not torchvision's in-place ReLU: a deleted block's post op would
                # otherwise overwrite its own input.
                residual = self._residual(blk)
                block = Block.whole(
                    len(blocks), names[id(blk)], stage, blk, residual, blk.downsample, F.relu
                )
                blocks.append(block)

        def stem(x: Tensor) -> Tensor:
            return model.maxpool(model.relu(model.bn1(model.conv1(x))))

        def head(h: Tensor) -> Tensor:
            return model.fc(torch.flatten(model.avgpool(h), 1))

        # The first convolution's channels: a ResNet adapted to 1-channel images takes those.
        size = (model.conv1.in_channels, 64, 64)
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
        for layer in model.encoder.layers:

            def attention(x: Tensor, layer: nn.Module = layer) -> Tensor:
                h = layer.ln_1(x)
                h, _ = layer.self_attention(h, h, h, need_weights=False)
                return layer.dropout(h)

            def mlp(x: Tensor, layer: nn.Module = layer) -> Tensor:
                return layer.mlp(layer.ln_2(x))

            for module, residual, parts in (
                (layer.self_attention, attention, (layer.ln_1, layer.self_attention)),
                (layer.mlp, mlp, (layer.ln_2, layer.mlp)),
            ):
                name = names[id(module)]
                blocks.append(Block.unit(len(blocks), name, module, residual, layer, parts))

        def stem(x: Tensor) -> Tensor:
            h = model._process_input(x)
            h = torch.cat([model.class_token.expand(h.shape[0], -1, -1), h], dim=1)
            return model.encoder.dropout(h + model.encoder.pos_embedding)

        def head(h: Tensor) -> Tensor:
            return model.heads(model.encoder.ln(h)[:, 0])

        size = (model.conv_proj.in_channels, model.image_size, model.image_size)
        return Anatomy(tuple(blocks), stem, head, _example(model, size), self.name)


_ADAPTERS: list[Adapter] = [NativeAdapter(), TorchvisionResNetAdapter(), TorchvisionViTAdapter()]
_ZOO_LOADED = False


def _zoo_adapters() -> None:
    """Append timm's and Hugging Face's adapters once; they import neither library themselves
    (a model of a library that was never imported cannot be one of its models)."""
    global _ZOO_LOADED
    if not _ZOO_LOADED:
        _ZOO_LOADED = True
        from .adapters import ZOO_ADAPTERS

        _ADAPTERS.extend(ZOO_ADAPTERS)


def register_adapter(adapter: Adapter) -> Adapter:
    """Teach the toolkit a new model family; adapters registered later are tried first."""
    if not isinstance(adapter, Adapter):
        raise TypeError("an adapter needs a name, matches(model) and anatomy(model)")
    _ADAPTERS.insert(0, adapter)
    return adapter


def anatomy(model: nn.Module) -> Anatomy:
    """Take ``model`` apart with the first adapter that recognises it.

    Raises:
        ValueError: no adapter recognises the model, or the adapter found no blocks.
    """
    _zoo_adapters()
    for adapter in _ADAPTERS:
        if adapter.matches(model):
            found = adapter.anatomy(model)
            if found.blocks:
                _check_transitions(found)
                return found if found.model is model else replace(found, model=model)
    raise ValueError(
        f"no residual blocks found in {type(model).__name__} (from {type(model).__module__}); "
        "supported are the built-in CIFAR "
        "ResNets, torchvision ResNets and ViTs, timm's ResNets, ConvNeXts and ViTs, Hugging "
        "Face's ResNet, ViT and decoder LMs, and models with an adapter (see "
        f"{ADAPTER_DOC}: register_adapter)"
    )


def fold_transitions(found: Anatomy) -> Anatomy:
    """The same model with each transition folded into both branches of the block after it,
    ``shortcut(t(x))`` and ``residual(t(x))``: exact for anything that keeps the blocks' order
    (deletions, path subsets, the path-length gradients)."""
    if not found.transitions:
        return found
    before: dict[int, list[Transition]] = {}
    for t in found.transitions:
        before.setdefault(t.before, []).append(t)
    blocks = []
    for b in found.blocks:
        ts = before.get(b.index)
        if not ts:
            blocks.append(b)
            continue

        def pre(x: Tensor, ts: list[Transition] = ts) -> Tensor:
            for t in ts:
                x = t(x)
            return x

        def shortcut(x: Tensor, b: Block = b, pre: TensorFn = pre) -> Tensor:
            return b.shortcut(pre(x)) if b.shortcut is not None else pre(x)

        def residual(x: Tensor, b: Block = b, pre: TensorFn = pre) -> Tensor:
            return b.residual(pre(x))

        # Without a shortcut the folded block's "shortcut" is just the transition.
        blocks.append(replace(b, shortcut=shortcut, residual=residual))
    return replace(found, blocks=tuple(blocks), transitions=())


def residual_blocks(model: nn.Module) -> list[Block]:
    """The residual blocks of ``model`` in forward order, indexed from 0.

    Example:
        >>> [b.name for b in residual_blocks(torchvision.models.resnet18())][:2]
        ['layer1.0', 'layer1.1']
    """
    return list(anatomy(model).blocks)


_INTEGER = re.compile(r"[+-]?[0-9]+")


def resolve_block(
    blocks: Anatomy | Sequence[Block] | nn.Module, ref: object, what: str = ""
) -> int:
    """The 0-based index of the block ``ref`` names: an index (negative counts from the end,
    -1 the last block), the text of one (the command line's ``--drop-block -1``), or a block's
    name as ``residual_blocks`` lists it (``"layer2.1"``). Text that reads as an integer is
    always an index, so that a model whose blocks are named "0", "1"... keeps the documented
    meaning of ``--drop-block 1``. This is the one resolver every option and argument that
    takes a block uses; tables keep the 0-based index it returns.

    Args:
        blocks: the model, its anatomy or its blocks.
        ref: the reference.
        what: where the reference came from ("drop", "the route"), for the error.
    Raises:
        ValueError: an index out of range, an unknown or ambiguous name, or neither.
    Example:
        >>> resolve_block(torchvision.models.resnet18(), "layer2.1"), resolve_block(m, -1)
        (3, 7)
    """
    if isinstance(blocks, nn.Module):
        blocks = anatomy(blocks)
    found = tuple(blocks.blocks if isinstance(blocks, Anatomy) else blocks)
    n = len(found)
    where = f" in {what}" if what else ""
    if isinstance(ref, str) and not _INTEGER.fullmatch(ref.strip()):
        name = ref.strip()
        hits = [b.index for b in found if b.name == name]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise ValueError(
                f"the name {name!r}{where} is shared by blocks {hits}; give one by its index"
            )
        names = [b.name for b in found]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else f"the names run {names[0]}, ..., {names[-1]}"
            if names
            else "the model has no blocks"
        )
        raise ValueError(
            f"no block named {name!r}{where}; {hint} (indices 0..{n - 1}, or -{n}..-1 from the "
            "end; `ensemble-lesion blocks` lists them)"
        )
    if isinstance(ref, str):
        ref = int(ref.strip())
    if isinstance(ref, bool) or not isinstance(ref, numbers.Integral):
        raise ValueError(
            f"block index {ref!r}{where} is not an integer or a block name; valid are "
            f"0..{n - 1} (or -{n}..-1 from the end)"
        )
    i = int(ref)
    if not -n <= i < n:
        raise ValueError(
            f"block {i}{where} is out of range: the model has {n} blocks, 0..{n - 1} "
            f"(or -{n}..-1 from the end)"
        )
    return i % n


@dataclass(frozen=True)
class BlockShapes:
    """Per-sample shapes (batch dimension dropped) at the stem output and around each block."""

    stem_out: tuple[int, ...]
    inputs: tuple[tuple[int, ...], ...]
    outputs: tuple[tuple[int, ...], ...]
    transitions: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()  # (in, out) each


_SHAPE_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], BlockShapes]] = (
    weakref.WeakKeyDictionary()
)


def block_shapes(model: nn.Module | None, found: Anatomy | None = None) -> BlockShapes:
    """Probe each block's input and output shape with one small forward pass in eval mode.

    The result is cached per model (keyed by its blocks' identities); the model's train/eval
    flags are restored afterwards.
    """
    if model is None:
        if found is None or found.model is None:
            raise ValueError("block_shapes needs the model")
        model = found.model
    found = found or anatomy(model)
    key = tuple(id(b.module) for b in found.blocks)
    cached = _SHAPE_CACHE.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    with eval_mode(model), torch.no_grad():
        h = found.stem(found.example_input())
        stem_out = tuple(h.shape[1:])
        inputs, outputs, moves = [], [], []
        pending = list(found.transitions)
        for b in found.blocks:
            while pending and pending[0].before <= b.index:
                before = tuple(h.shape[1:])
                h = pending.pop(0)(h)
                moves.append((before, tuple(h.shape[1:])))
            inputs.append(tuple(h.shape[1:]))
            h = b.forward(h)
            outputs.append(tuple(h.shape[1:]))
    shapes = BlockShapes(stem_out, tuple(inputs), tuple(outputs), tuple(moves))
    _SHAPE_CACHE[model] = (key, shapes)
    return shapes


def describe_shape(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)
