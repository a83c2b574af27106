"""Which cheap per-block measure predicts lesion damage? The embedded default and the depth
series (CIFAR-style ResNets on Fashion-MNIST), against their measured single-deletion tables.

    OMP_NUM_THREADS=1 python experiments/proxies_cnn.py --out results/proxies

For each network with a single-deletion table: ``block_proxies`` on the same test images the
table was measured on (its JSON sidecar says how many), the table's rise in top-1 error per
deleted block, Kendall's tau and Spearman's rho with p-values per measure, and one figure with
a row of panels per network. The language model's row comes from ``experiments/lm_analyse.py``
(``results/lm/tables/proxy_correlations.csv``) and is copied into the combined table when it
exists.

Writes OUT/proxies_<name>.csv, OUT/proxy_correlations.csv and OUT/proxies_vs_damage.{png,pdf}.
``--redraw`` only draws the figure again from OUT's proxies tables and the single-deletion
tables (``experiments/rerender_figures.py`` checks the committed one so).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from resnet_ensemble import block_proxies
from resnet_ensemble.studies.experiment import open_experiment
from resnet_ensemble.studies.proxies import plot_proxies, proxy_correlations, single_deletion_damage


def networks(root: Path = Path(".")) -> list[tuple[str, str | None, str, Path]]:
    """(label, model spec, dataset, single-deletion table) for every network that has one;
    ``root``: the repository, where ``results/`` is."""
    results = root / "results"
    embedded = results / "embedded_resnet32/tables/single_resnet.csv"
    found = [("embedded ResNet-32", None, "embedded", embedded)]
    for ckpt in sorted((results / "depth/checkpoints").glob("*.pt")):
        if ckpt.stem.endswith("_fp32"):
            continue
        table = results / "depth" / ckpt.stem / "tables/single_resnet.csv"
        if table.exists():
            found.append((ckpt.stem, str(ckpt), "fashion-mnist", table))
    return [f for f in found if f[3].exists()]


def table_name(label: str) -> str:
    """A network's proxies table is OUT/proxies_<this>.csv."""
    return label.replace(" ", "_").replace("-", "").lower()


def draw(panels: dict, out: Path) -> list[Path]:  # noqa: ANN001
    """The figure, OUT/proxies_vs_damage.{png,pdf}; one row per network in ``panels``."""
    return plot_proxies(panels, out / "proxies_vs_damage", damage_label="rise in top-1 error")


def redraw(out: Path, root: Path = Path(".")) -> list[Path]:
    """The figure again from the tables: each network's OUT/proxies_<name>.csv, beside its
    single-deletion table, in ``networks``' order (as ``main`` drew it)."""
    panels = {}
    for label, _, _, table in networks(root):
        proxies = out / f"proxies_{table_name(label)}.csv"
        if proxies.exists():
            panels[label] = (pd.read_csv(proxies), single_deletion_damage(table, "error"))
    if not panels:
        raise SystemExit(f"error: no proxies_<name>.csv of a network with a table in {out}")
    return draw(panels, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/proxies")
    ap.add_argument("--lm", default="results/lm/tables", help="the LM's tables, if any")
    ap.add_argument("--redraw", action="store_true", help="only redraw the figure from the tables")
    args = ap.parse_args()
    out = Path(args.out)
    if args.redraw:
        redraw(out)
        return
    out.mkdir(parents=True, exist_ok=True)
    panels, tables = {}, []
    for label, spec, dataset, table in networks():
        meta = json.loads(table.with_suffix(".json").read_text())
        images = int(meta.get("images", 2000))
        exp = open_experiment(spec, dataset=dataset, limit=images, batch_size=250, device="cpu")
        proxies = block_proxies(exp.model, exp.loader())
        proxies.to_csv(out / f"proxies_{table_name(label)}.csv", index=False)
        damage = single_deletion_damage(table, "error")
        corr = proxy_correlations(proxies, damage)
        corr.insert(0, "model", label)
        corr.insert(1, "damage", "top-1 error increase")
        corr.insert(2, "images", images)
        tables.append(corr)
        panels[label] = (proxies, damage)
        print(corr.to_string(), flush=True)
        # The same measures without the downsampling blocks, whose damage is of another kind.
        keep = ~proxies["downsamples"].astype(bool)
        plain = proxy_correlations(proxies[keep], damage)
        plain.insert(0, "model", f"{label}, no downsampling blocks")
        plain.insert(1, "damage", "top-1 error increase")
        plain.insert(2, "images", images)
        tables.append(plain)
    lm = Path(args.lm) / "proxy_correlations.csv"
    if lm.exists():
        frame = pd.read_csv(lm)
        frame.insert(0, "model", "KJV Llama LM (results/lm)")
        frame.insert(2, "images", None)
        tables.append(frame)
    combined = pd.concat(tables, ignore_index=True)
    combined.to_csv(out / "proxy_correlations.csv", index=False)
    draw(panels, out)
    print(combined.to_string())


if __name__ == "__main__":
    main()
