"""What the zoo adapters share: matching one library class without importing its library,
module names, post ops that never write into their input, and a stem that is the model's own
forward up to its first block."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ...call_args import split_call as _split_call
from ..types import CallContext

TensorFn = Callable[[Tensor], Tensor]


def library_loaded(name: str) -> bool:
    """True where ``name`` has been imported: only then can a model belong to it."""
    return name in sys.modules


class ClassAdapter:
    """An adapter for the instances of one library class, named by its import path
    (``model_class``) so that the library is imported only once a model of it can exist."""

    name: str
    model_class: str  # "package.module.Class"

    def matches(self, model: nn.Module) -> bool:
        module, _, cls = self.model_class.rpartition(".")
        if not library_loaded(module.partition(".")[0]):
            return False
        return isinstance(model, getattr(importlib.import_module(module), cls))


def qualified_names(model: nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules()}


def identity(x: Tensor) -> Tensor:
    return x


def is_identity(module: nn.Module | None) -> bool:
    return module is None or isinstance(module, nn.Identity)


def out_of_place(act: nn.Module) -> TensorFn:
    """``act`` as a post op that leaves its input alone: a deleted block's sum is its input, and
    an in-place activation (timm's ReLU(inplace=True)) would overwrite it."""
    if getattr(act, "inplace", False):
        return lambda z: act(z.clone())
    return act


def example(
    model: nn.Module, size: tuple[int, ...], dtype: torch.dtype | None = None
) -> Callable[[], Tensor]:
    def make() -> Tensor:
        p = next(model.parameters())
        return torch.zeros(1, *size, device=p.device, dtype=dtype or p.dtype)

    return make


def image_example(
    model: nn.Module, height_width: tuple[int, ...] = (64, 64)
) -> Callable[[], Tensor]:
    """``example`` for an image model: its first convolution's input channels (3 without one)
    by ``height_width``."""
    channels = next((m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)), 3)
    return example(model, (int(channels), *height_width))


class _Reached(Exception):
    """Raised by the hook on the first block: the stem's work is done."""


def call_signature(module: nn.Module) -> inspect.Signature | None:
    """The signature of the module's class forward (not a patched one), without ``self``."""
    try:
        return inspect.signature(type(module).forward.__get__(module))
    except (TypeError, ValueError):
        return None


def stem_by_capture(
    first: nn.Module, call: Callable[[Tensor], Any], context: CallContext
) -> TensorFn:
    """A stem that runs the model's own forward until ``first`` (the first block's owner) is
    called, and returns that call's hidden state; its other arguments (masks, rotary
    positions) go to ``context`` for the blocks. Whatever the library version builds before the
    blocks is built here the same way."""
    signature = call_signature(first)

    def stem(x: Tensor) -> Tensor:
        seen: dict[str, Any] = {}

        def hook(_: nn.Module, args: tuple, kwargs: dict) -> None:
            seen["args"], seen["kwargs"] = args, kwargs
            raise _Reached

        handle = first.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            call(x)
        except _Reached:
            pass
        finally:
            handle.remove()
        if "args" not in seen:
            raise ValueError(f"the model's forward never reached its first block ({first})")
        h, extra = _split_call(signature, seen["args"], seen["kwargs"])
        context.set(extra)
        context.stash.clear()
        return h

    return stem
