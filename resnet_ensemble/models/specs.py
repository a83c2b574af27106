"""What ``--model`` means: every model spec the toolkit accepts, loaded into a ready model.

Holds:
- ``LoadedModel``: a ready model (eval mode, on its device, float32 unless asked otherwise) and
  what is known about it
- ``load_model``: "embedded" (the shipped checkpoint), a checkpoint written by this toolkit, a
  built-in name such as ``resnet56``, ``torchvision:NAME``, ``timm:NAME``, ``hf:PATH`` (a local
  Hugging Face folder) or ``package.module:callable`` (a user's factory), with a weights file
  for any of the last four, failing with one clear line
- ``is_factory_spec``, ``EMBEDDED_CHECKPOINT`` and the spec prefixes (reading weights files is
  ``checkpoints``', where the file formats live)

Where an architecture takes the number of classes and the input channels, they are read from
the weights (the classifier's rows, the first convolution's input channels), so a 1-channel,
10-class state dict loads without flags. Zoo weights stored in half precision are analysed in
float32 (half precision on a CPU is slow and loses the small differences lesions make) unless
``load_model(..., dtype=None)`` keeps them as stored.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..archs import BUILTIN_ARCH_PATTERN, is_builtin_form
from ..blocks.runtime import model_device, resolve_device
from ..errors import one_line
from . import build_builtin
from .checkpoints import (
    check_safetensors_file,
    file_sha256,
    load_state,
    read_checkpoint,
    read_state_dict,
    regular_file_size,
    strip_wrapper_prefix,
)

__all__ = [
    "EMBEDDED_CHECKPOINT",
    "HF_PREFIX",
    "TIMM_PREFIX",
    "TORCHVISION_PREFIX",
    "LoadedModel",
    "is_factory_spec",
    "load_model",
]

EMBEDDED_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "embedded_resnet.pt"
TORCHVISION_PREFIX = "torchvision:"
TIMM_PREFIX = "timm:"
HF_PREFIX = "hf:"
_PREFIXES = (("torchvision", TORCHVISION_PREFIX), ("timm", TIMM_PREFIX), ("hf", HF_PREFIX))
_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
# The specs that take --weights-file but not --weights (a torchvision weights enum).
_FILE_ONLY = {"timm": "timm:NAME", "hf": "hf:PATH", "factory": "a factory"}
_TAKE_ARGS = ("torchvision", "timm", "factory")  # the specs that take --model-arg
_IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _first(err: BaseException) -> str:
    """An error quoted in a message: its first line, at most 120 characters."""
    return one_line(err, first=True, limit=120)


@dataclass(kw_only=True)
class LoadedModel:
    """A model ready for experiments, and where it came from.

    ``mean`` / ``std`` are the input normalisation the model was trained with, where known.
    """

    model: nn.Module
    spec: str
    arch: str
    dataset: str | None = None
    num_classes: int
    in_channels: int
    sha256: str | None = None
    random_init: bool = False
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def device(self) -> torch.device:
        return model_device(self.model)


@dataclass(frozen=True)
class _Weights:
    """A weights file as read (its state dict and SHA-256), or none: random init."""

    file: Path | None = None
    state: dict[str, torch.Tensor] | None = None
    sha256: str | None = None

    def load_into(self, model: nn.Module, arch: str) -> None:
        if self.state is not None:
            load_state(model, self.state, str(self.file), arch)

    def provenance(self) -> dict[str, Any]:
        """The ``LoadedModel`` fields that name the weights file, where there is one."""
        if self.file is None:
            return {}
        return {
            "sha256": self.sha256,
            "path": self.file,
            "metadata": {"weights_file": str(self.file)},
        }

    def loaded(
        self, model: nn.Module, spec: str, arch: str, classes: int, channels: int
    ) -> LoadedModel:
        """``model``, built to fit these weights, with them loaded (random init without)."""
        self.load_into(model, arch)
        return LoadedModel(
            model=model,
            spec=spec,
            arch=arch,
            num_classes=classes,
            in_channels=channels,
            random_init=self.state is None,
            **self.provenance(),
        )


@dataclass(frozen=True)
class _Wanted:
    """What the caller asked for besides the spec."""

    weights_file: Path | None
    weights: str | None  # a torchvision weights enum name
    num_classes: int | None
    in_channels: int | None
    dtype: torch.dtype | None
    model_args: Mapping[str, Any] = field(default_factory=dict)  # --model-arg KEY=VALUE

    def read_weights(self) -> _Weights:
        if self.weights_file is None:
            return _Weights()
        return _Weights(self.weights_file, *read_state_dict(self.weights_file))


def is_factory_spec(text: str) -> bool:
    """``package.module:callable`` (and not a file, nor a Windows drive path)."""
    return bool(_FACTORY.match(text.strip())) and not Path(text).exists()


def _parse_spec(stripped: str) -> tuple[str, str]:
    """(kind, target): torchvision, timm, hf (after their prefixes), factory, or local (the
    embedded model, a checkpoint path or a built-in name)."""
    lower = stripped.lower()
    for kind, prefix in _PREFIXES:  # before factories: "timm:resnet18" reads as module:callable
        if lower.startswith(prefix):
            return kind, stripped[len(prefix) :].strip()
    if is_factory_spec(stripped):
        return "factory", stripped
    return "local", stripped


# ----------------------------------------------------------------------------------------------
# load_model


def load_model(
    spec: str | os.PathLike[str] | None,
    *,
    weights_file: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
    model_args: Mapping[str, Any] | None = None,
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
        dtype: the floating-point type of the parameters; None keeps what the weights (or a
            factory) hold, so a float16 Hugging Face folder stays float16.
        model_args: keyword arguments for the constructor of torchvision:NAME, timm:NAME or a
            factory (``img_size=28`` for a timm ViT on 28x28 images); they win over classes
            and channels read from the weights.
    Raises:
        FileNotFoundError, ValueError: with one line saying what is wrong.
    Example:
        >>> loaded = load_model("torchvision:resnet50", weights_file="resnet50.pth")
    """
    device = resolve_device(device)  # fail on a bad device before any heavy work
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point type, not {dtype}")
    text = "embedded" if spec is None else os.fspath(spec)
    kind, target = _parse_spec(text.strip())
    if weights is not None and kind in _FILE_ONLY:
        raise ValueError(
            f"--weights applies to torchvision:NAME; for {_FILE_ONLY[kind]} use --weights-file"
        )
    if kind == "local" and (weights_file is not None or weights is not None):
        raise ValueError(
            "--weights-file and --weights apply only to --model torchvision:NAME, timm:NAME, "
            "hf:PATH or package.module:callable (--weights to torchvision:NAME alone); a "
            "toolkit checkpoint already holds its weights"
        )
    if model_args and kind not in _TAKE_ARGS:
        raise ValueError(
            "--model-arg applies to torchvision:NAME, timm:NAME and package.module:callable; "
            + (
                "a Hugging Face folder's config.json holds its architecture"
                if kind == "hf"
                else "a toolkit checkpoint or built-in name fixes its architecture"
            )
        )
    file = None if weights_file is None else Path(weights_file).expanduser()
    wanted = _Wanted(file, weights, num_classes, in_channels, dtype, dict(model_args or {}))
    loaded = _LOADERS[kind](text, target, wanted)
    loaded.model = loaded.model.to(device=device, dtype=dtype).eval()
    return loaded


