"""Blocks by name and from the end: ``resolve_block`` on the built-in nets, a torchvision
ResNet-18 and a ViT against the module names written out by hand, and the same references
through ``lesion``, ``route``, ``reorder``, ``Parallel`` and ``--drop-block`` (a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from resnet_ensemble import Parallel, evaluate_routes, lesion, reorder, resolve_block, route
from resnet_ensemble.models import cifar_resnet, plain_net

from .conftest import randomize_batchnorm, save_tiny_checkpoint, tiny_vit

ROOT = Path(__file__).resolve().parents[1]

# The residual blocks' module names, written out from torchvision's and our layouts.
RESNET18 = [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]
RESNET20 = [f"layer{s}.{i}" for s in range(1, 4) for i in range(3)]
PLAIN14 = [f"layer{s}.{i}" for s in range(1, 4) for i in range(2)]
VIT2 = [
    f"encoder.layers.encoder_layer_{i}.{part}"
    for i in range(2)
    for part in ("self_attention", "mlp")
]


@pytest.mark.parametrize(
    ("build", "names"),
    [
        (lambda: torchvision.models.resnet18(), RESNET18),
        (lambda: cifar_resnet(20), RESNET20),
        (lambda: cifar_resnet(20, preact=True), RESNET20),
        (lambda: plain_net(14), PLAIN14),
        (tiny_vit, VIT2),
    ],
    ids=["torchvision-resnet18", "resnet20", "preact-resnet20", "plain14", "vit"],
)
def test_every_name_index_and_negative_index_resolves(build, names: list[str]) -> None:  # noqa: ANN001
    model = build()
    n = len(names)
    for i, name in enumerate(names):
        assert resolve_block(model, name) == i
        assert resolve_block(model, i) == i
        assert resolve_block(model, i - n) == i  # -1 is the last block
        assert resolve_block(model, str(i - n)) == i  # as the command line gives it
        assert resolve_block(model, f" {i} ") == i
    with pytest.raises(ValueError, match=rf"block {n} is out of range.*0\.\.{n - 1}"):
        resolve_block(model, n)
    with pytest.raises(ValueError, match=rf"block {-n - 1} is out of range.*-{n}\.\.-1"):
        resolve_block(model, -n - 1)


def test_unknown_names_are_refused_with_the_closest_ones() -> None:
    model = torchvision.models.resnet18()
    with pytest.raises(ValueError, match=r"no block named 'layer2\.2'; did you mean layer2\.1"):
        resolve_block(model, "layer2.2")
    with pytest.raises(ValueError, match=r"no block named 'fc'.*layer1\.0, \.\.\., layer4\.1"):
        resolve_block(model, "fc")
    with pytest.raises(ValueError, match=r"block index 1\.5 in drop is not an integer"):
        resolve_block(model, 1.5, "drop")
    with pytest.raises(ValueError, match="not an integer"):
        resolve_block(model, True)


def test_names_and_negative_indices_run_the_same_interventions() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(20, num_classes=10)).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        with lesion(model, drop=[4, 8]):
            by_index = model(x)
        with lesion(model, drop=["layer2.1", -1]):
            by_ref = model(x)
        assert torch.equal(by_index, by_ref) and not torch.equal(by_index, model(x))
        with lesion(model, drop="layer3.2"):
            one = model(x)
        with lesion(model, drop=8):
            assert torch.equal(one, model(x))
        with route(model, [0, 2, 1, 3, 4, 5, 6, 7, 8]):
            swapped = model(x)
        with route(model, ["layer1.0", "layer1.2", "layer1.1", 3, 4, 5, -3, -2, -1]):
            assert torch.equal(swapped, model(x))
        with reorder(model, [0, 2, 1, 3, 4, 5, 6, 7, 8]):
            assert torch.equal(swapped, model(x))
        with route(model, [0, Parallel([1, 2]), 3, 4, 5, 6, 7, 8]):
            parallel = model(x)
        with route(model, [0, Parallel(["layer1.1", "layer1.2"]), 3, 4, 5, 6, 7, 8]):
            assert torch.equal(parallel, model(x))
    with pytest.raises(ValueError, match="listed more than once"):
        with lesion(model, drop=[8, -1]):
            pass


def test_evaluate_routes_takes_names_and_refuses_a_flat_list_of_them() -> None:
    model = cifar_resnet(8).eval()
    data = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))]
    named = evaluate_routes(model, data, [["layer1.0", "layer3.0"], [0, -1]])
    assert named[0] == named[1]
    with pytest.raises(ValueError, match="wrap it in a list"):
        evaluate_routes(model, data, ["layer1.0", "layer3.0"])


def _cli_json(ckpt: Path, *refs: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RESNET_ENSEMBLE_DEBUG", None)
    drop = [a for r in refs for a in ("--drop-block", r)]
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *drop, "--model", str(ckpt), "--limit", "40",
         "--device", "cpu", "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_drop_block_by_name_and_from_the_end_on_the_command_line(tmp_path: Path) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "resnet14.pt", 14, 3)  # 6 blocks, layer1.0..layer3.1
    by_index = _cli_json(ckpt, "5", "2")
    by_ref = _cli_json(ckpt, "-1", "layer2.0")
    assert by_ref["dropped_blocks"] == [5, 2]  # tables and records keep the 0-based index
    assert by_ref["dropped_names"] == ["layer3.1", "layer2.0"]
    for key in ("error_full_pct", "error_lesioned_pct", "dropped_blocks"):
        assert by_ref[key] == by_index[key]


def test_an_unknown_block_name_is_a_usage_error() -> None:
    from click.testing import CliRunner

    from resnet_ensemble.cli import cli

    result = CliRunner().invoke(cli, ["--drop-block", "layer9.0", "--limit", "4"])
    assert result.exit_code == 2
    assert "no block named 'layer9.0'" in result.stderr and "Traceback" not in result.output
