"""Sweeps: the configurations of the paper's lesion experiments, Kendall's tau, route strings,
and the ``sweep`` command end to end (kill and resume, torchrun) against hand-written loops."""

from __future__ import annotations

import itertools
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import scipy.stats
import torch
import torchvision
from click.testing import CliRunner
from torch import nn

from resnet_ensemble.blocks.registry import anatomy
from resnet_ensemble.cli import cli
from resnet_ensemble.data.datasets import load_dataset
from resnet_ensemble.models import cifar_resnet, plain_net
from resnet_ensemble.models.checkpoints import save_checkpoint
from resnet_ensemble.studies.sweeps import (
    format_route,
    kendall_tau,
    multi_deletions,
    random_swaps,
    single_deletions,
    stage_first_blocks,
)

from .cli_helpers import kill_mid_run
from .cli_helpers import subprocess_env as _env
from .conftest import randomize_batchnorm
from .reference import cifar_blocks, cifar_forward

ROOT = Path(__file__).resolve().parents[1]
CKPT_KWARGS = {"num_classes": 10, "in_channels": 1}


# ----------------------------------------------------------------------------------------------
# Kendall's tau and route strings


def _tau_by_counting(order: list[int]) -> float:
    """Kendall's tau against 0..n-1 by counting pairs: (concordant - discordant) / pairs."""
    pairs = list(itertools.combinations(range(len(order)), 2))
    concordant = sum(order[i] < order[j] for i, j in pairs)
    return (concordant - (len(pairs) - concordant)) / len(pairs)


def test_kendall_tau_by_hand() -> None:
    assert kendall_tau([1, 0, 2, 3]) == pytest.approx(1 - 2 * 1 / 6)  # one discordant pair of 6
    assert kendall_tau([2, 0, 1]) == pytest.approx(-1 / 3)  # (1 concordant - 2 discordant) / 3
    assert kendall_tau([4, 3, 2, 1, 0]) == pytest.approx(-1.0)
    assert kendall_tau(list(range(9))) == 1.0
    assert kendall_tau([0]) == 1.0 and kendall_tau([]) == 1.0


def test_kendall_tau_matches_scipy_and_pair_counting() -> None:
    rnd = random.Random(0)
    for n in (2, 3, 5, 9, 27):
        for _ in range(5):
            order = list(range(n))
            rnd.shuffle(order)
            expected = scipy.stats.kendalltau(list(range(n)), order).statistic
            assert kendall_tau(order) == pytest.approx(expected, abs=1e-12)
            assert kendall_tau(order) == pytest.approx(_tau_by_counting(order), abs=1e-12)


@pytest.mark.parametrize(
    ("route", "text"),
    [
        ([], ""),
        ([5], "5"),
        ([0, 1, 2, 4, 6, 7, 8], "0-2,4,6-8"),
        ([0, 1], "0-1"),
        ([0, 2, 4], "0,2,4"),
        ([2, 1, 0], "2,1,0"),  # a reversed run is not a range
        ([0, 0, 1], "0,0-1"),  # a repeated block
        ([3, 4, 0, 1, 2], "3-4,0-2"),
        (range(27), "0-26"),
    ],
)
def test_format_route(route: list[int], text: str) -> None:
    assert format_route(route) == text


# ----------------------------------------------------------------------------------------------
# Configurations


def _omitted(route: tuple[int, ...], n: int) -> list[int]:
    return [i for i in range(n) if i not in route]


def test_single_deletions_are_the_full_net_then_each_block() -> None:
    found = anatomy(cifar_resnet(20))
    specs = single_deletions(found)
    assert len(specs) == 9 + 1
    assert specs[0].config == "baseline" and specs[0].route == tuple(range(9))
    for i, spec in enumerate(specs[1:]):
        assert spec.config == f"drop={i}"
        assert spec.route == tuple(j for j in range(9) if j != i)
        assert spec.fields["deleted"] == str(i) and spec.fields["k"] == 1
        assert spec.fields["downsampling"] is (i in (3, 6))  # layer2.0 and layer3.0
        assert spec.fields["deleted_name"] == f"layer{i // 3 + 1}.{i % 3}"


