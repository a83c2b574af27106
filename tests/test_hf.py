"""Hugging Face ResNet, ViT and decoder LMs beyond the lesion contract (which is in
tests/test_adapter_contract.py): units and outputs, the engine against forward hooks that zero a
branch inside transformers' own forward, perplexity against a hand computation, repeated layers,
KV caches, half-precision folders."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from resnet_ensemble import evaluate_routes, lesion, residual_blocks, route
from resnet_ensemble.blocks.registry import anatomy
from resnet_ensemble.models.specs import load_model

from .zoo_reference import no_patches, randomize_norms, zeroed

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

VOCAB = 61


def _decoder(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    T = transformers
    small = {
        "vocab_size": VOCAB,
        "num_hidden_layers": 3,
        "hidden_size": 32,
        "num_attention_heads": 4,
        "intermediate_size": 48,
    }
    if kind == "gpt2":
        model = T.GPT2LMHeadModel(
            T.GPT2Config(
                vocab_size=VOCAB,
                n_layer=3,
                n_embd=32,
                n_head=4,
                n_positions=64,
                bos_token_id=0,
                eos_token_id=0,
            )
        )
    elif kind == "llama":
        model = T.LlamaForCausalLM(T.LlamaConfig(num_key_value_heads=2, **small))
    elif kind == "mistral":
        model = T.MistralForCausalLM(T.MistralConfig(num_key_value_heads=2, **small))
    elif kind == "qwen2":
        model = T.Qwen2ForCausalLM(T.Qwen2Config(num_key_value_heads=2, **small))
    elif kind == "neox":
        model = T.GPTNeoXForCausalLM(T.GPTNeoXConfig(**small))
    elif kind == "neox-sequential":
        model = T.GPTNeoXForCausalLM(T.GPTNeoXConfig(use_parallel_residual=False, **small))
    else:
        raise AssertionError(kind)
    return randomize_norms(model).eval()


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    base = model.base_model
    return list(base.h if hasattr(base, "h") else base.layers)


def _branch_ends(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Unit 2i: the attention module (its output tuple's first item); 2i + 1: the MLP."""
    ends = []
    for layer in _layers(model):
        attn = next(
            getattr(layer, a) for a in ("self_attn", "attn", "attention") if hasattr(layer, a)
        )
        ends += [attn, layer.mlp]
    return ends


def _tokens(seed: int, batch: int = 2, length: int = 7) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


DECODERS = ["gpt2", "llama", "mistral", "qwen2", "neox", "neox-sequential"]


@pytest.mark.parametrize("kind", DECODERS)
def test_decoder_units_are_attention_then_mlp_and_outputs_stay_model_outputs(kind: str) -> None:
    """The lesion itself is in the contract table (tests/test_adapter_contract.py)."""
    model = _decoder(kind)
    assert [b.module for b in residual_blocks(model)] == _branch_ends(model)
    assert anatomy(model).task == "language"
    with torch.no_grad(), lesion(model, drop=[1]):
        assert isinstance(model(input_ids=_tokens(1)), transformers.utils.ModelOutput)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "neox"])
def test_decoder_engine_equals_the_hooked_model(kind: str) -> None:
    model = _decoder(kind)
    ends = _branch_ends(model)
    data = [_tokens(2), _tokens(3, batch=3, length=5)]
    kept = [0, 2, 3, 4, 5]  # unit 1 (layer 0's MLP) deleted
    with torch.no_grad(), zeroed([ends[1]]):
        logits = [model(ids).logits for ids in data]
    nll = sum(
        F.cross_entropy(
            lg[:, :-1].reshape(-1, VOCAB).double(), ids[:, 1:].reshape(-1), reduction="sum"
        )
        for lg, ids in zip(logits, data, strict=True)
    )
    tokens = sum(ids[:, 1:].numel() for ids in data)
    loss, ppl = (evaluate_routes(model, data, [kept], metric=m)[0] for m in ("loss", "perplexity"))
    assert loss == pytest.approx(float(nll) / tokens, rel=1e-6)
    assert ppl == pytest.approx(math.exp(float(nll) / tokens), rel=1e-6)


