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

from ..types import ADAPTER_DOC, Anatomy, Block, CallContext, Transition
from ._common import (
    ClassAdapter,
    image_example,
    is_identity,
    out_of_place,
    qualified_names,
)

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
    def _branch(blk: nn.Module, name: str):  # noqa: ANN205 - a (residual, post) pair
        from timm.models.resnet import BasicBlock, Bottleneck

        def tail(x: Tensor) -> Tensor:
            if blk.se is not None:
                x = blk.se(x)
            if blk.drop_path is not None:
                x = blk.drop_path(x)
            return x

        if isinstance(blk, Bottleneck):

            def bottleneck(x: Tensor) -> Tensor:
                x = blk.act1(blk.bn1(blk.conv1(x)))
                x = blk.aa(blk.act2(blk.drop_block(blk.bn2(blk.conv2(x)))))
                return tail(blk.bn3(blk.conv3(x)))

            return bottleneck, out_of_place(blk.act3)
        if isinstance(blk, BasicBlock):

            def basic(x: Tensor) -> Tensor:
                x = blk.aa(blk.act1(blk.drop_block(blk.bn1(blk.conv1(x)))))
                return tail(blk.bn2(blk.conv2(x)))

            return basic, out_of_place(blk.act2)
        raise _unsupported(name, blk, "BasicBlock and Bottleneck")

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = qualified_names(model)
        blocks: list[Block] = []
        for stage, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
            for blk in layer:
                name = names[id(blk)]
                residual, post = self._branch(blk, name)
                block = Block.whole(len(blocks), name, stage, blk, residual, blk.downsample, post)
                blocks.append(block)

        def stem(x: Tensor) -> Tensor:
            return model.maxpool(model.act1(model.bn1(model.conv1(x))))

        inputs = image_example(model)
        return Anatomy(tuple(blocks), stem, model.forward_head, inputs, adapter=self.name)


class TimmConvNeXtAdapter(ClassAdapter):
    """timm ``ConvNeXt``: blocks ``shortcut(x) + drop_path(gamma * mlp(norm(conv_dw(x))))``,
    and each stage's downsampling (norm + strided conv) as a transition between blocks."""

    name = "timm-convnext"
    model_class = "timm.models.convnext.ConvNeXt"

    @staticmethod
    def _residual(blk: nn.Module, name: str):  # noqa: ANN205
        from timm.models.convnext import ConvNeXtBlock

        if not isinstance(blk, ConvNeXtBlock):
            raise _unsupported(name, blk, "ConvNeXtBlock")

        def residual(x: Tensor) -> Tensor:
            x = blk.conv_dw(x)
            if blk.use_conv_mlp:
                x = blk.mlp(blk.norm(x))
            else:
                x = blk.mlp(blk.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
            if blk.gamma is not None:
                x = x.mul(blk.gamma.reshape(1, -1, 1, 1))
            return blk.drop_path(x)

        return residual

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = qualified_names(model)
        blocks: list[Block] = []
        transitions: list[Transition] = []
        lead: list[nn.Module] = []  # a downsampling before the very first block joins the stem
        for stage, st in enumerate(model.stages):
            if not is_identity(st.downsample):
                if blocks:
                    transitions.append(
                        Transition(
                            len(blocks), names[id(st.downsample)], st.downsample, st.downsample
                        )
                    )
                else:
                    lead.append(st.downsample)
            for blk in st.blocks:
                name = names[id(blk)]
                residual = self._residual(blk, name)
                blocks.append(Block.whole(len(blocks), name, stage, blk, residual, blk.shortcut))

        def stem(x: Tensor) -> Tensor:
            x = model.stem(x)
            for m in lead:
                x = m(x)
            return x

        def head(h: Tensor) -> Tensor:
            return model.forward_head(model.norm_pre(h))

        inputs, moves = image_example(model), tuple(transitions)
        return Anatomy(tuple(blocks), stem, head, inputs, adapter=self.name, transitions=moves)


class TimmViTAdapter(ClassAdapter):
    """timm ``VisionTransformer`` (and DeiT, its distilled subclass): each block holds unit 2i,
    its attention, and unit 2i + 1, its MLP. An ``attn_mask`` given to the model's call reaches
    the attention under the ``with`` forms."""

    name = "timm-vit"
    model_class = "timm.models.vision_transformer.VisionTransformer"

    @staticmethod
    def _units(blk: nn.Module, name: str, context: CallContext):  # noqa: ANN205
        from timm.models.vision_transformer import Block as VitBlock
        from timm.models.vision_transformer import ResPostBlock

        def mask_kwargs() -> dict:
            return {k: context.kwargs[k] for k in ("attn_mask", "is_causal") if k in context.kwargs}

        if type(blk) is VitBlock:

            def attention(x: Tensor) -> Tensor:
                return blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x), **mask_kwargs())))

            def mlp(x: Tensor) -> Tensor:
                return blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))

            return (
                (blk.attn, attention, (blk.norm1, blk.attn, blk.ls1)),
                (blk.mlp, mlp, (blk.norm2, blk.mlp, blk.ls2)),
            )
        if type(blk) is ResPostBlock:

            def post_attention(x: Tensor) -> Tensor:
                return blk.drop_path1(blk.norm1(blk.attn(x, **mask_kwargs())))

            def post_mlp(x: Tensor) -> Tensor:
                return blk.drop_path2(blk.norm2(blk.mlp(x)))

            return (
                (blk.attn, post_attention, (blk.attn, blk.norm1)),
                (blk.mlp, post_mlp, (blk.mlp, blk.norm2)),
            )
        raise _unsupported(name, blk, "Block and ResPostBlock")

    def anatomy(self, model: nn.Module) -> Anatomy:
        names = qualified_names(model)
        context = CallContext()
        blocks: list[Block] = []
        for blk in model.blocks:
            for module, residual, parts in self._units(blk, names[id(blk)], context):
                name = names[id(module)]
                blocks.append(Block.unit(len(blocks), name, module, residual, blk, parts))

        def stem(x: Tensor) -> Tensor:
            context.set({})  # the engine's images come without a mask
            x = model.patch_embed(x)
            x = model._pos_embed(x)
            x = model.patch_drop(x)
            return model.norm_pre(x)

        def head(h: Tensor) -> Tensor:
            return model.forward_head(model.norm(h))

        height_width = getattr(model.patch_embed, "img_size", None) or (224, 224)
        inputs = image_example(model, tuple(height_width))
        return Anatomy(tuple(blocks), stem, head, inputs, adapter=self.name, context=context)
