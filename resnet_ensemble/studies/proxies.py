"""Cheap per-block measures, and how well each predicts what deleting the block does.

Holds:
- ``block_proxies(model, data)``: one row per block, from one forward and one backward pass per
  batch of the full network, for every supported family (CNNs, ViTs, decoder LMs):

  * ``block_influence``: ShortGPT's Block Influence (Men et al. 2024), ``1 - cos(h_in, h_out)``
    averaged over positions (tokens; pixels of a feature map);
  * ``angular_distance``: Gromov et al. 2024 at one block, ``arccos(cos(h_in, h_out)) / pi``
    averaged over positions;
  * ``relative_update``: ``||f(h)|| / ||h||`` per sample (Jastrzebski et al. 2018), averaged;
  * ``update_gradient_cos``: ``cos(f(h), -dL/dh)`` per sample (Jastrzebski et al. 2018),
    averaged: how well the block's update points down the loss.

  ``h_in`` is the block's shortcut output (its input for an identity shortcut, the projection
  for a downsampling block, so that the two vectors have one shape), ``h_out`` its output,
  ``f(h)`` its residual branch. The gradient is taken at the block's input where the block keeps
  the shape, at its output where it does not (column ``gradient_at``).
- ``proxy_correlations(proxies, damage)``: Kendall's tau and Spearman's rho of each measure
  against the measured damage of deleting each block alone, with their p-values (scipy.stats).
- ``single_deletion_damage(table)``: that damage from a ``sweep single`` results table.
- ``draw_proxies``: each measure against the damage, one panel per measure, in the paper style
  of ``plots``; ``plot_proxies`` writes it as PNG and PDF.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks.registry import anatomy, fold_transitions
from ..blocks.runtime import eval_mode, model_device
from ..outputs import claim_outputs
from ..results import sidecar_path, sweep_rows, write_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PROXIES",
    "block_proxies",
    "draw_proxies",
    "plot_proxies",
    "proxy_correlations",
    "single_deletion_damage",
]

#: The measures ``block_proxies`` reports, in the order tables and figures show them.
PROXIES: dict[str, str] = {
    "block_influence": "block influence 1 - cos(h_in, h_out)",
    "angular_distance": "angular distance arccos(cos) / pi",
    "relative_update": "relative update ||f(h)|| / ||h||",
    "update_gradient_cos": "cos(f(h), -dL/dh)",
}


def _positions(t: Tensor) -> Tensor:
    """(B, C, H, W) feature maps as (B*H*W, C) vectors; (B, T, D) as (B*T, D); (B, D) as is."""
    if t.dim() == 4:
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
    return t.reshape(-1, t.shape[-1])


def _lm_loss(logits: Tensor, ids: Tensor) -> Tensor:
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def _inputs(batch: object, language: bool) -> tuple[Tensor, Tensor]:
    if language:
        if isinstance(batch, Tensor):
            ids = batch
        elif isinstance(batch, dict):
            ids = batch["input_ids"]
        else:
            ids = batch[0]  # type: ignore[index]
        return ids, ids
    x, y = batch[0], batch[1]  # type: ignore[index]
    return x, y


def block_proxies(
    model: nn.Module,
    data: Iterable,
    *,
    batches: int | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    name: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Cheap per-block measures over ``data`` (see the module's docstring).

    Args:
        data: (images, labels) batches for a classifier; token ids (B, T) (or a tuple whose
            first item they are) for a language model.
        batches: use at most this many batches (default: all).
        loss_fn: ``(logits, targets) -> scalar`` for the gradient measure; default the mean
            cross-entropy (next-token for a language model).
        name, out: with either, the table starts with a ``model`` column (``name``, default
            the model's class name), as every results table does; ``out`` also writes it
            there as a "proxies" table (CSV and JSON sidecar, ``results.write_table``).
            Nothing is written without ``out``.
        overwrite: replace an existing ``out``; without it an existing table is refused
            before any work.

    Returns:
        One row per block: ``block``, ``name``, ``stage``, ``downsamples``, the four measures
        (``PROXIES``), ``gradient_at``, ``samples`` and ``positions``.

    Raises:
        ValueError: the data yield no batch; an ``out`` that exists without ``overwrite`` or
            cannot be written.

    Example:
        >>> block_proxies(model, loader, batches=4, out="runs/proxies.csv")
    """
    outputs = [Path(out), sidecar_path(Path(out))] if out is not None else []
    with claim_outputs(outputs, overwrite=overwrite):  # refused before any work
        frame, seen = _measure(model, data, batches, loss_fn)
        if name is None and out is None:
            return frame
        model_name = name or type(model).__name__
        frame.insert(0, "model", model_name)
        if out is not None:
            metadata = {
                "model": model_name,
                "model_spec": "in memory",
                "checkpoint_sha256": None,
                "num_blocks": len(frame),
                "batches": seen,
                "images": int(frame["samples"].iloc[0]),
                "loss": "default" if loss_fn is None else getattr(loss_fn, "__name__", "custom"),
                "proxies": PROXIES,
            }
            write_table(Path(out), frame, "proxies", metadata)
        return frame


