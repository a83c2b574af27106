"""Checkpoints: round trips, atomic writes, and one-line refusals of every bad file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from resnet_ensemble.atomic import atomic_write
from resnet_ensemble.blocks.runtime import resolve_device
from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.models import specs as model_specs
from resnet_ensemble.models.checkpoints import (
    CHECKPOINT_FORMAT,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from resnet_ensemble.models.specs import load_model

from .conftest import randomize_batchnorm

ARCH_KWARGS = {"num_classes": 10, "in_channels": 3, "shortcut": "A", "stochastic_depth": None}


def one_line_error(exc_type: type[Exception], spec: object, **kwargs: object) -> str:
    with pytest.raises(exc_type) as info:
        load_model(spec, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    return message


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(cifar_resnet(8)).eval()


def _save(path: Path, model: torch.nn.Module, metadata: dict, **extra: object) -> None:
    kwargs = {"arch": "resnet8", "arch_kwargs": ARCH_KWARGS, "dataset": "cifar10"}
    save_checkpoint(path, model, metadata=metadata, **kwargs, **extra)  # type: ignore[arg-type]


@pytest.fixture
def ckpt(tmp_path: Path, model: torch.nn.Module) -> Path:
    path = tmp_path / "model.pt"
    _save(path, model, {"epochs": 3, "seed": 7, "out": tmp_path / "x.pt"}, epoch=3)
    return path


def test_round_trip_gives_identical_outputs(ckpt: Path, model: torch.nn.Module) -> None:
    loaded = load_model(ckpt)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert not loaded.model.training
    assert (loaded.arch, loaded.dataset, loaded.num_classes, loaded.in_channels) == (
        "resnet8",
        "cifar10",
        10,
        3,
    )
    assert loaded.sha256 == file_sha256(ckpt) and not loaded.random_init
    assert loaded.metadata["seed"] == 7 and loaded.metadata["out"] == str(ckpt.parent / "x.pt")
    assert loaded.mean == pytest.approx((0.4914, 0.4822, 0.4465))


def test_checkpoint_is_plain_data_with_format_tag(ckpt: Path) -> None:
    raw = torch.load(ckpt, weights_only=True)  # no pickled classes at all
    assert raw["format"] == CHECKPOINT_FORMAT and raw["format_version"] == 1
    assert raw["arch"] == "resnet8" and raw["arch_kwargs"] == ARCH_KWARGS
    assert isinstance(raw["package_version"], str) and raw["epoch"] == 3
    assert load_checkpoint(ckpt)["dataset"] == "cifar10"


def test_saved_file_has_ordinary_permissions(ckpt: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    assert ckpt.stat().st_mode & 0o777 == 0o666 & ~mask


def test_save_refuses_unsavable_metadata_and_leaves_nothing(tmp_path: Path, model) -> None:
    path = tmp_path / "bad.pt"
    with pytest.raises(TypeError, match="metadata.when"):
        _save(path, model, {"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    atomic_write(path, b"old contents")

    def half_then_crash(f) -> None:
        f.write(b"half of the new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]  # no temporary left behind


class _WritesMarker:
    """Unpickling this calls open(marker, "w"): code, which must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("container", ["torch.save", "legacy torch.save", "raw pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"state_dict": _WritesMarker(marker)}
    if container == "raw pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=container == "torch.save")
    message = one_line_error(ValueError, path)
    assert message.startswith(f"refused: {path} contains pickled code")
    assert "only checkpoints written by this toolkit or plain state dicts" in message
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_data_the_safe_loader_refuses_is_named(tmp_path: Path) -> None:
    path = tmp_path / "arrays.pt"
    torch.save({"state_dict": {"w": np.zeros(3)}}, path)  # numpy arrays: data, but not tensors
    message = one_line_error(ValueError, path)
    assert message.startswith(f"{path} is not a readable checkpoint (it stores numpy.")
    assert message.endswith("objects, which the safe loader does not accept)")


def test_missing_empty_truncated_random_and_directory(tmp_path: Path, ckpt: Path) -> None:
    assert "no such checkpoint" in one_line_error(FileNotFoundError, tmp_path / "nope.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert "is empty" in one_line_error(ValueError, empty)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert "(the file is truncated or corrupted)" in one_line_error(ValueError, truncated)
    noise = tmp_path / "noise.pt"
    noise.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    assert "is not a readable checkpoint" in one_line_error(ValueError, noise)
    text = tmp_path / "notes.pt"
    text.write_text("hello\n")
    message = one_line_error(ValueError, text)
    assert message == f"{text} is not a readable checkpoint (the bytes are not a torch checkpoint)"
    assert "is a directory" in one_line_error(ValueError, tmp_path)


def test_state_dict_that_does_not_fit(tmp_path: Path, ckpt: Path) -> None:
    raw = load_checkpoint(ckpt)
    raw["arch"] = "resnet14"
    torch.save(raw, tmp_path / "deeper.pt")
    message = one_line_error(ValueError, tmp_path / "deeper.pt")
    assert "does not fit resnet14" in message and "missing keys layer1.1." in message

    raw = load_checkpoint(ckpt)
    raw["arch_kwargs"]["in_channels"] = 1
    torch.save(raw, tmp_path / "grey.pt")
    message = one_line_error(ValueError, tmp_path / "grey.pt")
    assert "conv1.weight has shape 16x3x3x3 in the file but 16x1x3x3 in the model" in message

    raw = load_checkpoint(ckpt)
    raw["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(raw, tmp_path / "extra.pt")
    assert "unexpected keys extra.weight" in one_line_error(ValueError, tmp_path / "extra.pt")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path: Path, ckpt: Path, bad: float) -> None:
    raw = load_checkpoint(ckpt)
    raw["state_dict"]["layer2.0.bn1.running_var"][3] = bad
    path = tmp_path / "nan.pt"
    torch.save(raw, path)
    message = one_line_error(ValueError, path)
    assert message == f"{path} has non-finite weights in layer2.0.bn1 (layer2.0.bn1.running_var)"


def test_foreign_dicts_and_plain_state_dicts_are_explained(tmp_path: Path, model) -> None:
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "other.pt")
    assert "not a resnet-ensemble checkpoint" in one_line_error(ValueError, tmp_path / "other.pt")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    message = one_line_error(ValueError, tmp_path / "sd.pt")
    assert "plain state dict" in message and "--weights-file" in message
    torch.save([1, 2, 3], tmp_path / "list.pt")
    assert "not a checkpoint dict" in one_line_error(ValueError, tmp_path / "list.pt")


def test_mismatched_class_count_is_refused(ckpt: Path) -> None:
    assert "trained with 10 classes, not 100" in one_line_error(ValueError, ckpt, num_classes=100)


def test_torchvision_with_weights_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = torchvision.models.resnet18(num_classes=7).eval()
    path = tmp_path / "r18.pth"
    # As saved from a DistributedDataParallel wrapper: the prefix is stripped on load.
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    loaded = load_model("torchvision:resnet18", weights_file=path)
    assert loaded.num_classes == 7  # read off fc.weight
    assert loaded.arch == "torchvision:resnet18" and not loaded.random_init
    assert loaded.sha256 == file_sha256(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), source(x))
    message = one_line_error(ValueError, "torchvision:resnet34", weights_file=path)
    assert "does not fit torchvision:resnet34" in message


def test_torchvision_names_and_weights_are_checked() -> None:
    message = one_line_error(ValueError, "torchvision:resnet19")
    assert "unknown torchvision model 'resnet19'" in message and "resnet18" in message
    message = one_line_error(ValueError, "torchvision:resnet18", weights="BEST_EVER")
    assert "IMAGENET1K_V1" in message and "DEFAULT" in message
    loaded = load_model("torchvision:resnet18", num_classes=10)
    assert loaded.random_init and loaded.sha256 is None and loaded.num_classes == 10


def test_builtin_names_give_random_init() -> None:
    loaded = load_model("resnet14", num_classes=5, in_channels=1)
    assert loaded.random_init and loaded.arch == "resnet14" and loaded.sha256 is None
    assert loaded.model(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    assert not loaded.model.training
    assert "unknown model 'wideresnet'" in one_line_error(ValueError, "wideresnet")
    assert "6n + 2" in one_line_error(ValueError, "resnet21")
    with pytest.raises(ValueError, match="only to --model torchvision"):
        load_model("resnet20", weights_file="x.pth")


def test_embedded_missing_and_present(tmp_path: Path, ckpt: Path, monkeypatch) -> None:
    monkeypatch.setattr(model_specs, "EMBEDDED_CHECKPOINT", tmp_path / "absent.pt")
    assert "embedded checkpoint is missing" in one_line_error(FileNotFoundError, None)
    monkeypatch.setattr(model_specs, "EMBEDDED_CHECKPOINT", ckpt)
    for spec in (None, "embedded"):
        loaded = load_model(spec)
        assert loaded.spec == "embedded" and loaded.arch == "resnet8"


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available on this machine; use --dev"):
            resolve_device("cuda")
        assert "CUDA is not available" in one_line_error(ValueError, "resnet8", device="cuda")
