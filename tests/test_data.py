"""Datasets: the real Fashion-MNIST through torchvision, the decompression cache, the embedded
subset, the one-line errors, synthetic and folder-of-class-folders data, and the loader."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_ensemble.data import datasets as data
from resnet_ensemble.data.datasets import (
    DATASETS,
    FASHION_MNIST_FILES,
    FASHION_MNIST_SYSTEM_DIR,
    dataset_classes,
    dataset_info,
    embedded_subset_path,
    load_dataset,
    make_loader,
)

from .conftest import needs_fashion


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the decompression cache out of the user's home for the whole module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        yield


def read_idx_gz(path: Path) -> np.ndarray:
    """An independent reader: IDX header (magic, dims) then uint8 payload."""
    with gzip.open(path) as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture(scope="module")
def real_test() -> tuple[np.ndarray, np.ndarray]:
    return (
        read_idx_gz(FASHION_MNIST_SYSTEM_DIR / "t10k-images-idx3-ubyte.gz"),
        read_idx_gz(FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz"),
    )


def assert_one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg


def fashion_copy(dst: Path, corrupt: dict[str, bytes] | None = None, link: bool = False) -> Path:
    """The four Debian gz files in ``dst`` (flat layout), copied or symlinked, with some
    replaced by ``corrupt``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_FILES:
        target, source = dst / f"{name}.gz", FASHION_MNIST_SYSTEM_DIR / f"{name}.gz"
        if corrupt and name in corrupt:
            target.write_bytes(corrupt[name])
        elif link:
            target.symlink_to(source)
        else:
            shutil.copyfile(source, target)
    return dst


# ----------------------------------------------------------------------------------------------
# Static facts


def test_dataset_info_and_unknown_names() -> None:
    assert set(DATASETS) == {
        "cifar10",
        "cifar100",
        "fashion-mnist",
        "imagenet",
        "synthetic",
        "embedded",
    }
    fm = dataset_info("fashion-mnist")
    assert (fm.num_classes, fm.in_channels, fm.image_size, fm.synthetic) == (10, 1, 28, False)
    assert dataset_info("embedded") == type(fm)(**{**fm.__dict__, "name": "embedded"})
    assert dataset_info("cifar100").num_classes == 100
    assert dataset_info("synthetic").synthetic
    assert not any(dataset_info(n).synthetic for n in DATASETS if n != "synthetic")
    with pytest.raises(ValueError) as err:
        dataset_info("mnist")
    assert_one_line(err, "mnist", *DATASETS)
    with pytest.raises(ValueError) as err:
        load_dataset("svhn", "test")
    assert_one_line(err, "cifar10", "embedded")


def test_bad_split_and_limit() -> None:
    with pytest.raises(ValueError, match="split"):
        load_dataset("synthetic", "val")  # type: ignore[arg-type]
    for bad in (0, -3):
        with pytest.raises(ValueError, match="limit"):
            load_dataset("synthetic", "test", limit=bad)


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST, the real files


@needs_fashion
def test_fashion_mnist_reads_the_real_files(real_test) -> None:
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    image, label = test[1234]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int)
    assert set(test.targets.tolist()) == set(range(10))
    images, labels = real_test
    assert images.shape == (10000, 28, 28)
    assert label == int(labels[1234])
    info = dataset_info("fashion-mnist")
    expected = (images[1234].astype(np.float32) / 255 - info.mean[0]) / info.std[0]
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-5)
    # normalised: the training images have about zero mean and unit std
    sample = torch.stack([train[i][0] for i in range(0, 60000, 60)])
    assert abs(sample.mean().item()) < 0.05 and abs(sample.std().item() - 1) < 0.05


@needs_fashion
def test_augmentation_is_train_only_and_keeps_shape() -> None:
    torch.manual_seed(0)
    aug = load_dataset("fashion-mnist", "train", augment=True, limit=8)
    plain = load_dataset("fashion-mnist", "train", limit=8)
    assert aug[0][0].shape == (1, 28, 28)
    assert any(not torch.equal(aug[i][0], plain[i][0]) for i in range(8))
    test_aug = load_dataset("fashion-mnist", "test", augment=True, limit=4)
    test_plain = load_dataset("fashion-mnist", "test", limit=4)
    assert all(torch.equal(test_aug[i][0], test_plain[i][0]) for i in range(4))


