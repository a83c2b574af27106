"""How much input gradient flows through paths of each length: exact, sampled and sign-estimated.

A path is a subset S of blocks whose residual branch it goes through (the shortcuts of all
others); its length is |S|. Around the network's own forward pass the chain rule splits the
input gradient exactly into 2^n single-path gradients,

    grad = J_stem^T [ prod_i J_post_i^T (J_s_i^T or J_r_i^T) ] J_head^T dL/dlogits,

one term per choice of branch at every block, all Jacobians taken at the full network's
activations (this is what "pass the gradient through the residual branch or the skip" in the
backward pass means, as in Veit et al.).

Holds:
- ``path_length_gradients``: the exact sum of the single-path gradients of each length, all
  lengths in one backward pass that carries a polynomial in t (coefficient k = length k)
- ``single_path_gradient``: the gradient through one path, by a plain per-block backward
- ``sample_path_gradients`` and ``summarize_sampled``: the paper's estimator (norms of random
  single paths of each length), batched over samples
- ``sign_estimator``: every length at once from random +-1 signs on the residual branches; an
  unbiased estimate of the sum of squared single-path norms per length
- ``path_length_norms``: norm of each entry of the exact decomposition
- ``EffectiveRange`` and ``effective_path_range``: the shortest range of lengths holding a
  share of the gradient magnitude, and the share of paths it holds

All of them run the model in eval mode (blocks act per sample, which the batched backward relies
on) and restore the modules' train/eval flags afterwards. Norms are Euclidean (Frobenius) norms
of the whole (B, *image) input gradient of the mean loss over the batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks.registry import Anatomy, Block, TensorFn, anatomy, fold_transitions
from ..blocks.runtime import eval_mode
from ..paths import format_blocks, path_fraction, path_length_counts, shortest_range_holding

__all__ = [
    "MAX_SAMPLED_PATHS",
    "MEASURED_AT",
    "NORM_KINDS",
    "EffectiveRange",
    "MeasuredAt",
    "NormKind",
    "gradient_norms",
    "effective_path_range",
    "path_length_gradients",
    "path_length_norms",
    "sample_path_gradients",
    "sign_estimator",
    "single_path_gradient",
    "summarize_sampled",
]

LossFn = Callable[[Tensor, Tensor], Tensor]  # (logits, targets) -> scalar
Branch = Literal["both", "residual", "shortcut"]
#: Where the gradient is taken: at the image, or at the input of the first residual block (the
#: output of the stem: the input of the residual part, which the paths themselves span).
MeasuredAt = Literal["image", "blocks"]
#: How a (B, ...) gradient of the mean loss becomes one number: "batch" is its Euclidean norm
#: over the whole batch (it shrinks as 1/sqrt(B)); "per_image" is the mean over images of the
#: norm of each image's own loss gradient (B times its slice), which does not depend on B.
NormKind = Literal["batch", "per_image"]
MEASURED_AT: tuple[MeasuredAt, ...] = ("image", "blocks")
NORM_KINDS: tuple[NormKind, ...] = ("batch", "per_image")


def _check_choices(at: str | None, norm: str) -> None:
    if at is not None and at not in MEASURED_AT:
        raise ValueError(f"at must be one of {', '.join(MEASURED_AT)}, got {at!r}")
    if norm not in NORM_KINDS:
        raise ValueError(f"norm must be one of {', '.join(NORM_KINDS)}, got {norm!r}")


def next_token_loss(logits: Tensor, ids: Tensor) -> Tensor:
    """A language model's mean next-token cross entropy: position t predicts token t + 1."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def _loss_for(found: Anatomy, loss_fn: LossFn | None) -> LossFn:
    if loss_fn is not None:
        return loss_fn
    return next_token_loss if found.task == "language" else F.cross_entropy


def _resolve_at(found: Anatomy, at: MeasuredAt | None) -> MeasuredAt:
    """Where the gradient is taken by default: the image for a classifier; for a language
    model the input embeddings (the input of its first unit: token ids have no gradient)."""
    if found.task != "language":
        return at or "image"
    if at == "image":
        raise ValueError(
            "a language model's inputs are token ids, which have no gradient: take it at the "
            "input embeddings, at='blocks' (the default for language models)"
        )
    return "blocks"


