"""Re-draw every committed figure from its committed tables and compare them byte for byte.

    OMP_NUM_THREADS=1 python experiments/rerender_figures.py           # check; 1 on a difference
    OMP_NUM_THREADS=1 python experiments/rerender_figures.py --write   # replace what differs
    OMP_NUM_THREADS=1 python experiments/rerender_figures.py results/quick --keep /tmp/figures

Run it after changing figure code: a figure that differs was drawn by other code than today's
(or from other tables). Each figure is drawn into a temporary folder by the code that drew it in
the first place, and one line per figure says ``same``, ``differs``, ``not drawable`` (and why)
or ``not committed`` (today's code draws a figure the folder lacks; never written). ``--write``
replaces each figure that differs, atomically (``resnet_ensemble.atomic``). A ``reproduce``
folder's ``stages.json`` keeps the figure hashes of its run, so a resumed run redraws them.

Which code drew which folder (found from the files beside it):
- ``F/figures`` beside ``F/stages.json`` (``ensemble-lesion reproduce``): ``plot_all`` on the
  tables its figures stage read (that stage's ``inputs`` in ``stages.json``)
- ``F/figures`` beside ``F/depth.csv`` (``ensemble-lesion depth``): ``plot_all`` on ``depth.csv``
  and ``depth_k.csv``
- ``F/figures`` beside ``F/dynamics.csv`` (``ensemble-lesion dynamics``): ``plot_all`` on it
- ``F/NAME_figures`` beside ``F/NAME.md`` (``ensemble-lesion gradients --report F/NAME.md``):
  ``plot_all`` on the gradients table whose sidecar's command wrote that report
- ``F/figures`` beside ``F/tables/painters.csv``: ``experiments/lm_analyse.py``'s redraw
- ``F/proxies_vs_damage.*`` beside ``F/proxies_*.csv``: ``experiments/proxies_cnn.py``'s redraw
- ``F/figures`` beside ``F/tables/`` holding sweep tables and none of the above
  (``ensemble-lesion plot F/tables/single_resnet.csv ... --out F/figures``): ``plot_all`` on
  the sweep tables there, by name

PNG and PDF bytes carry the matplotlib version (``render_figure``): another version draws other
bytes, so compare on the version that drew the committed figures (``--write`` moves them to
yours).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
FORMATS = (".png", ".pdf", ".svg")


@dataclass
class Folder:
    """A folder of committed figures and how they were drawn: ``draw(dest)`` draws them into
    ``dest``; ``how`` says with what, for the report."""

    figures: Path
    committed: list[Path]
    how: str
    draw: Callable[[Path], object] | None  # None: not drawable, ``how`` says why


def _plot_all(tables: list[Path]) -> Callable[[Path], object]:
    def draw(dest: Path) -> object:
        from resnet_ensemble.viz.plots import plot_all

        return plot_all(tables, dest)

    return draw


def _script(name: str) -> ModuleType:
    """An experiments script as a module (they are scripts, not a package)."""
    path = ROOT / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_experiments_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def _reproduce_tables(folder: Path) -> tuple[list[Path], str]:
    """The tables ``reproduce``'s figures stage read: its record in ``stages.json`` (paths
    with their sha256, or, from older runs, the names in ``tables/``), else what the stage reads
    today (``Reproduction._plots``: every table but the gradients' per-sample one)."""
    stages = json.loads((folder / "stages.json").read_text())
    inputs = (stages.get("figures") or {}).get("inputs")
    if isinstance(inputs, dict) and inputs:
        return [folder / name for name in inputs], "reproduce: plot_all on the tables it read"
    if isinstance(inputs, list) and inputs:
        return [folder / "tables" / n for n in inputs], "reproduce: plot_all on the tables it read"
    from resnet_ensemble.studies.gradient_analysis import samples_table_path

    samples = samples_table_path(folder / "tables" / "gradients.csv")
    tables = [p for p in sorted((folder / "tables").glob("*.csv")) if p != samples]
    return tables, "reproduce (no record of its inputs): plot_all on tables/*.csv"


def _report_table(folder: Path, report: Path) -> Path:
    """The gradients table written with ``--report report``: its sidecar's command says so."""
    for sidecar in sorted(folder.glob("**/*.json")):
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict) or meta.get("table") != "gradients":
            continue
        args = shlex.split(str(meta.get("command", "")))
        wrote = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--report"]
        if any((ROOT / w).resolve() == report.resolve() for w in wrote):
            return sidecar.with_suffix(".csv")
    raise ValueError(f"no gradients sidecar under {folder} names --report {report.name}")


def _sweep_tables(tables: Path) -> list[Path]:
    """The sweep tables in ``tables`` (their sidecars say ``"table": "sweep"``), by name."""
    found = []
    for sidecar in sorted(tables.glob("*.json")):
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        table = sidecar.with_suffix(".csv")
        if isinstance(meta, dict) and meta.get("table") == "sweep" and table.is_file():
            found.append(table)
    return found


