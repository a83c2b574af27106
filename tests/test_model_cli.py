"""Models from the command line (run as real processes): ``torchvision:NAME --weights-file``
built to the weights' first convolution and head, ``--model-arg KEY=VALUE`` for torchvision,
timm and factories, and ``hf:`` folders without a tokenizer (``--tokenizer PATH``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from resnet_ensemble.data.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 24


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(cwd or "")]))}
    env.pop("RESNET_ENSEMBLE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip


def _ok(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _one_line_error(proc: subprocess.CompletedProcess, *, code: int = 1) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    # transformers' own warnings about the tiny test config come first, prefixed as its own
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("[transformers]")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize(("kernel", "padding"), [(7, 3), (3, 1)])
def test_torchvision_weights_file_with_one_channel_and_ten_classes(
    tmp_path: Path, kernel: int, padding: int
) -> None:
    """A ResNet-18 for Fashion-MNIST (1 channel, 10 classes; a 7x7 or a CIFAR-style 3x3 first
    convolution), saved as a plain state dict, loads from the weights alone."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(1, 64, kernel, stride=2, padding=padding, bias=False)
    for m in net.modules():  # re-drawn BatchNorm statistics, so that the outputs differ
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    net.eval()
    weights = tmp_path / "fmnist_resnet18.pt"
    torch.save(net.state_dict(), weights)

    data = load_dataset("embedded", "test", limit=IMAGES)
    x = torch.stack([data[i][0] for i in range(IMAGES)])
    y = torch.tensor([data[i][1] for i in range(IMAGES)])
    with torch.no_grad():
        wrong = int((net(x).argmax(1) != y).sum())

    spec = ["--model", "torchvision:resnet18", "--weights-file", str(weights)]
    record = _ok(
        _run(*spec, "--dataset", "embedded", "--limit", str(IMAGES), "--device", "cpu", "--json")
    )
    assert record["model"] == "torchvision:resnet18" and record["num_classes"] == 10
    assert record["error_full_pct"] == pytest.approx(100 * wrong / IMAGES, abs=1e-9)
    blocks = _run("blocks", *spec, "--json")
    assert blocks.returncode == 0, blocks.stderr
    assert len(blocks.stdout.strip().splitlines()) == 8


def test_model_arg_builds_a_timm_vit_for_28x28_images(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    vit = ["--model", "timm:vit_tiny_patch16_224", "--dataset", "embedded", "--limit", "8"]
    small = [
        f"--model-arg={a}"
        for a in ("img_size=28", "patch_size=7", "depth=2", "embed_dim=32", "num_heads=2")
    ]
    record = _ok(_run(*vit, *small, "--drop-block", "-1", "--json"))
    assert record["num_blocks"] == 4 and record["dropped_blocks"] == [3]  # 2 layers, 2 units
    assert "random init" in record["model"] and record["images"] == 8
    # Without img_size the 224-pixel model refuses the 28x28 images.
    smaller = [a for a in small if "img_size" not in a]
    assert _run(*vit, *smaller, "--json").returncode == 1


def test_model_arg_reaches_torchvision_and_factories(tmp_path: Path) -> None:
    (tmp_path / "mynets.py").write_text(
        "from resnet_ensemble.models import cifar_resnet\n\n\n"
        "def net(depth=8, num_classes=10, in_channels=1):\n"
        "    return cifar_resnet(depth, num_classes=num_classes, in_channels=in_channels)\n"
    )
    default = _run("blocks", "--model", "mynets:net", "--json", cwd=tmp_path)
    deeper = _run("blocks", "--model", "mynets:net", "--model-arg", "depth=14", "--json",
                  cwd=tmp_path)  # fmt: skip
    assert default.returncode == 0 and deeper.returncode == 0, default.stderr + deeper.stderr
    assert len(default.stdout.splitlines()) == 3 and len(deeper.stdout.splitlines()) == 6

    def params(*extra: str) -> list[int]:
        proc = _run("blocks", "--model", "torchvision:resnet50", *extra, "--json")
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line)["parameters"] for line in proc.stdout.splitlines()]

    narrow = params("--model-arg", "width_per_group=32")
    wide = params()
    assert len(narrow) == len(wide) == 16 and all(n < w for n, w in zip(narrow, wide, strict=True))
    line = _one_line_error(
        _run("blocks", "--model", "torchvision:resnet18", "--model-arg", "width_per_group=32")
    )
    assert "cannot build torchvision:resnet18 with width_per_group=32" in line


def test_an_hf_folder_without_a_tokenizer_says_to_give_one(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from .test_text_data import TEXT, make_lm_folder

    with_tok = make_lm_folder(tmp_path / "with_tokenizer")
    bare = tmp_path / "bare"  # a model built from a config: weights, no tokenizer
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(with_tok / name, bare / name)
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT)
    run = ["--dataset", f"text:{text}", "--limit", "2", "--device", "cpu", "--drop-block", "1"]
    line = _one_line_error(_run("--model", f"hf:{bare}", *run))
    assert "has no tokenizer" in line and "--tokenizer PATH" in line
    expected = _ok(_run("--model", f"hf:{with_tok}", *run, "--metric", "perplexity", "--json"))
    for tokenizer in (with_tok, with_tok / "tokenizer.json"):
        got = _ok(
            _run("--model", f"hf:{bare}", *run, "--tokenizer", str(tokenizer), "--metric",
                 "perplexity", "--json")
        )  # fmt: skip
        assert got["perplexity_full"] == expected["perplexity_full"]
        assert got["perplexity_lesioned"] == expected["perplexity_lesioned"]
    line = _one_line_error(
        _run("--tokenizer", str(with_tok), "--limit", "2", "--device", "cpu"), code=1
    )
    assert "--tokenizer tokenises a text:PATH dataset" in line