def gradient_norms(grads: Tensor, norm: NormKind = "batch") -> Tensor:
    """One norm per leading row: (R, B, ...) gradients of the mean loss -> (R,) in float64.

    ``batch``: the Euclidean norm of each row's whole (B, ...) gradient. ``per_image``: the mean
    over the B images of B times the norm of that image's slice, i.e. of the gradient of the
    image's own loss. Summed in float64: squares of large but finite float32 gradients would
    overflow to inf.
    """
    if norm == "batch":
        return torch.linalg.vector_norm(grads.flatten(1), dim=1, dtype=torch.float64)
    if norm != "per_image":
        raise ValueError(f"norm must be one of {', '.join(NORM_KINDS)}, got {norm!r}")
    b = grads.shape[1]
    per_image = torch.linalg.vector_norm(grads.flatten(2), dim=2, dtype=torch.float64)  # (R, B)
    return per_image.mean(dim=1) * b


# Default size of one batched vjp, in bytes of block input for all its (coefficient, image)
# rows. The residual branch keeps a few tensors of that size for its backward, so a call peaks
# at several times this. On a CPU, small calls are fastest: large tensors are allocated with
# fresh pages every time, and the page faults cost more than the arithmetic (measured on
# ResNet-20 and -56). On a GPU, large calls keep it busy; 512 MiB puts ResNet-110 on 128 CIFAR
# images in one call per block at about 5 GB.
_ROW_BUDGET_BYTES = {"cpu": 16 << 20, "cuda": 512 << 20}


def _budget(x: Tensor) -> int:
    return _ROW_BUDGET_BYTES.get(x.device.type, _ROW_BUDGET_BYTES["cuda"])


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (blocks act per sample, which the batched backward relies on) with gradients
    on, whatever the caller's ``no_grad``; every module's own mode comes back afterwards."""
    with eval_mode(model), torch.enable_grad():
        yield


def _paths_anatomy(model: nn.Module) -> Anatomy:
    # Transitions (a stage's downsampling between blocks) run in place: folded into the block
    # after them, which keeps every path's length.
    found = fold_transitions(anatomy(model))
    plain = [b.index for b in found.blocks if b.shortcut is None]
    if plain:
        raise ValueError(
            f"paths are not defined without shortcuts: block(s) {format_blocks(plain)} have no "
            "shortcut (a plain network has a single path)"
        )
    return found


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@dataclass
class _Forward:
    """One forward pass of the full network, kept for many backward passes."""

    found: Anatomy
    inputs: Tensor  # (B, *image)
    xs: list[Tensor]  # xs[i]: input of block i, (B, *act_i)
    identity: list[bool]  # block i's shortcut returns its input itself
    top: Tensor  # dL/d(output of the last block), (B, *act_n)
    loss: float
    shortcuts: list[Tensor] | None = None  # shortcut_i(xs[i]), for single-branch backward
    residuals: list[Tensor] | None = None  # residual_i(xs[i])

    @property
    def batch(self) -> int:
        return self.inputs.shape[0]


def _check_finite(loss: Tensor, top: Tensor, images: int) -> None:
    """Refuse to decompose a gradient that is already NaN or infinite: every number derived
    from it would be meaningless (and would fail much later, far from the cause)."""
    bad = None
    if not bool(torch.isfinite(loss)):
        bad = f"the loss is {'NaN' if bool(torch.isnan(loss)) else 'infinite'}"
    elif not bool(torch.isfinite(top).all()):
        bad = "the gradient of the loss overflows"
    if bad is not None:
        raise ValueError(
            f"{bad} on these {images} images (the model's outputs overflow): its path "
            "gradients would be meaningless; check the checkpoint's weights and the input "
            "normalisation"
        )


def _shortcut(blk: Block) -> TensorFn:
    """The block's shortcut; ``_paths_anatomy`` has refused blocks without one."""
    if blk.shortcut is None:
        raise ValueError(f"block {blk.index} ({blk.name}) has no shortcut: paths are not defined")
    return blk.shortcut


