"""Results tables: atomic writes, resume semantics, output-path checks and table reading."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from resnet_ensemble import results
from resnet_ensemble.results import (
    ResultsTable,
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    read_table,
    run_metadata,
    sidecar_path,
)

COLUMNS = ["config", "k", "sample", "error"]


def _rows(*configs: str) -> list[dict]:
    """Rows like a sweep's: the baseline has no ``sample`` (a gap in an integer column)."""
    out = []
    for c in configs:
        if c == "baseline":
            out.append({"config": c, "k": 0, "error": 0.25})
        else:
            k, s = (int(part.split("=")[1]) for part in c.split(","))
            out.append({"config": c, "k": k, "sample": s, "error": 1 / (k + s + 3)})
    return out


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------------------------
# Atomic writes


def test_atomic_write_leaves_only_the_target(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    atomic_write_text(target, "a,b\n1,2\n")
    atomic_write_text(target, "a,b\n3,4\n")
    atomic_write_bytes(tmp_path / "blob.bin", b"\x00\x01")
    assert target.read_text() == "a,b\n3,4\n"
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert _files(tmp_path) == ["blob.bin", "table.csv"]


def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    """A results file must be as readable as one written with open() (mkstemp makes 0600)."""
    plain = tmp_path / "plain.csv"
    plain.write_text("x\n")
    atomic_write_text(tmp_path / "atomic.csv", "x\n")
    mode = stat.S_IMODE((tmp_path / "atomic.csv").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode)


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_a_failed_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "table.csv"
    atomic_write_text(target, "old,table\n1,2\n")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if failing == "write":
        real_fdopen = os.fdopen

        class FailingFile:
            def __init__(self, f) -> None:  # noqa: ANN001
                self.f = f

            def __enter__(self) -> FailingFile:
                return self

            def __exit__(self, *exc: object) -> None:
                self.f.close()

            def write(self, data: bytes) -> None:
                self.f.write(data[: len(data) // 2])  # half of it lands, then the disk is full
                boom()

        monkeypatch.setattr(
            results.os, "fdopen", lambda fd, mode: FailingFile(real_fdopen(fd, mode))
        )
    else:
        monkeypatch.setattr(results.os, failing, boom)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new,table\n" + "3,4\n" * 1000)
    monkeypatch.undo()
    assert target.read_text() == "old,table\n1,2\n"
    assert _files(tmp_path) == ["table.csv"]  # the temporary file is gone too


def test_a_failed_append_keeps_the_table_and_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = ResultsTable(tmp_path / "t.csv", COLUMNS)
    table.append(_rows("baseline"))
    before = (tmp_path / "t.csv").read_text()
    monkeypatch.setattr(results.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("full")))
    with pytest.raises(OSError):
        table.append(_rows("k=1,sample=0"))
    monkeypatch.undo()
    assert (tmp_path / "t.csv").read_text() == before
    assert table.done == {"baseline"}  # the failed rows are not counted as done either


# ----------------------------------------------------------------------------------------------
# ResultsTable


def test_table_grows_and_has_a_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "t.csv"  # a missing folder is created
    table = ResultsTable(path, COLUMNS, metadata={"model": "m", "seed": 0})
    assert not path.parent.exists()  # nothing is written before there are rows
    table.append(_rows("baseline", "k=1,sample=0"))
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["model"] == "m" and meta["complete"] is False and meta["rows"] == 2
    assert meta["status"] == "in progress"
    table.append(_rows("k=1,sample=1"))
    table.append([])
    df = pd.read_csv(path)
    assert list(df.columns) == COLUMNS
    assert df["config"].tolist() == ["baseline", "k=1,sample=0", "k=1,sample=1"]
    assert df["error"].tolist() == [0.25, 1 / 4, 1 / 5]
    assert table.done == {"baseline", "k=1,sample=0", "k=1,sample=1"}
    table.write_metadata(complete=True, seconds=1.5)
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["complete"] is True and meta["rows"] == 3 and meta["seconds"] == 1.5


def test_rows_are_written_the_same_whatever_the_chunking(tmp_path: Path) -> None:
    """An integer column with a gap (the baseline has no sample) must not turn into floats
    when rows are written together: the CSV text cannot depend on the chunk size."""
    rows = _rows("baseline", "k=1,sample=0", "k=1,sample=1", "k=2,sample=0")
    together = ResultsTable(tmp_path / "together.csv", COLUMNS)
    together.append(rows)
    one_by_one = ResultsTable(tmp_path / "one.csv", COLUMNS)
    for r in rows:
        one_by_one.append([r])
    text = (tmp_path / "together.csv").read_text()
    assert text == (tmp_path / "one.csv").read_text()
    assert text.splitlines()[1:3] == ["baseline,0,,0.25", '"k=1,sample=0",1,0,0.25']


def test_existing_table_is_refused_without_resume(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    ResultsTable(path, COLUMNS).append(_rows("baseline"))
    before = path.read_text()
    with pytest.raises(ValueError, match=r"already exists; pass --resume .* --overwrite") as err:
        ResultsTable(path, COLUMNS)
    assert "\n" not in str(err.value)
    assert path.read_text() == before


def test_resume_skips_done_configurations_and_keeps_their_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    meta = {"model": "resnet20", "seed": 0, "images": 100}
    first = ResultsTable(path, COLUMNS, metadata=meta)
    first.append(_rows("baseline", "k=1,sample=0"))
    written = path.read_text()

    resumed = ResultsTable(path, COLUMNS, metadata=meta, resume=True)
    assert resumed.done == {"baseline", "k=1,sample=0"}
    resumed.append(_rows("k=1,sample=1"))
    text = path.read_text()
    assert text.startswith(written)  # earlier rows byte for byte: "0" never becomes "0.0"
    assert text == written + '"k=1,sample=1",1,1,0.2\n'

    uninterrupted = ResultsTable(tmp_path / "u.csv", COLUMNS, metadata=meta)
    uninterrupted.append(_rows("baseline", "k=1,sample=0", "k=1,sample=1"))
    assert (tmp_path / "u.csv").read_text() == text
    frame = resumed.frame  # typed as read_table would type it
    assert frame["error"].tolist() == [0.25, 0.25, 0.2]
    assert frame["k"].tolist() == [0, 1, 1]


def test_resume_without_a_table_starts_one(tmp_path: Path) -> None:
    table = ResultsTable(tmp_path / "t.csv", COLUMNS, resume=True)
    assert table.done == set()
    assert _files(tmp_path) == []
    table.append(_rows("baseline"))
    assert _files(tmp_path) == ["t.csv", "t.json"]


def test_resume_refuses_a_table_from_another_experiment(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    ResultsTable(path, COLUMNS, metadata={"model": "resnet20", "seed": 0}).append(_rows("baseline"))
    with pytest.raises(ValueError, match=r"made with seed=0, this run has seed=1") as err:
        ResultsTable(path, COLUMNS, metadata={"model": "resnet20", "seed": 1}, resume=True)
    assert "\n" not in str(err.value)
    ResultsTable(path, COLUMNS, metadata={"model": "resnet20", "seed": 0}, resume=True)


def test_resume_refuses_a_table_with_other_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("config,wrong\nbaseline,1\n")
    with pytest.raises(ValueError, match=r"lacks the columns \['k', 'sample', 'error'\]") as err:
        ResultsTable(path, COLUMNS, resume=True)
    assert "\n" not in str(err.value)


def test_unknown_columns_are_refused(tmp_path: Path) -> None:
    table = ResultsTable(tmp_path / "t.csv", COLUMNS)
    with pytest.raises(ValueError, match="unknown result columns"):
        table.append([{"config": "x", "typo": 1}])
    assert not (tmp_path / "t.csv").exists()


def test_overwrite_removes_table_and_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    ResultsTable(path, COLUMNS).append(_rows("baseline"))
    ResultsTable.overwrite(path)
    assert _files(tmp_path) == []
    ResultsTable.overwrite(path)  # nothing there: still fine


# ----------------------------------------------------------------------------------------------
# check_writable and read_table


def test_check_writable_accepts_a_normal_path_and_creates_nothing(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "new" / "deeper" / "t.csv") == tmp_path / "new/deeper/t.csv"
    # A run refused later (a bad model, say) must leave no trace: the first write makes the
    # folder, not the check; and the probe file is cleaned up.
    assert _files(tmp_path) == []
    atomic_write_text(tmp_path / "new" / "deeper" / "t.csv", "a\n1\n")
    assert (tmp_path / "new" / "deeper" / "t.csv").read_text() == "a\n1\n"


def test_check_writable_refuses_a_parent_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_writable(tmp_path / "afile" / "t.csv")
    with pytest.raises(ValueError, match="afile is a file, not a folder"):
        check_writable(tmp_path / "afile" / "missing" / "t.csv")
    assert _files(tmp_path) == ["afile"]


def test_check_writable_refuses_a_folder(tmp_path: Path) -> None:
    (tmp_path / "out.csv").mkdir()
    with pytest.raises(ValueError, match="it is a folder"):
        check_writable(tmp_path / "out.csv")


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only folders"
)
def test_check_writable_refuses_a_read_only_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="files cannot be created in"):
            check_writable(locked / "t.csv")
    finally:
        locked.chmod(0o700)


def test_read_table_with_wrong_columns_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("model,route\nresnet20,0-8\n")
    with pytest.raises(ValueError) as err:
        read_table(path, required=["model", "error"])
    assert str(err.value).count("\n") == 0
    assert "lacks the columns ['error']" in str(err.value)
    assert read_table(path, required=["model"])["route"].tolist() == ["0-8"]


def test_read_table_refuses_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no results table"):
        read_table(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="not a readable CSV table"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81" * 50)
    with pytest.raises(ValueError, match="not a readable CSV table"):
        read_table(tmp_path / "bin.csv")


def test_metadata_names_the_command_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    main = str(Path(results.__file__).parent / "__main__.py")
    monkeypatch.setattr(sys, "argv", [main, "sweep", "single"])
    meta = run_metadata()
    assert meta["command"] == "python -m resnet_ensemble sweep single"
    assert {"torch", "pandas", "resnet_ensemble"} <= set(meta["versions"])
    monkeypatch.setattr(sys, "argv", ["/usr/bin/ensemble-lesion", "sweep", "multi"])
    assert run_metadata()["command"] == "ensemble-lesion sweep multi"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[:-3], id="last-row-cut-mid-value"),
        pytest.param(lambda text: text.rsplit(",", 1)[0] + "\n", id="last-row-missing-a-field"),
        pytest.param(lambda text: text.replace(",1,1,0.2\n", ",1\n"), id="middle-row-short"),
    ],
)
def test_resume_drops_a_row_it_cannot_read_whole_and_recomputes_it(
    tmp_path: Path, damage: Any
) -> None:
    """A row cut short (a crash, a full disk, a power cut under a writer that is not atomic) is
    never taken as done: resume drops it with a note, and the sweep computes it again."""
    path = tmp_path / "t.csv"
    meta = {"model": "resnet20", "seed": 0}
    ResultsTable(path, COLUMNS, metadata=meta).append(
        _rows("baseline", "k=1,sample=1", "k=1,sample=0")
    )
    whole = path.read_text()
    path.write_text(damage(whole))
    resumed = ResultsTable(path, COLUMNS, metadata=meta, resume=True)
    assert len(resumed.done) == 2 and "baseline" in resumed.done
    assert len(resumed.notes) == 1 and "incomplete row" in resumed.notes[0]
    assert "\n" not in resumed.notes[0]
    (redo,) = {"baseline", "k=1,sample=0", "k=1,sample=1"} - resumed.done
    resumed.append(_rows(redo))
    assert sorted(path.read_text().splitlines()) == sorted(whole.splitlines())


