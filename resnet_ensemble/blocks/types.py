"""The residual anatomy's types: ``Block``, ``Transition``, ``CallContext``, ``Anatomy`` and the
``Adapter`` protocol, with ``ADAPTER_DOC`` (the adapter guide's path).

They sit below ``anatomy`` (the registry, the built-in adapters and the shape probe) so that
the zoo adapters in ``adapters/``, which the registry loads, can use them without an import
cycle. ``anatomy`` re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ["ADAPTER_DOC", "Adapter", "Anatomy", "Block", "CallContext", "Transition", "TensorFn"]

TensorFn = Callable[[Tensor], Tensor]
# The adapter guide ships inside the package, so an error can name a file the user has.
ADAPTER_DOC = str(Path(__file__).resolve().parent.parent / "docs" / "adapters.md")


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass(frozen=True, eq=False)
class Block:
    """One residual unit: ``y = post(shortcut(x) + residual(x))``.

    ``shortcut`` is None for a block with no shortcut at all (the plain control network), whose
    output is ``residual(x)``. ``owner`` is the module whose ``forward`` runs this block in the
    model's own forward pass; it is the block itself for ResNets and the encoder layer for the
    two units of a ViT layer. An adapter sets it to None where no module's output is exactly the
    block's output; then only the engine, not the ``with`` forms, can run routes.

    ``shares_input_with`` names the block whose input this block's residual branch reads
    (GPT-NeoX's parallel attention and MLP both read the layer input): a route must run that
    block immediately before this one.
    """

    index: int
    name: str
    stage: int
    downsamples: bool
    module: nn.Module
    residual: TensorFn = field(repr=False)
    shortcut: TensorFn | None = field(repr=False)
    post: TensorFn | None = field(default=None, repr=False)
    owner: nn.Module | None = field(default=None, repr=False)
    parts: tuple[nn.Module, ...] = field(default=(), repr=False)
    shares_input_with: int | None = None

    @classmethod
    def whole(
        cls,
        index: int,
        name: str,
        stage: int,
        module: nn.Module,
        residual: TensorFn,
        projection: nn.Module | None,
        post: TensorFn | None = None,
    ) -> Block:
        """A block that is one module (a ResNet block): ``post(shortcut(x) + residual(x))``,
        whose shortcut is ``projection``, or the identity where that is None or nn.Identity."""
        identity = projection is None or isinstance(projection, nn.Identity)
        return cls(
            index=index,
            name=name,
            stage=stage,
            downsamples=not identity,
            module=module,
            residual=residual,
            shortcut=_identity if identity else projection,
            post=post,
            owner=module,
            parts=(module,),
        )

    @classmethod
    def unit(
        cls,
        index: int,
        name: str,
        module: nn.Module,
        residual: TensorFn,
        owner: nn.Module,
        parts: tuple[nn.Module, ...],
        shortcut: TensorFn = _identity,
        shares_input_with: int | None = None,
    ) -> Block:
        """One of the residual units of a layer that holds several (a transformer layer's
        attention and MLP): ``x + residual(x)``, run by ``owner``, the layer."""
        return cls(
            index=index,
            name=name,
            stage=0,
            downsamples=False,
            module=module,
            residual=residual,
            shortcut=shortcut,
            owner=owner,
            parts=parts,
            shares_input_with=shares_input_with,
        )

    def __repr__(self) -> str:
        # Short: the module's class, not its whole tree (print(residual_blocks(m)) stays legible).
        shared = (
            ""
            if self.shares_input_with is None
            else f", shares_input_with={self.shares_input_with}"
        )
        return (
            f"Block(index={self.index}, name={self.name!r}, stage={self.stage}, "
            f"downsamples={self.downsamples}, module={type(self.module).__name__}{shared})"
        )

    @property
    def runner(self) -> nn.Module:
        """The module whose forward executes exactly this block, for the ``with`` forms."""
        if self.owner is None:
            raise ValueError(
                f"block {self.index} ({self.name}) names no owner module that runs it, so "
                "model(x) cannot follow a route; use evaluate_routes, or give the adapter's "
                f"blocks an owner ({ADAPTER_DOC})"
            )
        return self.owner

    @property
    def has_shortcut(self) -> bool:
        return self.shortcut is not None

    @property
    def num_parameters(self) -> int:
        seen: dict[int, int] = {}
        for part in self.parts or (self.module,):
            for p in part.parameters():
                seen[id(p)] = p.numel()
        return sum(seen.values())

    def merge(self, shortcut: Tensor, residual: Tensor | None) -> Tensor:
        """Add the branches and apply what follows the addition; ``None`` residual = deleted."""
        z = shortcut if residual is None else shortcut + residual
        return z if self.post is None else self.post(z)

    def forward(self, x: Tensor) -> Tensor:
        """The block as the model runs it."""
        if self.shortcut is None:
            return self.residual(x)
        return self.merge(self.shortcut(x), self.residual(x))

    def skip(self, x: Tensor) -> Tensor:
        """The block deleted: its residual branch is zero, everything else is kept."""
        if self.shortcut is None:
            if self.downsamples:
                raise ValueError(
                    f"block {self.index} ({self.name}) has no shortcut and changes the shape, "
                    "so it cannot be deleted"
                )
            return x
        return self.merge(self.shortcut(x), None)

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)


@dataclass(frozen=True, eq=False)
class Transition:
    """A module that runs between blocks and belongs to none (a ConvNeXt or Swin stage's
    downsampling). It runs just before block ``before``'s place (after block ``before - 1``), in
    every route, whichever blocks are deleted or moved; ``module`` is the module whose forward
    is exactly ``fn`` in the model's own forward (None if there is none)."""

    before: int
    name: str
    fn: TensorFn = field(repr=False)
    module: nn.Module | None = field(default=None, repr=False)

    def __call__(self, x: Tensor) -> Tensor:
        if self.fn is self.module and self.module is not None:
            # The module's own computation, also while a route has patched its forward to pass
            # its input on.
            return type(self.module).forward(self.module, x)
        return self.fn(x)


class CallContext:
    """The keyword arguments of the model's current call that blocks read: attention masks,
    rotary position embeddings. The ``with`` forms set it from each owner's own call, the engine
    from the stem's run, so a block computes what the model would."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}
        self.stash: dict[int, Tensor] = {}  # block inputs read again (parallel residual layers)

    def set(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = dict(kwargs)


@dataclass(frozen=True, eq=False)
class Anatomy:
    """A model as ``head(block_{n-1}(... block_0(stem(x))))``, with ``transitions`` run in place
    between blocks.

    ``example_input`` returns a small batch the model accepts (a (1, C, H, W) image, or (1, T)
    token ids), for probing shapes. ``task`` is "classification" (logits (B, classes)) or
    "language" (next-token logits (B, T, vocab)); it picks the default metric.
    """

    blocks: tuple[Block, ...]
    stem: TensorFn
    head: TensorFn
    example_input: Callable[[], Tensor]
    adapter: str = "custom"
    model: nn.Module | None = field(default=None, repr=False)
    transitions: tuple[Transition, ...] = ()
    context: CallContext | None = field(default=None, repr=False)
    task: str = "classification"

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def runners(self) -> tuple[nn.Module, ...]:
        """The distinct modules that run blocks, in forward order; blocks without an owner are
        left out (they run as the model runs them, and cannot be intervened on in place)."""
        seen: dict[int, nn.Module] = {}
        for b in self.blocks:
            if b.owner is not None:
                seen.setdefault(id(b.owner), b.owner)
        return tuple(seen.values())


@runtime_checkable
class Adapter(Protocol):
    """Takes one family of models apart. See the package's docs/adapters.md for a worked example."""

    name: str

    def matches(self, model: nn.Module) -> bool: ...

    def anatomy(self, model: nn.Module) -> Anatomy: ...
