"""timm's residual families: ResNet (resnet*, resnet*d, seresnet*, resnext*, wide_resnet*),
ConvNeXt and VisionTransformer / DeiT.

Each residual branch is written from timm's own forward, minus the addition: for a ResNet block
``conv1 .. bn2/bn3, se, drop_path``; for a ConvNeXt block ``conv_dw, norm, mlp, gamma,
drop_path``; for a ViT block unit 2i ``drop_path1(ls1(attn(norm1(x))))`` and unit 2i + 1
``drop_path2(ls2(mlp(norm2(x))))``. A ConvNeXt stage's downsampling runs between blocks, as a
transition.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..submodules import module_sequence, optional_submodule, tensor_fn
from ..types import ADAPTER_DOC, Anatomy, Block, CallContext, TensorFn, Transition
from ._common import ClassAdapter, image_example, out_of_place, qualified_names

__all__ = ["TimmConvNeXtAdapter", "TimmResNetAdapter", "TimmViTAdapter"]


def _unsupported(name: str, blk: nn.Module, known: str) -> ValueError:
    return ValueError(
        f"block {name} is a {type(blk).__name__}, which the timm adapter does not take apart "
        f"(it knows {known}); register an adapter for it ({ADAPTER_DOC})"
    )


class TimmResNetAdapter(ClassAdapter):
    """timm ``ResNet``: BasicBlock and Bottleneck, ``act(downsample(x) + se(bn_last(...)))``."""

    name = "timm-resnet"
    model_class = "timm.models.resnet.ResNet"

    @staticmethod
    def _branch(blk: nn.Module, name: str) -> tuple[TensorFn, TensorFn]:
        """The block's (residual, post op)."""
        from timm.models.resnet import BasicBlock, Bottleneck

        m = blk.get_submodule  # typed Module, where ``blk.conv1`` is ``Tensor | Module``

        def tail(x: Tensor) -> Tensor:
            se, drop_path = optional_submodule(blk, "se"), optional_submodule(blk, "drop_path")
            if se is not None:
                x = se(x)
            if drop_path is not None:
                x = drop_path(x)
            return x

        if isinstance(blk, Bottleneck):

            def bottleneck(x: Tensor) -> Tensor:
                x = m("act1")(m("bn1")(m("conv1")(x)))
                x = m("aa")(m("act2")(m("drop_block")(m("bn2")(m("conv2")(x)))))
                return tail(m("bn3")(m("conv3")(x)))

            return bottleneck, out_of_place(m("act3"))
        if isinstance(blk, BasicBlock):

            def basic(x: Tensor) -> Tensor:
                x = m("aa")(m("act1")(m("drop_block")(m("bn1")(m("conv1")(x)))))
                return tail(m("bn2")(m("conv2")(x)))

            return basic, out_of_place(m("act2"))
        raise _unsupported(name, blk, "BasicBlock and Bottleneck")

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = qualified_names(model)
        blocks: list[Block] = []
        m = model.get_submodule  # typed Module, where ``model.layer1`` is ``Tensor | Module``
        for stage, layer in enumerate(m(f"layer{i}") for i in (1, 2, 3, 4)):
            for blk in module_sequence(layer):
                name = names[id(blk)]
                residual, post = self._branch(blk, name)
                downsample = optional_submodule(blk, "downsample")
                block = Block.whole(len(blocks), name, stage, blk, residual, downsample, post)
                blocks.append(block)

        def stem(x: Tensor) -> Tensor:
            return m("maxpool")(m("act1")(m("bn1")(m("conv1")(x))))

        head, inputs = tensor_fn(model, "forward_head"), image_example(model)
        return Anatomy(tuple(blocks), stem, head, inputs, adapter=self.name)