def test_gpt2_perplexity_with_a_unit_deleted_equals_a_hand_computation() -> None:
    model = _decoder("gpt2")
    ends = _branch_ends(model)
    ids = _tokens(4, batch=3, length=9)
    with torch.no_grad(), zeroed([ends[2]]):  # layer 1's attention
        logits = model(ids).logits.double()
    logp = logits.log_softmax(dim=-1)
    total, count = 0.0, 0
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            total -= float(logp[b, t, ids[b, t + 1]])
            count += 1
    (ppl,) = evaluate_routes(model, [ids], [[0, 1, 3, 4, 5]])  # perplexity: the LM default
    assert ppl == pytest.approx(math.exp(total / count), rel=1e-6)


def test_route_that_repeats_a_layer_equals_running_that_layer_twice() -> None:
    model = _decoder("llama")
    layer0 = model.model.layers[0]

    def again(module, args, kwargs, out):  # noqa: ANN001, ANN202
        return type(module).forward(module, out, **kwargs)

    ids = _tokens(5)
    handle = layer0.register_forward_hook(again, with_kwargs=True)
    try:
        with torch.no_grad():
            expected = model(ids, use_cache=False).logits  # a cache would grow on the rerun
    finally:
        handle.remove()
    with torch.no_grad(), route(model, [0, 1, 0, 1, 2, 3, 4, 5]):
        got = model(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"block 1 .* must run right after block 0"):
        with route(_decoder("neox"), [1, 0, 2, 3, 4, 5]):
            pass


def _cache(out: object) -> object:
    return out.get("cache", out.get("past_key_values"))  # type: ignore[attr-defined]


def test_kv_caches_are_off_under_an_intervention_and_come_back_after() -> None:
    model = _decoder("qwen2")
    assert model.config.use_cache
    ids = _tokens(6)
    with torch.no_grad(), lesion(model, drop=[2]):
        assert _cache(model(ids)) is None
        with pytest.raises(ValueError, match="use_cache=False"):
            model(ids, use_cache=True)
    assert model.config.use_cache and _cache(model(ids)) is not None
    assert no_patches(model)


def _hf_resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.ResNetConfig(
        num_channels=1,
        embedding_size=8,
        hidden_sizes=[16, 24, 32],
        depths=[2, 1, 2],
        layer_type="bottleneck",
        num_labels=10,
    )
    return randomize_norms(transformers.ResNetForImageClassification(config)).eval()


def test_hf_resnet_engine_top1_equals_the_hooked_model() -> None:
    model = _hf_resnet()
    layers = [layer for st in model.resnet.encoder.stages for layer in st.layers]
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(7))
    y = torch.tensor([1, 2, 3])
    with torch.no_grad(), zeroed([layers[4].layer]):
        top1 = (model(x).logits.argmax(1) != y).float().mean().item()
    assert evaluate_routes(model, [(x, y)], [[0, 1, 2, 3]]) == pytest.approx([top1])


def test_hf_vit_engine_loss_equals_the_hooked_model() -> None:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        num_labels=5,
    )
    model = randomize_norms(transformers.ViTForImageClassification(config)).eval()
    ends = [m for layer in model.vit.layers for m in (layer.attention, layer.mlp)]
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    y = torch.tensor([0, 4])
    for drop in ([0], [3], [1, 2]):
        with torch.no_grad(), zeroed([ends[i] for i in drop]):
            expected = F.cross_entropy(model(pixel_values=x).logits, y).item()
        kept = [i for i in range(4) if i not in drop]
        (loss,) = evaluate_routes(model, [(x, y)], [kept], metric="loss")
        assert loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("stored", [torch.float16, torch.bfloat16])
def test_a_folder_saved_in_half_precision_is_analysed_in_float32(tmp_path, stored) -> None:
    half = _decoder("llama").to(stored)
    half.save_pretrained(tmp_path / "half")
    # The reference: the stored weights, cast to float32 by hand, in a float32 model.
    reference = _decoder("llama")
    reference.load_state_dict({k: v.float() for k, v in half.state_dict().items()})
    loaded = load_model(f"hf:{tmp_path / 'half'}")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    ids = _tokens(9)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, reference(ids).logits, rtol=0, atol=0)
    kept = load_model(f"hf:{tmp_path / 'half'}", dtype=None)  # asked to keep what is stored
    assert {p.dtype for p in kept.model.parameters()} == {stored}
