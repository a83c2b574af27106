"""docs/tutorial.ipynb runs top to bottom, offline, in a fresh kernel (nbclient), on the
working tree's package; only its number of test images is lowered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("timm")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.ipynb"


def test_the_tutorial_runs_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(TUTORIAL, as_version=4)
    setup = nb.cells[1].source
    assert "IMAGES = 500" in setup, "the tutorial's first code cell lost its IMAGES setting"
    nb.cells[1].source = setup.replace("IMAGES = 500", "IMAGES = 64")
    # The kernel is a child process: it inherits these. No network is reachable or tried.
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "median cost of deleting one block" in text and "training loss after 60 steps" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figure was drawn
