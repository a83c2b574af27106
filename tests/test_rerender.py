"""The committed figures come out of their committed tables byte for byte.

The reference is the committed bytes of results/quick and results/embedded_resnet32 (the small
folders; ``experiments/rerender_figures.py`` checks every folder). A difference means the figure
code changed what it draws: re-draw with ``rerender_figures.py --write``, look at the figures,
and commit them. PNG and PDF carry the matplotlib version that drew them; on another version
the bytes cannot be expected to match, and the comparisons are skipped.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import struct
import sys
from pathlib import Path
from types import ModuleType

import matplotlib
import matplotlib.pyplot as plt
import pytest

from resnet_ensemble.viz.plots import plot_all, render_figure

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def png_text(path: Path) -> dict[str, str]:
    """A PNG's tEXt chunks, read by the PNG format's own layout (not by matplotlib)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    found, at = {}, 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        at += 12 + length
    return found


def drawn_by_this_matplotlib(folder: Path) -> None:
    """Skip unless the folder's figures were drawn by the running matplotlib version."""
    pngs = sorted((folder / "figures").glob("*.png"))
    assert pngs, f"no committed figures in {folder}"
    software = png_text(pngs[0]).get("Software", "")
    version = re.search(r"version\s*(\S+?),", software)
    if version is None or version.group(1) != matplotlib.__version__:
        pytest.skip(f"{folder.name}'s figures: {software!r}; running {matplotlib.__version__}")


def figures_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "figures").iterdir())}


def test_the_same_figure_gives_the_same_bytes_in_every_format():
    """No date or random id in any format: two renderings a moment apart are equal (an SVG's
    date has microseconds, so it would differ), and the SVG names no date at all."""
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0], label="a line")
    ax.legend()
    first = render_figure(fig, "same", ("png", "pdf", "svg"))
    again = render_figure(fig, "same", ("png", "pdf", "svg"))
    plt.close(fig)
    assert [name for name, _ in first] == ["same.png", "same.pdf", "same.svg"]
    assert first == again
    svg, pdf = first[2][1], first[1][1]
    assert b"<dc:date>" not in svg
    assert b"/CreationDate" not in pdf


@pytest.mark.parametrize(
    "folder, tables",
    [
        # reproduce's figures stage read these (stages.json records them with their sha256)
        ("quick", "recorded"),
        # an older run without that record: reproduce reads every table but the per-sample one
        ("embedded_resnet32", "*.csv"),
    ],
)
def test_committed_figures_redraw_byte_for_byte(tmp_path, folder, tables):
    where = RESULTS / folder
    drawn_by_this_matplotlib(where)
    if tables == "recorded":
        stages = json.loads((where / "stages.json").read_text())
        paths = [where / name for name in stages["figures"]["inputs"]]
    else:
        paths = [p for p in sorted((where / "tables").glob(tables)) if "_samples" not in p.stem]
    written = plot_all(paths, tmp_path)
    committed = figures_of(where)
    again = {p.name: p.read_bytes() for p in written}
    assert sorted(again) == sorted(committed)
    differ = [name for name in committed if again[name] != committed[name]]
    assert not differ, f"re-drawn {folder} figures differ: {differ} (rerender_figures.py --write)"


def script() -> ModuleType:
    path = ROOT / "experiments" / "rerender_figures.py"
    spec = importlib.util.spec_from_file_location("rerender_figures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_script_reports_a_changed_figure_and_writes_it_back(tmp_path, capsys):
    """On a copy of results/embedded_resnet32: all same (exit 0); one PNG changed: that line
    says differs (exit 1); --write puts back the committed bytes."""
    drawn_by_this_matplotlib(RESULTS / "embedded_resnet32")
    copy = tmp_path / "embedded_resnet32"
    shutil.copytree(RESULTS / "embedded_resnet32", copy)
    rerender = script()
    assert rerender.main([str(copy)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("same ") for line in lines) == len(figures_of(copy)) == 14

    changed = copy / "figures" / "fig5a_delete_k.png"
    changed.write_bytes(changed.read_bytes() + b"\0")
    assert rerender.main([str(copy)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^differs\s+\S*fig5a_delete_k\.png$", out, re.M), out
    assert out.count("differs ") == 1

    assert rerender.main([str(copy), "--write"]) == 0
    assert figures_of(copy) == figures_of(RESULTS / "embedded_resnet32")


def test_a_folder_with_no_record_of_its_drawing_is_not_drawable(tmp_path, capsys):
    """Figures with nothing beside them that says what drew them: one line each, exit 1."""
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "orphan.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert script().main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^not drawable: .*orphan\.png$", out, re.M), out


def test_figures_beside_sweep_tables_are_redrawn_from_those_tables(tmp_path, capsys):
    """``ensemble-lesion plot F/tables/<sweep tables> --out F/figures`` with nothing else beside
    them: the script redraws them from the sweep tables alone (not the gradients table beside
    them), all ``same``, and a changed figure is reported."""
    net = tmp_path / "net"
    (net / "tables").mkdir(parents=True)
    sweeps = ["multi_resnet", "reorder_resnet", "single_resnet"]
    for name in [*sweeps, "gradients"]:
        for ext in (".csv", ".json"):
            shutil.copy(RESULTS / "quick" / "tables" / f"{name}{ext}", net / "tables")
    written = plot_all([net / "tables" / f"{n}.csv" for n in sweeps], net / "figures")
    rerender = script()
    assert rerender.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (
        "plot_all on the sweep tables multi_resnet.csv, reorder_resnet.csv, single_resnet.csv"
        in out
    )
    assert out.count("same ") == len(written) and "not committed" not in out

    changed = written[0]
    changed.write_bytes(changed.read_bytes() + b"\0")
    assert rerender.main([str(tmp_path)]) == 1
    assert re.search(rf"^differs\s+\S*{re.escape(changed.name)}$", capsys.readouterr().out, re.M)
