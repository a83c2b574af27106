"""The paper's analyses, and the Painters operations and cheap proxies, on a decoder LM.

Runs unchanged on any Hugging Face decoder folder (GPT-2, Llama, Mistral, Qwen2, GPT-NeoX):

    OMP_NUM_THREADS=1 python experiments/lm_analyse.py \\
        --model hf:results/lm/model --dataset text:results/lm/kjv_test.txt --out results/lm

Writes into OUT/tables (CSV, one row per configuration) and OUT/figures (PNG and PDF):
- ``single.csv``: every unit deleted alone (Lad et al. 2024; the paper's Fig. 3): perplexity,
  loss and KL(p_full || p_route) per next token
- ``swaps.csv``: every pair of adjacent layers swapped (Lad et al.), and adjacent units
- ``delete_k.csv``: k random units deleted, ``--samples`` draws per k (the paper's Fig. 5a)
- ``painters.csv``: skip / reverse / shuffle / parallel over middle ranges, and each middle
  layer repeated (Sun et al. 2024)
- ``gradients.csv``: the exact path-length decomposition of the gradient at the input
  embeddings, units as blocks (the paper's Fig. 6), with the number of paths of each length
- ``proxies.csv`` and ``proxy_correlations.csv``: block influence, angular distance, relative
  update, cos(update, -gradient) per unit, against the measured damage of deleting each unit
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import pandas as pd
import torch

from resnet_ensemble import block_proxies, evaluate_routes, path_length_gradients
from resnet_ensemble.core.gradients import path_length_norms
from resnet_ensemble.core.interventions import format_route_item, plan_route
from resnet_ensemble.core.painters import layer_units, painters_route
from resnet_ensemble.paths import path_length_counts
from resnet_ensemble.studies.experiment import open_experiment
from resnet_ensemble.studies.proxies import plot_proxies, proxy_correlations, single_deletion_damage


def measure(model, loader, routes):  # noqa: ANN001, ANN201
    """Perplexity, loss and KL of every route: one pass for the loss (perplexity is its exp),
    one for the KL (which also runs the full model), routes sharing prefixes in each."""
    loss = evaluate_routes(model, loader, routes, metric="loss")
    kl = evaluate_routes(model, loader, routes, metric="kl")
    return [{"perplexity": math.exp(v), "loss": v, "kl": d} for v, d in zip(loss, kl, strict=True)]


def text(route) -> str:  # noqa: ANN001
    return ",".join(format_route_item(i) for i in route)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="hf:results/lm/model")
    ap.add_argument("--dataset", default="text:results/lm/kjv_test.txt")
    ap.add_argument("--out", default="results/lm")
    ap.add_argument("--limit", type=int, default=32, help="windows of text evaluated")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--samples", type=int, default=3, help="random draws per k")
    ap.add_argument("--gradient-windows", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--redraw", action="store_true", help="only redraw the figures from the tables")
    args = ap.parse_args()
    start = time.time()
    out = Path(args.out)
    tables, figures = out / "tables", out / "figures"
    tables.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    if args.redraw:
        redraw(tables, figures)
        return
    exp = open_experiment(
        args.model, dataset=args.dataset, limit=args.limit, batch_size=args.batch_size,
        device="cpu",
    )  # fmt: skip
    model, found = exp.model.eval(), exp.anatomy
    n = len(found.blocks)
    loader = list(exp.loader())
    layers = layer_units(found)
    info = {**exp.describe(), "units": n, "layers": len(layers), "seed": args.seed}
    print(json.dumps(info), flush=True)
    full = list(range(n))

    # Single-unit deletion.
    routes = [full] + [[i for i in full if i != d] for d in full]
    rows = []
    for d, v in zip([None, *full], measure(model, loader, routes), strict=True):
        rows.append(
            {
                "config": "baseline" if d is None else f"drop={d}",
                "deleted": d,
                "deleted_name": None if d is None else found.blocks[d].name,
                "kind": None if d is None else ("attention" if d % 2 == 0 else "mlp"),
                **v,
            }
        )
    single = pd.DataFrame(rows)
    single.to_csv(tables / "single.csv", index=False)
    print(single.to_string(), flush=True)

    # Adjacent swaps: layers (Lad et al.), then units.
    rows, routes = [], []
    for unit_kind, groups in (("layer", layers), ("unit", [(i,) for i in full])):
        for i in range(len(groups) - 1):
            order = list(groups)
            order[i], order[i + 1] = order[i + 1], order[i]
            route = [u for g in order for u in g]
            try:
                plan_route(found, route)
            except ValueError as err:  # e.g. GPT-NeoX's parallel units must stay together
                print(f"swap {unit_kind} {i}: {err}")
                continue
            rows.append({"swap": unit_kind, "first": i, "route": text(route)})
            routes.append(route)
    for row, v in zip(rows, measure(model, loader, routes), strict=True):
        row.update(v)
    pd.DataFrame(rows).to_csv(tables / "swaps.csv", index=False)

    # k random units deleted.
    rng = random.Random(args.seed)
    rows, routes = [], []
    for k in range(1, n):
        for s in range(args.samples):
            gone = sorted(rng.sample(full, k))
            routes.append([i for i in full if i not in gone])
            rows.append({"k": k, "sample": s, "deleted": ",".join(map(str, gone))})
    for row, v in zip(rows, measure(model, loader, routes), strict=True):
        row.update(v)
    pd.DataFrame(rows).to_csv(tables / "delete_k.csv", index=False)

    # Painters operations over middle layer ranges (the first and last layer stay).
    rows, routes = [], []
    nl = len(layers)
    for lo in range(1, nl - 1):
        for hi in range(lo + 1, nl):
            for op in ("skip", "reverse", "shuffle", "parallel"):
                if op != "skip" and hi - lo < 2:
                    continue
                routes.append(painters_route(found, op, lo, hi, seed=args.seed))
                rows.append({"operation": op, "start": lo, "stop": hi})
        routes.append(painters_route(found, "repeat", lo, times=2))
        rows.append({"operation": "repeat", "start": lo, "stop": lo + 1})
    for row, route, v in zip(rows, routes, measure(model, loader, routes), strict=True):
        row.update({"route": text(route), **v})
    painters = pd.DataFrame(rows)
    painters.to_csv(tables / "painters.csv", index=False)

    # Gradient per path length, exact, at the input embeddings.
    ids = torch.cat([x for x, _ in loader])[: args.gradient_windows]
    per_length = path_length_gradients(model, ids, ids)
    norms = path_length_norms(per_length.double()).tolist()
    counts = path_length_counts(n)
    grads = pd.DataFrame(
        {
            "length": range(n + 1),
            "paths": [int(c) for c in counts],
            "norm": norms,
            "norm_share": [v / sum(norms) for v in norms],
            # norm ÷ paths is the norm of the *mean* path gradient, not a single path's
            # magnitude (paths of a length cancel); tables before this name were
            # "mean_norm_per_path".
            "norm_of_mean_path": [v / int(c) for v, c in zip(norms, counts, strict=True)],
        }
    )
    full_grad = float(per_length.sum(0).double().norm())
    grads["ordinary_gradient_norm"] = full_grad
    grads.to_csv(tables / "gradients.csv", index=False)

    # Cheap proxies against single-deletion damage.
    proxies = block_proxies(model, loader)
    proxies.to_csv(tables / "proxies.csv", index=False)
    corr = []
    for metric in ("perplexity", "kl"):
        frame = single.rename(columns={"deleted": "deleted"})
        damage = single_deletion_damage(frame, metric)
        c = proxy_correlations(proxies, damage)
        c.insert(0, "damage", f"{metric} increase")
        corr.append(c)
    corr_table = pd.concat(corr)
    corr_table.to_csv(tables / "proxy_correlations.csv", index=False)
    proxies_figure(proxies, single, figures)
    draw(single, pd.read_csv(tables / "delete_k.csv"), pd.read_csv(tables / "swaps.csv"),
         painters, grads, figures)  # fmt: skip
    info["seconds"] = round(time.time() - start, 1)
    (tables / "run.json").write_text(json.dumps({**info, **vars(args)}, indent=1))
    print(corr_table.to_string(), flush=True)


def redraw(tables: Path, figures: Path) -> None:
    """The three figures again from the tables (``--redraw``; ``rerender_figures.py``)."""
    single = pd.read_csv(tables / "single.csv")
    read = [pd.read_csv(tables / f"{t}.csv") for t in ("delete_k", "swaps", "painters")]
    draw(single, *read, pd.read_csv(tables / "gradients.csv"), figures)
    proxies_figure(pd.read_csv(tables / "proxies.csv"), single, figures)


def proxies_figure(proxies: pd.DataFrame, single: pd.DataFrame, figures: Path) -> None:
    plot_proxies(
        {"KJV LM, perplexity": (proxies, single_deletion_damage(single, "perplexity")),
         "KJV LM, KL": (proxies, single_deletion_damage(single, "kl"))},
        figures / "proxies_vs_damage",
        damage_label="rise when the unit is deleted",
        log=True,
    )  # fmt: skip


def draw(single, delete_k, swaps, painters, grads, figures: Path) -> None:  # noqa: ANN001
    """The two LM figures, in the package's paper style (``resnet_ensemble.viz.lm``)."""
    from resnet_ensemble.viz.lm import plot_lm_lesions, plot_lm_painters_gradients
    from resnet_ensemble.viz.plots import save_figure

    full = float(single.loc[single["config"] == "baseline", "perplexity"].iloc[0])
    save_figure(plot_lm_lesions(single, delete_k, swaps), figures, "lesions")
    fig = plot_lm_painters_gradients(painters, grads, full=full)
    save_figure(fig, figures, "painters_gradients")


if __name__ == "__main__":
    main()