def _load_local(text: str, stripped: str, wanted: _Wanted) -> LoadedModel:
    """The embedded model, a toolkit checkpoint, or a built-in name."""
    if stripped.lower() == "embedded":
        if not EMBEDDED_CHECKPOINT.is_file():
            raise FileNotFoundError(
                f"the embedded checkpoint is missing ({EMBEDDED_CHECKPOINT}); reinstall the "
                "package or pass --model"
            )
        return _load_checkpoint(EMBEDDED_CHECKPOINT, "embedded", wanted)
    path = Path(text).expanduser()
    if path.exists():
        return _load_checkpoint(path, text, wanted)
    if is_builtin_form(stripped):  # build_builtin says how to fix a depth that is not 6n + 2
        return _load_builtin(text, stripped.lower(), wanted)
    if os.sep in text or "/" in text or path.suffix:
        raise FileNotFoundError(f"no such checkpoint: {text}")
    raise ValueError(
        f"unknown model {text!r}: not a file, and not a known name; use a checkpoint path, "
        f"'embedded', torchvision:NAME, or a built-in {BUILTIN_ARCH_PATTERN}"
    )


def _load_builtin(spec: str, arch: str, wanted: _Wanted) -> LoadedModel:
    classes, channels = wanted.num_classes or 10, wanted.in_channels or 3
    model = build_builtin(arch, num_classes=classes, in_channels=channels)
    return _Weights().loaded(model, spec, arch, classes, channels)  # random init