def test_single_deletions_of_a_plain_net_leave_out_its_downsampling_layers() -> None:
    specs = single_deletions(anatomy(plain_net(20)))
    assert [s.config for s in specs] == ["baseline"] + [f"drop={i}" for i in (0, 1, 2, 4, 5, 7, 8)]
    assert not any(s.fields.get("downsampling") for s in specs)


def test_multi_deletions_delete_k_non_downsampling_blocks() -> None:
    found = anatomy(cifar_resnet(20))
    specs = multi_deletions(found, max_k=7, samples=5, seed=3)
    assert len(specs) == 1 + 7 * 5
    assert specs[0].route == tuple(range(9))
    for spec in specs[1:]:
        k = spec.fields["k"]
        omitted = _omitted(spec.route, 9)
        assert len(omitted) == k and len(spec.route) == 9 - k
        assert not {3, 6} & set(omitted)  # never a downsampling block
        assert list(spec.route) == sorted(spec.route)  # deletions only: order kept
        assert spec.fields["deleted"] == format_route(omitted)
        assert spec.config == f"k={k},sample={spec.fields['sample']}"
    assert all(s.route == (3, 6) for s in specs[-5:])  # k = 7 deletes every candidate
    # Deterministic for a seed (also across calls, which is what --resume relies on) ...
    again = multi_deletions(found, max_k=7, samples=5, seed=3)
    assert [(s.config, s.route) for s in again] == [(s.config, s.route) for s in specs]
    # ... and another seed draws other blocks.
    other = multi_deletions(found, max_k=7, samples=5, seed=4)
    assert [s.route for s in other] != [s.route for s in specs]
    # Within a k the samples are not all the same draw.
    assert len({s.route for s in specs if s.fields["k"] == 2}) > 1


def test_multi_deletions_refuse_too_many_blocks() -> None:
    with pytest.raises(ValueError, match="only 7 non-downsampling blocks"):
        multi_deletions(anatomy(cifar_resnet(20)), max_k=8)


def _runs_through_reference(model: nn.Module, route: tuple[int, ...], x: torch.Tensor) -> None:
    blocks = cifar_blocks(model)
    with torch.no_grad():
        out = cifar_forward(model, x, [(blocks[i], True) for i in route])
    assert out.shape == (x.shape[0], 10)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_random_swaps_only_swap_blocks_of_the_same_shape(shortcut: str) -> None:
    torch.manual_seed(0)
    model = cifar_resnet(20, shortcut=shortcut).eval()
    found = anatomy(model)
    specs = random_swaps(found, max_swaps=6, samples=4, seed=1)
    assert len(specs) == 1 + 6 * 4
    assert specs[0].fields["kendall_tau"] == 1.0
    x = torch.randn(2, 3, 32, 32)
    for spec in specs:
        assert sorted(spec.route) == list(range(9))  # a permutation: nothing deleted
        _runs_through_reference(model, spec.route, x)  # shapes fit, by an independent forward
        assert spec.route[3] == 3 and spec.route[6] == 6  # downsampling blocks stay put
        expected = scipy.stats.kendalltau(list(range(9)), list(spec.route)).statistic
        assert spec.fields["kendall_tau"] == pytest.approx(expected, abs=1e-12)
    assert any(s.route != tuple(range(9)) for s in specs)
    again = random_swaps(found, max_swaps=6, samples=4, seed=1)
    assert [s.route for s in again] == [s.route for s in specs]


def test_random_swaps_need_two_blocks_of_a_shape() -> None:
    with pytest.raises(ValueError, match="no two blocks of the same shape"):
        random_swaps(anatomy(cifar_resnet(8)))


# The authors' protocols (issue 20): the first block of a stage stays, by the block layout.
# ResNet-20: stages of three blocks, layer1.0 / layer2.0 / layer3.0 are blocks 0, 3 and 6.
FIRSTS_20 = {0, 3, 6}


