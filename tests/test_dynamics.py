"""The training-dynamics table and figure, from epoch folders written here by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from resnet_ensemble.cli import cli
from resnet_ensemble.studies.dynamics import collect_dynamics, write_dynamics


def _write(folder: Path, name: str, rows: list[dict], meta: dict) -> None:
    tables = folder / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(tables / f"{name}.csv", index=False)
    (tables / f"{name}.json").write_text(json.dumps(meta))


def _epoch(root: Path, epoch: int, full: float, deleted: list[float], swaps: dict) -> None:
    folder = root / f"e{epoch}"
    meta = {"num_blocks": 6, "model": "resnet14", "images": 100, "checkpoint_sha256": f"{epoch}"}
    single = [{"config": "baseline", "error": full}]
    single += [{"config": f"drop={i}", "error": e} for i, e in enumerate(deleted)]
    _write(folder, "single_resnet", single, meta)
    reorder = [{"config": "baseline", "k": 0, "error": full}]
    reorder += [
        {"config": f"swaps={k},sample={s}", "k": k, "error": e}
        for k, errors in swaps.items()
        for s, e in enumerate(errors)
    ]
    _write(folder, "reorder_resnet", reorder, {**meta, "keep_stage_first": True})
    grads = {
        **meta,
        "images": 256,
        "effective_lo": 1 + epoch,
        "effective_hi": 4 + epoch,
        "effective_path_share": 0.5,
        "ranges": {"exact_95": {"lo": epoch, "hi": 3 + epoch, "path_share": 0.4}},
        "single_path_decay": {"factor_per_block": 0.5 + 0.1 * epoch, "r2": 0.9},
    }
    _write(folder, "gradients", [{"length": 0, "num_paths": 1, "exact_norm": 1.0}], grads)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    swaps = {1: [0.2, 0.4, 0.3], 3: [0.5, 0.9, 0.6], 10: [0.8, 0.7, 0.9]}
    _epoch(tmp_path, 0, 0.9, [0.9, 0.9, 0.9, 0.9, 0.9, 0.9], swaps)
    _epoch(tmp_path, 2, 0.1, [0.1, 0.2, 0.4, 0.2, 0.15, 0.9], swaps)
    (tmp_path / "notes").mkdir()  # not an epoch folder: ignored
    return tmp_path


def test_collect_dynamics_reads_every_epoch(root: Path) -> None:
    table = collect_dynamics(root)
    assert list(table["epoch"]) == [0, 2]
    trained = table.iloc[1]
    # By hand: deleted errors 0.1, 0.15, 0.2, 0.2, 0.4, 0.9 -> mean 0.325, median 0.2.
    assert trained["single_mean"] == pytest.approx(0.325)
    assert trained["single_median"] == pytest.approx(0.2)
    assert trained["single_mean_over_full"] == pytest.approx(3.25)
    assert trained["single_median_over_full"] == pytest.approx(2.0)
    assert trained["single_worst"] == pytest.approx(0.9)
    assert (trained["swaps_1_median"], trained["swaps_3_median"], trained["swaps_10_median"]) == (
        pytest.approx(0.3), pytest.approx(0.6), pytest.approx(0.8),
    )  # fmt: skip
    assert trained["swaps_3_mean"] == pytest.approx(2.0 / 3)
    assert trained["swap_draws"] == 3 and trained["keep_stage_first"]
    assert (trained["effective_lo"], trained["effective_hi"]) == (3, 6)
    assert (trained["exact_lo"], trained["exact_hi"]) == (2, 5)
    assert trained["decay_per_block"] == pytest.approx(0.7)
    # Six blocks: the shortest range of lengths holding 95% of the 64 paths is 1-5 (62 paths).
    assert (trained["paths95_lo"], trained["paths95_hi"]) == (1, 5)
    assert trained["checkpoint_sha256"] == "2"


def test_a_missing_swap_count_is_nan(tmp_path: Path) -> None:
    _epoch(tmp_path, 1, 0.1, [0.2, 0.3], {1: [0.2], 3: [0.4]})
    row = collect_dynamics(tmp_path).iloc[0]
    assert math.isnan(row["swaps_10_median"]) and row["swap_draws"] == 1


def test_collect_dynamics_refuses_an_empty_root_and_mixed_networks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no analysed epochs"):
        collect_dynamics(tmp_path)
    _epoch(tmp_path, 0, 0.9, [0.9], {1: [0.9]})
    _epoch(tmp_path, 1, 0.1, [0.2], {1: [0.2]})
    meta_path = tmp_path / "e1" / "tables" / "single_resnet.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "num_blocks": 9}))
    with pytest.raises(ValueError, match="different block counts"):
        collect_dynamics(tmp_path)


def test_dynamics_command_writes_table_summary_and_figure(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "drawn"
    result = CliRunner().invoke(cli, ["dynamics", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "dynamics.csv")
    assert list(table["epoch"]) == [0, 2]
    assert json.loads((out / "dynamics.json").read_text())["table"] == "dynamics"
    summary = (out / "summary.md").read_text()
    assert "| 2 | 10.00% | 3.25 / 2.00 | 30.00% / 60.00% / 80.00% | 3–6 (2–5) |" in summary
    for fmt in ("png", "pdf"):
        assert (out / "figures" / f"training_dynamics.{fmt}").stat().st_size > 1000
    # The plot command draws the same figure from the table alone.
    again = CliRunner().invoke(cli, ["plot", str(out / "dynamics.csv"), "--out", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "training_dynamics.png").exists()


def test_write_dynamics_writes_nothing_when_there_is_nothing_to_collect(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_dynamics(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
