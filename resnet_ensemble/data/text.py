"""Text for language models: ``--dataset text:PATH``.

A plain text file (UTF-8), tokenised whole with the model folder's own tokenizer and cut into
fixed windows of ``window`` tokens (non-overlapping, the last partial window dropped), so that
every token but each window's first is predicted once. Items are ``(ids, ids)`` pairs of shape
``(window,)``: a loader stacks them into ``(B, T)`` token ids, which is what the engine, the
sweeps and the gradients take for a language model (the targets are the next tokens, lined up
by the engine).

The window is 128 tokens (at most the model's context); set ``RESNET_ENSEMBLE_TEXT_WINDOW`` to
change it. Holds ``TEXT_PREFIX``, ``is_text_spec``, ``text_path`` (a regular file of at most
``bounds.MAX_TEXT_BYTES``, checked by ``stat`` before any read), ``decode_utf8`` (strict: a
byte that is not UTF-8 is refused, naming its offset), ``text_window``, ``TextWindows`` and
``load_text``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..bounds import MAX_TEXT_BYTES, check_count, regular_file_size

__all__ = [
    "DEFAULT_WINDOW",
    "WINDOW_ENV",
    "TEXT_PREFIX",
    "TextWindows",
    "decode_utf8",
    "is_text_spec",
    "load_text",
    "text_path",
    "text_window",
]

TEXT_PREFIX = "text:"
DEFAULT_WINDOW = 128
WINDOW_ENV = "RESNET_ENSEMBLE_TEXT_WINDOW"


def text_window(model_max: int | None = None) -> int:
    """Tokens per window: ``$RESNET_ENSEMBLE_TEXT_WINDOW``, else 128, never more than the
    model's context (``max_position_embeddings``)."""
    raw = os.environ.get(WINDOW_ENV)
    if raw:
        digits = raw.strip()
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 12:
            raise ValueError(f"{WINDOW_ENV} must be a number of tokens, got {raw[:40]!r}")
        window = check_count("window", int(digits), WINDOW_ENV)
    else:
        window = DEFAULT_WINDOW
    if model_max and window > int(model_max):
        if raw:
            raise ValueError(
                f"{WINDOW_ENV}={window} is longer than the model's context of {model_max} tokens"
            )
        window = int(model_max)
    return window


def is_text_spec(name: object) -> bool:
    return isinstance(name, str) and name.strip().lower().startswith(TEXT_PREFIX)


def text_path(spec: str) -> Path:
    """The file of ``text:PATH``.

    Raises:
        FileNotFoundError / ValueError: no such file, or a folder.
    """
    path = Path(spec.strip()[len(TEXT_PREFIX) :]).expanduser()
    if not str(path) or str(path) == ".":
        raise ValueError("--dataset text:PATH needs the path of a text file")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; text:PATH takes one plain text file")
    if not path.exists():
        raise FileNotFoundError(f"text file {path} not found (--dataset text:PATH)")
    # A FIFO or a device is refused by stat before any read; a huge file before it fills memory.
    regular_file_size(path, "text", MAX_TEXT_BYTES)
    return path


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` as UTF-8 text, or a one-line ValueError naming the offset of the first byte
    that is not UTF-8 (scoring text with replacement characters would measure something else).
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{source} is not UTF-8 text: byte {err.start:,} (0x{data[err.start]:02x}) "
            f"{err.reason}; convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None


class TextWindows(Dataset):
    """Fixed windows of a token sequence: item i is ``(ids[i*T:(i+1)*T],) * 2``."""

    def __init__(self, ids: torch.Tensor, window: int, source: str = "", sha256: str = "") -> None:
        if window < 2:
            raise ValueError(f"a window needs at least 2 tokens (one to predict), got {window}")
        count = len(ids) // window
        if count < 1:
            raise ValueError(
                f"the text {source} has {len(ids)} tokens, fewer than one window of {window}; "
                "use a longer text or a smaller window"
            )
        self.windows = ids[: count * window].view(count, window).clone()
        self.window = window
        self.source = source
        self.sha256 = sha256
        self.tokens = int(len(ids))

    def __len__(self) -> int:
        return self.windows.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.windows[index]
        return w, w


#: The files a Hugging Face tokenizer is saved as; a folder with none of them has no tokenizer.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
)


def load_text(
    spec: str,
    tokenizer_folder: str | os.PathLike[str] | None,
    *,
    window: int = DEFAULT_WINDOW,
    limit: int | None = None,
) -> TextWindows:
    """Tokenise ``text:PATH`` with the tokenizer saved in ``tokenizer_folder`` (a Hugging Face
    model folder) and cut it into windows; ``limit`` keeps the first windows.

    Raises:
        FileNotFoundError / ValueError: a missing file, a folder with no tokenizer, a text
            shorter than one window.
    """
    path = text_path(spec)
    if tokenizer_folder is None:
        raise ValueError(
            "text data are tokenised with the model folder's tokenizer: use --model hf:PATH "
            "(a folder with tokenizer files) together with --dataset text:PATH"
        )
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ValueError("text data need transformers: pip install 'resnet-ensemble[hf]'") from None
    if Path(tokenizer_folder).is_dir() and not any(
        (Path(tokenizer_folder) / f).is_file() for f in _TOKENIZER_FILES
    ):  # transformers would build an empty tokenizer from config.json alone
        raise ValueError(
            f"{tokenizer_folder} has no tokenizer (a model built from a config has none); "
            "text:PATH needs one: pass --tokenizer PATH (a Hugging Face folder with one, or a "
            "tokenizer.json)"
        )
    try:
        if Path(tokenizer_folder).is_file():  # a tokenizer.json, as the tokenizers library saves
            from transformers import PreTrainedTokenizerFast

            tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_folder))
        else:
            tokenizer = AutoTokenizer.from_pretrained(  # type: ignore[assignment]
                str(tokenizer_folder), local_files_only=True
            )
    except (OSError, ValueError, TypeError, RuntimeError, KeyError):
        raise ValueError(
            f"{tokenizer_folder} has no tokenizer that loads; text:PATH needs one: pass "
            "--tokenizer PATH (a Hugging Face folder with one, or a tokenizer.json)"
        ) from None
    data = path.read_bytes()
    text = decode_utf8(data, str(path))
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max:
        tokenizer.model_max_length = max(int(model_max), len(text) + 1)  # windows, not the model
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    ds = TextWindows(ids, window, str(path), hashlib.sha256(data).hexdigest())
    if limit is not None:
        if isinstance(limit, bool) or int(limit) != limit or limit < 1:
            raise ValueError(f"limit must be a positive number of windows, got {limit!r}")
        ds.windows = ds.windows[: int(limit)]
    return ds
