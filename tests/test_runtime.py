"""The runtime helpers: the device a model lives on, the eval-mode guard, and the place of a
process in a torchrun launch (the identity when alone)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnet_ensemble.blocks.runtime import eval_mode, model_device, resolve_device
from resnet_ensemble.core.distributed import from_environment


def test_eval_mode_restores_each_modules_own_mode_also_on_error() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == [True, True, False, True]


def test_model_device_and_resolve_device() -> None:
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # no parameters at all
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_distributed_under_a_single_process_is_the_identity(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with from_environment("cpu") as one:
        assert (one.rank, one.world, one.local_rank) == (0, 1, 0)
        assert one.is_main and not one.active and not one.owns_group
        assert one.device == torch.device("cpu")
        counts = torch.tensor([3.0, 4.0])
        assert one.sum_(counts) is counts and counts.tolist() == [3.0, 4.0]
        assert one.broadcast_(counts) is counts and counts.tolist() == [3.0, 4.0]
        record = {"done": {"a", "b"}}
        assert one.from_main(record) is record
        one.barrier()
    assert not torch.distributed.is_initialized()  # no process group was started, or left
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: the same
    assert from_environment("auto").device == resolve_device("auto")
    with pytest.raises(ValueError, match="unknown device"):
        from_environment("tpu")


def test_more_torchrun_processes_than_gpus_is_refused_before_any_process_group(
    monkeypatch,
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="started 2 processes but this machine has 1 CUDA"):
        from_environment("cuda")
    assert not torch.distributed.is_initialized()