def _forward(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn | None,
    *,
    keep_branches: bool = False,
) -> _Forward:
    found = _paths_anatomy(model)
    loss_fn = _loss_for(found, loss_fn)
    device = _device(model)
    inputs, targets = inputs.to(device), targets.to(device)
    xs: list[Tensor] = []
    identity: list[bool] = []
    shortcuts: list[Tensor] = []
    residuals: list[Tensor] = []
    with torch.no_grad():
        h = found.stem(inputs)
        for blk in found.blocks:
            xs.append(h)
            s = _shortcut(blk)(h)
            identity.append(s is h)
            r = blk.residual(h)
            if keep_branches:
                shortcuts.append(s)
                residuals.append(r)
            h = blk.merge(s, r)
    out = h.detach().requires_grad_()
    loss = loss_fn(found.head(out), targets)
    (top,) = torch.autograd.grad(loss, out)
    _check_finite(loss.detach(), top, inputs.shape[0])
    return _Forward(
        found,
        inputs,
        xs,
        identity,
        top,
        float(loss.detach()),
        shortcuts if keep_branches else None,
        residuals if keep_branches else None,
    )


def _rows_for(found: Anatomy, x: Tensor, chunk_size: int | None) -> int:
    """Rows per block call. Blocks that read the model's call context (attention masks with a
    batch dimension) run on exactly one copy of the batch per call, aligned with it."""
    if found.context is not None:
        return x.shape[0]
    return _rows_per_call(x, chunk_size)


