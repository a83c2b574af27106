"""Bounds on user input (issues 23 and 24), in-process: what is accepted must still be, and what
is refused is refused in one line. ``test_hostile_input.py`` runs the hostile cases as real
processes under a memory limit."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save

from resnet_ensemble.bounds import BOUNDS, check_count, regular_file_size
from resnet_ensemble.cli.common import FiniteFloat, bounded
from resnet_ensemble.data.text import decode_utf8
from resnet_ensemble.models.checkpoints import (
    check_safetensors_header,
    check_state_dict,
    read_state_dict,
)
from resnet_ensemble.viz.plots import BadValues, check_values

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def test_check_count_accepts_its_range_and_refuses_the_rest_in_one_line() -> None:
    bound = BOUNDS["samples"]
    assert check_count("samples", bound.lo) == bound.lo
    assert check_count("samples", bound.hi) == bound.hi
    for bad in (bound.lo - 1, bound.hi + 1, 10**400):
        with pytest.raises(ValueError, match=r"--samples must be from 1 to 100,000 \(") as err:
            check_count("samples", bad)
        assert "\n" not in str(err.value) and len(str(err.value)) < 200
    with pytest.raises(ValueError, match="whole number"):
        check_count("samples", True)
    with pytest.raises(ValueError, match="whole number"):
        check_count("samples", 2.5)


def test_click_types_take_the_bounds_and_refuse_nan() -> None:
    @click.command()
    @click.option("--n", type=bounded("batches"))
    @click.option("--x", type=FiniteFloat(0, 1))
    def cmd(n: int | None, x: float | None) -> None:
        click.echo(f"{n} {x}")

    runner = CliRunner()
    assert runner.invoke(cmd, ["--n", "10000", "--x", "0.5"]).output == "10000 0.5\n"
    for args in (["--n", "10001"], ["--n", "0"], ["--x", "nan"], ["--x", "inf"]):
        result = runner.invoke(cmd, args)
        assert result.exit_code == 2, args


def test_regular_file_size_reads_no_special_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    assert regular_file_size(tmp_path / "f", "table", 5) == 5
    with pytest.raises(ValueError, match="is 5 bytes, more than the 4 bytes a table file"):
        regular_file_size(tmp_path / "f", "table", 4)
    os.mkfifo(tmp_path / "p")
    with pytest.raises(ValueError, match="is a FIFO, not a table file"):
        regular_file_size(tmp_path / "p", "table", 1 << 20)
    with pytest.raises(ValueError, match="is a directory"):
        regular_file_size(tmp_path, "table", 1 << 20)
    with pytest.raises(FileNotFoundError):
        regular_file_size(tmp_path / "missing", "table", 1 << 20)


@pytest.mark.parametrize(
    "dtype",
    [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.uint8,
     torch.bool, torch.float8_e4m3fn, torch.float8_e5m2],
)  # fmt: skip
def test_headers_written_by_the_safetensors_library_pass_the_check(dtype: torch.dtype) -> None:
    tensors = {
        "matrix": torch.zeros(3, 5).to(dtype),
        "scalar": torch.zeros(()).to(dtype),
        "empty": torch.zeros(0, 4).to(dtype),
    }
    data = save(tensors)  # the format's own writer is the reference
    header = check_safetensors_header(data, len(data), Path("w.safetensors"))
    assert {k: v["shape"] for k, v in header.items() if k != "__metadata__"} == {
        "matrix": [3, 5],
        "scalar": [],
        "empty": [0, 4],
    }


def test_a_safetensors_file_cut_short_is_refused_before_the_library_reads_it(
    tmp_path: Path,
) -> None:
    data = save({"w": torch.arange(8, dtype=torch.float32)})
    (tmp_path / "cut.safetensors").write_bytes(data[:-4])
    with pytest.raises(ValueError, match=r"cut.safetensors .*tensor 'w' lies at bytes 0-32"):
        read_state_dict(tmp_path / "cut.safetensors")
    (tmp_path / "whole.safetensors").write_bytes(data)
    state, _sha = read_state_dict(tmp_path / "whole.safetensors")
    assert torch.equal(state["w"], torch.arange(8, dtype=torch.float32))


def test_state_dict_dtypes_that_cast_cleanly_pass_and_quantised_ones_are_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    good = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in
            model.state_dict().items()}  # fmt: skip
    check_state_dict(model, good, "w.pt", "net")  # half precision and the int64 counter
    for dtype, said in ((torch.int8, r"int8 \(integer"), (torch.float8_e5m2, "8-bit float")):
        bad = {**good, "0.weight": good["0.weight"].to(dtype)}
        with pytest.raises(ValueError, match=rf"w.pt stores 0.weight as .*{said}"):
            check_state_dict(model, bad, "w.pt", "net")
    with pytest.raises(ValueError, match="num_batches_tracked as float32"):
        check_state_dict(model, {**good, "1.num_batches_tracked": torch.zeros(())}, "w.pt", "net")


def test_text_that_is_not_utf8_is_refused_at_its_first_bad_byte() -> None:
    assert decode_utf8("naïve ☃".encode(), "t.txt") == "naïve ☃"
    with pytest.raises(ValueError, match=r"t.txt is not UTF-8 text: byte 4 \(0xff\)"):
        decode_utf8(b"abcd\xffef\xfe", "t.txt")
    with pytest.raises(ValueError, match=r"byte 2 \(0xe2\)"):  # a character cut short at the end
        decode_utf8("ab☃".encode()[:-1], "t.txt")


def test_plotted_values_are_checked_by_kind() -> None:
    gradients = pd.DataFrame({"length": [0, 1], "num_paths": [1, 1], "exact_norm": [0.5, 0.2],
                              "sampled_mean": [float("nan"), 0.1]})  # fmt: skip
    check_values(Path("g.csv"), "gradients", gradients, {})  # NaN: not sampled
    with pytest.raises(BadValues, match=r"g.csv: exact_norm must be a finite number of at least 0"):
        check_values(Path("g.csv"), "gradients", gradients.assign(exact_norm=[1.0, -1.0]), {})
    sweep = pd.DataFrame({"config": ["baseline", "drop=0"], "perplexity": [12.0, 0.5]})
    with pytest.raises(BadValues, match="perplexity must be a finite number of at least 1, but "
                       "line 3 holds 0.5"):  # fmt: skip
        check_values(Path("s.csv"), "sweep", sweep, {"metric": "perplexity"})


@pytest.mark.skipif(not FMNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_verify_re_measures_the_embedded_checkpoint_and_otherwise_shows_its_record() -> None:
    """The embedded checkpoint records 6.89% on the 10,000 Fashion-MNIST test images, measured
    by ``train``'s own evaluation: --verify must find the same."""
    from resnet_ensemble.studies.experiment import open_experiment

    notes: list[str] = []
    open_experiment(limit=8, on_note=notes.append)
    assert "records a test error of 6.89% on 10,000 fashion-mnist test images" in notes[0]
    assert "trusted (--verify re-measures it)" in notes[0]
    open_experiment(limit=8, verify=True, on_note=notes.append)
    assert "measures 6.89% test error on 10,000 fashion-mnist test images" in notes[1]


def test_a_figure_that_fails_to_draw_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every figure is rendered before the first is written: the second failing leaves the
    first unwritten too."""
    from resnet_ensemble.viz import plots
    from tests.test_plots import make_tables

    tables = make_tables(tmp_path / "tables")
    real = plots._figure_jobs

    def jobs_then_failure(loaded):  # type: ignore[no-untyped-def]
        def fail(**_kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError("drawing failed")

        return [*real(loaded)[:1], ("broken", fail)]

    monkeypatch.setattr(plots, "_figure_jobs", jobs_then_failure)
    with pytest.raises(RuntimeError, match="drawing failed"):
        plots.plot_all([tables[0]], tmp_path / "figs", formats=["png"])
    assert not (tmp_path / "figs").exists()


def test_a_hugging_face_config_that_does_not_load_is_named(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from resnet_ensemble.models.specs import load_model

    (tmp_path / "config.json").write_text('{"model_type": "gpt2",\n')
    with pytest.raises(ValueError, match=r"config.json is not a readable Hugging Face config \("):
        load_model(f"hf:{tmp_path}")
