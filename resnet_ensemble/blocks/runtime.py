"""Where and how a model runs: the device, resolved once, and the eval-mode guard.

Holds:
- ``resolve_device``: a user's ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) ->
  a ``torch.device``, refusing one this machine lacks; commands resolve it once and pass the
  ``torch.device`` down
- ``model_device``: the device a model's parameters (or buffers) live on
- ``eval_mode``: run a block of code with the model in eval mode and restore every module's own
  mode afterwards, also when the block raises
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["eval_mode", "model_device", "resolve_device"]


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` -> CUDA where available, else CPU; refuse a CUDA device this machine lacks."""
    if isinstance(name, torch.device):  # resolved already: checked again, not re-parsed
        device = name
    else:
        text = (name or "auto").strip().lower()
        if text == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(text)
        except (RuntimeError, ValueError):
            raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("CUDA is not available on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{name}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}"
            )
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("MPS is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (else buffer); CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block, then every module back in its own mode (a model may mix
    them: a frozen BatchNorm in a training model), also when the block raises."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode
