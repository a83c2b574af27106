"""The models users bring: ``timm:NAME``, ``hf:PATH`` and ``package.module:callable``, and
weights files (.safetensors or torch state dicts) for any of them.

Holds ``read_state_dict`` (a weights file to a dict of tensors, never running pickled code),
``is_factory_spec`` and the three loaders ``load_timm``, ``load_hf`` and ``load_factory``, each
returning a ``LoadedModel``. Where the architecture takes the number of classes and the input
channels, they are read from the weights (the classifier's rows, the first convolution's input
channels), so a 1-channel, 10-class state dict loads without flags.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import (
    CHECKPOINT_FORMAT,
    LoadedModel,
    _finish,
    _load_into,
    _read_file,
    _strip_prefix,
    _torch_load_bytes,
)

__all__ = [
    "HF_PREFIX",
    "TIMM_PREFIX",
    "is_factory_spec",
    "load_factory",
    "load_hf",
    "load_timm",
    "read_state_dict",
]

TIMM_PREFIX = "timm:"
HF_PREFIX = "hf:"
_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


def is_factory_spec(text: str) -> bool:
    """``package.module:callable`` (and not a file, nor a Windows drive path)."""
    return bool(_FACTORY.match(text.strip())) and not Path(text).exists()


def _needs(package: str, extra: str) -> ValueError:
    return ValueError(
        f"{package} is not installed; install it with: pip install 'resnet-ensemble[{extra}]'"
    )


# ----------------------------------------------------------------------------------------------
# Weights files


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str]:
    """A weights file as (state dict, SHA-256): .safetensors, or a torch file read with
    ``weights_only=True`` (a plain state dict, one under ``state_dict``/``model``, or a toolkit
    checkpoint's weights). Wrapper prefixes (``module.``, ``_orig_mod.``) are removed.

    Raises:
        FileNotFoundError, ValueError: one line saying what is wrong with the file.
    """
    path = Path(path).expanduser()
    data = _read_file(path, "weights")
    sha = hashlib.sha256(data).hexdigest()
    if path.suffix.lower() == ".safetensors" or data[8:9] == b"{":
        state = _read_safetensors(data, path)
    else:
        state = _torch_load_bytes(data, path)
        if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
            state = state.get("state_dict")
        elif isinstance(state, dict):
            for key in ("state_dict", "model", "model_state_dict"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} does not hold a state dict (a dict of tensors)")
    return _strip_prefix(dict(state)), sha


def _read_safetensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load
    except ImportError:  # pragma: no cover - a core dependency
        raise _needs("safetensors", "hf") from None
    try:
        return load(data)
    except Exception as err:  # noqa: BLE001 - the library raises its own error types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a readable safetensors file ({first[:120]})") from None


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


def _weights_note(weights_file: str | os.PathLike[str] | None) -> dict[str, Any]:
    return {"weights_file": str(weights_file)} if weights_file is not None else {}


# ----------------------------------------------------------------------------------------------
# timm


def load_timm(
    spec: str,
    name: str,
    weights_file: str | os.PathLike[str] | None,
    num_classes: int | None,
    in_channels: int | None,
    device: torch.device,
) -> LoadedModel:
    """``timm:NAME``: random weights, or ``weights_file``; classes and channels from it."""
    try:
        import timm
    except ImportError:
        raise _needs("timm", "timm") from None
    if not name or not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8] if name else []
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown timm model {name!r}{hint}")
    arch = f"{TIMM_PREFIX}{name}"
    state, sha = (None, None) if weights_file is None else read_state_dict(weights_file)
    if state is not None:
        with torch.device("meta"):  # names and shapes only
            probe = timm.create_model(name, pretrained=False)
        head = probe.get_classifier()
        head_name = next((n for n, m in probe.named_modules() if m is head), None)
        classes = _rows(state, f"{head_name}.weight" if head_name else None, 0)
        channels = _rows(state, _key_of(probe, nn.Conv2d, last=False), 1)
        source = str(weights_file)
        classes = _agree(source, "classes", classes, num_classes)
        channels = _agree(source, "input channels", channels, in_channels)
    else:
        classes, channels = num_classes, in_channels
    kwargs = {"num_classes": classes or 1000, "in_chans": channels or 3}
    model = timm.create_model(name, pretrained=False, **kwargs)
    if state is not None:
        _load_into(model, state, str(weights_file), arch)
    return LoadedModel(
        model=_finish(model, device),
        spec=spec,
        arch=arch,
        dataset=None,
        num_classes=kwargs["num_classes"],
        in_channels=kwargs["in_chans"],
        sha256=sha,
        random_init=state is None,
        metadata=_weights_note(weights_file),
        path=Path(weights_file) if weights_file is not None else None,
    )


# ----------------------------------------------------------------------------------------------
# Hugging Face

_HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


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


def load_hf(
    spec: str,
    folder_text: str,
    weights_file: str | os.PathLike[str] | None,
    num_classes: int | None,
    in_channels: int | None,
    device: torch.device,
) -> LoadedModel:
    """``hf:PATH``: a local Hugging Face folder (config.json, and weights if it has them),
    loaded with transformers' Auto classes; nothing is downloaded."""
    try:
        import transformers
    except ImportError:
        raise _needs("transformers", "hf") from None
    folder = Path(folder_text).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a Hugging Face model folder (no config.json); hf:PATH takes a "
            "local folder written by save_pretrained"
        )
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    auto = _hf_auto_class(config, folder)
    language = auto is transformers.AutoModelForCausalLM
    if language and (num_classes is not None or in_channels is not None):
        raise ValueError(
            f"{spec} is a language model, which image datasets do not fit; list its blocks with "
            "`ensemble-lesion blocks`, and evaluate it from Python with "
            "evaluate_routes(model, token_batches, routes, metric='perplexity')"
        )
    has_own = any((folder / f).is_file() for f in _HF_WEIGHTS)
    sha = None
    if weights_file is None and has_own:
        model = _quietly(lambda: auto.from_pretrained(folder, local_files_only=True))
    else:
        model = auto.from_config(config)
        if weights_file is not None:
            state, sha = read_state_dict(weights_file)
            _load_into(model, state, str(weights_file), spec)
    if language:
        classes, channels = int(config.vocab_size), 0
    else:
        classes = int(config.num_labels)
        channels = int(getattr(config, "num_channels", 3))
        _agree(spec, "classes", classes, num_classes)
        _agree(spec, "input channels", channels, in_channels)
    random = weights_file is None and not has_own
    return LoadedModel(
        model=_finish(model, device),
        spec=spec,
        arch=f"{HF_PREFIX}{folder.name or folder}",
        dataset=None,
        num_classes=classes,
        in_channels=channels,
        sha256=sha,
        random_init=random,
        metadata={"hf_folder": str(folder), "task": "language" if language else "classification"}
        | _weights_note(weights_file),
        path=Path(weights_file) if weights_file is not None else folder,
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
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{target} returned a {type(model).__name__}, not a torch nn.Module")
    return model


def load_factory(
    spec: str,
    weights_file: str | os.PathLike[str] | None,
    num_classes: int | None,
    in_channels: int | None,
    device: torch.device,
) -> LoadedModel:
    """``package.module:callable``: the factory's model (importing its module also registers
    any adapter it defines), with ``weights_file`` if given. A factory that takes
    ``num_classes`` / ``in_channels`` (or ``in_chans``) gets them from the weights, else from
    the data."""
    factory = _import_factory(spec)
    classes_arg = _accepts(factory, "num_classes")
    channels_arg = _accepts(factory, "in_channels", "in_chans")
    state, sha = (None, None) if weights_file is None else read_state_dict(weights_file)
    kwargs: dict[str, Any] = {}
    if state is not None:
        with torch.device("meta"):
            probe = _build(factory, spec)
        classes = _rows(state, _key_of(probe, nn.Linear, last=True), 0)
        channels = _rows(state, _key_of(probe, nn.Conv2d, last=False), 1)
        classes = _agree(str(weights_file), "classes", classes, num_classes)
        channels = _agree(str(weights_file), "input channels", channels, in_channels)
    else:
        classes, channels = num_classes, in_channels
    if classes_arg and classes is not None:
        kwargs[classes_arg] = classes
    if channels_arg and channels is not None:
        kwargs[channels_arg] = channels
    model = _build(factory, spec, **kwargs)
    if state is not None:
        _load_into(model, state, str(weights_file), spec)
    built_classes = _rows(model.state_dict(), _key_of(model, nn.Linear, last=True), 0)
    built_channels = _rows(model.state_dict(), _key_of(model, nn.Conv2d, last=False), 1)
    label = spec if state is not None else f"{spec} (weights as the factory made them)"
    return LoadedModel(
        model=_finish(model, device),
        spec=spec,
        arch=label,
        dataset=None,
        num_classes=built_classes or num_classes or 0,
        in_channels=built_channels or in_channels or 0,
        sha256=sha,
        random_init=False,
        metadata={"factory": spec} | _weights_note(weights_file),
        path=Path(weights_file) if weights_file is not None else None,
    )