def _measure(
    model: nn.Module,
    data: Iterable,
    batches: int | None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None,
) -> tuple[pd.DataFrame, int]:
    """``block_proxies``' measures, and how many batches they used."""
    found = fold_transitions(anatomy(model))
    language = found.task == "language"
    if loss_fn is None:
        loss_fn = _lm_loss if language else F.cross_entropy
    n = len(found.blocks)
    device = model_device(model)
    sums = torch.zeros(n, 4, dtype=torch.float64)
    positions = torch.zeros(n, dtype=torch.float64)
    grad_at = ["input"] * n
    samples = 0
    seen = 0
    with eval_mode(model), torch.enable_grad():
        for batch in data:
            if batches is not None and seen >= batches:
                break
            seen += 1
            x, y = _inputs(batch, language)
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                h = found.stem(x)
            h = h.detach().requires_grad_()
            ins, shorts, updates, outs = [], [], [], []
            for blk in found.blocks:
                if not h.requires_grad:
                    h = h.detach().requires_grad_()
                h.retain_grad()
                s = blk.shortcut(h) if blk.shortcut is not None else h
                r = blk.residual(h)
                out = blk.merge(s, r) if blk.shortcut is not None else r
                out.retain_grad()
                ins.append(h)
                shorts.append(s)
                updates.append(r)
                outs.append(out)
                h = out
            loss = loss_fn(found.head(h), y)
            loss.backward()
            b = x.shape[0]
            for i in range(n):
                s, r, out, hin = shorts[i], updates[i], outs[i], ins[i]
                same = hin.shape == out.shape
                g = hin.grad if same else out.grad
                grad_at[i] = "input" if same else "output"
                with torch.no_grad():
                    cos = F.cosine_similarity(
                        _positions(s).double(), _positions(out).double(), dim=1
                    )
                    bi = (1 - cos).sum()
                    ang = torch.arccos(cos.clamp(-1, 1)).sum() / math.pi
                    base = hin if same else s
                    rel = r.flatten(1).double().norm(dim=1) / base.flatten(1).double().norm(
                        dim=1
                    ).clamp_min(1e-12)
                    gcos = (
                        F.cosine_similarity(r.flatten(1).double(), -g.flatten(1).double(), dim=1)
                        if g is not None
                        else torch.full((b,), math.nan, dtype=torch.float64)
                    )
                    sums[i] += torch.stack([bi, ang, rel.sum(), gcos.sum()]).cpu()
                    positions[i] += cos.numel()
            samples += b
            model.zero_grad(set_to_none=True)
    if not seen:
        raise ValueError("the data yielded no batch")
    rows = []
    for i, blk in enumerate(found.blocks):
        rows.append(
            {
                "block": blk.index,
                "name": blk.name,
                "stage": blk.stage,
                "downsamples": bool(blk.downsamples),
                "block_influence": float(sums[i, 0] / positions[i]),
                "angular_distance": float(sums[i, 1] / positions[i]),
                "relative_update": float(sums[i, 2]) / samples,
                "update_gradient_cos": float(sums[i, 3]) / samples,
                "gradient_at": grad_at[i],
                "samples": samples,
                "positions": int(positions[i]),
            }
        )
    return pd.DataFrame(rows), seen


def single_deletion_damage(
    table: pd.DataFrame | str | Path, metric: str | None = None
) -> pd.Series:
    """From a ``sweep single`` table: per deleted block, its metric minus the full network's
    (a rise in error, loss, perplexity or KL), indexed by block."""
    rows = sweep_rows(table)
    frame = pd.concat([rows.baseline, rows.deletions])
    if metric is None:
        metric = next(
            c for c in ("error", "perplexity", "loss", "kl", "top5") if c in frame.columns
        )
    base = rows.full(metric)
    single = rows.deletions
    single["block"] = single["deleted"].astype(int)
    return (single.set_index("block")[metric] - base).rename(f"{metric}_increase").sort_index()


