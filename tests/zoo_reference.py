"""The independent reference for the zoo adapters: forward hooks that zero a residual branch's
output inside the model's own forward and keep everything else, and norms drawn at random (timm
zero-initialises each block's last norm, so in a fresh model a deleted block changes nothing)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every norm's scale and shift (and running statistics), and every layer-scale ``gamma``,
    drawn at random."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            is_norm = "Norm" in type(m).__name__ or "LayerScale" in type(m).__name__
            for name, p in m.named_parameters(recurse=False):
                if name == "gamma" or (is_norm and name in ("weight", "scale")):
                    p.copy_(torch.rand(p.shape, generator=g) + 0.5)
                elif is_norm and name == "bias":
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def _zero(_: nn.Module, __: tuple, out: object) -> object:
    if isinstance(out, tuple):
        return (torch.zeros_like(out[0]), *out[1:])
    return torch.zeros_like(out)


@contextlib.contextmanager
def zeroed(branch_ends: Sequence[nn.Module]) -> Iterator[None]:
    """Within the block, the output of each of ``branch_ends`` (the last module of a residual
    branch, before the addition) is zero."""
    handles = [m.register_forward_hook(_zero) for m in branch_ends]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def no_patches(model: nn.Module) -> bool:
    """Nothing left behind: no module carries an instance-level forward."""
    return all("forward" not in m.__dict__ for m in model.modules())


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == before.keys() and all(torch.equal(now[k], before[k]) for k in now)
