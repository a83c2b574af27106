"""Typed access to a model's children, for adapters that take library models apart.

torch's ``Module.__getattr__`` types every attribute ``Tensor | Module``, so ``blk.conv1(x)``
and ``for blk in model.layer1`` fail type checking although the attribute is a module. Reach a
child that is always a module with torch's own ``Module.get_submodule`` (typed ``Module``,
refusing anything else); these cover the two other cases, each checked at run time:

- ``optional_submodule``: a child a model may set to None (torchvision's ``downsample``, timm's
  ``se``)
- ``module_sequence``: a ``Sequential`` or ``ModuleList`` child, to iterate or index
- ``int_attribute``: a plain int setting (``in_channels``, ``image_size``)
- ``tensor_fn``: a method or module the adapter calls on a tensor (``forward_head``)

(torch's ``Module.get_parameter`` does for a parameter what ``get_submodule`` does for a child.)
"""

from __future__ import annotations

from torch import nn

from .types import TensorFn

__all__ = ["int_attribute", "module_sequence", "optional_submodule", "tensor_fn"]


def optional_submodule(parent: nn.Module, name: str) -> nn.Module | None:
    """``parent.<name>``, a module or None."""
    child = getattr(parent, name)
    if child is not None and not isinstance(child, nn.Module):
        raise TypeError(
            f"{type(parent).__name__}.{name} is a {type(child).__name__}, not a module or None"
        )
    return child


def module_sequence(module: nn.Module) -> nn.Sequential | nn.ModuleList:
    """``module`` as the ``Sequential`` or ``ModuleList`` it is (a stage's blocks)."""
    if not isinstance(module, (nn.Sequential, nn.ModuleList)):
        raise TypeError(f"{type(module).__name__} is not a Sequential or ModuleList of blocks")
    return module


def int_attribute(module: nn.Module, name: str) -> int:
    """``module.<name>``, an int (a convolution's ``in_channels``, a ViT's ``image_size``)."""
    value = getattr(module, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{type(module).__name__}.{name} is a {type(value).__name__}, not an int")
    return value


def tensor_fn(module: nn.Module, name: str) -> TensorFn:
    """``module.<name>``, a method or child module called on a tensor (a model's
    ``forward_head``, the native protocol's ``stem``)."""
    fn = getattr(module, name)
    if not callable(fn):
        raise TypeError(f"{type(module).__name__}.{name} is a {type(fn).__name__}, not callable")
    return fn
