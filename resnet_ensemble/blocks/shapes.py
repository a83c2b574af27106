"""Each block's input and output shape, probed once per model with one example batch.

Validating a reorder or a route needs to know where the tensor changes shape; running the model
once on its adapter's example input and recording the shape around every block answers that for
any order without running it.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .registry import Anatomy, anatomy
from .runtime import eval_mode

__all__ = ["BlockShapes", "block_shapes", "describe_shape"]


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
