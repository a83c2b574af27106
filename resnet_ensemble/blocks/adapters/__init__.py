"""Adapters for the model zoos users bring: timm and Hugging Face transformers.

Each adapter recognises its models without importing its library (a model of a library that was
never imported cannot be one of its models), so neither library is needed to use the toolkit.
``ZOO_ADAPTERS`` is appended to the built-in adapters (``blocks.builtin``) by the registry on
first use.
"""

from __future__ import annotations

from ..types import Adapter
from .hf_models import HFDecoderAdapter, HFResNetAdapter, HFViTAdapter
from .timm_models import TimmConvNeXtAdapter, TimmResNetAdapter, TimmViTAdapter

__all__ = [
    "ZOO_ADAPTERS",
    "HFDecoderAdapter",
    "HFResNetAdapter",
    "HFViTAdapter",
    "TimmConvNeXtAdapter",
    "TimmResNetAdapter",
    "TimmViTAdapter",
]

ZOO_ADAPTERS: list[Adapter] = [
    TimmResNetAdapter(),
    TimmConvNeXtAdapter(),
    TimmViTAdapter(),
    HFResNetAdapter(),
    HFViTAdapter(),
    HFDecoderAdapter(),
]
