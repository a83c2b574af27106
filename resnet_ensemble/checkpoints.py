"""Checkpoints: the one place models are loaded from and saved to.

Holds:
- ``LoadedModel``: a ready model (eval mode, on its device) and what is known about it
- ``load_model``: every ``--model`` spec ("embedded", a checkpoint path, ``torchvision:NAME``,
  ``timm:NAME``, ``hf:PATH``, ``package.module:callable`` (``model_specs``), a built-in name
  such as ``resnet56``) to a ``LoadedModel``, failing with one clear line
- ``save_checkpoint`` / ``load_checkpoint``: the toolkit's checkpoint format, written atomically
  and read with ``torch.load(weights_only=True)`` so that a file can never run code
- ``atomic_write`` (re-exported from ``atomic``): write bytes or text so that a crash never
  leaves a half-written file
- ``file_sha256``, ``EMBEDDED_CHECKPOINT`` (``resolve_device`` is ``runtime``'s, re-exported)

A checkpoint is a dict holding only tensors and plain containers of primitives: a format tag and
version, the state dict, the built-in arch name and its builder arguments, the dataset and its
normalisation, training metadata, the package version and, for resuming, optimizer and scheduler
state and the epoch.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .models import BUILTIN_ARCH_PATTERN, build_builtin, parse_arch
from .runtime import model_device, resolve_device

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "EMBEDDED_CHECKPOINT",
    "LoadedModel",
    "atomic_write",
    "check_state_dict",
    "file_sha256",
    "load_checkpoint",
    "load_model",
    "package_version",
    "resolve_device",
    "save_checkpoint",
]

EMBEDDED_CHECKPOINT = Path(__file__).parent / "assets" / "embedded_resnet.pt"
CHECKPOINT_FORMAT = "resnet-ensemble-checkpoint"
CHECKPOINT_VERSION = 1
TORCHVISION_PREFIX = "torchvision:"
_ARCH_KWARGS = (
    "num_classes",
    "in_channels",
    "shortcut",
    "stochastic_depth",
    "stochastic_depth_draw",
    "active_blocks",
)


@dataclass
class LoadedModel:
    """A model ready for experiments, and where it came from.

    ``mean`` / ``std`` are the input normalisation the model was trained with, where known.
    """

    model: nn.Module
    spec: str
    arch: str
    dataset: str | None
    num_classes: int
    in_channels: int
    sha256: str | None
    random_init: bool
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def device(self) -> torch.device:
        return model_device(self.model)


# ----------------------------------------------------------------------------------------------
# Small helpers


def package_version() -> str:
    """The installed version of this package, or the source tree's (``_version``)."""
    from ._version import __version__

    return __version__


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks so large weights do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plain(obj: Any, where: str) -> Any:
    """Reduce ``obj`` to what ``torch.load(weights_only=True)`` accepts, or say what is not."""
    if obj is None or isinstance(obj, (bool, bytes, torch.Tensor)):
        return obj
    for kind in (int, float, str):  # subclasses (IntEnum, TorchVersion) would pickle as classes
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, (torch.dtype, torch.device, torch.Size)):
        return str(obj) if isinstance(obj, torch.device) else obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and hasattr(obj, "dtype") and getattr(obj, "shape", None) == ():
        return obj.item()  # a numpy scalar
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):
        return torch.as_tensor(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint field {where} has a key {k!r} that is not str or int")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(
        f"checkpoint field {where} holds a {type(obj).__name__}; only tensors, numbers, strings "
        "and lists/dicts of them can be saved"
    )


