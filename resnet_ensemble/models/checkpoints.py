"""Checkpoints: the toolkit's file format, and reading any weights file without running code.

Holds:
- ``save_checkpoint`` / ``load_checkpoint`` / ``read_checkpoint``: the toolkit's checkpoint,
  written atomically and read with ``torch.load(weights_only=True)`` so that a file can never
  run code; ``read_checkpoint`` also checks the format tag, version and fields
- ``read_state_dict``: a weights file (.safetensors or a torch file) as a state dict
- ``check_state_dict`` / ``load_state``: a state dict against a model, failing with one line
  that names what does not fit before anything is copied
- ``file_sha256``, ``package_version``

What ``--model`` means (``load_model``, ``LoadedModel``, ``EMBEDDED_CHECKPOINT``) is
``model_specs``', which builds on this module.

A checkpoint is a dict holding only tensors and plain containers of primitives: a format tag and
version, the state dict, the built-in arch name and its builder arguments, the dataset and its
normalisation, training metadata, the package version and, for resuming, optimizer and scheduler
state and the epoch.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import bounds
from ..archs import parse_arch
from ..atomic import atomic_write
from ..errors import one_line
from . import BUILDER_OPTIONS

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "check_safetensors_file",
    "check_safetensors_header",
    "check_state_dict",
    "file_sha256",
    "load_checkpoint",
    "load_state",
    "package_version",
    "read_checkpoint",
    "read_file",
    "read_state_dict",
    "save_checkpoint",
    "strip_wrapper_prefix",
    "torch_load_safely",
]

CHECKPOINT_FORMAT = "resnet-ensemble-checkpoint"
CHECKPOINT_VERSION = 1
# ----------------------------------------------------------------------------------------------
# Small helpers


def package_version() -> str:
    """The installed version of this package, or the source tree's (``_version``)."""
    from .._version import __version__

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
    unknown = sorted(set(arch_kwargs) - set(BUILDER_OPTIONS))
    if unknown:
        raise ValueError(f"unknown arch_kwargs {unknown}; expected some of {list(BUILDER_OPTIONS)}")
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
        from ..data.datasets import dataset_info

        info = dataset_info(dataset)
        return tuple(info.mean), tuple(info.std)
    except Exception:  # noqa: BLE001 - an unknown dataset just means no recorded normalisation
        return None


# ----------------------------------------------------------------------------------------------
# Reading files safely

_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
_SAFE_MODULES = ("torch.", "collections.", "_codecs.", "numpy.")  # data, not code
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"  # the first opcode of every pickle of protocol 2 or later (torch's)
_LEGACY_PICKLES = 5  # torch's legacy format: five pickles, then raw tensor bytes


