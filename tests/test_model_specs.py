"""--model timm:NAME, hf:PATH and package.module:callable with --weights-file (.safetensors or a
torch state dict), checked against the same weights evaluated by hand on real Fashion-MNIST."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from resnet_ensemble.cli import cli
from resnet_ensemble.data import load_dataset
from resnet_ensemble.model_specs import read_state_dict

from .zoo_reference import randomize_norms, zeroed

timm = pytest.importorskip("timm")
FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="dataset-fashion-mnist not installed")
LIMIT = 48


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("fashion-mnist", "test", limit=LIMIT)
    xs, ys = zip(*(data[i] for i in range(len(data))), strict=True)
    return torch.stack(xs), torch.as_tensor(ys)


def _error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100 * float((model(x).argmax(1) != y).float().mean())


@pytest.fixture
def timm_weights(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = randomize_norms(timm.create_model("resnet18", num_classes=10, in_chans=1)).eval()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, model


@needs_fmnist
def test_timm_resnet18_with_safetensors_weights_on_fashion_mnist(timm_weights) -> None:
    path, model = timm_weights
    code, out = _run(
        "--model",
        "timm:resnet18",
        "--weights-file",
        str(path),
        "--dataset",
        "fashion-mnist",
        "--drop-block",
        "3",
        "--limit",
        str(LIMIT),
        "--json",
    )
    assert code == 0, out
    record = json.loads(out)
    x, y = _images()
    with zeroed([model.layer2[1].bn2]):  # block 3 = layer2.1
        lesioned = _error(model, x, y)
    assert record["error_full_pct"] == pytest.approx(_error(model, x, y))
    assert record["error_lesioned_pct"] == pytest.approx(lesioned)
    assert "random" not in record["model"] and record["dropped_names"] == ["layer2.1"]


@needs_fmnist
def test_torch_state_dict_and_metric_loss(timm_weights, tmp_path: Path) -> None:
    _, model = timm_weights
    path = tmp_path / "w.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    code, out = _run(
        "--model",
        "timm:resnet18",
        "--weights-file",
        str(path),
        "--dataset",
        "fashion-mnist",
        "--limit",
        str(LIMIT),
        "--metric",
        "loss",
        "--json",
    )
    assert code == 0, out
    x, y = _images()
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(model(x), y))
    assert json.loads(out)["loss_full"] == pytest.approx(loss, rel=1e-5)


@needs_fmnist
def test_random_weights_are_labelled() -> None:
    code, out = _run(
        "--model", "timm:resnet18", "--dataset", "fashion-mnist", "--limit", "8", "--json"
    )
    assert code == 0, out
    assert json.loads(out)["model"] == "timm:resnet18 (random init)"


def test_weights_that_do_not_fit_the_data_fail_in_one_line(timm_weights) -> None:
    path, _ = timm_weights
    code, out = _run(
        "--model",
        "timm:resnet18",
        "--weights-file",
        str(path),
        "--dataset",
        "cifar10",
        "--drop-block",
        "1",
    )
    assert code == 1 and out.count("\n") == 1
    assert "has 1 input channels, but the data has 3" in out
    code, out = _run("blocks", "--model", "timm:resnet_nonexistent")
    assert code == 1 and "unknown timm model" in out


def test_state_dicts_read_from_either_format_are_the_same(timm_weights, tmp_path: Path) -> None:
    path, model = timm_weights
    torch.save(model.state_dict(), tmp_path / "w.pth")
    a, _ = read_state_dict(path)
    b, _ = read_state_dict(tmp_path / "w.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


FACTORY = """
import torch
from torch import nn
from resnet_ensemble import Anatomy, Block, register_adapter


class Res(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self, num_classes=10, in_channels=3, width=8):
        super().__init__()
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        self.body = nn.Sequential(*(Res(width) for _ in range(3)))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.body(self.inp(x)).mean((2, 3)))


class NetAdapter:
    name = "mypkg-net"

    def matches(self, model):
        return isinstance(model, Net)

    def anatomy(self, model):
        blocks = tuple(
            Block(index=i, name=f"body.{i}", stage=0, downsamples=False, module=b,
                  residual=lambda x, b=b: b.bn(b.conv(x)), shortcut=lambda x: x,
                  post=torch.relu, owner=b)
            for i, b in enumerate(model.body)
        )
        return Anatomy(blocks, stem=model.inp, head=lambda h: model.fc(h.mean((2, 3))),
                       example_input=lambda: torch.zeros(1, model.inp.in_channels, 28, 28))


register_adapter(NetAdapter())


def make_net(num_classes=10, in_channels=3):
    return Net(num_classes, in_channels)
"""


@needs_fmnist
def test_a_users_factory_with_its_own_adapter(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "mypkg_specs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from mypkg_specs.nets import make_net

    torch.manual_seed(1)
    model = randomize_norms(make_net(num_classes=10, in_channels=1)).eval()
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    code, out = _run(
        "--model",
        "mypkg_specs.nets:make_net",
        "--weights-file",
        "w.safetensors",
        "--dataset",
        "fashion-mnist",
        "--drop-block",
        "1",
        "--limit",
        str(LIMIT),
        "--json",
    )
    assert code == 0, out
    record = json.loads(out)
    x, y = _images()
    with zeroed([model.body[1].bn]):
        lesioned = _error(model, x, y)
    assert record["error_full_pct"] == pytest.approx(_error(model, x, y))
    assert record["error_lesioned_pct"] == pytest.approx(lesioned)


def test_hf_folder_lists_its_blocks(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=40,
        n_layer=2,
        n_embd=16,
        n_head=2,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "tiny-gpt2")
    code, out = _run("blocks", "--model", f"hf:{tmp_path / 'tiny-gpt2'}", "--json")
    assert code == 0, out
    names = [json.loads(line)["name"] for line in out.splitlines()]
    assert names == [
        "transformer.h.0.attn",
        "transformer.h.0.mlp",
        "transformer.h.1.attn",
        "transformer.h.1.mlp",
    ]
    code, out = _run("--model", f"hf:{tmp_path / 'tiny-gpt2'}", "--dataset", "fashion-mnist")
    assert code == 1 and "language model" in out


@needs_fmnist
def test_hf_image_classifier_folder_on_fashion_mnist(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10
    )
    torch.manual_seed(2)
    model = randomize_norms(transformers.ResNetForImageClassification(config)).eval()
    model.save_pretrained(tmp_path / "tiny-resnet")
    code, out = _run(
        "--model",
        f"hf:{tmp_path / 'tiny-resnet'}",
        "--dataset",
        "fashion-mnist",
        "--drop-block",
        "1",
        "--limit",
        str(LIMIT),
        "--json",
    )
    assert code == 0, out
    x, y = _images()
    layer = model.resnet.encoder.stages[1].layers[0]
    with torch.no_grad(), zeroed([layer.layer]):
        wrong = 100 * float((model(x).logits.argmax(1) != y).float().mean())
    record = json.loads(out)
    assert record["error_lesioned_pct"] == pytest.approx(wrong)
    assert "random" not in record["model"]
