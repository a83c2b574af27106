"""Hugging Face transformers: ResNet and ViT for image classification, and decoder language
models (GPT-2, Llama, Mistral, Qwen2, GPT-NeoX and others built the same way).

The stem is the model's own forward up to its first layer (so embeddings, masks and rotary
positions are built as the installed transformers builds them); the layer's other arguments
reach the blocks through the anatomy's ``CallContext``. Layer i of a transformer holds unit 2i,
its attention, and unit 2i + 1, its MLP. KV caches are refused inside a block: a cache written
by deleted or re-ordered layers would be stale or mis-indexed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..submodules import module_sequence, optional_submodule
from ..types import ADAPTER_DOC, Anatomy, Block, CallContext, TensorFn
from ._common import ClassAdapter, example, identity, library_loaded, qualified_names
from ._common import stem_by_capture as _stem_by_capture

__all__ = ["HFDecoderAdapter", "HFResNetAdapter", "HFViTAdapter"]

_CACHE_KEYS = ("cache", "past_key_values", "past_key_value", "layer_past")
_CROSS_KEYS = ("encoder_hidden_states", "encoder_attention_mask")


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def attention_kwargs(context: CallContext, where: str) -> dict[str, Any]:
    """The layer's call arguments for its attention, with the KV cache off.

    Raises:
        ValueError: a cache or cross-attention input was passed under an intervention.
    """
    kwargs = dict(context.kwargs)
    if any(kwargs.get(k) is not None for k in _CACHE_KEYS) or kwargs.get("use_cache"):
        raise ValueError(
            f"a KV cache reached {where} while blocks are deleted or moved; a cache written by "
            "such a model would be stale or mis-indexed, so call it with use_cache=False "
            "(generate(..., use_cache=False))"
        )
    if any(kwargs.get(k) is not None for k in _CROSS_KEYS):
        raise ValueError(f"{where}: cross-attention inputs are not supported")
    for key in (*_CACHE_KEYS, *_CROSS_KEYS):
        kwargs.pop(key, None)
    kwargs["use_cache"] = False
    return kwargs


def _pretrained(model: nn.Module) -> Any:
    """``model`` as the transformers ``PreTrainedModel`` it is, for its config and its own
    methods (``base_model``, ``get_output_embeddings``): the library ships no types, and torch's
    ``Module.__getattr__`` would type each of them ``Tensor | Module``."""
    return model


def _is_hf(model: nn.Module) -> bool:
    if not library_loaded("transformers"):
        return False
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


class HFResNetAdapter(ClassAdapter):
    """``ResNetForImageClassification``: layers ``activation(shortcut(x) + layer(x))``."""

    name = "hf-resnet"
    model_class = "transformers.ResNetForImageClassification"

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = qualified_names(model)
        blocks: list[Block] = []
        m = model.get_submodule  # typed Module, where ``model.resnet`` is ``Tensor | Module``
        for stage, st in enumerate(module_sequence(m("resnet.encoder.stages"))):
            for layer in module_sequence(st.get_submodule("layers")):
                block = Block.whole(
                    len(blocks),
                    names[id(layer)],
                    stage,
                    layer,
                    layer.get_submodule("layer"),
                    optional_submodule(layer, "shortcut"),
                    layer.get_submodule("activation"),
                )
                blocks.append(block)

        def head(h: Tensor) -> Tensor:
            return m("classifier")(m("resnet.pooler")(h))

        size = (int(_pretrained(model).config.num_channels), 64, 64)
        return Anatomy(
            tuple(blocks), m("resnet.embedder"), head, example(model, size), adapter=self.name
        )


class HFViTAdapter(ClassAdapter):
    """``ViTForImageClassification``: layer i holds unit 2i,
    ``dropout(attention(layernorm_before(x)))``, and unit 2i + 1,
    ``dropout(mlp(layernorm_after(x)))``."""

    name = "hf-vit"
    model_class = "transformers.ViTForImageClassification"

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = qualified_names(model)
        context = CallContext()
        m = model.get_submodule  # typed Module, where ``model.vit`` is ``Tensor | Module``
        layers = module_sequence(m("vit.layers"))
        blocks: list[Block] = []
        for layer in layers:

            def attention(x: Tensor, layer: nn.Module = layer) -> Tensor:
                kwargs = attention_kwargs(context, names[id(layer)])
                kwargs.pop("use_cache", None)
                mask = kwargs.pop("attention_mask", None)
                sub = layer.get_submodule
                return sub("dropout")(
                    _first(sub("attention")(sub("layernorm_before")(x), mask, **kwargs))
                )

            def mlp(x: Tensor, layer: nn.Module = layer) -> Tensor:
                sub = layer.get_submodule
                return sub("dropout")(sub("mlp")(sub("layernorm_after")(x)))

            sub = layer.get_submodule
            for module, residual, parts in (
                (sub("attention"), attention, (sub("layernorm_before"), sub("attention"))),
                (sub("mlp"), mlp, (sub("layernorm_after"), sub("mlp"))),
            ):
                name = names[id(module)]
                blocks.append(Block.unit(len(blocks), name, module, residual, layer, parts))

        stem = _stem_by_capture(layers[0], lambda x: m("vit")(x), context)

        def head(h: Tensor) -> Tensor:
            return m("classifier")(m("vit.layernorm")(h)[:, 0, :])

        c = _pretrained(model).config
        size = (int(c.num_channels), int(c.image_size), int(c.image_size))
        return Anatomy(
            tuple(blocks), stem, head, example(model, size), adapter=self.name, context=context
        )


# Decoder layers by their children: (attention norm, attention, its dropout or None),
# (MLP norm, MLP, its dropout or None). A layer with any other child is not taken apart, so a
# variant with extra norms is refused rather than decomposed wrongly.
_DECODER_LAYOUTS: tuple[tuple[tuple[str, str, str | None], tuple[str, str, str | None]], ...] = (
    (("input_layernorm", "self_attn", None), ("post_attention_layernorm", "mlp", None)),
    (("ln_1", "attn", None), ("ln_2", "mlp", None)),
    (
        ("input_layernorm", "attention", "post_attention_dropout"),
        ("post_attention_layernorm", "mlp", "post_mlp_dropout"),
    ),
)
_EXTRA_CHILDREN = {"attention_type"}  # harmless non-module attributes some layers list
_FINAL_NORMS = ("norm", "ln_f", "final_layer_norm")


def _layers(base: nn.Module) -> nn.ModuleList | None:
    for attr in ("layers", "h"):
        layers = getattr(base, attr, None)
        if isinstance(layers, nn.ModuleList) and len(layers):
            return layers
    return None


def _layout(layer: nn.Module):  # noqa: ANN205
    children = {n for n, _ in layer.named_children()} - _EXTRA_CHILDREN
    for layout in _DECODER_LAYOUTS:
        need = {name for unit in layout for name in unit if name is not None}
        if children == need:
            return layout
    return None


def _sublayer(
    layer: nn.Module,
    unit: tuple[str, str, str | None],
    call_kwargs: Callable[[], dict[str, Any]] | None = None,
) -> Callable[[Tensor], Tensor]:
    """``dropout(main(norm(x)))`` of the decoder layer's children that ``unit`` names (norm,
    main, dropout or None); an attention gets ``call_kwargs()`` and returns a tuple."""
    norm, main, drop = unit

    def branch(x: Tensor) -> Tensor:
        kwargs = call_kwargs() if call_kwargs is not None else {}
        out = _first(getattr(layer, main)(getattr(layer, norm)(x), **kwargs))
        return getattr(layer, drop)(out) if drop else out

    return branch


def _through_stash(
    context: CallContext, key: int, mlp: Callable[[Tensor], Tensor]
) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """A parallel layer (GPT-NeoX): the attention unit's shortcut keeps the layer input in the
    context's stash, and the MLP unit's branch reads it from there, not its own input."""

    def stash(x: Tensor) -> Tensor:
        context.stash[key] = x
        return x

    def mlp_of_layer_input(x: Tensor) -> Tensor:
        return mlp(context.stash[key])

    return stash, mlp_of_layer_input


class HFDecoderAdapter:
    """Decoder language models (``*ForCausalLM``): unit 2i is layer i's attention,
    ``attn(norm_1(x))``, unit 2i + 1 its MLP, ``mlp(norm_2(x))``; the head is the final norm
    and the LM head. GPT-NeoX's parallel layers (both branches read the layer input) are
    decomposed too: their MLP unit reads the attention unit's input."""

    name = "hf-decoder"

    def matches(self, model: nn.Module) -> bool:
        if not _is_hf(model) or _pretrained(model).get_output_embeddings() is None:
            return False
        layers = _layers(_pretrained(model).base_model)
        return layers is not None and _layout(layers[0]) is not None

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = qualified_names(model)
        hf = _pretrained(model)
        base = hf.base_model
        layers = _layers(base)
        assert layers is not None
        context = CallContext()
        parallel = bool(getattr(hf.config, "use_parallel_residual", False))
        blocks: list[Block] = []
        for layer in layers:
            layout = _layout(layer)
            if layout is None:
                raise ValueError(
                    f"layer {names[id(layer)]} ({type(layer).__name__}) is not built like the "
                    f"decoder layers this adapter knows; register an adapter for it ({ADAPTER_DOC})"
                )
            where = names[id(layer)]
            attention = _sublayer(
                layer, layout[0], functools.partial(attention_kwargs, context, where)
            )
            mlp = _sublayer(layer, layout[1])
            attn_shortcut: TensorFn = identity
            shares: int | None = None
            if parallel:
                attn_shortcut, mlp = _through_stash(context, len(blocks), mlp)
                shares = len(blocks)
            units = (
                (layout[0], attention, attn_shortcut, None),
                (layout[1], mlp, identity, shares),
            )
            for (norm, child, _), residual, shortcut, shared in units:
                module = getattr(layer, child)
                parts = (getattr(layer, norm), module)
                block = Block.unit(
                    len(blocks), names[id(module)], module, residual, layer, parts, shortcut, shared
                )
                blocks.append(block)

        norm = next((getattr(base, a) for a in _FINAL_NORMS if hasattr(base, a)), None)
        lm_head = hf.get_output_embeddings()

        def head(h: Tensor) -> Tensor:
            return lm_head(norm(h) if norm is not None else h)

        stem = _stem_by_capture(
            layers[0], lambda ids: base(input_ids=ids, use_cache=False), context
        )
        return Anatomy(
            tuple(blocks),
            stem,
            head,
            example(model, (8,), torch.long),
            adapter=self.name,
            context=context,
            task="language",
        )