def _rows_per_call(x: Tensor, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of rows, got {chunk_size}")
        return chunk_size
    return max(1, _budget(x) // max(1, x[0].numel() * x.element_size()))


def _chunks(total: int, rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, rows):
        yield start, min(start + rows, total)


def _grad_or_zeros(out: Tensor, leaf: Tensor, cot: Tensor) -> Tensor:
    (g,) = torch.autograd.grad(out, leaf, cot, allow_unused=True)
    return torch.zeros_like(leaf) if g is None else g


def _block_vjp(
    blk: Block,
    x: Tensor,
    cot: Tensor,
    branch: Branch,
    rows: int,
    *,
    identity: bool = False,
    other: Tensor | None = None,
) -> tuple[Tensor | None, Tensor | None]:
    """Pull cotangents at a block's output back to its input, batched over a leading dim.

    ``x``: the block input (B, *in); ``cot``: R cotangents (R, B, *out). Every row is one
    (cotangent, image) pair: the block is rerun on the images repeated R times along the batch
    (blocks act per sample in eval mode), and one backward pulls all rows through at once;
    ``rows`` caps the rows per call. Returns (through shortcut, through residual), each
    (R, B, *in) or None where not asked for. ``post`` is applied at the full network's sum,
    so a single-branch pull needs ``other``, the other branch's output at ``x`` (B, *out).
    """
    r_count, b = cot.shape[0], cot.shape[1]
    flat = cot.reshape(r_count * b, *cot.shape[2:])  # (R * B, *out)
    if branch == "shortcut" and identity and blk.post is None:
        return cot, None  # an identity shortcut passes the cotangent on unchanged
    want_s, want_r = branch in ("both", "shortcut"), branch in ("both", "residual")
    gs_parts: list[Tensor] = []
    gr_parts: list[Tensor] = []
    for start, stop in _chunks(r_count * b, rows):
        images = torch.arange(start, stop, device=x.device) % b
        xin = x.index_select(0, images)  # (rows, *in)
        xs_leaf = xin.detach().requires_grad_(want_s)
        xr_leaf = xin.detach().requires_grad_(want_r)
        # The branch not asked for is a constant: the full network's value at these images.
        const = other.index_select(0, images) if other is not None else None
        s = _shortcut(blk)(xs_leaf) if want_s else const
        if s is None:
            raise ValueError("a pull through the residual alone needs other, the shortcut's value")
        r = blk.residual(xr_leaf) if want_r else const
        y = blk.merge(s, r)
        leaves = [leaf for leaf, want in ((xs_leaf, want_s), (xr_leaf, want_r)) if want]
        grads = torch.autograd.grad(y, leaves, flat[start:stop], allow_unused=True)
        grads = tuple(torch.zeros_like(xin) if g is None else g for g in grads)
        if want_s:
            gs_parts.append(grads[0])
        if want_r:
            gr_parts.append(grads[-1])
    shape = (r_count, b, *x.shape[1:])
    gs = torch.cat(gs_parts).view(shape) if want_s else None
    gr = torch.cat(gr_parts).view(shape) if want_r else None
    return gs, gr


def _stem_vjp(found: Anatomy, inputs: Tensor, cot: Tensor, rows: int) -> Tensor:
    """J_stem^T for R cotangents (R, B, *act_0) -> (R, B, *image)."""
    r_count, b = cot.shape[0], cot.shape[1]
    flat = cot.reshape(r_count * b, *cot.shape[2:])
    parts = []
    for start, stop in _chunks(r_count * b, rows):
        images = torch.arange(start, stop, device=inputs.device) % b
        leaf = inputs.index_select(0, images).detach().requires_grad_()
        parts.append(_grad_or_zeros(found.stem(leaf), leaf, flat[start:stop]))
    return torch.cat(parts).view(r_count, b, *inputs.shape[1:])


def _polynomial_backward(
    fw: _Forward,
    max_length: int,
    rows: int | None,
    signs: Tensor | None = None,
    at: MeasuredAt = "image",
) -> Tensor:
    """Carry G(t) = sum_k t^k g_k from the top to the inputs; returns the coefficients.

    ``signs`` (D, n) of +-1 gives D independent sign-flipped copies (the sign estimator); the
    result is then (D, slots, B, *image), otherwise (slots, B, *image). With max_length K < n
    the last slot, K + 1, collects every length above K. ``at="blocks"`` stops at the input of
    the first block (``*image`` is then that activation's shape).
    """
    n = len(fw.found.blocks)
    slots = n + 1 if max_length >= n else max_length + 2
    draws = 1 if signs is None else signs.shape[0]
    g = fw.top.unsqueeze(0).expand(draws, *fw.top.shape).unsqueeze(1)  # (D, 1, B, *act_n)
    for i in reversed(range(n)):
        blk, x = fw.found.blocks[i], fw.xs[i]
        active = g.shape[1]  # coefficients 0..active-1 can be non-zero here
        cot = g.reshape(draws * active, *g.shape[2:])
        pulled_s, pulled_r = _block_vjp(blk, x, cot, "both", _rows_for(fw.found, x, rows))
        assert pulled_s is not None and pulled_r is not None  # "both" pulls through both
        gs = pulled_s.view(draws, active, *pulled_s.shape[1:])
        gr = pulled_r.view(draws, active, *pulled_r.shape[1:])
        if signs is not None:
            gr = gr * signs[:, i].view(draws, *([1] * (gr.dim() - 1))).to(gr.dtype)
        grown = min(active + 1, slots)
        new = gs.new_zeros(draws, grown, *gs.shape[2:])  # (D, grown, B, *act_i)
        new[:, :active] += gs
        # The residual branch adds one to the length: coefficient k moves to k + 1, and what
        # would pass the last slot stays in it (the "longer than K" lump).
        shifted = min(active, grown - 1)
        new[:, 1 : shifted + 1] += gr[:, :shifted]
        if shifted < active:
            new[:, grown - 1] += gr[:, shifted:].sum(dim=1)
        g = new
    active = g.shape[1]
    if at == "blocks":
        out = g
    else:
        cot = g.reshape(draws * active, *g.shape[2:])
        out = _stem_vjp(fw.found, fw.inputs, cot, _rows_per_call(fw.inputs, rows))
        out = out.view(draws, active, *out.shape[1:])
    if active < n + 1:  # fewer slots than lengths: pad with exact zeros
        out = torch.cat([out, out.new_zeros(draws, n + 1 - active, *out.shape[2:])], dim=1)
    return out if signs is not None else out[0]


def _check_length(max_length: int | None, n: int) -> int:
    if max_length is None:
        return n
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 0:
        raise ValueError(f"max_length must be a non-negative integer, got {max_length!r}")
    return max_length


def path_length_gradients(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    max_length: int | None = None,
    *,
    loss_fn: LossFn | None = None,
    chunk_size: int | None = None,
    at: MeasuredAt | None = None,
) -> Tensor:
    """Split the input gradient of the loss exactly by path length.

    One forward pass keeps each block's input; the backward pass then carries a polynomial in t
    of cotangents: through block i, ``G <- J_post^T G``, then ``G <- J_s^T G + t J_r^T G``, so
    coefficient k collects exactly the paths through k residual branches. Coefficients a block
    cannot have reached yet are skipped, so the cost is about n/2 ordinary backward passes
    (n^2/2 block backward passes), against C(n, k) single-path backward passes per length.

    Args:
        inputs, targets: a batch; the model runs in eval mode (restored afterwards).
        max_length: K; lengths 0..K are kept exact and every length above K is summed into
            entry K + 1, which bounds the cost at about K + 2 backward passes.
        loss_fn: ``(logits, targets) -> scalar``; by default the mean cross entropy (for a
            language model the next-token cross entropy, with ``targets`` the token ids).
        chunk_size: at most this many (coefficient, image) rows go through a block at once
            (memory); by default 16 MiB of block input per call on a CPU, 512 MiB on a GPU.
        at: ``"image"`` (the gradient w.r.t. ``inputs``) or ``"blocks"`` (w.r.t. the input of
            the first residual block; the shape is then that activation's). By default the
            image for a classifier and, for a language model, ``"blocks"``: the input
            embeddings, with the units (attention, MLP) as the blocks.
    Returns:
        (n + 1, *inputs.shape). Entry k, for k <= K, is the gradient carried by all paths of
        length k together; with K < n, entry K + 1 holds all lengths K + 1..n and the entries
        above it are zero. The entries sum to the ordinary gradient of the loss.
    Raises:
        ValueError: a block without a shortcut (paths are not defined), a bad max_length, or a
            loss or gradient that is NaN or infinite (the model's outputs overflow).

    Example:
        >>> per_length = path_length_gradients(model, x, y)   # (n + 1, B, 3, 32, 32)
        >>> torch.allclose(per_length.sum(0), torch.autograd.grad(loss, x)[0])
    """
    _check_length(max_length, 0)
    _check_choices(at, "batch")
    with _eval_mode(model):
        fw = _forward(model, inputs, targets, loss_fn)
        k = _check_length(max_length, len(fw.found.blocks))
        per_length = _polynomial_backward(fw, k, chunk_size, at=_resolve_at(fw.found, at))
    if not bool(torch.isfinite(per_length).all()):
        raise ValueError(
            f"the path-length gradients overflow on these {fw.batch} images (values beyond the "
            f"{per_length.dtype} range): check the checkpoint's weights and the input "
            "normalisation"
        )
    return per_length


def single_path_gradient(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    subset: Iterable[int],
    *,
    loss_fn: LossFn | None = None,
    at: MeasuredAt | None = None,
) -> Tensor:
    """The input gradient through one path: the residual branches of the blocks in ``subset``
    and the shortcuts of all others (each block's post op at the full network's activations).

    A plain backward, one block at a time, independent of the polynomial code; the building
    block of brute-force checks and of the sampled estimator's definition.

    Returns:
        (*inputs.shape), the gradient of the loss w.r.t. ``inputs`` along that path; with
        ``at="blocks"`` (a language model's default: its input embeddings) w.r.t. the input
        of the first block.
    """
    _check_choices(at, "batch")
    with _eval_mode(model):
        found = _paths_anatomy(model)
        where = _resolve_at(found, at)
        loss = _loss_for(found, loss_fn)
        n = len(found.blocks)
        chosen = set()
        for i in subset:
            if not 0 <= int(i) < n:
                raise ValueError(f"block {i} is out of range: the model has {n} blocks")
            chosen.add(int(i))
        device = _device(model)
        x0 = inputs.to(device).detach()
        if where == "image":
            x0.requires_grad_()
            h0 = found.stem(x0)
        else:
            with torch.no_grad():
                h0 = found.stem(x0)
            h0.requires_grad_()
        h = h0.detach()
        # Each branch reads its own copy of the block input, so that the backward pass can go
        # down one branch only (an identity shortcut would otherwise be the input itself).
        saved = []  # per block: (shortcut's input, residual's input, block output)
        for blk in found.blocks:
            xs, xr = h.clone().requires_grad_(), h.clone().requires_grad_()
            y = blk.merge(_shortcut(blk)(xs), blk.residual(xr))
            saved.append((xs, xr, y))
            h = y.detach()
        out = h.requires_grad_()
        (g,) = torch.autograd.grad(loss(found.head(out), targets.to(device)), out)
        for i in reversed(range(n)):
            xs, xr, y = saved[i]
            g = _grad_or_zeros(y, xr if i in chosen else xs, g)
        return g if where == "blocks" else _grad_or_zeros(h0, x0, g)


def _as_batch(data_or_batch: object, batch: int | None) -> tuple[Tensor, Tensor]:
    if (
        isinstance(data_or_batch, (tuple, list))
        and len(data_or_batch) == 2
        and all(isinstance(t, Tensor) for t in data_or_batch)
    ):
        x, y = data_or_batch
        return (x[:batch], y[:batch]) if batch is not None else (x, y)
    xs: list[Tensor] = []
    ys: list[Tensor] = []
    have = 0
    if not isinstance(data_or_batch, Iterable):
        raise ValueError("pass an (inputs, targets) pair or an iterable of such batches")
    for item in data_or_batch:
        x, y = item[0], item[1]
        xs.append(x)
        ys.append(y)
        have += x.shape[0]
        if batch is None or have >= batch:
            break
    if not xs:
        raise ValueError("the data yielded no batch")
    x, y = torch.cat(xs), torch.cat(ys)
    return (x[:batch], y[:batch]) if batch is not None else (x, y)


#: The most single paths ``sample_path_gradients`` samples in one call, over all lengths: each
#: is a row of its table (and a mask of n blocks) held in memory at once.
MAX_SAMPLED_PATHS = 1_000_000


def sample_path_gradients(
    model: nn.Module,
    data_or_batch: object,
    samples_per_length: int = 1000,
    lengths: Sequence[int] | None = None,
    seed: int = 0,
    batch: int | None = None,
    *,
    loss_fn: LossFn | None = None,
    samples_per_pass: int | None = None,
    chunk_size: int | None = None,
    at: MeasuredAt | None = None,
    norm: NormKind = "batch",
) -> pd.DataFrame:
    """The paper's estimator: the input-gradient norm of single random paths of each length.

    Forward one batch; for each length k and sample, choose k blocks uniformly at random, pass
    the gradient through their residual branches and through the shortcuts of all other
    blocks, and record the norm of the resulting input gradient. The forward pass is shared by
    every sample, and samples run side by side: ``samples_per_pass`` paths go down the network
    together, each block pulling back only the rows whose path goes through its residual.

    Args:
        data_or_batch: an ``(inputs, targets)`` pair, or an iterable of such batches from which
            the first batch (or the first ``batch`` images) is taken.
        lengths: the lengths to sample (default 0..n); length 0 and n have a single path.
        samples_per_pass: paths per pass; by default their cotangents take 16 MiB on a CPU and
            512 MiB on a GPU (as ``chunk_size`` in ``path_length_gradients``).
        at: where the gradient is taken: ``"image"`` or ``"blocks"`` (the input of the first
            residual block).
        norm: ``"batch"`` or ``"per_image"`` (see ``gradient_norms``).
    Returns:
        One row per sample: ``length``, ``sample``, ``norm`` (of the path's gradient of the mean
        loss, as ``norm`` says) and ``blocks`` (the path, e.g. "3,7-9").
    """
    _check_choices(at, norm)
    rng = torch.Generator().manual_seed(seed)
    x, y = _as_batch(data_or_batch, batch)
    if samples_per_length < 1:
        raise ValueError(f"samples_per_length must be at least 1, got {samples_per_length}")
    if samples_per_length > MAX_SAMPLED_PATHS:
        raise ValueError(
            f"samples_per_length {samples_per_length:,} is more than the {MAX_SAMPLED_PATHS:,} "
            "sampled paths a call may hold; the paper sampled 1,000 per length"
        )
    with _eval_mode(model):
        fw = _forward(model, x, y, loss_fn, keep_branches=True)
        n = len(fw.found.blocks)
        wanted = list(range(n + 1)) if lengths is None else [int(k) for k in lengths]
        bad = [k for k in wanted if not 0 <= k <= n]
        if bad:
            raise ValueError(f"lengths {bad} are out of range: the model has {n} blocks, 0..{n}")
        if samples_per_length * len(wanted) > MAX_SAMPLED_PATHS:
            raise ValueError(
                f"{samples_per_length:,} sampled paths for each of {len(wanted)} lengths is "
                f"{samples_per_length * len(wanted):,}, more than the {MAX_SAMPLED_PATHS:,} a "
                "call may hold; lower the samples per length"
            )
        # (S, n) membership masks: k blocks of n uniformly at random, per sample.
        masks, rows_length, rows_sample = [], [], []
        for k in wanted:
            order = torch.rand(samples_per_length, n, generator=rng).argsort(dim=1)
            mask = torch.zeros(samples_per_length, n, dtype=torch.bool)
            mask.scatter_(1, order[:, :k], True)
            masks.append(mask)
            rows_length += [k] * samples_per_length
            rows_sample += list(range(samples_per_length))
        mask = torch.cat(masks)  # (S_total, n)
        if samples_per_pass is None:  # the cotangents of one pass fit the same budget
            widest = max(x[0].numel() * x.element_size() for x in [*fw.xs, fw.top])
            samples_per_pass = _budget(fw.top) // (widest * fw.batch)
        norms = []
        for start, stop in _chunks(mask.shape[0], max(1, samples_per_pass)):
            where = _resolve_at(fw.found, at)
            norms.append(_sampled_pass(fw, mask[start:stop], chunk_size, where, norm).cpu())
        sampled = torch.cat(norms)
    return pd.DataFrame(
        {
            "length": rows_length,
            "sample": rows_sample,
            "norm": sampled.double().numpy(),
            "blocks": [format_blocks(row.nonzero().flatten().tolist()) for row in mask],
        }
    )


def _sampled_pass(
    fw: _Forward,
    mask: Tensor,
    chunk_size: int | None,
    at: MeasuredAt = "image",
    norm: NormKind = "batch",
) -> Tensor:
    """Norms of the single-path input gradients of the paths in ``mask`` (P, n) -> (P,)."""
    p = mask.shape[0]
    mask = mask.to(fw.top.device)
    g = fw.top.unsqueeze(0).expand(p, *fw.top.shape)  # (P, B, *act_n)
    for i in reversed(range(len(fw.found.blocks))):
        blk, x = fw.found.blocks[i], fw.xs[i]
        rows = _rows_for(fw.found, x, chunk_size)
        through_r = mask[:, i]
        new = g.new_zeros(p, *x.shape)  # (P, B, *act_i)
        assert fw.shortcuts is not None and fw.residuals is not None  # keep_branches=True
        choices: tuple[tuple[Branch, Tensor, Tensor], ...] = (
            ("residual", through_r, fw.shortcuts[i]),
            ("shortcut", ~through_r, fw.residuals[i]),
        )
        for branch, pick, other in choices:
            idx = pick.nonzero().flatten()
            if idx.numel() == 0:
                continue
            gs, gr = _block_vjp(
                blk,
                x,
                g.index_select(0, idx),
                branch,
                rows,
                identity=fw.identity[i],
                other=other,
            )
            pulled = gr if branch == "residual" else gs
            assert pulled is not None  # the branch asked for is always pulled through
            new.index_copy_(0, idx, pulled)
        g = new
    out = (
        g
        if at == "blocks"
        else _stem_vjp(fw.found, fw.inputs, g, _rows_per_call(fw.inputs, chunk_size))
    )
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"single-path gradients overflow on these {fw.batch} images (values beyond the "
            f"{out.dtype} range): check the checkpoint's weights and the input normalisation"
        )
    return gradient_norms(out, norm)


def summarize_sampled(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """Per length: the sampled single-path norms' mean, std and standard error, and the total
    gradient magnitude ``total = mean * C(n, k)`` with its share (paper Fig. 6b and 6c).

    ``total`` sums path norms, the paper's measure; it bounds the norm of the summed gradient
    of those paths (``path_length_norms`` of the exact decomposition) from above.
    """
    counts = path_length_counts(n)
    grouped = df.groupby("length")["norm"]
    out = grouped.agg(samples="count", mean="mean", std="std").reset_index()
    out["sem"] = out["std"] / out["samples"].pow(0.5)
    out["paths"] = [float(counts[int(k)]) for k in out["length"]]
    out["total"] = out["mean"] * out["paths"]
    out["total_sem"] = out["sem"] * out["paths"]
    out["share"] = out["total"] / out["total"].sum()
    return out


def sign_estimator(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    draws: int = 64,
    seed: int = 0,
    *,
    loss_fn: LossFn | None = None,
    draws_per_pass: int | None = None,
    chunk_size: int | None = None,
    at: MeasuredAt | None = None,
) -> pd.DataFrame:
    """Estimate, for every length at once, the sum of squared single-path gradient norms.

    Each draw multiplies every block's residual pull-back by an independent random sign and
    runs the polynomial backward pass; coefficient k is then ``sum_{|S|=k} eps_S g_S`` with
    ``eps_S`` the product of the signs in S. Since E[eps_S eps_T] = 0 for S != T,
    ``E ||coef_k||^2 = sum_{|S|=k} ||g_S||^2`` exactly: ``sum_sq`` is unbiased for that sum and
    ``mean_sq = sum_sq / C(n, k)`` for the mean squared single-path norm. Its square root is
    the root mean square norm, which is at least the mean norm that ``sample_path_gradients``
    estimates (and not an unbiased estimate of anything). Each draw costs one exact
    decomposition; ``draws_per_pass`` draws run side by side (by default as many as fit the
    memory budget of ``path_length_gradients``).

    Returns:
        One row per length: ``length``, ``paths`` (C(n, k)), ``sum_sq`` and ``sum_sq_sem``
        (mean over draws and its standard error), ``mean_sq`` and ``mean_sq_sem``, ``draws``.
    """
    if draws < 2:
        raise ValueError(f"draws must be at least 2 for a standard error, got {draws}")
    rng = torch.Generator().manual_seed(seed)
    with _eval_mode(model):
        fw = _forward(model, inputs, targets, loss_fn)
        n = len(fw.found.blocks)
        signs = torch.randint(0, 2, (draws, n), generator=rng).mul_(2).sub_(1)  # (D, n)
        signs = signs.to(fw.top.device)
        if draws_per_pass is None:  # all coefficients of one pass fit the memory budget
            widest = max(x[0].numel() * x.element_size() for x in [*fw.xs, fw.top])
            draws_per_pass = _budget(fw.top) // ((n + 1) * fw.batch * widest)
        squares = []
        for start, stop in _chunks(draws, max(1, draws_per_pass)):
            where = _resolve_at(fw.found, at)
            coef = _polynomial_backward(fw, n, chunk_size, signs[start:stop], at=where)
            squares.append(coef.flatten(2).pow(2).sum(dim=2).double().cpu())  # (d, n + 1)
    sq = torch.cat(squares)  # (D, n + 1)
    counts = path_length_counts(n)
    mean = sq.mean(dim=0)
    sem = sq.std(dim=0) / math.sqrt(draws)
    paths = torch.tensor([float(c) for c in counts], dtype=torch.float64)
    return pd.DataFrame(
        {
            "length": range(n + 1),
            "paths": paths.numpy(),
            "sum_sq": mean.numpy(),
            "sum_sq_sem": sem.numpy(),
            "mean_sq": (mean / paths).numpy(),
            "mean_sq_sem": (sem / paths).numpy(),
            "draws": draws,
        }
    )


def path_length_norms(per_length: Tensor, norm: NormKind = "batch") -> Tensor:
    """The norm of each entry of ``path_length_gradients``: (n + 1, B, ...) -> (n + 1,).

    This is the magnitude of the gradient that all paths of length k carry together (their
    gradients can cancel), where the paper's measure sums the paths' own norms. ``norm`` as in
    ``gradient_norms``: the whole batch's Euclidean norm, or the mean per-image norm.
    """
    return gradient_norms(per_length, norm).to(per_length.dtype)


@dataclass(frozen=True)
class EffectiveRange:
    """The shortest range of path lengths ``lo..hi`` holding ``gradient_share`` (at least the
    share asked for) of the gradient magnitude; ``path_share`` of all 2^n paths lie in it."""

    lo: int
    hi: int
    gradient_share: float
    path_share: float


def effective_path_range(
    per_length_magnitude: Sequence[float] | Tensor, n: int, share: float = 0.95
) -> EffectiveRange:
    """The "effective paths": the lengths that carry ``share`` of the gradient.

    Args:
        per_length_magnitude: n + 1 non-negative magnitudes, e.g. ``summarize_sampled(...)
            ["total"]`` (the paper's mean norm times path count) or ``path_length_norms(...)``.
    Example:
        >>> r = effective_path_range(summary["total"], 54, share=0.95)
        >>> r.lo, r.hi, r.path_share      # the paper: 5, 17, 0.0045
    """
    if isinstance(per_length_magnitude, Tensor):
        values = [float(v) for v in per_length_magnitude.detach().flatten().cpu()]
    else:
        values = [float(v) for v in per_length_magnitude]
    if len(values) != n + 1:
        raise ValueError(f"need one magnitude per length 0..{n} ({n + 1}), got {len(values)}")
    lo, hi, held = shortest_range_holding(values, share)
    return EffectiveRange(lo, hi, held, path_fraction(n, lo, hi))
