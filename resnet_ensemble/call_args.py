"""Reading a module's call: ``split_call`` turns ``forward(*args, **kwargs)`` into (the hidden
state, every other argument by name).

Torch-free and importing nothing of the package, so that both the interventions and the zoo
adapters (which the anatomy loads) can use it without an import cycle.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["split_call"]


def split_call(
    signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """An owner's call as (its hidden state, every other argument by name)."""
    if signature is not None:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            bound = None
        if bound is not None and bound.arguments:
            arguments = dict(bound.arguments)
            first = next(iter(arguments))
            x = arguments.pop(first)
            extra: dict[str, Any] = {}
            for name, value in arguments.items():
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    extra.update(value)
                elif kind is not inspect.Parameter.VAR_POSITIONAL:
                    extra[name] = value
            return x, extra
    if args:
        return args[0], dict(kwargs)
    name = next(iter(kwargs))
    return kwargs[name], {k: v for k, v in kwargs.items() if k != name}
