"""The adapter contract, one table over every family: ``lesion(model, drop=[i])`` equals the
model's own forward with block i's residual branch zeroed by a forward hook on the branch's last
module (an independent reference: the hook knows nothing of the toolkit's lesion code). Each row
also names its downsampling blocks, written from the architecture, and calls the model as its
users do (keywords, attention and padding masks, ModelOutputs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from resnet_ensemble import lesion, residual_blocks
from resnet_ensemble.models import build_builtin

from .conftest import tiny_vit
from .zoo_reference import no_patches, randomize_norms, same_state, state_copy, zeroed


@dataclass(frozen=True)
class Row:
    build: Callable[[], nn.Module]  # a tiny model with random weights, in eval mode
    inputs: Callable[[], torch.Tensor]
    ends: Callable[[nn.Module], list[nn.Module]]  # block i's branch's last module, by index
    drops: tuple[tuple[int, ...], ...]  # one includes a downsampling block where there is one
    downsampling: tuple[int, ...] = ()  # the blocks with a projection shortcut
    call: Callable[[nn.Module, torch.Tensor], torch.Tensor] = lambda m, x: m(x)


def _image(c: int = 3, size: int = 32) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(2, c, size, size, generator=torch.Generator().manual_seed(1))


def _eval(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return randomize_norms(model).eval()


def _cifar(name: str = "resnet20", **options: object) -> Callable[[], nn.Module]:
    return lambda: _eval(build_builtin(name, **options))


def _cifar_ends(model: nn.Module) -> list[nn.Module]:
    return [b.bn2 for st in (model.layer1, model.layer2, model.layer3) for b in st]


def _preact_ends(model: nn.Module) -> list[nn.Module]:
    return [b.conv2 for st in (model.layer1, model.layer2, model.layer3) for b in st]


def _tv(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torchvision = pytest.importorskip("torchvision")
        return _eval(getattr(torchvision.models, name)(num_classes=5))

    return build


def _resnet_blocks(model: nn.Module) -> list[nn.Module]:
    return [b for st in (model.layer1, model.layer2, model.layer3, model.layer4) for b in st]


def _tv_ends(model: nn.Module) -> list[nn.Module]:
    return [b.bn3 if hasattr(b, "bn3") else b.bn2 for b in _resnet_blocks(model)]


def _tv_vit_ends(model: nn.Module) -> list[nn.Module]:
    """torchvision's EncoderBlock: ``x + self_attention(ln_1(x))[0]``, then ``+ mlp(ln_2(x))``."""
    return [e for layer in model.encoder.layers for e in (layer.self_attention, layer.mlp)]


def _timm(name: str, **kwargs: object) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        timm = pytest.importorskip("timm")
        options = dict(kwargs)
        if options.get("block_fn") == "ResPostBlock":  # named here: timm is imported late
            options["block_fn"] = timm.models.vision_transformer.ResPostBlock
        torch.manual_seed(0)
        return _eval(timm.create_model(name, pretrained=False, num_classes=5, **options))

    return build


def _timm_resnet_ends(model: nn.Module) -> list[nn.Module]:
    """timm's blocks end ``bn_last``, then squeeze-excitation where there is one."""
    ends = []
    for b in _resnet_blocks(model):
        ends.append(b.se if b.se is not None else b.bn3 if hasattr(b, "bn3") else b.bn2)
    return ends


def _timm_vit_ends(model: nn.Module) -> list[nn.Module]:
    """Pre-norm ``x + ls(attn(norm(x)))`` ends in the layer scale; post-norm
    ``x + norm(attn(x))`` in the norm."""
    post = type(model.blocks[0]).__name__ == "ResPostBlock"
    pairs = [(b.norm1, b.norm2) if post else (b.ls1, b.ls2) for b in model.blocks]
    return [e for pair in pairs for e in pair]