def _load_checkpoint(path: Path, spec: str, wanted: _Wanted) -> LoadedModel:
    """A checkpoint written by this toolkit: its built-in arch rebuilt, its weights loaded."""
    obj, sha = read_checkpoint(path)
    arch, kwargs = obj["arch"], obj["arch_kwargs"]
    try:
        model = build_builtin(arch, **kwargs)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: cannot rebuild {arch} ({err})") from None
    classes = int(kwargs.get("num_classes", 10))
    channels = int(kwargs.get("in_channels", 3))
    if wanted.num_classes is not None and wanted.num_classes != classes:
        raise ValueError(f"{path} was trained with {classes} classes, not {wanted.num_classes}")
    if wanted.in_channels is not None and wanted.in_channels != channels:
        raise ValueError(f"{path} takes {channels}-channel images, not {wanted.in_channels}")
    load_state(model, strip_wrapper_prefix(dict(obj["state_dict"])), str(path), arch)
    norm = obj.get("normalization") or {}
    mean, std = norm.get("mean"), norm.get("std")
    metadata = dict(obj.get("metadata") or {})
    for key in ("package_version", "torch_version", "epoch"):
        if obj.get(key) is not None:
            metadata.setdefault(key, obj[key])
    return LoadedModel(
        model=model,
        spec=spec,
        arch=arch,
        dataset=obj.get("dataset"),
        num_classes=classes,
        in_channels=channels,
        sha256=sha,
        metadata=metadata,
        path=path,
        mean=tuple(float(v) for v in mean) if mean else None,
        std=tuple(float(v) for v in std) if std else None,
    )


# ----------------------------------------------------------------------------------------------
# Classes and channels read from the weights


def _key_of(model: nn.Module, kind: type[nn.Module], last: bool) -> str | None:
    names = [name for name, m in model.named_modules() if isinstance(m, kind)]
    if not names:
        return None
    return f"{names[-1 if last else 0]}.weight"


def _rows(state: Mapping[str, Any], key: str | None, dim: int) -> int | None:
    value = state.get(key) if key else None
    if isinstance(value, torch.Tensor) and value.dim() > dim:
        return int(value.shape[dim])
    return None


def _agree(source: str, what: str, found: int | None, wanted: int | None) -> int | None:
    if found is not None and wanted is not None and found != wanted:
        raise ValueError(f"{source} has {found} {what}, but the data has {wanted}")
    return found if found is not None else wanted


def _fit_weights(
    state: Mapping[str, Any], wanted: _Wanted, head_key: str | None, probe: nn.Module
) -> tuple[int | None, int | None]:
    """(classes, input channels) from the rows of ``head_key`` and of ``probe``'s first
    convolution, each checked against what the data asks for."""
    source = str(wanted.weights_file)
    classes = _rows(state, head_key, 0)
    channels = _rows(state, _key_of(probe, nn.Conv2d, last=False), 1)
    return (
        _agree(source, "classes", classes, wanted.num_classes),
        _agree(source, "input channels", channels, wanted.in_channels),
    )