def _recipe(figures: Path, committed: list[Path]) -> Folder:
    """How the figures in ``figures`` were drawn, from the files beside them."""
    parent = figures.parent
    try:
        if figures.name.endswith("_figures"):
            report = parent / f"{figures.name.removesuffix('_figures')}.md"
            table = _report_table(parent, report)
            how = f"gradients --report {report.name}: plot_all on {table.relative_to(parent)}"
            return Folder(figures, committed, how, _plot_all([table]))
        if figures.name != "figures":  # proxies_cnn.py writes beside its tables
            if not list(figures.glob("proxies_*.csv")):
                raise ValueError("no proxies_*.csv beside them and no folder of figures")
            proxies = _script("proxies_cnn")

            def redraw_proxies(dest: Path) -> object:
                for table in figures.glob("proxies_*.csv"):
                    (dest / table.name).write_bytes(table.read_bytes())
                return proxies.redraw(dest, ROOT)

            return Folder(figures, committed, "proxies_cnn.py --redraw", redraw_proxies)
        if (parent / "stages.json").is_file():
            tables, how = _reproduce_tables(parent)
            return Folder(figures, committed, how, _plot_all(tables))
        if (parent / "depth.csv").is_file():
            tables = [parent / "depth.csv", parent / "depth_k.csv"]
            return Folder(figures, committed, "depth: plot_all on depth.csv, depth_k.csv",
                          _plot_all(tables))  # fmt: skip
        if (parent / "dynamics.csv").is_file():
            how = "dynamics: plot_all on dynamics.csv"
            return Folder(figures, committed, how, _plot_all([parent / "dynamics.csv"]))
        if (parent / "tables" / "painters.csv").is_file():
            lm = _script("lm_analyse")
            return Folder(figures, committed, "lm_analyse.py --redraw",
                          lambda dest: lm.redraw(parent / "tables", dest))  # fmt: skip
        sweeps = _sweep_tables(parent / "tables")
        if sweeps:
            names = ", ".join(t.name for t in sweeps)
            return Folder(figures, committed, f"plot: plot_all on the sweep tables {names}",
                          _plot_all(sweeps))  # fmt: skip
        raise ValueError(
            "no stages.json, depth.csv, dynamics.csv, LM tables or sweep tables beside them"
        )
    except (OSError, ValueError) as err:
        return Folder(figures, committed, str(err), None)


def find_folders(places: list[Path]) -> Iterator[Folder]:
    """Every folder of figures under ``places``, with how it was drawn."""
    seen: dict[Path, list[Path]] = {}
    for place in places:
        for f in sorted(place.rglob("*")):
            if f.suffix in FORMATS and f.is_file() and not f.name.startswith("."):
                seen.setdefault(f.parent, []).append(f)
    for figures, committed in sorted(seen.items()):
        yield _recipe(figures, committed)


def check(folder: Folder, keep: Path | None = None) -> list[tuple[str, Path, bytes | None]]:
    """(verdict, committed figure, re-drawn bytes) for each figure of ``folder``, verdicts
    ``same``, ``differs``, ``not drawable: why`` and ``not committed``."""
    if folder.draw is None:
        return [(f"not drawable: {folder.how}", f, None) for f in folder.committed]
    with tempfile.TemporaryDirectory(prefix="rerender-") as tmp:
        dest = Path(tmp)
        try:
            folder.draw(dest)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - any failure is the verdict
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            return [(f"not drawable: {why}", f, None) for f in folder.committed]
        drawn = {p.name: p.read_bytes() for p in dest.iterdir() if p.suffix in FORMATS}
        if keep is not None:
            where = folder.figures.resolve()
            out = keep / (where.relative_to(ROOT) if where.is_relative_to(ROOT) else where.name)
            out.mkdir(parents=True, exist_ok=True)
            for name, data in drawn.items():
                (out / name).write_bytes(data)
    verdicts: list[tuple[str, Path, bytes | None]] = []
    for f in folder.committed:
        again = drawn.get(f.name)
        if again is None:
            verdicts.append(("not drawable: today's code draws no such figure", f, None))
        else:
            verdicts.append(("same" if again == f.read_bytes() else "differs", f, again))
    names = {f.name for f in folder.committed}
    verdicts += [
        ("not committed", folder.figures / n, d) for n, d in sorted(drawn.items()) if n not in names
    ]
    return verdicts


def _shown(path: Path) -> str:
    """``path`` relative to the repository where it lies in it."""
    where = path.resolve()
    return str(where.relative_to(ROOT)) if where.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("places", nargs="*", type=Path, help="folders to search (default: results/)")
    ap.add_argument("--write", action="store_true", help="replace the figures that differ")
    ap.add_argument("--keep", type=Path, help="also put every re-drawn figure under this folder")
    args = ap.parse_args(argv)
    from resnet_ensemble.atomic import atomic_write

    places = args.places or [ROOT / "results"]
    missing = [str(p) for p in places if not p.is_dir()]
    if missing:
        ap.error(f"no such folder: {', '.join(missing)}")
    counts: dict[str, int] = {}
    for folder in find_folders(places):
        print(f"== {_shown(folder.figures)}: {folder.how}", flush=True)
        for verdict, path, data in check(folder, args.keep):
            kind = verdict.split(":")[0]
            counts[kind] = counts.get(kind, 0) + 1
            wrote = ""
            if args.write and kind == "differs" and data is not None:
                atomic_write(path, data)
                wrote = " (written)"
            print(f"{verdict:<9} {_shown(path)}{wrote}", flush=True)
    print(", ".join(f"{n} {k}" for k, n in counts.items()) or "no figures found")
    unfixed = 0 if args.write else counts.get("differs", 0)
    return 1 if unfixed or counts.get("not drawable") else 0


if __name__ == "__main__":
    sys.exit(main())