def _masked_then_plain(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's ``attn_mask`` keyword: a random boolean mask (each token sees itself), then the
    same images without one (a mask must not outlive its call)."""
    tokens = model.patch_embed.num_patches + model.num_prefix_tokens
    mask = torch.rand(tokens, tokens, generator=torch.Generator().manual_seed(8)) > 0.3
    masked = model(x, attn_mask=mask | torch.eye(tokens, dtype=torch.bool))
    return torch.cat([masked, model(x)])


def _hf(build_model: Callable[[object], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        transformers = pytest.importorskip("transformers")
        transformers.logging.set_verbosity_error()
        torch.manual_seed(0)
        return _eval(build_model(transformers))

    return build


def _hf_resnet(layer_type: str, hidden_sizes: list[int]) -> Callable[[object], nn.Module]:
    def build(T: object) -> nn.Module:
        config = T.ResNetConfig(  # type: ignore[attr-defined]
            num_channels=1, embedding_size=8, hidden_sizes=hidden_sizes, depths=[2, 1, 2],
            layer_type=layer_type, num_labels=10,
        )  # fmt: skip
        return T.ResNetForImageClassification(config)  # type: ignore[attr-defined]

    return build


def _hf_vit(T: object) -> nn.Module:
    config = T.ViTConfig(  # type: ignore[attr-defined]
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=48, num_labels=5,
    )  # fmt: skip
    return T.ViTForImageClassification(config)  # type: ignore[attr-defined]


def _pixels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(pixel_values=x, return_dict=True).logits


_SMALL = {"vocab_size": 50, "num_hidden_layers": 3, "hidden_size": 32,
          "num_attention_heads": 4, "intermediate_size": 48}  # fmt: skip


def _gpt2(T: object) -> nn.Module:
    config = T.GPT2Config(  # type: ignore[attr-defined]
        vocab_size=50, n_layer=3, n_embd=32, n_head=4, n_positions=64,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return T.GPT2LMHeadModel(config)  # type: ignore[attr-defined]


def _decoder(
    model_class: str, config_class: str, **options: object
) -> Callable[[object], nn.Module]:
    def build(T: object) -> nn.Module:
        return getattr(T, model_class)(getattr(T, config_class)(**options, **_SMALL))

    return build


def _decoder_ends(model: nn.Module) -> list[nn.Module]:
    """Unit 2i: layer i's attention (its output tuple's first item); 2i + 1: its MLP."""
    base = model.base_model
    ends: list[nn.Module] = []
    for layer in base.h if hasattr(base, "h") else base.layers:
        attn = next(
            getattr(layer, a) for a in ("self_attn", "attn", "attention") if hasattr(layer, a)
        )
        ends += [attn, layer.mlp]
    return ends


def _tokens() -> torch.Tensor:
    return torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))


def _padded(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Called with keywords, the first row padded at the end."""
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0
    return model(input_ids=ids, attention_mask=mask).logits


def _lm(build_model: Callable[[object], nn.Module]) -> Row:
    return Row(_hf(build_model), _tokens, _decoder_ends, ((0,), (3,), (1, 2, 5)), call=_padded)


