"""--model timm:NAME, hf:PATH and package.module:callable with --weights-file (.safetensors or a
torch state dict), checked against the same weights evaluated by hand on real Fashion-MNIST."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import save_file

from resnet_ensemble.cli import cli
from resnet_ensemble.data.datasets import load_dataset
from resnet_ensemble.models.checkpoints import read_state_dict
from resnet_ensemble.models.specs import load_model

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


def _measure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, metric: str) -> float:
    """Top-1 error in percent, or the mean cross-entropy, of the model as it runs itself."""
    with torch.no_grad():
        out = model(x)
        logits = getattr(out, "logits", out)  # a Hugging Face ModelOutput
        if metric == "loss":
            return float(F.cross_entropy(logits, y))
        return 100 * float((logits.argmax(1) != y).float().mean())


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


@dataclass
class Brought:
    """A model as a user brings it: the CLI's --model arguments, the model itself, the block to
    delete and the module whose output is that block's residual branch."""

    args: tuple[str, ...]
    model: torch.nn.Module
    drop: int
    dropped_name: str
    branch_end: torch.nn.Module
    metric: str = "error"


def _timm(tmp_path: Path, suffix: str, metric: str) -> Brought:
    torch.manual_seed(0)
    model = randomize_norms(timm.create_model("resnet18", num_classes=10, in_chans=1)).eval()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save({"state_dict": model.state_dict()}, path)  # a training script's own format
    args = ("--model", "timm:resnet18", "--weights-file", str(path))
    return Brought(args, model, 3, "layer2.1", model.layer2[1].bn2, metric)


def _factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Brought:
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
    args = ("--model", "mypkg_specs.nets:make_net", "--weights-file", "w.safetensors")
    return Brought(args, model, 1, "body.1", model.body[1].bn)


def _hf_folder(tmp_path: Path) -> Brought:
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10
    )
    torch.manual_seed(2)
    model = randomize_norms(transformers.ResNetForImageClassification(config)).eval()
    model.save_pretrained(tmp_path / "tiny-resnet")
    name = "resnet.encoder.stages.1.layers.0"
    layer = model.get_submodule(name)
    return Brought(("--model", f"hf:{tmp_path / 'tiny-resnet'}"), model, 1, name, layer.layer)


@pytest.fixture
def timm_weights(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    brought = _timm(tmp_path, ".safetensors", "error")
    return Path(brought.args[3]), brought.model


BROUGHT = {
    "timm-safetensors": lambda tmp, mp: _timm(tmp, ".safetensors", "error"),
    "timm-torch-file-loss": lambda tmp, mp: _timm(tmp, ".pt", "loss"),
    "factory-with-adapter": _factory,
    "hf-folder": lambda tmp, mp: _hf_folder(tmp),
}


@needs_fmnist
@pytest.mark.parametrize("kind", list(BROUGHT))
def test_a_brought_model_lesioned_on_fashion_mnist_equals_its_branch_zeroed(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    brought = BROUGHT[kind](tmp_path, monkeypatch)
    metric = ("--metric", brought.metric)
    drop = ("--drop-block", str(brought.drop))
    data = ("--dataset", "fashion-mnist", "--limit", str(LIMIT), "--json")
    code, out = _run(*brought.args, *metric, *drop, *data)
    assert code == 0, out
    record = json.loads(out)
    x, y = _images()
    full = _measure(brought.model, x, y, brought.metric)
    with zeroed([brought.branch_end]):  # the reference: the branch's output zeroed in place
        lesioned = _measure(brought.model, x, y, brought.metric)
    unit = "_pct" if brought.metric == "error" else ""
    assert record[f"{brought.metric}_full{unit}"] == pytest.approx(full, rel=1e-5)
    assert record[f"{brought.metric}_lesioned{unit}"] == pytest.approx(lesioned, rel=1e-5)
    assert "random" not in record["model"] and record["dropped_names"] == [brought.dropped_name]


HALF_FACTORY = """
import torch


def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).half()
"""


def test_a_factory_that_builds_in_half_precision_is_analysed_in_float32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "halfnets_specs.py").write_text(HALF_FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    from halfnets_specs import make

    reference = {k: v.float() for k, v in make().state_dict().items()}  # cast by hand
    loaded = load_model("halfnets_specs:make")
    state = loaded.model.state_dict()
    assert state.keys() == reference.keys()
    assert all(
        state[k].dtype == torch.float32 and torch.equal(state[k], reference[k]) for k in state
    )
    kept = load_model("halfnets_specs:make", dtype=None)
    assert {p.dtype for p in kept.model.parameters()} == {torch.float16}
    with pytest.raises(ValueError, match="dtype must be a floating-point type"):
        load_model("halfnets_specs:make", dtype=torch.int8)