def _pickle_bytes(data: bytes) -> bytes:
    """The pickled part of a file: the data.pkl of torch's zip format, or the file itself."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl")]
            return zf.read(names[0]) if names else b""
    except (zipfile.BadZipFile, OSError, KeyError):
        return b""


def _pickled_globals(data: bytes) -> list[str]:
    """The module.name globals a pickle (raw, several in a row, or inside torch's zip format)
    would import, found by reading its opcodes without running it."""
    payload = _pickle_bytes(data)
    stream = io.BytesIO(payload)
    found: list[str] = []
    try:
        for _pickle in range(_LEGACY_PICKLES):
            if stream.tell() >= len(payload):
                break
            strings: list[str] = []
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                    found.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - a broken pickle, or raw tensor bytes, ends the scan
        pass
    # Random bytes can decode as a GLOBAL opcode by chance; keep only real dotted names.
    return [g for g in found if _DOTTED.match(g)]


def _refused_data_globals(data: bytes, stored: Sequence[str]) -> list[str]:
    """Of the ``stored`` globals (all torch's or numpy's), those that torch's weights-only loader
    does not accept, as torch itself lists them (zip format, torch >= 2.5); else none."""
    ask = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if ask is None or not zipfile.is_zipfile(io.BytesIO(data)):
        return []
    try:
        refused = set(ask(io.BytesIO(data)))
    except Exception:  # noqa: BLE001 - a file torch cannot list names nothing
        return []
    return [g for g in stored if g in refused]


#: The largest checkpoint or weights file read (a ViT-H's weights are 2.5 GB in float32).
MAX_FILE_BYTES = 8 << 30
#: A zip checkpoint may declare at most this many times its own size once unpacked: torch
#: stores its entries uncompressed, so a larger claim is a damaged file or a zip bomb.
MAX_ZIP_EXPANSION = 4


def regular_file_size(path: Path, what: str = "checkpoint") -> int:
    """The size of ``path``, checked by ``stat`` alone before anything opens it: a regular file
    no larger than ``MAX_FILE_BYTES`` (``bounds.regular_file_size``)."""
    return bounds.regular_file_size(path, what, MAX_FILE_BYTES)


def read_file(path: Path, what: str = "checkpoint") -> bytes:
    """The bytes of ``path``, or one line saying why there are none to read."""
    regular_file_size(path, what)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path} cannot be read ({err.strerror or err})") from None
    if not data:
        raise ValueError(f"{path} is empty (0 bytes), not a {what}")
    _check_zip_sizes(data, path)
    return data


def _check_zip_sizes(data: bytes, path: Path) -> None:
    """Refuse a zip checkpoint whose entries claim far more bytes than the file holds, before
    torch unpacks any (its central directory is read, not its data)."""
    if not data.startswith(_ZIP_MAGIC):
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            claimed = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return  # torch_load_safely says what is wrong with it
    if claimed > MAX_ZIP_EXPANSION * len(data) + (1 << 20):
        raise ValueError(
            f"{path} is not a readable checkpoint (its zip entries claim {claimed:,} bytes "
            f"unpacked from {len(data):,}: torch stores them uncompressed)"
        )


def torch_load_safely(data: bytes, path: Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure rephrased as one line, decided from
    the bytes themselves: the globals the pickle names, and the file's own structure."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; we say it in one line
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many obscure types on bad bytes
        stored = _pickled_globals(data) if isinstance(err, pickle.UnpicklingError) else []
        code = [g for g in stored if not g.startswith(_SAFE_MODULES)]
        if code:
            raise ValueError(
                f"refused: {path} contains pickled code, not just tensors (it would call "
                f"{code[0]}); only checkpoints written by this toolkit or plain state dicts are "
                "loaded"
            ) from None
        refused = _refused_data_globals(data, stored)
        if refused:
            reason = f"it stores {refused[0]} objects, which the safe loader does not accept"
        else:
            reason = _unreadable_because(data, err)
        raise ValueError(f"{path} is not a readable checkpoint ({reason})") from None


def _unreadable_because(data: bytes, err: BaseException) -> str:
    if data.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                damaged = zf.testzip() is not None
        except (zipfile.BadZipFile, OSError, EOFError):
            damaged = True
        if damaged:
            return "the file is truncated or corrupted"
    elif data[:1] != _PICKLE_PROTO:
        return "the bytes are not a torch checkpoint"
    return one_line(err, first=True, limit=120).removeprefix("Weights only load failed. ")


def load_checkpoint(path: str | os.PathLike[str]) -> dict:
    """The raw dict stored in ``path``, loaded without running any pickled code.

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty, truncated, not a torch file, pickled code, or not a dict.
    """
    path = Path(path)
    obj = torch_load_safely(read_file(path), path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def read_checkpoint(path: Path) -> tuple[dict, str]:
    """A toolkit checkpoint and the SHA-256 of its bytes, with its format tag, version and
    fields checked; the arch kwargs are cut to ``BUILDER_OPTIONS``.

    Raises:
        FileNotFoundError, ValueError: one line; a foreign dict or a plain state dict is named
            as such, with what to do instead.
    """
    data = read_file(path)
    obj = torch_load_safely(data, path)
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
    kwargs = obj.get("arch_kwargs") or {}
    fields = (obj.get("arch"), kwargs, obj.get("state_dict"))
    if not all(isinstance(v, t) for v, t in zip(fields, (str, dict, dict), strict=True)):
        raise ValueError(f"{path} is a damaged resnet-ensemble checkpoint (no arch or weights)")
    obj["arch_kwargs"] = {k: v for k, v in kwargs.items() if k in BUILDER_OPTIONS}
    return obj, hashlib.sha256(data).hexdigest()


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str]:
    """A weights file as (state dict, SHA-256): .safetensors, or a torch file read with
    ``weights_only=True`` (a plain state dict, one under ``state_dict``/``model``, or a toolkit
    checkpoint's weights). Wrapper prefixes (``module.``, ``_orig_mod.``) are removed.

    Raises:
        FileNotFoundError, ValueError: one line saying what is wrong with the file.
    """
    path = Path(path).expanduser()
    data = read_file(path, "weights")
    sha = hashlib.sha256(data).hexdigest()
    state: Any  # whatever the file holds, until checked below
    if path.suffix.lower() == ".safetensors" or data[8:9] == b"{":
        state = _read_safetensors(data, path)
    else:
        state = torch_load_safely(data, path)
        if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
            state = state.get("state_dict")
        elif isinstance(state, dict):
            for key in ("state_dict", "model", "model_state_dict"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} does not hold a state dict (a dict of tensors)")
    return strip_wrapper_prefix(dict(state)), sha


#: Bytes per element of each safetensors dtype (the format's own names).
_SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "F8_E8M0": 1,
    "C64": 8,
}  # fmt: skip
#: The largest safetensors header read (the format's own reader stops at 100 MB as well).
MAX_SAFETENSORS_HEADER = 100_000_000


def check_safetensors_header(head: bytes, size: int, path: Path) -> dict[str, Any]:
    """The header of a safetensors file of ``size`` bytes whose first bytes are ``head`` (at
    least the 8-byte length and the header), checked before any tensor is read: the length
    within bounds and the file, every entry's dtype known, its shape whole numbers, its offsets
    inside the data and as many bytes apart as its dtype and shape need.

    Raises:
        ValueError: one line naming the file and the first entry that does not fit.
    """
    bad = f"{path} is not a readable safetensors file"
    if size < 8 or len(head) < 8:
        raise ValueError(f"{bad} (it has {size} bytes, fewer than the 8 of its header length)")
    length = int.from_bytes(head[:8], "little")
    if length > MAX_SAFETENSORS_HEADER or 8 + length > size:
        raise ValueError(
            f"{bad} (its header claims {length:,} bytes; the file has {size:,} and a header may "
            f"have {MAX_SAFETENSORS_HEADER:,})"
        )
    try:
        header = json.loads(head[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{bad} (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{bad} (its header is not a JSON object)")
    data_bytes = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"{bad} (tensor {str(name)[:60]!r}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} has no dtype, shape and offsets)")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{where} has an unknown dtype {str(dtype)[:20]!r})")
        if not (
            isinstance(shape, list)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                    for v in [*shape, *offsets])
        ):  # fmt: skip
            raise ValueError(f"{where} has a shape or offsets that are not whole numbers)")
        begin, end = offsets
        if not begin <= end <= data_bytes:
            raise ValueError(
                f"{where} lies at bytes {begin:,}-{end:,}, outside the {data_bytes:,} of data)"
            )
        need = math.prod(shape) * _SAFETENSORS_DTYPES[dtype]
        if need != end - begin:
            raise ValueError(
                f"{where}: {dtype} of shape {_dims(shape)[:60]} needs {need:,} bytes, its "
                f"offsets give {end - begin:,})"
            )
    return header


def check_safetensors_file(path: Path) -> None:
    """``check_safetensors_header`` on a file, reading only its header (for weights that another
    library loads, such as a Hugging Face folder's model.safetensors)."""
    size = regular_file_size(path, "weights")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else 0
            if len(head) == 8 and length <= MAX_SAFETENSORS_HEADER and 8 + length <= size:
                head += f.read(length)
    except OSError as err:
        raise ValueError(f"{path} cannot be read ({err.strerror or err})") from None
    check_safetensors_header(head, size, path)


def _read_safetensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    check_safetensors_header(bytes(memoryview(data)[: 8 + MAX_SAFETENSORS_HEADER]), len(data), path)
    try:
        from safetensors.torch import load
    except ImportError:  # pragma: no cover - a core dependency
        raise ValueError(
            "safetensors is not installed; install it with: pip install 'resnet-ensemble[hf]'"
        ) from None
    try:
        return load(data)
    except Exception as err:  # noqa: BLE001 - the library raises its own error types
        why = one_line(err, first=True, limit=120)
        raise ValueError(f"{path} is not a readable safetensors file ({why})") from None


# ----------------------------------------------------------------------------------------------
# Checking state dicts against models


def _short(keys: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape) or "scalar"


def strip_wrapper_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Accept state dicts saved from a DataParallel/DDP or torch.compile wrapper."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


#: The floating-point dtypes weights are read in (and cast to the model's): 8-bit floats are
#: scaled formats whose scales live outside the state dict, so a cast would give wrong weights.
_WEIGHT_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_dtype(key: str, stored: torch.dtype, wanted: torch.dtype, source: str) -> None:
    """Refuse in one line a tensor that would be cast into something else: integer or FP8
    weights where the model has floats (a quantised file), or floats where it counts."""
    if wanted.is_floating_point and stored not in _WEIGHT_FLOATS:
        kind = "8-bit float" if stored.is_floating_point else "integer"
        raise ValueError(
            f"{source} stores {key} as {str(stored).removeprefix('torch.')} ({kind}, a quantised "
            f"file?) where the model has {str(wanted).removeprefix('torch.')}; dequantise it to "
            "float32, float16 or bfloat16 first"
        )
    if not wanted.is_floating_point and (stored.is_floating_point or stored.is_complex):
        raise ValueError(
            f"{source} stores {key} as {str(stored).removeprefix('torch.')} where the model "
            f"has {str(wanted).removeprefix('torch.')}"
        )


def check_state_dict(model: nn.Module, state: Mapping[str, Any], source: str, arch: str) -> None:
    """Raise one line naming what does not fit ``model`` (missing or unexpected keys, the first
    dtype that would be cast into something else, the first shape mismatch, non-finite values),
    before anything is copied into it."""
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
        _check_dtype(key, state[key].dtype, target.dtype, source)
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


def load_state(model: nn.Module, state: Mapping[str, Any], source: str, arch: str) -> None:
    """``check_state_dict``, then copy ``state`` into ``model`` (cast to the model's dtypes)."""
    check_state_dict(model, state, source, arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # pragma: no cover - check_state_dict should have caught it
        why = one_line(err, first=True, limit=120)
        raise ValueError(f"{source} does not fit {arch} ({why})") from None