TABLE: dict[str, Row] = {
    "cifar-option-a": Row(_cifar(), _image(), _cifar_ends, ((1,), (3,), (0, 6, 8)), (3, 6)),
    "cifar-option-b": Row(
        _cifar(shortcut="B"), _image(), _cifar_ends, ((3,), (3, 6), (8,)), (3, 6)
    ),
    "cifar-preact": Row(_cifar("preresnet20"), _image(), _preact_ends, ((1,), (3,), (6,)), (3, 6)),
    "torchvision-basic": Row(_tv("resnet18"), _image(), _tv_ends, ((1,), (2,), (4, 7)), (2, 4, 6)),
    "torchvision-bottleneck": Row(
        _tv("resnet50"), _image(), _tv_ends, ((0,), (3,), (7, 15)), (0, 3, 7, 13)
    ),
    "torchvision-vit": Row(
        lambda: _eval(tiny_vit()), _image(size=16), _tv_vit_ends, ((0,), (3,), (1, 2))
    ),
    "timm-resnet": Row(
        _timm("resnet18"), _image(), _timm_resnet_ends, ((1,), (2,), (4, 7)), (2, 4, 6)
    ),
    "timm-resnet-deep-stem-avg-down": Row(  # resnet26d: Bottleneck, pooled projection
        _timm("resnet26d", layers=(1, 1, 1, 1)),
        _image(size=64),
        _timm_resnet_ends,
        ((1,), (0, 3)),
        (0, 1, 2, 3),
    ),
    "timm-resnet-squeeze-excitation": Row(
        _timm("seresnet18"), _image(size=64), _timm_resnet_ends, ((1,), (0, 7), (4,)), (2, 4, 6)
    ),
    "timm-convnext": Row(
        _timm("convnext_atto"),
        _image(size=64),
        lambda m: [b.mlp for st in m.stages for b in st.blocks],  # gamma scales zero to zero
        ((0,), (2,), (4, 11), (3, 9, 10)),  # stage downsampling is a transition, not a block
    ),
    "timm-vit-attn-mask": Row(
        _timm("vit_tiny_patch16_224", img_size=32, depth=3, init_values=0.5),
        _image(),
        _timm_vit_ends,
        ((0,), (3,), (1, 4, 5)),
        call=_masked_then_plain,
    ),
    "timm-deit-distilled-attn-mask": Row(
        _timm("deit_tiny_distilled_patch16_224", img_size=32, depth=3, init_values=0.5),
        _image(),
        _timm_vit_ends,
        ((0,), (3,), (1, 4, 5)),
        call=_masked_then_plain,
    ),
    "timm-vit-post-norm": Row(
        _timm("vit_tiny_patch16_224", img_size=32, depth=3, block_fn="ResPostBlock"),
        _image(),
        _timm_vit_ends,
        ((0,), (3,), (1, 4, 5)),
        call=_masked_then_plain,
    ),
    "hf-resnet-basic": Row(
        _hf(_hf_resnet("basic", [8, 16, 24])),
        _image(c=1),
        lambda m: [layer.layer for st in m.resnet.encoder.stages for layer in st.layers],
        ((1,), (3,), (0, 4)),
        (2, 3),
        _pixels,
    ),
    "hf-resnet-bottleneck": Row(
        _hf(_hf_resnet("bottleneck", [16, 24, 32])),
        _image(c=1),
        lambda m: [layer.layer for st in m.resnet.encoder.stages for layer in st.layers],
        ((1,), (0, 4), (3,)),
        (0, 2, 3),
        _pixels,
    ),
    "hf-vit": Row(
        _hf(_hf_vit),
        _image(size=16),
        lambda m: [e for layer in m.vit.layers for e in (layer.attention, layer.mlp)],
        ((0,), (3,), (1, 2)),
        call=_pixels,
    ),
    "hf-gpt2": _lm(_gpt2),
    "hf-llama": _lm(_decoder("LlamaForCausalLM", "LlamaConfig", num_key_value_heads=2)),
    "hf-mistral": _lm(_decoder("MistralForCausalLM", "MistralConfig", num_key_value_heads=2)),
    "hf-qwen2": _lm(_decoder("Qwen2ForCausalLM", "Qwen2Config", num_key_value_heads=2)),
    "hf-neox-parallel": _lm(_decoder("GPTNeoXForCausalLM", "GPTNeoXConfig")),
    "hf-neox-sequential": _lm(
        _decoder("GPTNeoXForCausalLM", "GPTNeoXConfig", use_parallel_residual=False)
    ),
}


@pytest.mark.parametrize("family", list(TABLE))
def test_lesion_equals_the_zeroed_branch_inside_the_models_own_forward(family: str) -> None:
    row = TABLE[family]
    model, x = row.build(), row.inputs()
    ends, blocks = row.ends(model), residual_blocks(model)
    assert len(ends) == len(blocks)
    for end, block in zip(ends, blocks, strict=True):  # block i is the branch the hook zeroes
        assert any(end is m for part in (block.module, *block.parts) for m in part.modules())
    assert tuple(b.index for b in blocks if b.downsamples) == row.downsampling
    assert not row.downsampling or any(set(row.downsampling) & set(d) for d in row.drops)
    state = state_copy(model)
    with torch.no_grad():
        before = row.call(model, x)
        for drop in row.drops:
            with zeroed([ends[i] for i in drop]):
                expected = row.call(model, x)
            with lesion(model, drop=list(drop)):
                got = row.call(model, x)
            assert not torch.allclose(expected, before, atol=1e-4)  # the deletion matters
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(row.call(model, x), before)
    assert same_state(model, state) and no_patches(model)