def test_stage_first_blocks_follow_the_layout() -> None:
    assert stage_first_blocks(anatomy(cifar_resnet(20))) == FIRSTS_20
    assert stage_first_blocks(anatomy(cifar_resnet(110))) == {0, 18, 36}
    tv = anatomy(torchvision.models.resnet18())  # layer1..layer4 of two blocks
    assert stage_first_blocks(tv) == {0, 2, 4, 6}
    assert [b.name for b in tv.blocks if b.index in {0, 2, 4, 6}] == [
        "layer1.0", "layer2.0", "layer3.0", "layer4.0",
    ]  # fmt: skip


def test_random_swaps_keep_stage_first_never_move_a_stage_first_block() -> None:
    torch.manual_seed(0)
    model = cifar_resnet(20).eval()
    found = anatomy(model)
    kept = random_swaps(found, max_swaps=8, samples=30, seed=2, keep_stage_first=True)
    x = torch.randn(2, 3, 32, 32)
    for spec in kept:
        assert all(spec.route[i] == i for i in FIRSTS_20), spec.route
        _runs_through_reference(model, spec.route, x)
    # Within stages only: stage 1 is blocks 0-2, stage 2 3-5, stage 3 6-8.
    assert all(spec.route[i] // 3 == i // 3 for spec in kept for i in range(9))
    assert len({s.route for s in kept}) > 4
    # The default protocol does move block 0 (the only stage-first block of a swappable shape).
    free = random_swaps(found, max_swaps=8, samples=30, seed=2)
    assert any(spec.route[0] != 0 for spec in free)


def test_random_swaps_keep_stage_first_refuses_a_model_left_with_nothing_to_swap() -> None:
    # ResNet-14: two blocks per stage, so only one block per stage may move.
    with pytest.raises(ValueError, match="other than the first of a stage"):
        random_swaps(anatomy(cifar_resnet(14)), keep_stage_first=True)


@pytest.mark.parametrize(
    ("eligible", "allowed"),
    [
        ("non-downsampling", {0, 1, 2, 4, 5, 7, 8}),
        ("not-stage-first", {1, 2, 4, 5, 7, 8}),
        ("all", set(range(9))),
    ],
)
def test_multi_deletions_draw_from_the_eligible_blocks(eligible: str, allowed: set[int]) -> None:
    found = anatomy(cifar_resnet(20))
    specs = multi_deletions(found, max_k=len(allowed), samples=20, seed=1, eligible=eligible)
    drawn: set[int] = set()
    for spec in specs[1:]:
        omitted = set(_omitted(spec.route, 9))
        assert len(omitted) == spec.fields["k"] and omitted <= allowed
        drawn |= omitted
    assert drawn == allowed  # every eligible block is drawn at some k
    # k = all eligible blocks deletes exactly them.
    assert {tuple(_omitted(s.route, 9)) for s in specs[-20:]} == {tuple(sorted(allowed))}


def test_multi_deletions_default_is_non_downsampling_and_unchanged() -> None:
    found = anatomy(cifar_resnet(20))
    default = multi_deletions(found, max_k=3, samples=4, seed=7)
    explicit = multi_deletions(found, max_k=3, samples=4, seed=7, eligible="non-downsampling")
    assert [s.route for s in default] == [s.route for s in explicit]
    with pytest.raises(ValueError, match="only 6 not-stage-first blocks"):
        multi_deletions(found, max_k=7, eligible="not-stage-first")
    with pytest.raises(ValueError, match="eligible must be one of"):
        multi_deletions(found, eligible="downsampling")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# The sweep command end to end, on a small saved checkpoint and the embedded images


def _saved_resnet(folder: Path, depth: int, bn_seed: int) -> Path:
    """A ResNet of ``depth`` for 1-channel images, BatchNorm randomized so that lesions change
    answers, saved as a toolkit checkpoint in ``folder``."""
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(depth, **CKPT_KWARGS), seed=bn_seed).eval()
    path = folder / f"resnet{depth}.pt"
    save_checkpoint(
        path, model, arch=f"resnet{depth}", arch_kwargs=CKPT_KWARGS, dataset="embedded",
        metadata={},
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-14: two blocks per stage."""
    return _saved_resnet(tmp_path_factory.mktemp("ckpt"), 14, bn_seed=1)


def _reference_model(path: Path, depth: int = 14) -> nn.Module:
    """The checkpoint's weights in a fresh model, without the toolkit's loader."""
    model = cifar_resnet(depth, **CKPT_KWARGS)
    model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    return model.eval()


def _parse_route(text: str) -> list[int]:
    out: list[int] = []
    for part in str(text).split(","):
        if "-" in part:
            a, b = part.split("-")
            out += range(int(a), int(b) + 1)
        elif part:
            out.append(int(part))
    return out


def _reference_wrong(model: nn.Module, route: list[int], images: int, batch: int) -> int:
    """Mistakes of a deletions-only route, one hand-written forward per batch."""
    blocks = cifar_blocks(model)
    plan = [(blk, i in route) for i, blk in enumerate(blocks)]
    data = load_dataset("embedded", "test", limit=images)
    wrong = 0
    with torch.no_grad():
        for start in range(0, len(data), batch):
            items = [data[i] for i in range(start, min(start + batch, len(data)))]
            x = torch.stack([im for im, _ in items])
            y = torch.tensor([label for _, label in items])
            wrong += int((cifar_forward(model, x, plan).argmax(1) != y).sum())
    return wrong


def _sweep_args(ckpt: Path, out: Path, kind: str, images: int, *extra: str) -> list[str]:
    return [
        "sweep",
        kind,
        "--model",
        str(ckpt),
        "--dataset",
        "embedded",
        "--limit",
        str(images),
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


MULTI = ("--max-k", "4", "--samples", "4", "--chunk", "1", "--seed", "5")  # 17 configurations


def _kill_mid_way(args: list[str], out: Path, full: list[str], cwd: Path) -> int:
    """Start the sweep, read the table while it grows, SIGKILL it once it holds a row.

    Returns how many configurations the table held after the kill (-1 if the run finished
    before it could be killed)."""

    def two_rows() -> bool:
        if not out.exists():
            return False
        lines = out.read_text().splitlines()
        # Always a whole table: it parses, and it is a prefix of the finished one.
        pd.read_csv(out)
        assert lines == full[: len(lines)]
        json.loads(out.with_suffix(".json").read_text())
        return len(lines) - 1 >= 2

    if not kill_mid_run(args, cwd, two_rows):
        return -1
    return len(pd.read_csv(out))


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_the_uninterrupted_table(
    checkpoint: Path, tmp_path: Path
) -> None:
    images = 400
    for _attempt in range(3):
        whole = tmp_path / f"whole_{images}.csv"
        _run(["-m", "resnet_ensemble", *_sweep_args(checkpoint, whole, "multi", images, *MULTI)],
             tmp_path)  # fmt: skip
        full = whole.read_text().splitlines()
        assert len(full) == 1 + 17

        killed = tmp_path / f"killed_{images}.csv"
        args = _sweep_args(checkpoint, killed, "multi", images, *MULTI)
        rows = _kill_mid_way(args, killed, full, tmp_path)
        if 1 <= rows < 17:
            break
        images *= 2  # it finished before the kill: give it more work and try again
    else:
        pytest.fail("could not kill the sweep mid-way in 3 attempts")

    assert json.loads(killed.with_suffix(".json").read_text())["complete"] is False
    again = CliRunner().invoke(cli, args)  # refused before any work: in-process is enough
    assert again.exit_code == 1 and "already exists; pass --resume" in again.stderr

    resumed = _run(["-m", "resnet_ensemble", *args, "--resume"], tmp_path)
    assert f"({rows} already done)" in resumed.stderr
    assert killed.read_text().splitlines() == full  # same rows, same order, same text
    table = pd.read_csv(killed)
    assert not table["config"].duplicated().any()
    assert json.loads(killed.with_suffix(".json").read_text())["complete"] is True

    # A few rows against a hand-written loop: baseline, a k=1 and the k=4 rows.
    model = _reference_model(checkpoint)
    for i in (0, 1, 16):
        row = table.iloc[i]
        route = _parse_route(row["route"])
        deleted = _parse_route(row["deleted"]) if i else []
        assert _omitted(tuple(route), 6) == deleted and len(deleted) == row["k"]
        assert int(row["wrong"]) == _reference_wrong(model, route, images, batch=256)
        assert row["images"] == images
        assert row["error"] == pytest.approx(row["wrong"] / images, abs=1e-15)


@pytest.mark.slow
def test_torchrun_with_two_processes_gives_the_single_process_table(
    checkpoint: Path, tmp_path: Path
) -> None:
    images = 37  # odd: the two shards differ in size, and no image may be lost or doubled
    extra = ("--batch-size", "8")
    one = tmp_path / "one.csv"
    _run(["-m", "resnet_ensemble", *_sweep_args(checkpoint, one, "single", images, *extra)],
         tmp_path)  # fmt: skip
    two = tmp_path / "two.csv"
    torchrun = [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "resnet_ensemble",
    ]  # fmt: skip
    _run([*torchrun, *_sweep_args(checkpoint, two, "single", images, *extra)], tmp_path)
    a, b = pd.read_csv(one), pd.read_csv(two)
    assert len(a) == 1 + 6
    assert (b["images"] == images).all()
    for column in ("config", "route", "error", "wrong", "images"):
        assert a[column].tolist() == b[column].tolist(), column
    assert json.loads(two.with_suffix(".json").read_text())["world_size"] == 2
    # The counts are the hand-written loop's, for the full network and two lesions.
    model = _reference_model(checkpoint)
    for i in (0, 3, 6):
        route = _parse_route(a.iloc[i]["route"])
        assert int(a.iloc[i]["wrong"]) == _reference_wrong(model, route, images, batch=8)
    assert a["wrong"].nunique() > 1  # the lesions really change the answers


@pytest.mark.slow
def test_torchrun_ranks_all_stop_with_rank_0s_refusal(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "single.csv"
    torchrun = [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "resnet_ensemble",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, *torchrun, *_sweep_args(checkpoint, out, "single", 8)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    refusals = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    # Both ranks give rank 0's one-line reason (not a lost connection to rank 0).
    assert len(refusals) == 2, proc.stderr
    assert all("afile is a file, not a folder" in ln for ln in refusals)


def test_sweep_help_is_per_kind_and_the_kinds_agree_with_the_library() -> None:
    from resnet_ensemble.cli import sweep_cmd
    from resnet_ensemble.studies.sweeps import SWEEP_KINDS

    assert sweep_cmd.KINDS == SWEEP_KINDS
    multi = CliRunner().invoke(cli, ["sweep", "multi", "--help"]).output
    single = CliRunner().invoke(cli, ["sweep", "single", "--help"]).output
    assert "--max-k" in multi and "--max-swaps" not in multi
    assert "--max-k" not in single and "--samples" not in single and "--model" in single


def test_sweep_ends_with_what_it_found_and_shows_progress_off_a_terminal(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resnet_ensemble.cli import common

    monkeypatch.setattr(common, "PROGRESS_EVERY_S", 0.0)  # a line at every update
    out = tmp_path / "multi.csv"
    args = _sweep_args(checkpoint, out, "multi", 32, "--max-k", "2", "--samples", "2")
    result = CliRunner().invoke(cli, [*args, "--chunk", "1"])
    assert result.exit_code == 0, result.output
    assert "k = 1 deleted" in result.stdout and "k = 2 deleted" in result.stdout
    assert "full network" in result.stdout and "wrote 5 rows" in result.stdout
    assert "sweep multi: " in result.stderr and "% )" not in result.stderr
    assert "s left" in result.stderr


@pytest.fixture(scope="module")
def resnet20_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-20: three blocks per stage, so that swaps remain when the first block of every
    stage stays."""
    return _saved_resnet(tmp_path_factory.mktemp("ckpt20"), 20, bn_seed=2)


def test_sweep_cli_runs_the_authors_protocols(resnet20_checkpoint: Path, tmp_path: Path) -> None:
    reorder = tmp_path / "reorder.csv"
    args = _sweep_args(resnet20_checkpoint, reorder, "reorder", 16, "--max-swaps", "4")
    result = CliRunner().invoke(cli, [*args, "--samples", "6", "--keep-stage-first"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(reorder)
    assert len(table) == 1 + 4 * 6  # every draw is a row
    for route in table["route"]:
        order = _parse_route(route)
        assert sorted(order) == list(range(9)) and all(order[i] == i for i in FIRSTS_20)
    assert json.loads(reorder.with_suffix(".json").read_text())["keep_stage_first"] is True
    assert "median" in result.stdout  # the summary shows the median beside the mean

    multi = tmp_path / "multi.csv"
    args = _sweep_args(resnet20_checkpoint, multi, "multi", 16, "--max-k", "3", "--samples", "5")
    result = CliRunner().invoke(cli, [*args, "--eligible", "not-stage-first"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(multi)
    deleted = table.loc[table["config"] != "baseline", "deleted"].astype(str)
    assert all(not set(_parse_route(d)) & FIRSTS_20 for d in deleted)
    model = _reference_model(resnet20_checkpoint, depth=20)
    row = table.iloc[-1]  # the table's error against a hand-written forward of that route
    assert row["wrong"] == _reference_wrong(model, _parse_route(row["route"]), 16, 256)
    assert json.loads(multi.with_suffix(".json").read_text())["eligible"] == "not-stage-first"
    # Resuming with the other protocol would mix two experiments: refused.
    again = CliRunner().invoke(cli, [*args, "--eligible", "all", "--resume"])
    assert again.exit_code == 1 and "eligible='not-stage-first'" in again.stderr


def test_a_sweep_without_out_writes_under_runs_not_results(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["sweep", "single", "--model", str(checkpoint), "--dataset", "embedded"]
    result = CliRunner().invoke(cli, [*args, "--limit", "8", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "sweep_single.csv").is_file()
    assert not (tmp_path / "results").exists()


def test_a_sweep_of_too_many_configurations_is_refused_before_drawing_any() -> None:
    found = anatomy(cifar_resnet(20))
    with pytest.raises(ValueError, match="300,000,000 configurations"):
        multi_deletions(found, max_k=3, samples=100_000_000)
    with pytest.raises(ValueError, match="lower --samples"):
        random_swaps(found, max_swaps=1000, samples=1000)


def test_a_truncated_single_summary_says_how_many_blocks_it_leaves_out():
    """Ten blocks: the three costliest and the three cheapest are shown, and a row between
    them says that 4 others are left out; with five blocks nothing is left out, and no row says
    so."""
    from resnet_ensemble.studies.sweeps import summarize_sweep

    def frame(n: int) -> pd.DataFrame:
        rows = [{"sweep": "single", "config": "baseline", "deleted": None, "error": 0.1}]
        rows += [
            {"sweep": "single", "config": f"drop={b}", "deleted": b,
             "deleted_name": f"layer{b}", "error": 0.1 + 0.01 * b}
            for b in range(n)
        ]  # fmt: skip
        return pd.DataFrame(rows)

    ten = summarize_sweep(frame(10))
    names = ten["configuration"].tolist()
    assert names[1:4] == [f"without block {b} (layer{b})" for b in (9, 8, 7)]
    assert names[4] == "... 4 other blocks not shown (all in the table)"
    assert math.isnan(ten["error"].iloc[4])
    assert names[5:8] == [f"without block {b} (layer{b})" for b in (2, 1, 0)]
    assert names[8:] == ["mean of 10 single deletions", "median of 10 single deletions"]
    five = summarize_sweep(frame(5))["configuration"].tolist()
    assert len(five) == 1 + 5 + 2 and not any("not shown" in c for c in five)