# ----------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    dataset: str,
    metadata: Mapping[str, Any],
    optimizer_state: Mapping[str, Any] | None = None,
    scheduler_state: Mapping[str, Any] | None = None,
    epoch: int | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write a toolkit checkpoint atomically.

    Args:
        arch: a built-in arch name ("resnet110", "preresnet56", "plain20").
        arch_kwargs: the builder arguments (num_classes, in_channels, shortcut, stochastic_depth).
        dataset: the dataset the model was trained on; its mean/std are recorded unless
            ``normalization`` is given.
        metadata: training metadata (epochs, seed, recipe, command line, wall time, hardware).
        optimizer_state, scheduler_state, epoch, extra: what ``train --resume`` needs.
    Example:
        >>> save_checkpoint("ckpt.pt", model, arch="resnet20", arch_kwargs={"num_classes": 10},
        ...                 dataset="cifar10", metadata={"epochs": 164})
    """
    parse_arch(arch)  # refuse to write a file that load_model could not rebuild
    unknown = sorted(set(arch_kwargs) - set(_ARCH_KWARGS))
    if unknown:
        raise ValueError(f"unknown arch_kwargs {unknown}; expected some of {list(_ARCH_KWARGS)}")
    wrapped = getattr(model, "module", None)  # DistributedDataParallel / DataParallel
    core = wrapped if isinstance(wrapped, nn.Module) else model
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in core.state_dict().items()}
    if normalization is None:
        normalization = _dataset_normalization(dataset)
    ckpt: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "arch": arch,
        "arch_kwargs": _plain(dict(arch_kwargs), "arch_kwargs"),
        "dataset": dataset,
        "normalization": None
        if normalization is None
        else {
            "mean": [float(v) for v in normalization[0]],
            "std": [float(v) for v in normalization[1]],
        },
        "state_dict": state,
        "metadata": _plain(dict(metadata), "metadata"),
        "package_version": package_version(),
        "torch_version": str(torch.__version__),
        "epoch": epoch,
        "optimizer_state": _plain(optimizer_state, "optimizer_state"),
        "scheduler_state": _plain(scheduler_state, "scheduler_state"),
    }
    if extra:
        ckpt["extra"] = _plain(dict(extra), "extra")
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    atomic_write(path, buffer.getvalue())


def _dataset_normalization(dataset: str) -> tuple[Sequence[float], Sequence[float]] | None:
    try:
        from .data import dataset_info

        info = dataset_info(dataset)
        return tuple(info.mean), tuple(info.std)
    except Exception:  # noqa: BLE001 - an unknown dataset just means no recorded normalisation
        return None


# ----------------------------------------------------------------------------------------------
# Reading files safely

_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
_SAFE_MODULES = ("torch.", "collections.", "_codecs.", "numpy.")  # data, not code


def _pickled_globals(data: bytes) -> list[str]:
    """The module.name globals a pickle (raw or inside torch's zip format) would import, found
    by reading its opcodes without running it."""
    payload = data
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                payload = zf.read(names[0]) if names else b""
        except (zipfile.BadZipFile, OSError, KeyError):
            return []
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(payload):
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - a broken pickle simply ends the scan
        pass
    # Random bytes can decode as a GLOBAL opcode by chance; keep only real dotted names.
    return [g for g in found if _DOTTED.match(g)]


def _read_file(path: Path, what: str = "checkpoint") -> bytes:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a {what} file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path} cannot be read ({err.strerror or err})") from None
    if not data:
        raise ValueError(f"{path} is empty (0 bytes), not a {what}")
    return data


def _torch_load_bytes(data: bytes, path: Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure rephrased as one line."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; we say it in one line
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err)
        unsafe = [g for g in _pickled_globals(data) if not g.startswith(_SAFE_MODULES)]
        named = re.search(r"GLOBAL ([\w.]+)", message)
        if unsafe or (named and not named.group(1).startswith(_SAFE_MODULES)):
            culprit = unsafe[0] if unsafe else named.group(1)  # type: ignore[union-attr]
            raise ValueError(
                f"refused: {path} contains pickled code, not just tensors (it would call "
                f"{culprit}); only checkpoints written by this toolkit or plain state dicts are "
                "loaded"
            ) from None
        raise ValueError(f"{path} is not a readable checkpoint ({_reason(message)})") from None
    except Exception as err:  # noqa: BLE001 - torch raises many obscure types on bad bytes
        reason = _reason(str(err), err)
        raise ValueError(f"{path} is not a readable checkpoint ({reason})") from None


def _reason(message: str, err: BaseException | None = None) -> str:
    if "central directory" in message or "zip archive" in message:
        return "the file is truncated or corrupted"
    if "Unsupported operand" in message or "invalid load key" in message:
        return "the bytes are not a torch checkpoint"
    named = re.search(r"GLOBAL ([\w.]+)", message)
    if named:
        return f"it stores {named.group(1)} objects, which the safe loader does not accept"
    first = message.strip().splitlines()[0] if message.strip() else ""
    if err is not None and (not first or isinstance(err, KeyError)):
        first = f"{type(err).__name__}: {first}" if first else type(err).__name__
    first = first.removeprefix("Weights only load failed. ")
    return (first[:120] + "...") if len(first) > 120 else first or "unknown error"


def load_checkpoint(path: str | os.PathLike[str]) -> dict:
    """The raw dict stored in ``path``, loaded without running any pickled code.

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty, truncated, not a torch file, pickled code, or not a dict.
    """
    path = Path(path)
    obj = _torch_load_bytes(_read_file(path), path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


# ----------------------------------------------------------------------------------------------
# Checking state dicts against models


def _short(keys: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape) or "scalar"


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Accept state dicts saved from a DataParallel/DDP or torch.compile wrapper."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def check_state_dict(model: nn.Module, state: Mapping[str, Any], source: str, arch: str) -> None:
    """Raise one line naming what does not fit ``model`` (missing or unexpected keys, the first
    shape mismatch, non-finite values), before anything is copied into it."""
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{source}: state dict entry {bad[0]} is not a tensor")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        raise ValueError(f"{source} does not fit {arch}: " + "; ".join(parts))
    for key, target in expected.items():
        if tuple(state[key].shape) != tuple(target.shape):
            raise ValueError(
                f"{source} does not fit {arch}: {key} has shape {_dims(state[key].shape)} in the "
                f"file but {_dims(target.shape)} in the model"
            )
    for key, value in state.items():
        numeric = value.is_floating_point() or value.is_complex()
        if numeric and not bool(torch.isfinite(value).all()):
            layer = key.rsplit(".", 1)[0] if "." in key else key
            raise ValueError(f"{source} has non-finite weights in {layer} ({key})")


def _load_into(model: nn.Module, state: Mapping[str, Any], source: str, arch: str) -> None:
    check_state_dict(model, state, source, arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # pragma: no cover - check_state_dict should have caught it
        raise ValueError(f"{source} does not fit {arch} ({_reason(str(err))})") from None


def _finish(model: nn.Module, device: str | torch.device | None) -> nn.Module:
    return model.to(resolve_device(device)).eval()


# ----------------------------------------------------------------------------------------------
# load_model and its sources


def load_model(
    spec: str | os.PathLike[str] | None,
    *,
    weights_file: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load any model the toolkit accepts, fully built, in eval mode, on ``device``.

    Args:
        spec: None or "embedded" (the shipped checkpoint), a path to a checkpoint written by this
            toolkit, "torchvision:NAME" (random init, or ``weights_file`` / ``weights``),
            "timm:NAME", "hf:PATH" (a local Hugging Face folder), "package.module:callable" (a
            user's factory), or a built-in name such as "resnet56" (random init).
        weights_file: a state dict (.safetensors or a torch file) for any spec but a toolkit
            checkpoint or a built-in name; classes and channels are read from it.
        weights: a torchvision weights enum name (DEFAULT, IMAGENET1K_V2, ...); downloads.
        num_classes, in_channels: for random init; checked against a checkpoint if given.
    Raises:
        FileNotFoundError, ValueError: with one line saying what is wrong.
    Example:
        >>> loaded = load_model("torchvision:resnet50", weights_file="resnet50.pth")
    """
    device = resolve_device(device)  # fail on a bad device before any heavy work
    text = "embedded" if spec is None else os.fspath(spec)
    stripped = text.strip()
    if stripped.lower().startswith(TORCHVISION_PREFIX):
        return _load_torchvision(
            text,
            stripped[len(TORCHVISION_PREFIX) :].strip(),
            weights_file,
            weights,
            num_classes,
            in_channels,
            device,
        )
    zoo = _load_zoo(text, stripped, weights_file, weights, num_classes, in_channels, device)
    if zoo is not None:
        return zoo
    if weights_file is not None or weights is not None:
        raise ValueError(
            "--weights-file and --weights apply only to --model torchvision:NAME, timm:NAME, "
            "hf:PATH or package.module:callable (--weights to torchvision:NAME alone); a "
            "toolkit checkpoint already holds its weights"
        )
    if stripped.lower() == "embedded":
        if not EMBEDDED_CHECKPOINT.is_file():
            raise FileNotFoundError(
                f"the embedded checkpoint is missing ({EMBEDDED_CHECKPOINT}); reinstall the "
                "package or pass --model"
            )
        loaded = _load_project(EMBEDDED_CHECKPOINT, text, num_classes, in_channels, device)
        loaded.spec = "embedded"
        return loaded
    path = Path(text).expanduser()
    if path.exists():
        return _load_project(path, text, num_classes, in_channels, device)
    try:
        parse_arch(stripped)
    except ValueError as err:
        if re.match(r"^(resnet|preresnet|plain)\d+$", stripped.lower()):
            raise  # a built-in family with a bad depth: parse_arch's message says how to fix it
        if os.sep in text or "/" in text or path.suffix:
            raise FileNotFoundError(f"no such checkpoint: {text}") from None
        raise ValueError(
            f"unknown model {text!r}: not a file, and not a known name; use a checkpoint path, "
            f"'embedded', torchvision:NAME, or a built-in {BUILTIN_ARCH_PATTERN}"
        ) from err
    return _load_builtin(text, stripped.lower(), num_classes, in_channels, device)


def _load_zoo(
    text: str,
    stripped: str,
    weights_file: str | os.PathLike[str] | None,
    weights: str | None,
    num_classes: int | None,
    in_channels: int | None,
    device: torch.device,
) -> LoadedModel | None:
    """timm:NAME, hf:PATH or package.module:callable (``model_specs``); None for other specs."""
    from . import model_specs

    lower = stripped.lower()
    kinds = (
        (model_specs.TIMM_PREFIX, "timm:NAME"),
        (model_specs.HF_PREFIX, "hf:PATH"),
    )
    is_factory = model_specs.is_factory_spec(stripped)
    for prefix, form in kinds:
        if lower.startswith(prefix) and weights is not None:
            raise ValueError(
                f"--weights applies to torchvision:NAME; for {form} use --weights-file"
            )
    if is_factory and weights is not None:
        raise ValueError("--weights applies to torchvision:NAME; for a factory use --weights-file")
    if lower.startswith(model_specs.TIMM_PREFIX):
        name = stripped[len(model_specs.TIMM_PREFIX) :].strip()
        return model_specs.load_timm(text, name, weights_file, num_classes, in_channels, device)
    if lower.startswith(model_specs.HF_PREFIX):
        folder = stripped[len(model_specs.HF_PREFIX) :].strip()
        return model_specs.load_hf(text, folder, weights_file, num_classes, in_channels, device)
    if is_factory:
        return model_specs.load_factory(stripped, weights_file, num_classes, in_channels, device)
    return None


def _load_builtin(
    spec: str, arch: str, num_classes: int | None, in_channels: int | None, device: torch.device
) -> LoadedModel:
    classes, channels = num_classes or 10, in_channels or 3
    model = build_builtin(arch, num_classes=classes, in_channels=channels)
    return LoadedModel(
        model=_finish(model, device),
        spec=spec,
        arch=arch,
        dataset=None,
        num_classes=classes,
        in_channels=channels,
        sha256=None,
        random_init=True,
        metadata={},
    )


def _load_project(
    path: Path, spec: str, num_classes: int | None, in_channels: int | None, device: torch.device
) -> LoadedModel:
    data = _read_file(path)
    sha = hashlib.sha256(data).hexdigest()
    obj = _torch_load_bytes(data, path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    if obj.get("format") != CHECKPOINT_FORMAT:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ValueError(
                f"{path} is a plain state dict with no architecture; load it with --model "
                "torchvision:NAME --weights-file PATH, or train with `ensemble-lesion train`"
            )
        keys = ", ".join(sorted(map(str, obj))[:5]) or "none"
        raise ValueError(
            f"{path} is a dict but not a resnet-ensemble checkpoint (keys: {keys}); write one "
            "with `ensemble-lesion train` or save_checkpoint"
        )
    version = obj.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {version!r}; this toolkit reads up to "
            f"{CHECKPOINT_VERSION}; upgrade resnet-ensemble"
        )
    arch = obj.get("arch")
    kwargs = obj.get("arch_kwargs") or {}
    state = obj.get("state_dict")
    if not isinstance(arch, str) or not isinstance(kwargs, dict) or not isinstance(state, dict):
        raise ValueError(f"{path} is a damaged resnet-ensemble checkpoint (no arch or weights)")
    kwargs = {k: v for k, v in kwargs.items() if k in _ARCH_KWARGS}
    try:
        model = build_builtin(arch, **kwargs)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: cannot rebuild {arch} ({err})") from None
    classes = int(kwargs.get("num_classes", 10))
    channels = int(kwargs.get("in_channels", 3))
    if num_classes is not None and num_classes != classes:
        raise ValueError(f"{path} was trained with {classes} classes, not {num_classes}")
    if in_channels is not None and in_channels != channels:
        raise ValueError(f"{path} takes {channels}-channel images, not {in_channels}")
    _load_into(model, _strip_prefix(dict(state)), str(path), arch)
    norm = obj.get("normalization") or {}
    mean, std = norm.get("mean"), norm.get("std")
    metadata = dict(obj.get("metadata") or {})
    for key in ("package_version", "torch_version", "epoch"):
        if obj.get(key) is not None:
            metadata.setdefault(key, obj[key])
    return LoadedModel(
        model=_finish(model, device),
        spec=spec,
        arch=arch,
        dataset=obj.get("dataset"),
        num_classes=classes,
        in_channels=channels,
        sha256=sha,
        random_init=False,
        metadata=metadata,
        path=path,
        mean=tuple(float(v) for v in mean) if mean else None,
        std=tuple(float(v) for v in std) if std else None,
    )


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _classifier_key(model: nn.Module) -> str | None:
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return f"{linears[-1]}.weight" if linears else None


def _load_torchvision(
    spec: str,
    name: str,
    weights_file: str | os.PathLike[str] | None,
    weights: str | None,
    num_classes: int | None,
    in_channels: int | None,
    device: torch.device,
) -> LoadedModel:
    import torchvision

    names = _torchvision_names()
    if name not in names:
        raise ValueError(f"unknown torchvision model {name!r}; choose one of: {', '.join(names)}")
    if weights_file is not None and weights is not None:
        raise ValueError("give --weights-file or --weights, not both")
    if in_channels not in (None, 3):
        raise ValueError(f"torchvision:{name} takes 3-channel images, not {in_channels}")
    arch = f"{TORCHVISION_PREFIX}{name}"
    sha: str | None = None
    dataset: str | None = None
    metadata: dict[str, Any] = {}
    mean = std = None
    if weights is not None:
        model, sha, classes, metadata = _torchvision_weights(name, weights, num_classes)
        dataset = "imagenet"
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    elif weights_file is not None:
        from .model_specs import read_state_dict  # .safetensors or a torch file

        path = Path(weights_file).expanduser()
        state, sha = read_state_dict(path)
        classes = num_classes or _infer_num_classes(name, state)
        model = torchvision.models.get_model(name, weights=None, num_classes=classes)
        _load_into(model, state, str(path), arch)
        metadata = {"weights_file": str(path)}
    else:
        classes = num_classes or 1000
        model = torchvision.models.get_model(name, weights=None, num_classes=classes)
    return LoadedModel(
        model=_finish(model, device),
        spec=spec,
        arch=arch,
        dataset=dataset,
        num_classes=classes,
        in_channels=3,
        sha256=sha,
        random_init=weights is None and weights_file is None,
        metadata=metadata,
        path=Path(weights_file) if weights_file is not None else None,
        mean=mean,
        std=std,
    )


def _infer_num_classes(name: str, state: Mapping[str, Any]) -> int:
    """Read the class count off the classifier's weight, so a CIFAR-trained torchvision ResNet
    loads without also passing --num-classes."""
    import torchvision

    with torch.device("meta"):  # no memory, no init cost: only names and shapes are needed
        probe = torchvision.models.get_model(name, weights=None)
    key = _classifier_key(probe)
    value = state.get(key) if key else None
    if isinstance(value, torch.Tensor) and value.dim() == 2:
        return int(value.shape[0])
    return 1000


def _torchvision_weights(
    name: str, weights: str, num_classes: int | None
) -> tuple[nn.Module, str | None, int, dict[str, Any]]:
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    choice = weights.split(".")[-1].strip().upper()
    if choice not in enum.__members__:
        raise ValueError(
            f"torchvision:{name} has no weights {weights!r}; choose one of: "
            f"{', '.join(enum.__members__)}"
        )
    w = enum[choice]
    classes = len(w.meta.get("categories") or []) or 1000
    if num_classes is not None and num_classes != classes:
        raise ValueError(f"{enum.__name__}.{choice} has {classes} classes, not {num_classes}")
    try:
        model = torchvision.models.get_model(name, weights=w)
    except Exception as err:  # noqa: BLE001 - network, cache and hash failures all end here
        raise ValueError(
            f"could not get torchvision weights {enum.__name__}.{choice} "
            f"({_reason(str(err), err)}); on a machine without internet, download {w.url} "
            "elsewhere and pass --weights-file"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)
    sha = file_sha256(cached) if cached.is_file() else None
    meta = {"weights": f"{enum.__name__}.{choice}", "weights_url": w.url}
    acc = w.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    if isinstance(acc, (int, float)) and math.isfinite(acc):
        meta["reported_top1"] = float(acc)
    return model, sha, classes, meta
