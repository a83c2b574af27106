"""Datasets through torchvision, with the transforms (and normalisation) each one is used with.

Holds:

- ``DatasetInfo``, ``DATASETS`` and ``dataset_info``: the static facts about each dataset
  (classes, channels, image size, per-channel mean/std, whether it is a synthetic stand-in).
- ``load_dataset``: a ``torch.utils.data.Dataset`` of ``(normalised float image, int label)``
  for CIFAR-10/100, Fashion-MNIST, ImageNet (folders of class folders, or torchvision's
  ImageNet), the synthetic smoke-test data and the embedded Fashion-MNIST test subset.
- ``check_data_dir``: refuse a ``data_dir`` that the named dataset would ignore.
- ``make_transform``: the transform ``load_dataset`` applies (He et al. augmentation for
  training, deterministic for testing).
- ``make_loader``: a ``DataLoader`` whose shuffling is reproducible from a seed.
- ``open_fashion_mnist``: torchvision's raw ``FashionMNIST`` (uint8 images), found where this
  machine keeps it; ``cache_dir``, ``embedded_subset_path``, ``dataset_classes``.
- ``data_fingerprint``: a SHA-256 of the items a dataset serves, which a resumed sweep compares.

Every failure to find or read a dataset is a one-line ``FileNotFoundError`` or ``ValueError``
that names the path and says how to fix it, never an error from deep inside torchvision.

Fashion-MNIST comes from ``--data-dir`` (torchvision's layout ``DIR/FashionMNIST/raw/...`` or a
folder holding the four IDX files, gzipped or not) or, when no ``data_dir`` is given, from the
Debian package ``dataset-fashion-mnist`` (``FASHION_MNIST_SYSTEM_DIR``). torchvision only reads
uncompressed IDX files, so gzipped ones are decompressed once into ``cache_dir()`` (never next
to the source): set ``RESNET_ENSEMBLE_CACHE`` to move that cache.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import random
import shutil
import tempfile
import zlib
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as T

from ..errors import one_line

__all__ = [
    "CROP_FLIP_PADDING",
    "DATASETS",
    "EMBEDDED_SUBSET_FILE",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_SYSTEM_DIR",
    "SYNTHETIC_SIZE",
    "DatasetInfo",
    "cache_dir",
    "check_data_dir",
    "data_fingerprint",
    "dataset_size",
    "dataset_classes",
    "dataset_info",
    "embedded_subset_path",
    "load_dataset",
    "make_loader",
    "make_transform",
    "random_batches",
    "raw_bytes",
    "open_fashion_mnist",
]

Split = Literal["train", "test"]

DATASETS: tuple[str, ...] = (
    "cifar10",
    "cifar100",
    "fashion-mnist",
    "imagenet",
    "synthetic",
    "embedded",
)

#: Where Debian's ``dataset-fashion-mnist`` puts the four gzipped IDX files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The IDX files torchvision's FashionMNIST reads (each may also be found with a ``.gz`` suffix).
FASHION_MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: The held-out Fashion-MNIST test subset shipped in the package (see
#: ``experiments/make_embedded_subset.py``).
EMBEDDED_SUBSET_FILE = "fashion_mnist_test_subset.npz"

#: Number of images in each split of the synthetic smoke-test dataset.
SYNTHETIC_SIZE: dict[str, int] = {"train": 512, "test": 512}

CACHE_ENV = "RESNET_ENSEMBLE_CACHE"

_FASHION_HOW_TO_GET = (
    "apt-get install dataset-fashion-mnist, or --data-dir to a folder with the four IDX .gz files"
)
_IMAGENET_LAYOUT = (
    "expected DIR/train/<class>/<images> and DIR/val/<class>/<images> (ImageFolder class "
    "folders), torchvision's ImageNet layout (DIR/meta.bin with train/ and val/), or a folder "
    "that directly holds class folders"
)


# ----------------------------------------------------------------------------------------------
# Static facts


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset before seeing any of it."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    synthetic: bool


_FASHION_MEAN, _FASHION_STD = (0.2860,), (0.3530,)  # over the 60,000 training images

_INFO: dict[str, DatasetInfo] = {
    # CIFAR statistics: per-channel mean and std over the 50,000 training images.
    "cifar10": DatasetInfo(
        "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), False
    ),
    "cifar100": DatasetInfo(
        "cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), False
    ),
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, 28, _FASHION_MEAN, _FASHION_STD, False),
    "imagenet": DatasetInfo(
        "imagenet", 1000, 3, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False
    ),
    # Synthetic images are generated already centred; normalisation is the identity.
    "synthetic": DatasetInfo("synthetic", 10, 3, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), True),
    "embedded": DatasetInfo("embedded", 10, 1, 28, _FASHION_MEAN, _FASHION_STD, False),
}

_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}


def _canonical(name: str) -> str:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _INFO:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return key


def dataset_info(name: str) -> DatasetInfo:
    """The classes, shape and normalisation of dataset ``name`` (one of ``DATASETS``, or
    ``text:PATH`` for a language model: its classes are the model's vocabulary, unknown here)."""
    from .text import DEFAULT_WINDOW, is_text_spec

    if is_text_spec(name):
        return DatasetInfo(str(name).strip(), 0, 0, DEFAULT_WINDOW, (), (), False)
    return _INFO[_canonical(name)]


def check_data_dir(name: str, data_dir: str | os.PathLike[str] | None) -> None:
    """Refuse a ``data_dir`` that dataset ``name`` would ignore (the embedded subset ships in
    the package, synthetic data are generated): the user meant some other data."""
    key = _canonical(name)
    if data_dir is None or key not in ("embedded", "synthetic"):
        return
    what = "ships in the package" if key == "embedded" else "is generated, not read"
    raise ValueError(
        f"--data-dir {data_dir} is not used: the {key} dataset {what}; drop --data-dir, or "
        "name the dataset stored there with --dataset (e.g. fashion-mnist)"
    )


# ----------------------------------------------------------------------------------------------
# Transforms


# Training augmentation of the small datasets: pad by this many pixels, random crop back, random
# horizontal flip (He et al. for CIFAR; clothing is left/right symmetric too). The PIL transform
# and the tensor batches (``tensor_batches``) both read it.
CROP_FLIP_PADDING = {"cifar10": 4, "cifar100": 4, "fashion-mnist": 2, "embedded": 2}


def make_transform(name: str, augment: bool = False) -> Callable[[Image.Image], torch.Tensor]:
    """The PIL -> normalised tensor transform for ``name``; ``augment`` adds training noise.

    CIFAR: He et al. (2016), pad 4 + random 32x32 crop + horizontal flip. Fashion-MNIST: pad 2 +
    random 28x28 crop + horizontal flip (clothing is left/right symmetric). ImageNet:
    RandomResizedCrop(224) + flip for training, Resize(256) + CenterCrop(224) otherwise.
    """
    info = dataset_info(name)
    key = info.name
    steps: list[Callable[..., Any]] = []
    if key == "imagenet":
        if augment:
            steps += [T.RandomResizedCrop(224), T.RandomHorizontalFlip()]
        else:
            steps += [T.Resize(256), T.CenterCrop(224)]
    elif augment and key in CROP_FLIP_PADDING:
        steps += [
            T.RandomCrop(info.image_size, padding=CROP_FLIP_PADDING[key]),
            T.RandomHorizontalFlip(),
        ]
    steps += [T.ToTensor(), T.Normalize(info.mean, info.std)]
    return T.Compose(steps)


# ----------------------------------------------------------------------------------------------
# Small helpers


def cache_dir() -> Path:
    """Where derived files (decompressed IDX files, downloads without a data dir) go.

    ``$RESNET_ENSEMBLE_CACHE``, else ``$XDG_CACHE_HOME/resnet_ensemble``, else
    ``~/.cache/resnet_ensemble``; never the repository or the system dataset folders.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "resnet_ensemble").resolve()


def embedded_subset_path() -> Path:
    """The npz of the 2,000 held-out Fashion-MNIST test images shipped in the package."""
    return Path(__file__).resolve().parent.parent / "assets" / EMBEDDED_SUBSET_FILE


def dataset_classes(dataset: Dataset) -> list[Any] | None:
    """The class names of a dataset from ``load_dataset`` (looking through ``limit``'s Subset).

    Useful for a folder of class folders, whose number of classes is known only once read.
    """
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return list(classes) if classes is not None else None


def _existing_dir(data_dir: str | os.PathLike[str], what: str) -> Path | None:
    """``data_dir`` as a Path: None if it does not exist, ValueError if it is not a folder."""
    path = Path(data_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--data-dir {path} is a file, not a folder holding {what}")
    return path if path.is_dir() else None


def _default_data_dir() -> Path:
    return cache_dir() / "data"


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST


def _fashion_sources(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (each uncompressed or ``.gz``), or None if any lacks."""
    found: dict[str, Path] = {}
    for name in FASHION_MNIST_FILES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _materialise_fashion(sources: dict[str, Path]) -> Path:
    """Put uncompressed copies of ``sources`` in torchvision's layout in the cache; its root.

    The cache folder is keyed by the sources' paths, sizes and mtimes, so a changed or different
    source never reuses stale files. Each file is written to a temporary name and renamed into
    place, so a present file is always complete (and concurrent runs do not collide).
    """
    key = hashlib.sha256()
    for name in FASHION_MNIST_FILES:
        src = sources[name]
        st = src.stat()
        key.update(f"{src.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    root = cache_dir() / "fashion-mnist" / key.hexdigest()[:16]
    raw = root / "FashionMNIST" / "raw"
    for name in FASHION_MNIST_FILES:
        src, dst = sources[name], raw / name
        if dst.is_file():
            continue
        tmp: str | None = None
        try:
            raw.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                opener = gzip.open if src.suffix == ".gz" else open
                with opener(src, "rb") as fin:
                    shutil.copyfileobj(fin, out, 1 << 20)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a plain cache file
            os.replace(tmp, dst)
            tmp = None
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:
            why = one_line(err, typed=True)
            raise ValueError(
                f"corrupt Fashion-MNIST file {src} (cannot decompress: {why}); "
                f"{_FASHION_HOW_TO_GET}"
            ) from err
        except OSError as err:
            why = one_line(err, typed=True)
            raise OSError(
                f"cannot write decompressed Fashion-MNIST to {raw} ({why}): set "
                f"{CACHE_ENV} to a writable folder"
            ) from err
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
    return root


def _fashion_root_in(folder: Path) -> tuple[Path, Path] | None:
    """(torchvision root, folder the files were found in) for ``folder``, or None."""
    candidates = [folder / "FashionMNIST" / "raw", folder / "raw", folder]
    for where in candidates:
        sources = _fashion_sources(where)
        if sources is None:
            continue
        tv_layout = where.name == "raw" and where.parent.name == "FashionMNIST"
        if tv_layout and all(p.suffix != ".gz" for p in sources.values()):
            return where.parent.parent, where  # torchvision reads it in place
        return _materialise_fashion(sources), where
    return None


def open_fashion_mnist(
    split: Split,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    transform: Callable[..., Any] | None = None,
) -> torchvision.datasets.FashionMNIST:
    """torchvision's FashionMNIST for ``split`` (``.data`` uint8 (N, 28, 28), ``.targets``).

    Looks in ``data_dir`` when given (an explicit folder is never silently replaced by another),
    else in ``FASHION_MNIST_SYSTEM_DIR``; ``download`` fetches into ``data_dir`` (or the cache)
    when nothing is found.
    """
    split = _check_split(split)
    system_dir = FASHION_MNIST_SYSTEM_DIR  # read at call time, so tests can point it elsewhere
    if data_dir is not None:
        looked = Path(data_dir).expanduser()
        folder = _existing_dir(looked, "Fashion-MNIST")
    else:
        looked = Path(system_dir)
        folder = looked if looked.is_dir() else None
    found = _fashion_root_in(folder) if folder is not None else None

    if found is None:
        if not download:
            raise FileNotFoundError(
                f"Fashion-MNIST not found in {looked} (looked for the four IDX files, .gz or "
                f"not, there and in {looked / 'FashionMNIST' / 'raw'}): {_FASHION_HOW_TO_GET}"
            )
        root = Path(data_dir).expanduser() if data_dir is not None else _default_data_dir()
        try:
            return torchvision.datasets.FashionMNIST(
                root, train=split == "train", transform=transform, download=True
            )
        except (URLError, OSError, RuntimeError) as err:
            raise FileNotFoundError(
                f"Fashion-MNIST could not be downloaded into {root} ({one_line(err, typed=True)}): "
                f"{_FASHION_HOW_TO_GET}"
            ) from err

    root, where = found
    prefix = "train" if split == "train" else "t10k"
    files = f"{where}/{prefix}-{{images,labels}}"
    try:
        ds = torchvision.datasets.FashionMNIST(root, train=split == "train", transform=transform)
    except (AssertionError, ValueError, TypeError, RuntimeError, IndexError, OSError) as err:
        raise ValueError(
            f"corrupt Fashion-MNIST files {files}: torchvision cannot read them "
            f"({one_line(err, typed=True)}); {_FASHION_HOW_TO_GET}"
        ) from err
    n = len(ds.targets)
    if (
        tuple(ds.data.shape) != (n, 28, 28)
        or n == 0
        or int(ds.targets.min()) < 0
        or int(ds.targets.max()) > 9
    ):
        raise ValueError(
            f"corrupt Fashion-MNIST files {files}: expected N 28x28 images and N labels in "
            f"0..9, got images {tuple(ds.data.shape)} and {n} labels; {_FASHION_HOW_TO_GET}"
        )
    return ds


# ----------------------------------------------------------------------------------------------
# In-memory datasets: the embedded subset and the synthetic smoke-test data


class ArrayImageDataset(Dataset):
    """uint8 grey images (N, H, W) held in memory, served through the same PIL transform as
    torchvision's MNIST-style datasets, so results match theirs exactly."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        transform: Callable[..., Any],
        classes: list[str] | None = None,
        indices: np.ndarray | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform
        self.classes = classes
        self.indices = indices  # where each image came from in its source split

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index])  # 2-D uint8: mode "L"
        return self.transform(image), int(self.labels[index])


def _load_embedded(split: Split) -> ArrayImageDataset:
    path = embedded_subset_path()
    if split != "test":
        raise ValueError(
            "the embedded dataset is a held-out Fashion-MNIST *test* subset and has no train "
            "split: use split='test', or dataset fashion-mnist for training"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"embedded test subset {path} is missing: reinstall the package, or run "
            "experiments/make_embedded_subset.py"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels, indices = npz["images"], npz["labels"], npz["indices"]
    except (OSError, ValueError, KeyError, zlib.error, EOFError) as err:
        why = one_line(err, typed=True)
        raise ValueError(f"corrupt embedded test subset {path}: {why}") from err
    n = len(labels)
    if (
        images.dtype != np.uint8
        or images.shape != (n, 28, 28)
        or indices.shape != (n,)
        or n == 0
        or labels.min() < 0
        or labels.max() > 9
    ):
        raise ValueError(
            f"corrupt embedded test subset {path}: expected uint8 images (N, 28, 28), N labels "
            f"in 0..9 and N indices, got {images.dtype} {images.shape}, {n} labels, "
            f"{indices.shape} indices"
        )
    return ArrayImageDataset(
        images,
        labels.astype(np.int64),
        make_transform("embedded", augment=False),
        classes=list(torchvision.datasets.FashionMNIST.classes),
        indices=indices.astype(np.int64),
    )


class SyntheticDataset(Dataset):
    """Random 3x32x32 images for smoke tests only: NOT a benchmark.

    Each class has a fixed smooth random prototype (drawn from ``seed`` alone, so train and test
    share it); an image is its class prototype plus unit Gaussian noise, so the labels are
    learnable by a small network in a few steps. Splits differ in their noise and labels.
    """

    synthetic = True

    def __init__(self, split: Split, seed: int = 0, size: int | None = None) -> None:
        n = SYNTHETIC_SIZE[split] if size is None else size
        info = _INFO["synthetic"]
        k, c, s = info.num_classes, info.in_channels, info.image_size
        g_proto = torch.Generator().manual_seed(int(seed))
        coarse = torch.randn(k, c, 4, 4, generator=g_proto)
        prototypes = F.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + (1 if split == "train" else 2))
        self.labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
        self.images = prototypes[self.labels] + torch.randn(n, c, s, s, generator=g)
        self.classes = [f"synthetic-{i}" for i in range(k)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


# ----------------------------------------------------------------------------------------------
# CIFAR and ImageNet


_CIFAR = {
    "cifar10": (torchvision.datasets.CIFAR10, "CIFAR-10", "cifar-10-batches-py"),
    "cifar100": (torchvision.datasets.CIFAR100, "CIFAR-100", "cifar-100-python"),
}


def _load_cifar(
    key: str,
    split: Split,
    data_dir: str | os.PathLike[str] | None,
    download: bool,
    transform: Callable[..., Any],
) -> Dataset:
    cls, label, folder = _CIFAR[key]
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        _existing_dir(root, label)
    else:
        root = _default_data_dir()
    if root.name == folder:  # pointed at the batches folder itself
        root = root.parent
    how = f"pass --download on a machine with internet, or --data-dir to a folder holding {folder}"
    train = split == "train"
    if (root / folder).is_dir():
        try:
            return cls(root, train=train, transform=transform, download=False)
        except (RuntimeError, OSError, ValueError, EOFError, KeyError) as err:
            if not download:
                why = one_line(err, typed=True)
                raise ValueError(
                    f"{label} in {root / folder} is incomplete or corrupt ({why}): "
                    f"delete it and {how}"
                ) from err
    elif not download:
        raise FileNotFoundError(f"{label} not found: looked for {root / folder}; {how}")
    try:
        return cls(root, train=train, transform=transform, download=True)
    except (URLError, OSError, RuntimeError) as err:
        raise FileNotFoundError(
            f"{label} could not be downloaded into {root} ({one_line(err, typed=True)}); "
            f"pass --data-dir to a folder holding {folder}"
        ) from err


def _load_imagenet(
    split: Split, data_dir: str | os.PathLike[str] | None, transform: Callable[..., Any]
) -> Dataset:
    if data_dir is None:
        raise FileNotFoundError(
            f"ImageNet cannot be downloaded automatically: pass --data-dir DIR; {_IMAGENET_LAYOUT}"
        )
    looked = Path(data_dir).expanduser()
    root = _existing_dir(looked, "ImageNet")
    if root is None:
        raise FileNotFoundError(f"ImageNet not found: {looked} does not exist; {_IMAGENET_LAYOUT}")
    sub = "train" if split == "train" else "val"
    has_splits = (root / "train").is_dir() or (root / "val").is_dir()
    if (root / "meta.bin").is_file() or has_splits:
        archive = root / f"ILSVRC2012_img_{sub}.tar"
        if not (root / sub).is_dir() and not ((root / "meta.bin").is_file() and archive.is_file()):
            raise FileNotFoundError(
                f"ImageNet split folder {root / sub} not found (the {split} split is read from "
                f"{sub}/); {_IMAGENET_LAYOUT}"
            )
    try:
        if (root / "meta.bin").is_file():  # torchvision's ImageNet: human-readable class names
            return torchvision.datasets.ImageNet(root, split=sub, transform=transform)
        return torchvision.datasets.ImageFolder(
            root / sub if has_splits else root, transform=transform
        )
    except FileNotFoundError as err:  # no class folders, or class folders without images
        raise FileNotFoundError(
            f"no ImageNet images under {root} ({one_line(err, typed=True)}); {_IMAGENET_LAYOUT}"
        ) from err
    except (RuntimeError, OSError, ValueError) as err:
        raise ValueError(f"cannot read ImageNet in {root}: {one_line(err, typed=True)}") from err


# ----------------------------------------------------------------------------------------------
# Public entry points


def _check_split(split: str) -> Split:
    if split not in ("train", "test"):
        raise ValueError(
            f"unknown split {split!r}: use 'train' or 'test' (ImageNet's val/ folder is 'test')"
        )
    return split  # type: ignore[return-value]


def load_dataset(
    name: str,
    split: Split,
    data_dir: str | Path | None = None,
    download: bool = False,
    augment: bool = False,
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Dataset ``name``'s ``split`` as ``(normalised float image tensor, int label)`` items.

    Args:
        name: one of ``DATASETS``.
        split: ``"train"`` or ``"test"`` (for ImageNet, test reads the ``val/`` folder).
        data_dir: where the data live; defaults: Fashion-MNIST the Debian package's folder,
            CIFAR ``cache_dir()/data``; ImageNet needs it. Ignored by synthetic and embedded.
        download: let torchvision fetch CIFAR or Fashion-MNIST when it is not found.
        augment: training augmentation (see ``make_transform``); applies to the train split
            only, the test split always gets the deterministic test transform.
        limit: keep only the first ``limit`` items (deterministic), or all if fewer.
        seed: the synthetic data's seed (other datasets are fixed).

    Raises:
        ValueError: unknown name or split, ``limit`` < 1, a data dir that is a file, or files
            that exist but cannot be read.
        FileNotFoundError: the dataset is not where it was looked for (the message says where
            and how to get it).
    """
    from .text import is_text_spec

    if is_text_spec(name):
        raise ValueError(
            f"{name} is tokenised with a language model's tokenizer: open it with "
            "text_data.load_text(name, model_folder), or --model hf:PATH --dataset text:PATH"
        )
    key = _canonical(name)
    split = _check_split(split)
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a positive number of images, got {limit!r}")
    transform = make_transform(key, augment=augment and split == "train")

    ds: Dataset
    if key == "synthetic":
        ds = SyntheticDataset(split, seed=seed)
    elif key == "embedded":
        ds = _load_embedded(split)
    elif key == "fashion-mnist":
        ds = open_fashion_mnist(split, data_dir, download=download, transform=transform)
    elif key in _CIFAR:
        ds = _load_cifar(key, split, data_dir, download, transform)
    else:
        ds = _load_imagenet(split, data_dir, transform)

    if limit is not None and limit < len(ds):  # type: ignore[arg-type]
        ds = Subset(ds, range(int(limit)))
    return ds


#: The most memory ``random_batches`` may fill with images (they are all held at once).
MAX_BATCHES_BYTES = 4 << 30


def random_batches(
    dataset: Dataset, batch_size: int, count: int, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of ``batch_size`` images drawn at random from ``dataset``.

    The paper's gradient protocol measures on "random batches from the training set". Batch g
    holds distinct images drawn from (seed, g) alone, so the same seed gives the same batches
    and a different seed different ones; batches may share images with each other.

    Returns:
        [(images (B, *image), labels (B,))] * count, on the CPU.
    """
    n = dataset_size(dataset)
    if batch_size < 1 or count < 1:
        raise ValueError(f"need a positive batch size and count, got {batch_size} and {count}")
    if batch_size > n:
        raise ValueError(f"a batch of {batch_size} images needs that many; the data hold {n}")
    # Every batch is held in memory at once: refuse, from one image's size, what would not fit.
    first = torch.as_tensor(dataset[0][0])
    need = count * batch_size * first.numel() * first.element_size()
    if need > MAX_BATCHES_BYTES:
        raise ValueError(
            f"{count} batches of {batch_size} images of {tuple(first.shape)} take "
            f"{need / 2**30:.1f} GiB, more than the {MAX_BATCHES_BYTES >> 30} GiB random "
            "batches may hold; lower --batches or --images"
        )
    batches = []
    for g in range(count):
        state = np.random.SeedSequence([int(seed), g]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        picks = torch.randperm(n, generator=generator)[:batch_size].tolist()
        items = [dataset[i] for i in picks]
        images = torch.stack([item[0] for item in items])
        # Integer labels, or per-item target tensors (the token ids of text windows).
        labels = torch.stack([torch.as_tensor(item[1]) for item in items]).long()
        batches.append((images, labels))
    return batches


def _seed_worker(worker_id: int) -> None:
    """Give numpy and ``random`` in each worker the per-worker seed torch already derived."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def dataset_size(dataset: Dataset) -> int:
    """``len(dataset)``: torch's ``Dataset`` declares no ``__len__``, though every dataset here
    (and every map-style one a loader shuffles) has one."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{type(dataset).__name__} has no length: it is not a map-style dataset")
    return len(dataset)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    sampler: Any = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose order (and worker seeds) follow from ``seed`` alone.

    The same ``seed`` gives the same sequence of epochs. With ``num_workers`` > 0, random
    augmentation is seeded per worker from ``seed`` too; with 0 workers it draws from torch's
    global generator (seed it with ``torch.manual_seed`` for repeatable augmentation).
    Memory is pinned when CUDA is available, for faster host-to-GPU copies.
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers!r}")
    if sampler is not None and shuffle:
        raise ValueError("pass either shuffle=True or a sampler, not both")
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        generator=generator,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
    )


# ----------------------------------------------------------------------------------------------
# Identity


def raw_bytes(array: Any) -> bytes:
    """The raw bytes of a tensor or array (any dtype, bfloat16 included), C order."""
    if isinstance(array, torch.Tensor):
        flat = array.detach().cpu().contiguous().reshape(-1)
        return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return np.ascontiguousarray(np.asarray(array)).tobytes()


def _pick(array: Any, indices: list[int] | None) -> Any:
    if indices is None:
        return array
    if isinstance(array, torch.Tensor):
        return array[torch.as_tensor(indices, dtype=torch.long)]
    return np.asarray(array)[np.asarray(indices, dtype=np.int64)]


def data_fingerprint(dataset: Dataset) -> str:
    """A SHA-256 that changes when the items ``dataset`` serves change: what a resumed sweep
    compares, so that rows measured on other data are never mixed in.

    It covers exactly the items served (``limit``'s ``Subset`` looked through), as stored
    before the transform (the transform follows from the dataset's name):

    - arrays held in memory (Fashion-MNIST, CIFAR, the embedded subset, the synthetic data):
      the pixel array's dtype, shape and bytes, and the labels';
    - text windows: the token ids of every window (the file's own SHA-256 is recorded apart);
    - image files (ImageNet, a folder of class folders): each file's path relative to the
      root, its size in bytes and its class, and the class names: the images are not read, so
      an image rewritten to the same size in place is not noticed (reading 50,000 JPEGs for
      every run would cost minutes);
    - anything else: every item's tensors, read through ``__getitem__``.
    """
    indices: list[int] | None = None
    base: Any = dataset
    while isinstance(base, Subset):
        own = [int(i) for i in base.indices]
        indices = own if indices is None else [own[i] for i in indices]
        base = base.dataset
    digest = hashlib.sha256(type(base).__name__.encode())

    def add(label: str, array: Any) -> None:
        picked = _pick(array, indices)
        shape = tuple(picked.shape) if hasattr(picked, "shape") else (len(picked),)
        dtype = str(getattr(picked, "dtype", "list"))
        digest.update(f"\0{label}\0{dtype}\0{shape}\0".encode())
        digest.update(raw_bytes(picked))

    if hasattr(base, "windows"):  # text_data.TextWindows (limit cuts the windows themselves)
        add("windows", base.windows)
    elif hasattr(base, "images") and hasattr(base, "labels"):  # embedded, synthetic
        add("images", base.images)
        add("labels", base.labels)
    elif hasattr(base, "data") and hasattr(base, "targets"):  # torchvision MNIST-like, CIFAR
        add("images", base.data)
        add("labels", torch.as_tensor(base.targets, dtype=torch.long))
    elif hasattr(base, "samples") and hasattr(base, "root"):  # ImageFolder, ImageNet
        root = Path(base.root)
        chosen = base.samples if indices is None else [base.samples[i] for i in indices]
        digest.update(repr(list(getattr(base, "classes", []))).encode())
        for file, target in chosen:
            path = Path(file)
            name = path.relative_to(root) if path.is_relative_to(root) else path
            digest.update(f"\0{name}\0{path.stat().st_size}\0{target}\n".encode())
    else:
        for index in range(dataset_size(dataset)):
            for part in dataset[index]:
                digest.update(raw_bytes(torch.as_tensor(part)))
    return digest.hexdigest()
