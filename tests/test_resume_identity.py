"""A resume proves it is the same experiment (issue 24, item 3), through real processes.

``sweep --resume`` refuses, in one line and without touching the table: a table without a
readable sidecar; other data (another ``--data-dir``, an edited data file, another or edited
text file, another window); other weights; and rows that are not this sweep's own (an unknown
configuration, a repeated one, one naming another model or route, an edited value). A partial
table of the same experiment still resumes to the uninterrupted one.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from resnet_ensemble.data.datasets import (
    FASHION_MNIST_FILES,
    FASHION_MNIST_SYSTEM_DIR,
    ArrayImageDataset,
    SyntheticDataset,
    data_fingerprint,
    load_dataset,
    make_transform,
)

from .conftest import needs_fashion

ROOT = Path(__file__).resolve().parents[1]
SINGLE = ["sweep", "single", "--device", "cpu", "--limit", "16"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("RESNET_ENSEMBLE_DEBUG", None)
    env.update(extra)
    return env


def _cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The one error line of a refused run, checked to contain ``words``."""
    assert proc.returncode == 1, proc.stderr
    # (transformers warns of the tiny test tokenizer's ids; those lines are not ours)
    lines = [x for x in proc.stderr.strip().splitlines() if not x.startswith("[transformers]")]
    assert len(lines) == 1 and lines[0].startswith("error: cannot resume"), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``sweep single`` table of the embedded model on 16 images (16 rows)."""
    folder = tmp_path_factory.mktemp("finished")
    proc = _cli([*SINGLE, "--out", str(folder / "t.csv")], folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "t.csv"


def _copy(table: Path, folder: Path) -> Path:
    shutil.copy(table, folder / "t.csv")
    shutil.copy(table.with_suffix(".json"), folder / "t.json")
    return folder / "t.csv"


# ----------------------------------------------------------------------------------------------
# No readable sidecar


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("missing", ("t.json is missing",)),
        ("cut short", ("t.json is unreadable", "JSONDecodeError")),
        ("a list", ("t.json is not a JSON object",)),
    ],
)
def test_no_resume_without_a_readable_sidecar(
    finished: Path, tmp_path: Path, damage: str, words: tuple[str, ...]
) -> None:
    table = _copy(finished, tmp_path)
    side = table.with_suffix(".json")
    if damage == "missing":
        side.unlink()
    elif damage == "cut short":
        side.write_bytes(side.read_bytes()[:120])
    else:
        side.write_text("[1, 2]")
    before = table.read_bytes(), side.read_bytes() if side.exists() else None
    line = _refused(_cli([*SINGLE, "--out", str(table), "--resume"], tmp_path), *words)
    assert "--overwrite" in line
    assert (table.read_bytes(), side.read_bytes() if side.exists() else None) == before


def test_a_sidecar_lacking_a_key_is_refused_naming_it(finished: Path, tmp_path: Path) -> None:
    table = _copy(finished, tmp_path)
    meta = json.loads(table.with_suffix(".json").read_text())
    del meta["checkpoint_sha256"]
    table.with_suffix(".json").write_text(json.dumps(meta))
    proc = _cli([*SINGLE, "--out", str(table), "--resume"], tmp_path)
    _refused(proc, "its sidecar records no checkpoint_sha256", "this run has checkpoint_sha256='")


def _older(table: Path) -> None:
    """Make the sidecar one written before data fingerprints (issue 24)."""
    meta = json.loads(table.with_suffix(".json").read_text())
    del meta["data_fingerprint"], meta["data_dir"]
    table.with_suffix(".json").write_text(json.dumps(meta, indent=2))


def test_an_older_sidecar_keeps_a_complete_table_and_refuses_to_add_rows(
    finished: Path, tmp_path: Path
) -> None:
    """An older version's sidecar cannot prove the data: its table is resumed only when there
    is nothing to add (a script re-run over finished results), and is then left as it was."""
    table = _copy(finished, tmp_path)
    _older(table)
    before = table.read_bytes(), table.with_suffix(".json").read_bytes()
    proc = _cli([*SINGLE, "--out", str(table), "--resume"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "written by an older version, records no data_dir, data_fingerprint" in proc.stderr
    assert (table.read_bytes(), table.with_suffix(".json").read_bytes()) == before

    table.write_text("".join(_lines(finished)[:7]))  # header and six rows: work is left
    before = table.read_bytes(), table.with_suffix(".json").read_bytes()
    proc = _cli([*SINGLE, "--out", str(table), "--resume"], tmp_path)
    _refused(proc, "records no data_dir, data_fingerprint", "(10 of 16 configurations are missing)")
    assert (table.read_bytes(), table.with_suffix(".json").read_bytes()) == before


# ----------------------------------------------------------------------------------------------
# Rows that are not the sweep's own


def _lines(table: Path) -> list[str]:
    return table.read_text().splitlines(keepends=True)


def _fields(line: str) -> list[str]:
    return next(csv.reader(io.StringIO(line)))


def _edit_field(line: str, column: int, value: str) -> str:
    fields = _fields(line)
    fields[column] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue()


def _foreign(lines: list[str], case: str) -> list[str]:
    header = lines[0].strip().split(",")
    if case == "drop=99":  # a copy of drop=0's row, renamed to a block the model lacks
        return [*lines, _edit_field(_edit_field(lines[2], header.index("config"), "drop=99"),
                                    header.index("deleted"), "99")]  # fmt: skip
    if case == "duplicated":
        return [*lines, lines[5]]
    if case == "other model":
        return [*lines[:4], _edit_field(lines[4], header.index("model"), "resnet56"), *lines[5:]]
    if case == "other route":
        return [*lines[:4], _edit_field(lines[4], header.index("route"), "0-14"), *lines[5:]]
    if case == "other images":
        return [*lines[:4], _edit_field(lines[4], header.index("images"), "17"), *lines[5:]]
    assert case == "edited error"
    wrong = int(_fields(lines[4])[header.index("wrong")])
    edited = _edit_field(lines[4], header.index("error"), repr((wrong + 1) / 16))
    return [*lines[:4], edited, *lines[5:]]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("drop=99", ("line 18 (config 'drop=99') is not one of this sweep's 16 configurations",)),
        ("duplicated", ("line 18 (config 'drop=3') repeats line 6",)),
        ("other model", ("line 5 (config 'drop=2') has model='resnet56'", "model='resnet32'")),
        ("other route", ("line 5 (config 'drop=2') has route='0-14'", "route='0-1,3-14'")),
        ("other images", ("line 5 (config 'drop=2') has images='17'; this sweep has 16",)),
        ("edited error", ("line 5 (config 'drop=2') has error=", "the row was changed")),
    ],
)
def test_rows_that_are_not_the_sweeps_own_are_refused(
    finished: Path, tmp_path: Path, case: str, words: tuple[str, ...]
) -> None:
    table = _copy(finished, tmp_path)
    table.write_text("".join(_foreign(_lines(finished), case)))
    before = table.read_bytes()
    line = _refused(_cli([*SINGLE, "--out", str(table), "--resume"], tmp_path), *words)
    assert "delete that line" in line and "--overwrite" in line
    assert table.read_bytes() == before


def test_a_partial_table_of_the_same_experiment_still_resumes(
    finished: Path, tmp_path: Path
) -> None:
    table = _copy(finished, tmp_path)
    table.write_text("".join(_lines(finished)[:7]))  # header and six rows
    proc = _cli([*SINGLE, "--out", str(table), "--resume"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(6 already done)" in proc.stderr
    assert table.read_text() == finished.read_text()


# ----------------------------------------------------------------------------------------------
# Other data


def _fashion_folder(folder: Path) -> Path:
    """A Fashion-MNIST folder: the system's files linked, the test labels as a plain copy that
    a test may edit."""
    folder.mkdir()
    for name in FASHION_MNIST_FILES:
        source = FASHION_MNIST_SYSTEM_DIR / f"{name}.gz"
        if name == "t10k-labels-idx1-ubyte":
            (folder / name).write_bytes(gzip.decompress(source.read_bytes()))
        else:
            (folder / f"{name}.gz").symlink_to(source)
    return folder


@needs_fashion
def test_resume_with_other_data_is_refused(tmp_path: Path) -> None:
    a, b = _fashion_folder(tmp_path / "a"), _fashion_folder(tmp_path / "b")
    cache = {"RESNET_ENSEMBLE_CACHE": str(tmp_path / "cache")}
    table = tmp_path / "t.csv"
    sweep = [*SINGLE, "--dataset", "fashion-mnist", "--out", str(table)]
    proc = _cli([*sweep, "--data-dir", str(a)], tmp_path, **cache)
    assert proc.returncode == 0, proc.stderr
    finished = table.read_bytes()

    # Another folder, even of the same files: the data folder is part of the experiment.
    proc = _cli([*sweep, "--data-dir", str(b), "--resume"], tmp_path, **cache)
    _refused(proc, f"it was made with data_dir='{a}'", f"this run has data_dir='{b}'")

    # The same folder, one test label changed (IDX labels start at byte 8): the fingerprint.
    labels = a / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[8 + 3] = (data[8 + 3] + 1) % 10
    labels.write_bytes(bytes(data))
    proc = _cli([*sweep, "--data-dir", str(a), "--resume"], tmp_path, **cache)
    _refused(proc, "it was made with data_fingerprint='", "this run has data_fingerprint='")

    # A label beyond the 16 images the sweep reads is not part of its data: it resumes.
    data[8 + 3] = (data[8 + 3] - 1) % 10
    data[8 + 5000] = (data[8 + 5000] + 1) % 10
    labels.write_bytes(bytes(data))
    proc = _cli([*sweep, "--data-dir", str(a), "--resume"], tmp_path, **cache)
    assert proc.returncode == 0, proc.stderr
    assert table.read_bytes() == finished


def test_resume_with_another_text_window_or_weights_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from .test_text_data import TEXT, make_lm_folder

    lm = make_lm_folder(tmp_path / "lm")
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT)
    table = tmp_path / "t.csv"
    sweep = ["sweep", "single", "--device", "cpu", "--model", f"hf:{lm}",
             "--dataset", f"text:{text}", "--limit", "2", "--out", str(table)]  # fmt: skip
    window = {"RESNET_ENSEMBLE_TEXT_WINDOW": "16"}
    proc = _cli(sweep, tmp_path, **window)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(table.with_suffix(".json").read_text())
    assert meta["window"] == 16 and len(meta["text_sha256"]) == 64
    # A Hugging Face folder's weights: named by the hash of its weight files.
    assert len(meta.get("weights_sha256") or meta["checkpoint_sha256"]) == 64
    finished = table.read_bytes()

    proc = _cli([*sweep, "--resume"], tmp_path, RESNET_ENSEMBLE_TEXT_WINDOW="8")
    _refused(proc, "it was made with window=16, this run has window=8")

    # The same file name, other words (the first two windows are still there): its SHA-256.
    text.write_text(TEXT.replace("reader", "writer"))
    proc = _cli([*sweep, "--resume"], tmp_path, **window)
    _refused(proc, f"it was made with text_sha256='{meta['text_sha256']}'")
    text.write_text(TEXT)

    # Other weights in the same folder.
    model = transformers.AutoModelForCausalLM.from_pretrained(lm)
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
    model.save_pretrained(lm)
    proc = _cli([*sweep, "--resume"], tmp_path, **window)
    key = "weights_sha256" if "weights_sha256" in meta else "checkpoint_sha256"
    _refused(proc, f"it was made with {key}='{meta[key]}'")
    assert table.read_bytes() == finished


# ----------------------------------------------------------------------------------------------
# The fingerprint itself


def _arrays(labels: list[int]) -> ArrayImageDataset:
    images = np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28)
    return ArrayImageDataset(images, np.array(labels), make_transform("embedded"))


def test_the_fingerprint_follows_the_items_served_and_nothing_else(tmp_path: Path) -> None:
    same = data_fingerprint(_arrays([0, 1, 2, 3]))
    assert same == data_fingerprint(_arrays([0, 1, 2, 3]))  # read twice: the same
    assert same != data_fingerprint(_arrays([0, 1, 2, 4]))  # one label
    edited = _arrays([0, 1, 2, 3])
    edited.images[1, 5, 5] ^= 1  # one bit of one pixel
    assert same != data_fingerprint(edited)
    # limit's Subset: only the items served count.
    first = data_fingerprint(Subset(_arrays([0, 1, 2, 3]), range(2)))
    assert first == data_fingerprint(Subset(_arrays([0, 1, 9, 9]), range(2)))
    assert first != data_fingerprint(Subset(_arrays([0, 9, 2, 3]), range(2)))
    # The synthetic data follow their seed; the embedded subset is fixed.
    assert data_fingerprint(SyntheticDataset("test", 0)) != data_fingerprint(
        SyntheticDataset("test", 1)
    )
    embedded = load_dataset("embedded", "test", limit=8)
    assert data_fingerprint(embedded) == data_fingerprint(load_dataset("embedded", "test", limit=8))


def test_the_fingerprint_of_image_files_is_their_names_sizes_and_classes(tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "val" / cls / f"{i}.png")
    (tmp_path / "train").mkdir()
    first = data_fingerprint(load_dataset("imagenet", "test", data_dir=tmp_path))
    assert first == data_fingerprint(load_dataset("imagenet", "test", data_dir=tmp_path))
    extra = tmp_path / "val" / "dog" / "2.png"
    Image.new("RGB", (8, 8)).save(extra)
    assert data_fingerprint(load_dataset("imagenet", "test", data_dir=tmp_path)) != first
    extra.unlink()
    # Moved to another folder: relative names, so the same fingerprint.
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    shutil.copytree(tmp_path, moved)
    assert data_fingerprint(load_dataset("imagenet", "test", data_dir=moved)) == first


@pytest.mark.parametrize("damage", ["no sidecar", "duplicated row"])
def test_under_torchrun_every_rank_stops_with_rank_0s_refusal(
    finished: Path, tmp_path: Path, damage: str
) -> None:
    """Only rank 0 reads the table; the other rank must stop with its line, not hang."""
    table = _copy(finished, tmp_path)
    if damage == "no sidecar":
        table.with_suffix(".json").unlink()
    else:
        table.write_text("".join(_foreign(_lines(finished), "duplicated")))
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [sys.executable, *torchrun, "-m", "resnet_ensemble", *SINGLE, "--out", str(table),
         "--resume"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    refusals = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(refusals) == 2, proc.stderr
    reason = "t.json is missing" if damage == "no sidecar" else "repeats line 6"
    assert all(reason in ln for ln in refusals), refusals


def test_resuming_a_finished_table_leaves_table_and_sidecar_byte_for_byte(tmp_path: Path) -> None:
    """Nothing to compute: the sidecar keeps the command, time and machine of the run that made
    the table (a resume once rewrote them, losing where a GPU table came from)."""
    import subprocess
    import sys

    from .cli_helpers import subprocess_env

    out = tmp_path / "t.csv"
    args = [sys.executable, "-m", "resnet_ensemble", "sweep", "single", "--model", "embedded"]
    args += ["--limit", "16", "--out", str(out)]
    subprocess.run(args, check=True, env=subprocess_env(), capture_output=True)
    before = (out.read_bytes(), out.with_suffix(".json").read_bytes())
    again = subprocess.run(
        [*args, "--resume"], env=subprocess_env(), capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "is complete: nothing to do" in again.stderr
    assert (out.read_bytes(), out.with_suffix(".json").read_bytes()) == before