def _import_zoo(package: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ValueError(
            f"{package} is not installed; install it with: pip install 'resnet-ensemble[{extra}]'"
        ) from None


# ----------------------------------------------------------------------------------------------
# torchvision


def _load_torchvision(spec: str, name: str, wanted: _Wanted) -> LoadedModel:
    """``torchvision:NAME``: random weights, a weights file, or a weights enum (downloads).

    With a weights file the first convolution and the head are built to its shapes: the
    classes from the head's rows, and the first convolution's input channels and kernel size
    (with padding kernel // 2 where the kernel differs; torchvision's stride), so a 1-channel
    Fashion-MNIST ResNet-18 loads without flags. Without one, the data's channels decide."""
    import torchvision

    names = sorted(torchvision.models.list_models(module=torchvision.models))
    if name not in names:
        raise ValueError(f"unknown torchvision model {name!r}; choose one of: {', '.join(names)}")
    if wanted.weights_file is not None and wanted.weights is not None:
        raise ValueError("give --weights-file or --weights, not both")
    if wanted.weights is not None:
        if wanted.in_channels not in (None, 3):
            raise ValueError(
                f"torchvision:{name} with --weights takes 3-channel images, not "
                f"{wanted.in_channels}"
            )
        if wanted.model_args:
            raise ValueError("--model-arg does not apply with --weights: they fix the model")
        return _torchvision_pretrained(spec, name, wanted.weights, wanted.num_classes)
    weights = wanted.read_weights()
    args = dict(wanted.model_args)

    def build(**kwargs: Any) -> nn.Module:
        return _construct(
            torchvision.models.get_model, spec, name, wanted.model_args, weights=None, **kwargs
        )

    classes, channels, kernel = wanted.num_classes, wanted.in_channels, None
    if weights.state is not None:
        with torch.device("meta"):  # no memory, no init cost: only names and shapes are needed
            probe = build(**args)
        classes, channels = _fit_weights(
            weights.state, wanted, _key_of(probe, nn.Linear, last=True), probe
        )
        conv = weights.state.get(_key_of(probe, nn.Conv2d, last=False) or "")
        if isinstance(conv, torch.Tensor) and conv.dim() == 4:
            kernel = tuple(int(k) for k in conv.shape[2:])
    model = build(**({"num_classes": classes or 1000} | args))
    _fit_first_conv(model, channels or 3, kernel)
    weights.load_into(model, spec)
    built = model.state_dict()
    return weights.loaded(
        model,
        spec,
        f"{TORCHVISION_PREFIX}{name}",
        _rows(built, _key_of(model, nn.Linear, last=True), 0) or classes or 1000,
        _rows(built, _key_of(model, nn.Conv2d, last=False), 1) or channels or 3,
    )


def _construct(
    make: Callable[..., Any], spec: str, name: str, given: Mapping[str, Any], **kwargs: Any
) -> nn.Module:
    """``make(name, **kwargs)``; a constructor that does not take an argument ``given`` with
    --model-arg (or gets a bad value) said in one line."""
    try:
        return make(name, **kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        raise ValueError(
            f"cannot build {spec} with {_shown_args(given)} ({_first(err)}); check the "
            "--model-arg names and values against its constructor"
        ) from None


def _shown_args(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no --model-arg"


def _fit_first_conv(model: nn.Module, channels: int, kernel: tuple[int, ...] | None) -> None:
    """Replace the first convolution with one taking ``channels`` inputs (and ``kernel``),
    keeping its outputs, stride and bias: the stem of a network trained on other images."""
    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None:
        return
    qualified, conv = found
    same_kernel = kernel is None or tuple(conv.kernel_size) == kernel
    if conv.in_channels == channels and same_kernel:
        return
    if conv.groups != 1:
        raise ValueError(f"cannot adapt the grouped first convolution {qualified} to the weights")
    size = tuple(conv.kernel_size) if kernel is None else kernel
    new = nn.Conv2d(
        channels,
        conv.out_channels,
        size,  # type: ignore[arg-type]  # a 2-tuple
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding if same_kernel else tuple(k // 2 for k in size),  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    parent_name, _, attr = qualified.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def _torchvision_pretrained(
    spec: str, name: str, weights: str, num_classes: int | None
) -> LoadedModel:
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
        why = _first(err)
        raise ValueError(
            f"could not get torchvision weights {enum.__name__}.{choice} ({why}); "
            f"on a machine without internet, download {w.url} elsewhere and pass --weights-file"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)
    meta = {"weights": f"{enum.__name__}.{choice}", "weights_url": w.url}
    acc = w.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    if isinstance(acc, (int, float)) and math.isfinite(acc):
        meta["reported_top1"] = float(acc)
    mean, std = _IMAGENET_NORMALIZATION
    return LoadedModel(
        model=model,
        spec=spec,
        arch=f"{TORCHVISION_PREFIX}{name}",
        dataset="imagenet",
        num_classes=classes,
        in_channels=3,
        sha256=file_sha256(cached) if cached.is_file() else None,
        metadata=meta,
        mean=mean,
        std=std,
    )


# ----------------------------------------------------------------------------------------------
# timm


def _load_timm(spec: str, name: str, wanted: _Wanted) -> LoadedModel:
    """``timm:NAME``: random weights, or a weights file; classes and channels from it."""
    timm = _import_zoo("timm", "timm")
    if not name or not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8] if name else []
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown timm model {name!r}{hint}")
    weights = wanted.read_weights()
    args = dict(wanted.model_args)
    classes, channels = wanted.num_classes, wanted.in_channels
    if weights.state is not None:
        with torch.device("meta"):  # names and shapes only
            probe = _construct(
                timm.create_model, spec, name, wanted.model_args, pretrained=False, **args
            )
        head = probe.get_classifier()  # type: ignore[operator]
        head_name = next((n for n, m in probe.named_modules() if m is head), None)
        head_key = f"{head_name}.weight" if head_name else None
        classes, channels = _fit_weights(weights.state, wanted, head_key, probe)
    args = {"num_classes": classes or 1000, "in_chans": channels or 3} | args
    model = _construct(timm.create_model, spec, name, wanted.model_args, pretrained=False, **args)
    return weights.loaded(
        model, spec, f"{TIMM_PREFIX}{name}", int(args["num_classes"]), int(args["in_chans"])
    )


# ----------------------------------------------------------------------------------------------
# Hugging Face

_HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _hf_weights_sha256(folder: Path) -> str:
    """The SHA-256 of a folder's weights: of the one file, or, for a sharded model, of its
    index followed by each shard it names (in file-name order), so that any change to any
    shard changes the hash."""
    from .checkpoints import file_sha256

    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).is_file():
            return file_sha256(folder / single)
    digest = hashlib.sha256()
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            digest.update(bytes.fromhex(file_sha256(folder / index)))
            shards = json.loads((folder / index).read_text()).get("weight_map", {}).values()
            for shard in sorted(set(shards)):
                digest.update(bytes.fromhex(file_sha256(folder / shard)))
            break
    return digest.hexdigest()


def _hf_auto_class(config: Any, folder: Path) -> Any:
    import transformers

    names = " ".join(getattr(config, "architectures", None) or [])
    if "ForCausalLM" in names or "LMHeadModel" in names:
        return transformers.AutoModelForCausalLM
    if "ForImageClassification" in names:
        return transformers.AutoModelForImageClassification
    for auto in (transformers.AutoModelForImageClassification, transformers.AutoModelForCausalLM):
        if type(config) in auto._model_mapping:
            return auto
    raise ValueError(
        f"{folder}: config.json describes a {config.model_type} model that is neither an image "
        "classifier nor a causal language model"
    )


def _quietly(load: Callable[[], Any]) -> Any:
    """Run a transformers load without its progress bar, which would break one-line output."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load()
    finally:
        if shown:
            hf_logging.enable_progress_bar()


#: The largest sizes a Hugging Face config may ask for, checked before the model is built from
#: it (a config of 10^7 layers would allocate until memory runs out): far above any open model.
_HF_SIZES = {
    "num_hidden_layers": 10_000, "n_layer": 10_000, "hidden_size": 1 << 17, "n_embd": 1 << 17,
    "intermediate_size": 1 << 20, "n_inner": 1 << 20, "vocab_size": 1 << 24,
    "num_attention_heads": 4096, "n_head": 4096, "max_position_embeddings": 1 << 22,
    "n_positions": 1 << 22, "num_labels": 100_000, "num_channels": 64,
}  # fmt: skip
#: The most parameters a config may imply (about 12 h^2 per layer and h per token of the
#: vocabulary): a trillion, above the largest open models.
_HF_MAX_PARAMETERS = 10**12


def _check_hf_sizes(config: Any, source: Path) -> None:
    """Refuse, before anything is allocated, a config whose sizes are not whole numbers within
    ``_HF_SIZES`` or that imply more than ``_HF_MAX_PARAMETERS`` parameters."""
    for key, most in _HF_SIZES.items():
        value = getattr(config, key, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
            shown = repr(value)[:24]
            raise ValueError(
                f"{source}: {key} must be a whole number from 0 to {most:,}, got {shown}"
            )
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 0
    width = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 0
    vocab = getattr(config, "vocab_size", None) or 0
    implied = layers * 12 * width * width + vocab * width
    if isinstance(implied, int) and implied > _HF_MAX_PARAMETERS:
        raise ValueError(
            f"{source} implies about {implied:.2e} parameters ({layers} layers of width "
            f"{width}), more than the {_HF_MAX_PARAMETERS:.0e} a model may have"
        )


def _load_hf(spec: str, folder_text: str, wanted: _Wanted) -> LoadedModel:
    """``hf:PATH``: a local Hugging Face folder (config.json, and weights if it has them),
    loaded with transformers' Auto classes; nothing is downloaded.

    transformers builds a model in the dtype its config records (float16 for a folder saved in
    half precision) unless told one, so the dtype asked for goes to it directly."""
    transformers = _import_zoo("transformers", "hf")
    folder = Path(folder_text).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a Hugging Face model folder (no config.json); hf:PATH takes a "
            "local folder written by save_pretrained"
        )
    regular_file_size(folder / "config.json", "config")
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - transformers' errors rarely name the file
        raise ValueError(
            f"{folder / 'config.json'} is not a readable Hugging Face config ({_first(err)})"
        ) from None
    _check_hf_sizes(config, folder / "config.json")
    auto = _hf_auto_class(config, folder)
    language = auto is transformers.AutoModelForCausalLM
    if language and (wanted.num_classes is not None or wanted.in_channels is not None):
        raise ValueError(
            f"{spec} is a language model, which image datasets do not fit; list its blocks with "
            "`ensemble-lesion blocks`, and evaluate it from Python with "
            "evaluate_routes(model, token_batches, routes, metric='perplexity')"
        )
    dtype = {} if wanted.dtype is None else {"dtype": wanted.dtype}
    has_own = any((folder / f).is_file() for f in _HF_WEIGHTS)
    weights = wanted.read_weights()
    if weights.state is None and has_own:
        for shard in sorted(folder.glob("*.safetensors")):  # transformers reads them unchecked
            check_safetensors_file(shard)
        model = _quietly(lambda: auto.from_pretrained(folder, local_files_only=True, **dtype))
    else:
        model = auto.from_config(config, **dtype)
        weights.load_into(model, spec)
    if language:
        classes, channels = int(config.vocab_size), 0
    else:
        classes = int(config.num_labels)
        channels = int(getattr(config, "num_channels", 3))
        _agree(spec, "classes", classes, wanted.num_classes)
        _agree(spec, "input channels", channels, wanted.in_channels)
    fields = {"path": folder} | weights.provenance()
    if weights.state is None and has_own:  # the folder's own weights: hash what was loaded
        fields["sha256"] = _hf_weights_sha256(folder)
    task = {"hf_folder": str(folder), "task": "language" if language else "classification"}
    fields["metadata"] = task | fields.get("metadata", {})
    return LoadedModel(
        model=model,
        spec=spec,
        arch=f"{HF_PREFIX}{folder.name or folder}",
        num_classes=classes,
        in_channels=channels,
        random_init=weights.state is None and not has_own,
        **fields,
    )


# ----------------------------------------------------------------------------------------------
# A user's factory


def _import_factory(target: str) -> Callable[..., Any]:
    module_name, attr = target.strip().split(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # `mypkg.nets` next to where the command runs
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"cannot import {module_name} for --model {target} ({err}); run from the folder "
            "that holds it, or install it"
        ) from None
    except SystemExit as stop:  # a module that exits on import must not end the program quietly
        raise ValueError(
            f"importing {module_name} for --model {target} called sys.exit({stop.code!r}); a "
            "factory's module must only define the model"
        ) from None
    except Exception as err:  # noqa: BLE001 - the user's module: name it with its failure
        raise ValueError(
            f"importing {module_name} for --model {target} failed ({_first(err)})"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{module_name} has no callable {attr!r} for --model {target}")
    return factory


def _accepts(factory: Callable[..., Any], *names: str) -> str | None:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    return next((n for n in names if n in params), None)


def _build(factory: Callable[..., Any], target: str, **kwargs: Any) -> nn.Module:
    """Call the user's factory; whatever it raises (SystemExit too) becomes one line naming it."""
    try:
        model = factory(**kwargs)
    except SystemExit as stop:  # would end the program with no word, exit 0 for sys.exit()
        raise ValueError(
            f"--model {target}: the factory called sys.exit({stop.code!r}) instead of returning "
            "a model"
        ) from None
    except TypeError as err:
        if "argument" in str(err):
            raise ValueError(
                f"cannot call {target} with {_shown_args(kwargs)} ({_first(err)}); check "
                "the --model-arg names against its signature"
            ) from None
        raise ValueError(f"--model {target}: the factory failed ({_first(err)})") from None
    except Exception as err:  # noqa: BLE001 - the user's code: name it with its failure
        raise ValueError(f"--model {target}: the factory failed ({_first(err)})") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{target} returned a {type(model).__name__}, not a torch nn.Module")
    return model


def _load_factory(_: str, spec: str, wanted: _Wanted) -> LoadedModel:
    """``package.module:callable``: the factory's model (importing its module also registers
    any adapter it defines), with the weights file if given. A factory that takes
    ``num_classes`` / ``in_channels`` (or ``in_chans``) gets them from the weights, else from
    the data."""
    factory = _import_factory(spec)
    classes_arg = _accepts(factory, "num_classes")
    channels_arg = _accepts(factory, "in_channels", "in_chans")
    weights = wanted.read_weights()
    classes, channels = wanted.num_classes, wanted.in_channels
    if weights.state is not None:
        with torch.device("meta"):
            probe = _build(factory, spec, **wanted.model_args)
        head_key = _key_of(probe, nn.Linear, last=True)
        classes, channels = _fit_weights(weights.state, wanted, head_key, probe)
    kwargs: dict[str, Any] = {}
    if classes_arg and classes is not None:
        kwargs[classes_arg] = classes
    if channels_arg and channels is not None:
        kwargs[channels_arg] = channels
    model = _build(factory, spec, **(kwargs | dict(wanted.model_args)))
    weights.load_into(model, spec)
    built = model.state_dict()
    built_classes = _rows(built, _key_of(model, nn.Linear, last=True), 0)
    built_channels = _rows(built, _key_of(model, nn.Conv2d, last=False), 1)
    fields = weights.provenance()
    fields["metadata"] = {"factory": spec} | fields.get("metadata", {})
    return LoadedModel(
        model=model,
        spec=spec,
        arch=spec if weights.state is not None else f"{spec} (weights as the factory made them)",
        num_classes=built_classes or wanted.num_classes or 0,
        in_channels=built_channels or wanted.in_channels or 0,
        **fields,
    )


_LOADERS: dict[str, Callable[[str, str, _Wanted], LoadedModel]] = {
    "local": _load_local,
    "torchvision": _load_torchvision,
    "timm": _load_timm,
    "hf": _load_hf,
    "factory": _load_factory,
}