def test_resume_of_a_whole_table_has_no_notes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    ResultsTable(path, COLUMNS).append(_rows("baseline", "k=1,sample=0"))
    resumed = ResultsTable(path, COLUMNS, resume=True)
    assert resumed.notes == [] and resumed.done == {"baseline", "k=1,sample=0"}


# ----------------------------------------------------------------------------------------------
# The table contract: sweeps in any metric, chance level, the depth series' columns


def test_the_sweep_metrics_are_the_metrics_the_library_scores() -> None:
    from resnet_ensemble.core.metrics import METRICS

    assert set(results.SWEEP_METRICS) == set(METRICS)


@pytest.mark.parametrize("metric", ["error", "top5", "loss", "perplexity", "kl"])
def test_a_sweep_in_any_metric_is_a_sweep_table_holding_that_metric(metric: str) -> None:
    columns = results.sweep_columns(metric)
    assert columns[columns.index("downsampling") + 1] == metric  # where the error column was
    assert results.table_kind(columns) == "sweep"  # without a sidecar, from the columns
    assert results.sweep_metric(columns) == metric
    assert results.sweep_metric(columns, {"metric": metric}) == metric


def test_a_sweep_without_a_metric_column_lacks_one_of_them() -> None:
    columns = [c for c in results.SWEEP_COLUMNS if c != "error"]
    assert results.TABLES["sweep"].missing(columns) == ["error or top5 or loss or perplexity or kl"]
    assert results.sweep_metric(columns) is None
    assert results.sweep_metric([*columns, "error", "top5"]) is None  # which one is unclear
    assert results.sweep_metric([*columns, "error", "top5"], {"metric": "top5"}) == "top5"


