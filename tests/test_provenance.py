"""Provenance: the SHA-256 of ``hf:`` weights and of ``text:`` files in sidecars, the training
table's full sidecar, and a running sweep's sidecar that is true about its rows at every write.
Hashes are checked against ``hashlib`` over the files' bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from resnet_ensemble import load_dataset, make_loader, study_sweep
from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.results import ResultsTable, sidecar_path

from .conftest import randomize_batchnorm


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hf_weights_and_text_files_are_hashed_in_the_sidecar(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from .test_text_data import TEXT, make_lm_folder

    folder = make_lm_folder(tmp_path / "lm")
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT)
    from resnet_ensemble.studies.sweeps import sweep_to_table

    out = tmp_path / "lm_single.csv"
    experiment = {
        "model_spec": f"hf:{folder}",
        "dataset": f"text:{text}",
        "limit": 2,
        "device": "cpu",
    }
    sweep_to_table("single", out, experiment, metric="perplexity")
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["checkpoint_sha256"] == _sha(folder / "model.safetensors")
    assert meta["data_sha256"] == _sha(text)


def test_a_sharded_hf_folder_is_hashed_over_every_shard(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from resnet_ensemble.models.specs import load_model

    config = transformers.GPT2Config(vocab_size=64, n_layer=2, n_embd=32, n_head=4, n_positions=16)
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = transformers.GPT2LMHeadModel(config)
        model.save_pretrained(tmp_path / str(seed), max_shard_size="20KB")
    folder = tmp_path / "0"
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1 and not (folder / "model.safetensors").exists()
    # The index's hash, then each shard's, as bytes, hashed again.
    index = folder / "model.safetensors.index.json"
    expected = hashlib.sha256(b"".join(bytes.fromhex(_sha(p)) for p in [index, *shards]))
    assert load_model(f"hf:{folder}").sha256 == expected.hexdigest()
    assert load_model(f"hf:{tmp_path / '1'}").sha256 != expected.hexdigest()


def test_the_training_table_carries_each_networks_full_sidecar(tmp_path: Path) -> None:
    from resnet_ensemble.studies.reproduce import Reproduction
    from resnet_ensemble.studies.training import TrainConfig, train

    ckpt = tmp_path / "r8.pt"
    train(
        TrainConfig(
            arch="resnet8", dataset="synthetic", out=ckpt, epochs=1, batch_size=16, limit=32,
            device="cpu", num_workers=0,
        )
    )  # fmt: skip
    run = Reproduction(
        tmp_path / "run", dataset="synthetic", checkpoints={"resnet": str(ckpt)}, device="cpu",
        log=lambda m: None,
    )  # fmt: skip
    run._training_table()
    meta = json.loads((tmp_path / "run" / "tables" / "training.json").read_text())
    history = json.loads((tmp_path / "r8.history.json").read_text())
    assert meta["table"] == "training" and meta["dataset"] == "synthetic"
    residual = meta["networks"]["residual"]
    assert residual["checkpoint_sha256"] == _sha(ckpt)
    assert residual["recipe"] == history["recipe"] and residual["recipe"]["arch"] == "resnet8"
    assert residual["versions"] == history["versions"] and residual["epochs"] == 1
    assert {"command", "created", "python"} <= set(meta)


def test_a_running_sweeps_sidecar_says_in_progress_and_counts_the_csvs_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, int, int]] = []
    append = ResultsTable.append

    def append_and_look(self: ResultsTable, rows):  # noqa: ANN001, ANN202
        append(self, rows)
        meta = json.loads(sidecar_path(self.path).read_text())
        seen.append((meta["status"], meta["rows"], len(pd.read_csv(self.path))))

    monkeypatch.setattr(ResultsTable, "append", append_and_look)
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(14, num_classes=10, in_channels=1)).eval()
    loader = make_loader(load_dataset("embedded", "test", limit=8), batch_size=8)
    out = tmp_path / "s.csv"
    table = study_sweep(model, loader, out=out, chunk=2)
    assert seen == [("in progress", r, r) for r in (2, 4, 6, 7)]  # 7 configurations, by 2
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["status"] == "complete" and meta["complete"] is True
    assert meta["rows"] == len(table) == len(pd.read_csv(out)) == 7