def proxy_correlations(proxies: pd.DataFrame, damage: pd.Series) -> pd.DataFrame:
    """Kendall's tau and Spearman's rho (and p-values) of each measure against ``damage``
    (indexed by block), over the blocks present in both."""
    import warnings

    import scipy.stats

    joined = proxies.set_index("block").join(damage.rename("damage"), how="inner")
    rows = []
    for key, label in PROXIES.items():
        pair = joined[[key, "damage"]].dropna()
        with warnings.catch_warnings():  # a constant measure has no correlation: NaN
            warnings.simplefilter("ignore", scipy.stats.ConstantInputWarning)
            tau, p_tau = scipy.stats.kendalltau(pair[key], pair["damage"])
            rho, p_rho = scipy.stats.spearmanr(pair[key], pair["damage"])
        rows.append(
            {
                "proxy": key,
                "description": label,
                "blocks": len(pair),
                "kendall_tau": float(tau),
                "kendall_p": float(p_tau),
                "spearman_rho": float(rho),
                "spearman_p": float(p_rho),
            }
        )
    return pd.DataFrame(rows)


def plot_proxies(
    panels: dict[str, tuple[pd.DataFrame, pd.Series]],
    out: str | Path,
    *,
    damage_label: str = "damage of deleting the block",
    log: bool = False,
    style: Literal["paper", "talk"] = "paper",
) -> list[Path]:
    """``draw_proxies``' figure, written to ``out`` as .png and .pdf; returns the paths."""
    from ..viz.plots import save_figure  # here, not at the top: seaborn slows every import

    fig = draw_proxies(panels, damage_label=damage_label, log=log, style=style)
    out = Path(out)
    return save_figure(fig, out.parent, out.with_suffix("").name)


def draw_proxies(
    panels: dict[str, tuple[pd.DataFrame, pd.Series]],
    *,
    damage_label: str = "damage of deleting the block",
    log: bool = False,
    style: Literal["paper", "talk"] = "paper",
) -> Figure:
    """One row of panels per model (``name -> (proxies, damage)``), one column per measure:
    the measure against the damage, each point a block (downsampling blocks marked), with
    Kendall's tau in the panel's title (``log``: both axes logarithmic, for measures and
    damages that span orders of magnitude), in the paper style of ``plots``."""
    import seaborn as sns  # here, not at the top: seaborn slows every import
    from matplotlib.lines import Line2D

    from ..viz.style import figure_style, fit_texts, readable_log_axis
    from ..viz.style import legend as _legend
    from ..viz.style import ms as _ms
    from ..viz.style import new_figure as _new_figure

    keys = list(PROXIES)
    colours = sns.color_palette("colorblind", 10)  # the palette of every figure
    with figure_style(style):
        fig, axes = _new_figure(
            style,
            "double",
            extra_height=2.0 * len(panels) - 1.6,
            ncols=len(keys),
            nrows=len(panels),
            squeeze=False,
        )
        any_down = False
        for row, (name, (proxies, damage)) in enumerate(panels.items()):
            joined = proxies.set_index("block").join(damage.rename("damage"), how="inner")
            corr = proxy_correlations(proxies, damage).set_index("proxy")
            down = joined["downsamples"].astype(bool)
            any_down |= bool(down.any())
            for col, key in enumerate(keys):
                ax = axes[row][col]
                ax.scatter(joined.loc[~down, key], joined.loc[~down, "damage"], s=_ms(0.7) ** 2,
                           color=colours[0], lw=0)  # fmt: skip
                if down.any():
                    ax.scatter(joined.loc[down, key], joined.loc[down, "damage"],
                               s=_ms(0.9) ** 2, marker="s", color=colours[3], lw=0)  # fmt: skip
                tau = corr.loc[key, "kendall_tau"]
                p = corr.loc[key, "kendall_p"]
                ax.set_title(f"{name}\nτ = {tau:.2f}, p = {p:.2g}")
                ax.set_xlabel(PROXIES[key])
                ax.set_ylabel(damage_label if col == 0 else "")
                if log:
                    ax.set_yscale("log")
                    readable_log_axis(ax)
                    if (joined[key] > 0).all():  # a cosine can be negative: linear there
                        ax.set_xscale("log")
                        readable_log_axis(ax, "x", least=2)
        handles = [Line2D([], [], ls="", marker="o", color=colours[0], ms=_ms(0.7))]
        labels = ["block"]
        if any_down:
            handles.append(Line2D([], [], ls="", marker="s", color=colours[3], ms=_ms(0.9)))
            labels.append("downsampling block")
        _legend(fig, axes[0][0], handles, labels, owned=True, below=True)
        fit_texts(fig)
    return fig