def test_chance_level_is_what_a_uniform_guess_scores() -> None:
    # Guessing uniformly over 10 classes: right 1 time in 10 (top-5: 5 in 10); the
    # cross-entropy of a uniform prediction is ln 10, its perplexity 10.
    assert results.chance_level("error", 10) == pytest.approx(0.9)
    assert results.chance_level("top5", 10) == pytest.approx(0.5)
    assert results.chance_level("top5", 3) == 0.0  # every class is in the top 5
    assert results.chance_level("loss", 10) == pytest.approx(2.302585092994046)
    assert results.chance_level("perplexity", 4096) == 4096
    assert results.chance_level("kl", 10) is None  # no guess scores a divergence
    assert results.chance_level("error", None) is None


def test_the_depth_tables_declare_their_columns() -> None:
    from resnet_ensemble.studies.depth_series import DEPTH_COLUMNS, DEPTH_K_COLUMNS

    assert tuple(DEPTH_COLUMNS) == results.TABLES["depth"].columns
    assert tuple(DEPTH_K_COLUMNS) == results.TABLES["depth_k"].columns
    for kind in ("depth", "depth_k"):
        spec = results.TABLES[kind]
        assert set(spec.required) <= set(spec.columns)


def test_sweep_rows_reads_a_sweep_csv_as_baseline_deletions_and_boolean_flags(
    tmp_path: Path,
) -> None:
    """The one sweep reader, on a CSV as the sweeps write it (the baseline row's downsampling
    cell empty, so pandas reads the column as text): values checked against the rows by hand."""
    path = tmp_path / "single.csv"
    path.write_text(
        "config,sweep,deleted,downsampling,error\n"
        "baseline,single,,,0.25\n"
        "drop=0,single,0,False,0.30\n"
        "drop=1,single,1,True,0.75\n"
        "drop=2,single,2,False,0.35\n"
    )
    rows = results.sweep_rows(path)
    assert rows.full("error") == 0.25
    assert rows.full("missing") != rows.full("missing")  # NaN for a column it lacks
    assert list(rows.baseline["config"]) == ["baseline"]
    assert list(rows.deletions["config"]) == ["drop=0", "drop=1", "drop=2"]
    assert rows.deletions["downsampling"].dtype == bool
    assert list(rows.deletions["downsampling"]) == [False, True, False]
    # A frame with real booleans (as pandas reads a column without empty cells) reads the same.
    frame = pd.read_csv(path).dropna(subset=["deleted"])
    assert list(results.sweep_rows(frame).deletions["downsampling"]) == [False, True, False]
    assert results.sweep_rows(frame).full("error") != results.sweep_rows(frame).full("error")


def test_sweep_rows_refuses_a_table_without_configurations(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks the columns \\['config'\\]"):
        results.sweep_rows(path)