@needs_fashion
def test_limit_is_the_first_items() -> None:
    full = load_dataset("fashion-mnist", "test")
    first = load_dataset("fashion-mnist", "test", limit=5)
    assert len(first) == 5
    assert all(torch.equal(first[i][0], full[i][0]) for i in range(5))
    assert len(load_dataset("fashion-mnist", "test", limit=10**6)) == 10000


@needs_fashion
def test_decompression_cache_from_a_copy(tmp_path: Path, monkeypatch, real_test) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.CACHE_ENV, str(cache))
    src = fashion_copy(tmp_path / "flat")
    before = sorted(p.name for p in src.iterdir())

    ds = load_dataset("fashion-mnist", "test", data_dir=src)
    assert len(ds) == 10000 and ds[7][1] == int(real_test[1][7])
    assert sorted(p.name for p in src.iterdir()) == before  # nothing written next to the source
    raw = list(cache.glob("fashion-mnist/*/FashionMNIST/raw"))
    assert len(raw) == 1
    assert sorted(p.name for p in raw[0].iterdir()) == sorted(FASHION_MNIST_FILES)  # no temp
    stamp = (raw[0] / "t10k-images-idx3-ubyte").stat().st_mtime_ns

    load_dataset("fashion-mnist", "test", data_dir=src)  # the second time reuses the cache
    assert (raw[0] / "t10k-images-idx3-ubyte").stat().st_mtime_ns == stamp

    # torchvision's own layout with only the .gz files is cached the same way
    tv = tmp_path / "tv"
    shutil.copytree(src, tv / "FashionMNIST" / "raw")
    assert len(load_dataset("fashion-mnist", "train", data_dir=tv, limit=3)) == 3
    assert len(list(cache.glob("fashion-mnist/*/FashionMNIST/raw"))) == 2
    assert not (tv / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()


def test_missing_fashion_mnist(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    assert_one_line(err, str(tmp_path), "apt-get install dataset-fashion-mnist", "--data-dir")
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", "train")
    assert_one_line(err, str(tmp_path / "nowhere"), "apt-get install dataset-fashion-mnist")


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "not-a-folder"
    f.write_text("hello")
    for name in ("fashion-mnist", "cifar10", "imagenet"):
        with pytest.raises(ValueError) as err:
            load_dataset(name, "test", data_dir=f)
        assert_one_line(err, str(f), "is a file")


@needs_fashion
def test_corrupt_fashion_mnist(tmp_path: Path) -> None:
    # not gzip at all: decompression fails
    bad = fashion_copy(
        tmp_path / "notgz", {"t10k-images-idx3-ubyte": b"this is not gzip"}, link=True
    )
    with pytest.raises(ValueError) as err:
        load_dataset("fashion-mnist", "test", data_dir=bad)
    assert_one_line(err, str(bad / "t10k-images-idx3-ubyte.gz"), "corrupt")

    # truncated gzip
    whole = (FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()
    cut = fashion_copy(
        tmp_path / "cut", {"t10k-labels-idx1-ubyte": whole[: len(whole) // 2]}, link=True
    )
    with pytest.raises(ValueError) as err:
        load_dataset("fashion-mnist", "test", data_dir=cut)
    assert_one_line(err, str(cut / "t10k-labels-idx1-ubyte.gz"), "corrupt")

    # valid gzip, but not an IDX file: torchvision's own failure becomes one line
    junk = gzip.compress(b"\xff" * 1000)
    idx = fashion_copy(tmp_path / "junk", {"t10k-images-idx3-ubyte": junk}, link=True)
    with pytest.raises(ValueError) as err:
        load_dataset("fashion-mnist", "test", data_dir=idx)
    assert_one_line(err, str(idx), "corrupt")


# ----------------------------------------------------------------------------------------------
# The embedded subset


@needs_fashion
def test_embedded_subset_matches_the_real_test_images(real_test) -> None:
    with np.load(embedded_subset_path(), allow_pickle=False) as npz:
        images, labels, indices = npz["images"], npz["labels"], npz["indices"]
    assert images.shape == (2000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and indices.dtype == np.int64
    assert np.all(np.diff(indices) > 0) and indices[0] >= 0 and indices[-1] < 10000
    assert np.bincount(labels, minlength=10).tolist() == [200] * 10  # stratified
    real_images, real_labels = real_test
    np.testing.assert_array_equal(images, real_images[indices])
    np.testing.assert_array_equal(labels, real_labels[indices])

    embedded = load_dataset("embedded", "test")
    fashion = load_dataset("fashion-mnist", "test")
    assert len(embedded) == 2000
    for i in (0, 999, 1999):
        x, y = embedded[i]
        fx, fy = fashion[int(indices[i])]
        assert torch.equal(x, fx) and y == fy


def test_embedded_loads_without_any_dataset(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    ds = load_dataset("embedded", "test", limit=10)
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and 0 <= y < 10
    with pytest.raises(ValueError, match="test"):
        load_dataset("embedded", "train")


# ----------------------------------------------------------------------------------------------
# Synthetic, CIFAR, ImageNet folders


def test_synthetic_is_seeded_labelled_and_learnable() -> None:
    assert dataset_info("synthetic").synthetic is True
    train = load_dataset("synthetic", "train", seed=3)
    again = load_dataset("synthetic", "train", seed=3)
    other = load_dataset("synthetic", "train", seed=4)
    assert len(train) == data.SYNTHETIC_SIZE["train"]
    x, y = train[0]
    assert x.shape == (3, 32, 32) and isinstance(y, int)
    assert torch.equal(train.images, again.images) and not torch.equal(train.images, other.images)
    # a nearest-class-mean classifier fitted on train does well on test: labels are learnable
    test = load_dataset("synthetic", "test", seed=3)
    means = torch.stack([train.images[train.labels == c].mean(0) for c in range(10)])
    dist = torch.cdist(test.images.flatten(1), means.flatten(1))
    assert (dist.argmin(1) == test.labels).float().mean() > 0.9


def test_missing_cifar_says_download(tmp_path: Path) -> None:
    for name, folder in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        with pytest.raises(FileNotFoundError) as err:
            load_dataset(name, "train", data_dir=tmp_path)
        assert_one_line(err, "--download", str(tmp_path / folder))


def _fake_imagefolder(root: Path, classes: list[str], per_class: int = 2) -> None:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")


def test_imagenet_class_folders(tmp_path: Path) -> None:
    split_root = tmp_path / "splits"
    _fake_imagefolder(split_root / "train", ["n01", "n02", "n03"], per_class=2)
    _fake_imagefolder(split_root / "val", ["n01", "n02", "n03"], per_class=1)
    train = load_dataset("imagenet", "train", data_dir=split_root, augment=True)
    test = load_dataset("imagenet", "test", data_dir=split_root)
    assert (len(train), len(test)) == (6, 3)
    assert dataset_classes(train) == ["n01", "n02", "n03"]
    assert train[0][0].shape == test[0][0].shape == (3, 224, 224)
    assert sorted(test[i][1] for i in range(3)) == [0, 1, 2]
    assert dataset_classes(load_dataset("imagenet", "test", data_dir=split_root, limit=1)) == [
        "n01",
        "n02",
        "n03",
    ]

    flat = tmp_path / "flat"
    _fake_imagefolder(flat, ["cat", "dog"], per_class=2)
    ds = load_dataset("imagenet", "test", data_dir=flat)
    assert len(ds) == 4 and dataset_classes(ds) == ["cat", "dog"]


def test_imagenet_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("imagenet", "test")
    assert_one_line(err, "--data-dir", "train/")
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("imagenet", "test", data_dir=tmp_path / "absent")
    assert_one_line(err, str(tmp_path / "absent"))
    _fake_imagefolder(tmp_path / "only" / "train", ["a", "b"], per_class=1)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("imagenet", "test", data_dir=tmp_path / "only")
    assert_one_line(err, str(tmp_path / "only" / "val"))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("imagenet", "test", data_dir=tmp_path / "empty")
    assert_one_line(err, str(tmp_path / "empty"))


# ----------------------------------------------------------------------------------------------
# The loader


def test_make_loader_is_deterministic() -> None:
    ds = load_dataset("synthetic", "test")

    def order(seed: int) -> list[int]:
        loader = make_loader(ds, batch_size=64, shuffle=True, seed=seed)
        return [y for _, labels in loader for y in labels.tolist()]

    assert order(0) == order(0) and order(0) != order(1)
    batches = list(make_loader(ds, batch_size=100))
    assert len(batches) == 6 and batches[0][0].shape == (100, 3, 32, 32)
    assert len(list(make_loader(ds, batch_size=100, drop_last=True))) == 5
    assert make_loader(ds, 8).pin_memory == torch.cuda.is_available()
    with pytest.raises(ValueError):
        make_loader(ds, batch_size=0)
    with pytest.raises(ValueError):
        make_loader(ds, 8, shuffle=True, sampler=range(4))
