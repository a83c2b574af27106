"""What a new user meets first: fast help, legible reprs, errors that point somewhere real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from torch import nn

from resnet_ensemble import residual_blocks
from resnet_ensemble.blocks.registry import ADAPTER_DOC
from resnet_ensemble.cli import cli
from resnet_ensemble.cli.common import json_line
from resnet_ensemble.models import cifar_resnet

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [["--help"], ["sweep", "multi", "--help"], ["plot", "--help"]])
def test_help_does_not_import_torch(args: list[str]) -> None:
    script = (
        "import sys\n"
        "from resnet_ensemble.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("False"), proc.stdout


def test_every_subcommand_loads_and_has_the_listed_help() -> None:
    from resnet_ensemble.cli import _SUBCOMMANDS

    ctx = cli.make_context("ensemble-lesion", [], resilient_parsing=True)
    for name in _SUBCOMMANDS:
        assert cli.get_command(ctx, name) is not None, name


def test_a_block_prints_in_one_short_line() -> None:
    text = repr(residual_blocks(cifar_resnet(20))[4])
    assert text == (
        "Block(index=4, name='layer2.1', stage=1, downsamples=False, module=BasicBlock)"
    )


def test_no_blocks_names_the_class_module_and_an_installed_guide() -> None:
    with pytest.raises(ValueError) as info:
        residual_blocks(nn.Sequential(nn.Linear(2, 2)))
    assert "Sequential (from torch.nn.modules.container)" in str(info.value)
    assert ADAPTER_DOC in str(info.value) and Path(ADAPTER_DOC).is_file()


def test_json_numbers_carry_no_float_noise() -> None:
    record = json.loads(json_line({"a": 2.600000000000001, "b": [0.1 + 0.2], "n": 3}))
    assert record == {"a": 2.6, "b": [0.3], "n": 3}


def test_blocks_labels_random_weights() -> None:
    result = CliRunner().invoke(cli, ["blocks", "--model", "resnet8"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("resnet8 (random init): 3 residual blocks")
