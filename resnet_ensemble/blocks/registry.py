"""The adapter registry: find the residual blocks of a model, and name one of them.

Holds:
- ``register_adapter``: teach the toolkit a model family (the package's ``docs/adapters.md``)
- ``anatomy(model)`` and ``residual_blocks(model)``: the first adapter that recognises the model
  takes it apart; the built-in adapters (``blocks.builtin``) are tried after registered ones, and
  timm's and Hugging Face's (``blocks.adapters``) are loaded on first use
- ``fold_transitions``: modules between blocks folded into the block after them
- ``resolve_block``: a block named by index (negative from the end) or by name -> its index

The types (``Block``, ``Anatomy``, ``Transition``, ``CallContext``, ``Adapter``) live in
``blocks.types``, below both this registry and the adapters, and are re-exported here.
"""

from __future__ import annotations

import difflib
import numbers
import re
from collections.abc import Sequence
from dataclasses import replace

from torch import Tensor, nn

from .builtin import NativeAdapter, TorchvisionResNetAdapter, TorchvisionViTAdapter
from .types import (
    ADAPTER_DOC,
    Adapter,
    Anatomy,
    Block,
    CallContext,
    TensorFn,
    Transition,
)

__all__ = [
    "ADAPTER_DOC",
    "Adapter",
    "Anatomy",
    "Block",
    "CallContext",
    "TensorFn",
    "Transition",
    "anatomy",
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
