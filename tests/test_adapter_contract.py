"""The adapter contract, one table over every family: ``lesion(model, drop=[i])`` equals the
model's own forward with block i's residual branch zeroed by a forward hook on the branch's last
module (an independent reference: the hook knows nothing of the toolkit's lesion code)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from resnet_ensemble import lesion, residual_blocks
from resnet_ensemble.models import build_builtin

from .zoo_reference import no_patches, randomize_norms, zeroed


@dataclass(frozen=True)
class Row:
    build: Callable[[], nn.Module]  # a tiny model with random weights, in eval mode
    inputs: Callable[[], torch.Tensor]
    ends: Callable[[nn.Module], list[nn.Module]]  # block i's branch's last module, by index
    drops: tuple[tuple[int, ...], ...]  # each includes or is a downsampling block where any
    call: Callable[[nn.Module, torch.Tensor], torch.Tensor] = lambda m, x: m(x)


def _image(c: int = 3, size: int = 32) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(2, c, size, size, generator=torch.Generator().manual_seed(1))


def _eval(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return randomize_norms(model).eval()


def _cifar(**options: object) -> Callable[[], nn.Module]:
    return lambda: _eval(build_builtin("resnet20", **options))


def _cifar_ends(model: nn.Module) -> list[nn.Module]:
    return [b.bn2 for st in (model.layer1, model.layer2, model.layer3) for b in st]


def _preact_ends(model: nn.Module) -> list[nn.Module]:
    return [b.conv2 for st in (model.layer1, model.layer2, model.layer3) for b in st]


def _tv(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torchvision = pytest.importorskip("torchvision")
        return _eval(getattr(torchvision.models, name)(num_classes=5))

    return build


def _tv_ends(model: nn.Module) -> list[nn.Module]:
    blocks = [b for st in (model.layer1, model.layer2, model.layer3, model.layer4) for b in st]
    return [b.bn3 if hasattr(b, "bn3") else b.bn2 for b in blocks]


def _timm(name: str, **kwargs: object) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        timm = pytest.importorskip("timm")
        torch.manual_seed(0)
        return _eval(timm.create_model(name, pretrained=False, num_classes=5, **kwargs))

    return build


def _hf(build_model: Callable[[object], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        transformers = pytest.importorskip("transformers")
        torch.manual_seed(0)
        return _eval(build_model(transformers))

    return build


def _hf_resnet(T: object) -> nn.Module:
    config = T.ResNetConfig(  # type: ignore[attr-defined]
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16, 24], depths=[2, 1, 2],
        layer_type="basic", num_labels=10,
    )  # fmt: skip
    return T.ResNetForImageClassification(config)  # type: ignore[attr-defined]


def _hf_vit(T: object) -> nn.Module:
    config = T.ViTConfig(  # type: ignore[attr-defined]
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=48, num_labels=5,
    )  # fmt: skip
    return T.ViTForImageClassification(config)  # type: ignore[attr-defined]


_SMALL = {"vocab_size": 50, "num_hidden_layers": 3, "hidden_size": 32,
          "num_attention_heads": 4, "intermediate_size": 48}  # fmt: skip


def _gpt2(T: object) -> nn.Module:
    config = T.GPT2Config(  # type: ignore[attr-defined]
        vocab_size=50, n_layer=3, n_embd=32, n_head=4, n_positions=64,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return T.GPT2LMHeadModel(config)  # type: ignore[attr-defined]


def _llama(T: object) -> nn.Module:
    return T.LlamaForCausalLM(T.LlamaConfig(num_key_value_heads=2, **_SMALL))  # type: ignore[attr-defined]


def _decoder_ends(model: nn.Module) -> list[nn.Module]:
    base = model.base_model
    layers = base.h if hasattr(base, "h") else base.layers
    ends: list[nn.Module] = []
    for layer in layers:
        ends += [layer.self_attn if hasattr(layer, "self_attn") else layer.attn, layer.mlp]
    return ends


def _tokens() -> torch.Tensor:
    return torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).logits


TABLE: dict[str, Row] = {
    "cifar-option-a": Row(_cifar(), _image(), _cifar_ends, ((1,), (3,), (0, 6, 8))),
    "cifar-option-b": Row(_cifar(shortcut="B"), _image(), _cifar_ends, ((3,), (6, 8))),
    "cifar-preact": Row(
        lambda: _eval(build_builtin("preresnet20")), _image(), _preact_ends, ((1,), (3,), (6,))
    ),
    "torchvision-basic": Row(_tv("resnet18"), _image(), _tv_ends, ((1,), (2,), (4, 7))),
    "torchvision-bottleneck": Row(_tv("resnet50"), _image(), _tv_ends, ((0,), (3,), (7, 15))),
    "timm-resnet": Row(_timm("resnet18"), _image(), lambda m: _tv_ends(m), ((1,), (2,), (4, 7))),
    "timm-convnext": Row(
        _timm("convnext_atto"),
        _image(size=64),
        lambda m: [b.mlp for st in m.stages for b in st.blocks],  # gamma scales zero to zero
        ((0,), (2,), (4, 11)),
    ),
    "timm-vit": Row(
        _timm("vit_tiny_patch16_224", img_size=32, depth=3, init_values=0.5),
        _image(),
        lambda m: [e for b in m.blocks for e in (b.ls1, b.ls2)],
        ((0,), (3,), (1, 5)),
    ),
    "hf-resnet": Row(
        _hf(_hf_resnet),
        _image(c=1),
        lambda m: [layer.layer for st in m.resnet.encoder.stages for layer in st.layers],
        ((1,), (3,), (0, 4)),
        _logits,
    ),
    "hf-vit": Row(
        _hf(_hf_vit),
        _image(size=16),
        lambda m: [e for layer in m.vit.layers for e in (layer.attention, layer.mlp)],
        ((0,), (3,), (1, 2)),
        _logits,
    ),
    "hf-gpt2": Row(_hf(_gpt2), _tokens, _decoder_ends, ((0,), (3,), (1, 5)), _logits),
    "hf-llama": Row(_hf(_llama), _tokens, _decoder_ends, ((0,), (3,), (1, 5)), _logits),
}


@pytest.mark.parametrize("family", list(TABLE))
def test_lesion_equals_the_zeroed_branch_inside_the_models_own_forward(family: str) -> None:
    row = TABLE[family]
    model, x = row.build(), row.inputs()
    ends = row.ends(model)
    assert len(ends) == len(residual_blocks(model))
    downsampling = {b.index for b in residual_blocks(model) if b.downsamples}
    assert not downsampling or any(downsampling & set(d) for d in row.drops)
    with torch.no_grad():
        before = row.call(model, x)
        for drop in row.drops:
            with zeroed([ends[i] for i in drop]):
                expected = row.call(model, x)
            with lesion(model, drop=list(drop)):
                got = row.call(model, x)
            assert not torch.allclose(expected, before, atol=1e-4)  # the deletion matters
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(row.call(model, x), before) and no_patches(model)
