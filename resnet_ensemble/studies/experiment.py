"""A model and the data to test it on, resolved once and shared by every analysis.

Holds ``Experiment`` and ``open_experiment``, which turn what a user typed (a model spec, a
dataset name, a data folder) into a loaded model, its anatomy and a test loader, checking that
the two fit, and ``describe`` the pair for results metadata: what was evaluated, on which data
(the folder, a fingerprint of the items, a text file's SHA-256 and window), which a resumed
sweep compares before it trusts a row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeGuard

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..blocks.registry import Anatomy, Block, anatomy
from ..blocks.runtime import model_device, resolve_device
from ..data.datasets import (
    DatasetInfo,
    Split,
    check_data_dir,
    data_fingerprint,
    dataset_info,
    dataset_size,
    load_dataset,
    make_loader,
    random_batches,
    raw_bytes,
)
from ..data.text import TextWindows, is_text_spec, load_text, text_window
from ..models.specs import LoadedModel, load_model

__all__ = ["Experiment", "open_experiment", "recorded_error", "verify_recorded_error"]


@dataclass
class Experiment:
    """A loaded model in eval mode and its test split."""

    loaded: LoadedModel
    dataset_name: str
    info: DatasetInfo
    dataset: Dataset
    batch_size: int
    split: str = "test"
    data_dir: str | None = None
    download: bool = False
    _other_splits: dict[str, Dataset] = field(default_factory=dict, repr=False, compare=False)

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @cached_property
    def anatomy(self) -> Anatomy:
        return anatomy(self.model)

    @property
    def blocks(self) -> tuple[Block, ...]:
        return self.anatomy.blocks

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def shard(self, rank: int = 0, world: int = 1) -> Dataset:
        """Every ``world``-th image from ``rank``: shards cover the set with no image twice."""
        if world == 1:
            return self.dataset
        return Subset(self.dataset, range(rank, dataset_size(self.dataset), world))

    def loader(self, rank: int = 0, world: int = 1) -> DataLoader:
        return make_loader(self.shard(rank, world), batch_size=self.batch_size, shuffle=False)

    def first_images(self, images: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``images`` test images and labels as one batch on the model's device,
        gathered across loader batches (the gradient analyses take one batch)."""
        xs, ys, have = [], [], 0
        for x, y in self.loader():
            xs.append(x)
            ys.append(y)
            have += len(x)
            if have >= images:
                break
        if not xs:
            raise ValueError("the test data holds no images")
        return torch.cat(xs)[:images].to(self.device), torch.cat(ys)[:images].to(self.device)

    def gradient_split(self, split: Split | Literal["auto"] = "auto") -> Split:
        """The split gradient batches come from: the paper's training split where the dataset
        has one ("auto"); the embedded and synthetic data have only a test split, and an
        ImageNet folder often only ``val/``."""
        if split == "auto":
            if self.dataset_name in ("embedded", "synthetic") or is_text_spec(self.dataset_name):
                return "test"
            try:  # read once here and kept: random_batches draws from it
                self._split_data("train", download=False)
            except FileNotFoundError:
                return "test"
            return "train"
        if split == "train" and self.dataset_name == "embedded":
            raise ValueError(
                "the embedded data are a held-out test subset with no training split: use "
                "--split test, or --dataset fashion-mnist"
            )
        if split not in ("train", "test"):
            raise ValueError(f"split must be train, test or auto, got {split!r}")
        return split

    def random_batches(
        self,
        batch_size: int,
        count: int,
        *,
        split: Split | Literal["auto"] = "auto",
        seed: int = 0,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``count`` random batches of ``split`` (``data.random_batches``), without training
        augmentation, on the model's device."""
        data = self._split_data(self.gradient_split(split), download=self.download)
        return [
            (x.to(self.device), y.to(self.device))
            for x, y in random_batches(data, batch_size, count, seed)
        ]

    def _split_data(self, split: Split, *, download: bool) -> Dataset:
        """``split`` of the dataset without augmentation, read once per experiment."""
        if split == self.split:
            return self.dataset
        if split not in self._other_splits:
            self._other_splits[split] = load_dataset(
                self.dataset_name, split, data_dir=self.data_dir, download=download
            )
        return self._other_splits[split]

    @property
    def variant(self) -> str:
        """How the network was built and trained: what the paper's figures compare."""
        return model_variant(self.loaded)

    @property
    def unit(self) -> str:
        """What one item of the data is, for messages: "images", or "windows" of a text."""
        return "windows" if is_text_spec(self.dataset_name) else "images"

    @cached_property
    def data_identity(self) -> dict[str, Any]:
        """What the test data are, beyond their name: the folder they were read from (None
        where the dataset's default place was used), ``data.data_fingerprint`` of the items
        served, and for ``text:`` data the file's SHA-256 and the window in tokens. Computed
        once: hashing the items costs a pass over the pixel arrays (milliseconds for CIFAR)."""
        identity: dict[str, Any] = {
            "data_dir": str(Path(self.data_dir).expanduser().resolve()) if self.data_dir else None,
            "data_fingerprint": data_fingerprint(self.dataset),
        }
        text = self.dataset
        while isinstance(text, Subset):
            text = text.dataset
        if isinstance(text, TextWindows):
            identity["text_sha256"] = text.sha256
            identity["window"] = text.window
        return identity

    @cached_property
    def weights_sha256(self) -> str:
        """SHA-256 of the weights as loaded (every parameter and buffer, by name, dtype and
        shape): the model's identity where no file's hash names it (a Hugging Face folder, a
        factory, random init)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
            digest.update(raw_bytes(tensor))
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        """Metadata for results: what was evaluated, on what (``data_identity`` included)."""
        loaded = self.loaded
        text_sha = getattr(self.dataset, "sha256", "")  # a text:PATH file's hash
        return {
            "model": loaded.arch + (" (random init)" if loaded.random_init else ""),
            "variant": self.variant,
            "model_spec": loaded.spec,
            "checkpoint_sha256": loaded.sha256,
            "num_blocks": len(self.blocks),
            "dataset": self.dataset_name
            + (" (synthetic, smoke test only)" if self.info.synthetic else ""),
            "split": self.split,
            "num_classes": self.info.num_classes,
            "images": dataset_size(self.dataset),
            "synthetic_data": self.info.synthetic,
            **self.data_identity,
            "device": str(self.device),
            # A text:PATH file's hash: the data a language model was measured on.
            **({"data_sha256": text_sha} if text_sha else {}),
        }


def model_variant(loaded: LoadedModel) -> str:
    """The variant: "plain", "stochastic depth", "effective paths" or "residual"."""
    if loaded.arch.startswith("plain"):
        return "plain"
    recipe = (loaded.metadata or {}).get("recipe") or {}
    if recipe.get("active_blocks"):
        return "effective paths"
    if any(getattr(m, "survival", 1.0) < 1.0 for m in loaded.model.modules()):
        return "stochastic depth"
    return "residual"


def _default_dataset(loaded: LoadedModel) -> str:
    if loaded.spec in ("embedded", None):
        return "embedded"
    if loaded.dataset:
        return loaded.dataset
    raise ValueError(f"{loaded.spec} does not say which data it was trained on: pass --dataset")


def _real(value: object) -> TypeGuard[int | float]:
    """An int or float (not a bool): a number a checkpoint's metadata may record."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def recorded_error(loaded: LoadedModel) -> tuple[float, int, str] | None:
    """The test error a toolkit checkpoint records for itself, with the number of test images
    and the dataset it was measured on; None where it records none (a zoo model, a factory)."""
    meta = loaded.metadata or {}
    error, images = meta.get("test_error"), meta.get("num_test_images")
    name = meta.get("dataset") or loaded.dataset
    if not (_real(error) and _real(images) and isinstance(name, str)):
        return None
    if not 0 <= error <= 1 or images < 1:
        return None
    return float(error), int(images), name


def _measured_error(model: torch.nn.Module, data: Dataset, batch_size: int) -> float:
    """Top-1 error of ``model`` on ``data``: a plain loop, apart from the engine it checks."""
    wrong = count = 0
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, y in make_loader(data, batch_size=batch_size, shuffle=False):
                logits = model(x.to(device))
                wrong += int((logits.argmax(dim=1).cpu() != y).sum())
                count += len(y)
    finally:
        model.train(was_training)
    return wrong / max(count, 1)


def verify_recorded_error(exp: Experiment, data_dir: str | None = None) -> str:
    """Re-measure the test error a checkpoint records, on the same number of its test images,
    and refuse it where the two disagree beyond chance (three binomial standard errors, at
    least half a point): metadata that do not describe the weights (a wrong stochastic-depth
    rate, shortcut or normalisation) would make every result wrong without a word.

    Returns:
        A line saying what was re-measured.
    Raises:
        ValueError: nothing recorded to check, no data to check it on, or a disagreement; one
            line naming the file.
    """
    loaded = exp.loaded
    source = str(loaded.path or loaded.spec)
    found = recorded_error(loaded)
    if found is None:
        raise ValueError(f"--verify: {source} records no test error to re-measure")
    error, images, name = found
    try:
        data = load_dataset(name, "test", data_dir=data_dir, limit=images)
    except (FileNotFoundError, ValueError, KeyError) as err:
        why = " ".join(str(err).split())[:120]
        raise ValueError(
            f"--verify: cannot read the {name} test images {source} was measured on ({why})"
        ) from None
    measured = _measured_error(exp.model, data, exp.batch_size)
    n = dataset_size(data)
    tolerance = max(0.005, 3 * (error * (1 - error) / max(n, 1)) ** 0.5)
    if abs(measured - error) > tolerance:
        raise ValueError(
            f"{source} records a test error of {100 * error:.2f}% on {images:,} {name} test "
            f"images, but measures {100 * measured:.2f}% on {n:,} of them: its metadata (arch, "
            "stochastic depth, shortcut, normalisation) do not describe its weights"
        )
    return (
        f"verified: {source} measures {100 * measured:.2f}% test error on {n:,} {name} test "
        f"images; it records {100 * error:.2f}%"
    )


def _recorded_note(exp: Experiment, verify: bool, data_dir: str | None) -> str | None:
    found = recorded_error(exp.loaded)
    if verify:  # the folder given is the recorded dataset's only where the names agree
        same = found is not None and found[2] == exp.dataset_name
        return verify_recorded_error(exp, data_dir if same else None)
    if found is None:
        return None
    error, images, name = found
    return (
        f"{exp.loaded.path or exp.loaded.spec} records a test error of {100 * error:.2f}% on "
        f"{images:,} {name} test images; its metadata are trusted (--verify re-measures it)"
    )


def open_experiment(
    model_spec: str | None = None,
    *,
    weights_file: str | None = None,
    weights: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    download: bool = False,
    limit: int | None = None,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    model_args: Mapping[str, Any] | None = None,
    tokenizer: str | None = None,
    verify: bool = False,
    on_note: Callable[[str], None] | None = None,
) -> Experiment:
    """Load a model and its test data, and check that they fit each other.

    ``model_args`` go to the model's constructor (``load_model``); ``tokenizer`` tokenises a
    ``text:PATH`` dataset instead of the ``hf:`` folder's own tokenizer.

    Args:
        verify: re-measure the test error a checkpoint records (``verify_recorded_error``)
            and refuse the checkpoint where it disagrees; otherwise its metadata are trusted.
        on_note: told, in one line, the recorded test error (trusted) or what ``verify``
            measured.

    Raises:
        ValueError / FileNotFoundError: with one line saying what is wrong and what to do.
    """
    exp = _open(model_spec, weights_file, weights, dataset, data_dir, download, limit,
                batch_size, device, model_args, tokenizer)  # fmt: skip
    note = None if is_text_spec(exp.dataset_name) else _recorded_note(exp, verify, data_dir)
    if verify and is_text_spec(exp.dataset_name):
        raise ValueError("--verify re-measures an image classifier's recorded test error")
    if note is not None and on_note is not None:
        on_note(note)
    return exp


def _open(
    model_spec: str | None,
    weights_file: str | None,
    weights: str | None,
    dataset: str | None,
    data_dir: str | None,
    download: bool,
    limit: int | None,
    batch_size: int,
    device: str | torch.device,
    model_args: Mapping[str, Any] | None = None,
    tokenizer: str | None = None,
) -> Experiment:
    target = resolve_device(device)
    if dataset is not None and is_text_spec(dataset):
        if model_args:
            raise ValueError("--model-arg applies to image models; text:PATH needs hf:PATH")
        return _open_text_experiment(
            model_spec, dataset, weights_file, weights, limit, batch_size, target, data_dir,
            tokenizer,
        )  # fmt: skip
    if tokenizer is not None:
        raise ValueError("--tokenizer tokenises a text:PATH dataset; give --dataset text:PATH")
    info = dataset_info(dataset) if dataset else None
    loaded = load_model(
        model_spec,
        weights_file=weights_file,
        weights=weights,
        num_classes=info.num_classes if info else None,
        in_channels=info.in_channels if info else None,
        device=target,
        model_args=model_args,
    )
    name = dataset or _default_dataset(loaded)
    info = info or dataset_info(name)
    check_data_dir(name, data_dir)
    if loaded.num_classes != info.num_classes or loaded.in_channels != info.in_channels:
        raise ValueError(
            f"{loaded.arch} takes {loaded.in_channels}-channel images and predicts "
            f"{loaded.num_classes} classes, but {name} has {info.in_channels} channels and "
            f"{info.num_classes} classes; pick a matching --dataset or --model"
        )
    data = load_dataset(name, "test", data_dir=data_dir, download=download, limit=limit)
    return Experiment(loaded, name, info, data, batch_size, data_dir=data_dir, download=download)


def _open_text_experiment(
    model_spec: str | None,
    dataset: str,
    weights_file: str | None,
    weights: str | None,
    limit: int | None,
    batch_size: int,
    device: torch.device,
    data_dir: str | None,
    tokenizer: str | None = None,
) -> Experiment:
    """A language model (``hf:PATH``) on ``text:PATH``, tokenised with the folder's tokenizer
    into fixed windows (``text_data``)."""
    if data_dir is not None:
        raise ValueError("text:PATH names its file itself; drop --data-dir")
    loaded = load_model(model_spec, weights_file=weights_file, weights=weights, device=device)
    if (loaded.metadata or {}).get("task") != "language":
        raise ValueError(
            f"{loaded.arch} is not a language model; text:PATH is for Hugging Face decoder LMs "
            "(--model hf:PATH)"
        )
    folder = (loaded.metadata or {}).get("hf_folder")
    window = text_window(getattr(loaded.model.config, "max_position_embeddings", None))
    data = load_text(dataset, tokenizer or folder, window=window, limit=limit)
    info = DatasetInfo(dataset, loaded.num_classes, 0, window, (), (), False)
    return Experiment(loaded, dataset, info, data, batch_size)