class TimmConvNeXtAdapter(ClassAdapter):
    """timm ``ConvNeXt``: blocks ``shortcut(x) + drop_path(gamma * mlp(norm(conv_dw(x))))``,
    and each stage's downsampling (norm + strided conv) as a transition between blocks."""

    name = "timm-convnext"
    model_class = "timm.models.convnext.ConvNeXt"

    @staticmethod
    def _residual(blk: nn.Module, name: str) -> TensorFn:
        from timm.models.convnext import ConvNeXtBlock

        if not isinstance(blk, ConvNeXtBlock):
            raise _unsupported(name, blk, "ConvNeXtBlock")
        m = blk.get_submodule  # typed Module, where ``blk.mlp`` is ``Tensor | Module``

        def residual(x: Tensor) -> Tensor:
            x = m("conv_dw")(x)
            if blk.use_conv_mlp:
                x = m("mlp")(m("norm")(x))
            else:
                x = m("mlp")(m("norm")(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
            gamma = blk.gamma  # a parameter, or None without layer scale
            if isinstance(gamma, Tensor):
                x = x.mul(gamma.reshape(1, -1, 1, 1))
            return m("drop_path")(x)

        return residual

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = qualified_names(model)
        blocks: list[Block] = []
        transitions: list[Transition] = []
        lead: list[nn.Module] = []  # a downsampling before the very first block joins the stem
        for stage, st in enumerate(module_sequence(model.get_submodule("stages"))):
            down = optional_submodule(st, "downsample")
            if down is not None and not isinstance(down, nn.Identity):
                if blocks:
                    transitions.append(Transition(len(blocks), names[id(down)], down, down))
                else:
                    lead.append(down)
            for blk in module_sequence(st.get_submodule("blocks")):
                name = names[id(blk)]
                residual = self._residual(blk, name)
                shortcut = optional_submodule(blk, "shortcut")
                blocks.append(Block.whole(len(blocks), name, stage, blk, residual, shortcut))

        def stem(x: Tensor) -> Tensor:
            x = model.get_submodule("stem")(x)
            for m in lead:
                x = m(x)
            return x

        forward_head = tensor_fn(model, "forward_head")

        def head(h: Tensor) -> Tensor:
            return forward_head(model.get_submodule("norm_pre")(h))

        inputs, moves = image_example(model), tuple(transitions)
        return Anatomy(tuple(blocks), stem, head, inputs, adapter=self.name, transitions=moves)


class TimmViTAdapter(ClassAdapter):
    """timm ``VisionTransformer`` (and DeiT, its distilled subclass): each block holds unit 2i,
    its attention, and unit 2i + 1, its MLP. An ``attn_mask`` given to the model's call reaches
    the attention under the ``with`` forms."""

    name = "timm-vit"
    model_class = "timm.models.vision_transformer.VisionTransformer"

    @staticmethod
    def _units(
        blk: nn.Module, name: str, context: CallContext
    ) -> tuple[tuple[nn.Module, TensorFn, tuple[nn.Module, ...]], ...]:
        """The block's two units, each (module, residual, parts)."""
        from timm.models.vision_transformer import Block as VitBlock
        from timm.models.vision_transformer import ResPostBlock

        def mask_kwargs() -> dict:
            return {k: context.kwargs[k] for k in ("attn_mask", "is_causal") if k in context.kwargs}

        m = blk.get_submodule  # typed Module, where ``blk.attn`` is ``Tensor | Module``
        if type(blk) is VitBlock:

            def attention(x: Tensor) -> Tensor:
                return m("drop_path1")(m("ls1")(m("attn")(m("norm1")(x), **mask_kwargs())))

            def mlp(x: Tensor) -> Tensor:
                return m("drop_path2")(m("ls2")(m("mlp")(m("norm2")(x))))

            return (
                (m("attn"), attention, (m("norm1"), m("attn"), m("ls1"))),
                (m("mlp"), mlp, (m("norm2"), m("mlp"), m("ls2"))),
            )
        if type(blk) is ResPostBlock:

            def post_attention(x: Tensor) -> Tensor:
                return m("drop_path1")(m("norm1")(m("attn")(x, **mask_kwargs())))

            def post_mlp(x: Tensor) -> Tensor:
                return m("drop_path2")(m("norm2")(m("mlp")(x)))

            return (
                (m("attn"), post_attention, (m("attn"), m("norm1"))),
                (m("mlp"), post_mlp, (m("mlp"), m("norm2"))),
            )
        raise _unsupported(name, blk, "Block and ResPostBlock")

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = qualified_names(model)
        context = CallContext()
        blocks: list[Block] = []
        m = model.get_submodule  # typed Module, where ``model.blocks`` is ``Tensor | Module``
        for blk in module_sequence(m("blocks")):
            for module, residual, parts in self._units(blk, names[id(blk)], context):
                name = names[id(module)]
                blocks.append(Block.unit(len(blocks), name, module, residual, blk, parts))
        pos_embed, forward_head = tensor_fn(model, "_pos_embed"), tensor_fn(model, "forward_head")

        def stem(x: Tensor) -> Tensor:
            context.set({})  # the engine's images come without a mask
            x = m("patch_embed")(x)
            x = pos_embed(x)
            x = m("patch_drop")(x)
            return m("norm_pre")(x)

        def head(h: Tensor) -> Tensor:
            return forward_head(m("norm")(h))

        height_width = getattr(m("patch_embed"), "img_size", None) or (224, 224)
        inputs = image_example(model, tuple(height_width))
        return Anatomy(tuple(blocks), stem, head, inputs, adapter=self.name, context=context)
