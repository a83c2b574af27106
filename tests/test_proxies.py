"""block_proxies against hooks inside the models' own forward (layer-norm inputs are the units'
inputs, attention and MLP outputs their residual branches, gradients retained on them), and
the correlation table against scipy on known orderings."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from resnet_ensemble import block_proxies
from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.studies.proxies import (
    PROXIES,
    plot_proxies,
    proxy_correlations,
    single_deletion_damage,
)

from .conftest import randomize_batchnorm

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from .test_hf import VOCAB, _decoder, _tokens  # noqa: E402

NORMS = {"gpt2": ("ln_1", "attn", "ln_2", "mlp"), "llama": ("input_layernorm", "self_attn",
         "post_attention_layernorm", "mlp")}  # fmt: skip


def _reference(model: torch.nn.Module, kind: str, ids: torch.Tensor) -> pd.DataFrame:
    n1, attn, n2, mlp = NORMS[kind]
    base = model.base_model
    layers = base.h if hasattr(base, "h") else base.layers
    caught: list[tuple[str, torch.Tensor]] = []
    handles = []

    def take_input(_m, args):  # noqa: ANN001, ANN202
        args[0].retain_grad()
        caught.append(("in", args[0]))

    def take_output(_m, _a, out):  # noqa: ANN001, ANN202
        caught.append(("f", out[0] if isinstance(out, tuple) else out))

    for layer in layers:
        handles += [
            getattr(layer, n1).register_forward_pre_hook(take_input),
            getattr(layer, attn).register_forward_hook(take_output),
            getattr(layer, n2).register_forward_pre_hook(take_input),
            getattr(layer, mlp).register_forward_hook(take_output),
        ]
    try:
        logits = model(ids, use_cache=False).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    ins = [t for k, t in caught if k == "in"]
    fs = [t for k, t in caught if k == "f"]
    rows = []
    for h, f in zip(ins, fs, strict=True):
        h, f, g = h.detach().double(), f.detach().double(), h.grad.double()
        out = h + f
        cos = F.cosine_similarity(h.reshape(-1, h.shape[-1]), out.reshape(-1, h.shape[-1]), dim=1)
        rows.append(
            {
                "block_influence": float((1 - cos).mean()),
                "angular_distance": float(torch.arccos(cos.clamp(-1, 1)).mean() / math.pi),
                "relative_update": float(
                    (f.flatten(1).norm(dim=1) / h.flatten(1).norm(dim=1)).mean()
                ),
                "update_gradient_cos": float(
                    F.cosine_similarity(f.flatten(1), -g.flatten(1), dim=1).mean()
                ),
            }
        )
    model.zero_grad(set_to_none=True)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_block_proxies_of_a_decoder_equal_hooks_in_its_own_forward(kind: str) -> None:
    model = _decoder(kind)
    ids = _tokens(11, batch=3, length=8)
    got = block_proxies(model, [ids])
    expected = _reference(model, kind, ids)
    assert len(got) == 6 and list(got["block"]) == list(range(6))
    for key in PROXIES:
        assert got[key].tolist() == pytest.approx(expected[key].tolist(), rel=1e-5, abs=1e-7), key
    assert (got["gradient_at"] == "input").all()


def test_block_proxies_of_a_resnet_average_over_batches_and_pixels() -> None:
    torch.manual_seed(0)
    net = randomize_batchnorm(cifar_resnet(20, num_classes=10)).eval()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    whole = block_proxies(net, [(x, y)])
    # Block 1 keeps the shape: its block influence from hooks on the block module (pixels are
    # positions, channels the vector), the same over two half batches.
    seen = {}
    h = net.layer1[1].register_forward_hook(lambda m, a, o: seen.update(i=a[0], o=o))
    with torch.no_grad():
        net(x)
    h.remove()
    vec = lambda t: t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]).double()  # noqa: E731
    cos = F.cosine_similarity(vec(seen["i"]), vec(seen["o"]), dim=1)
    assert whole.loc[1, "block_influence"] == pytest.approx(float((1 - cos).mean()), rel=1e-6)
    halves = block_proxies(net, [(x[:2], y[:2]), (x[2:], y[2:])])
    for key in ("block_influence", "angular_distance", "relative_update"):
        assert halves[key].tolist() == pytest.approx(whole[key].tolist(), rel=1e-6)
    assert whole.loc[3, "downsamples"] and whole.loc[3, "gradient_at"] == "output"
    assert whole[list(PROXIES)].notna().all().all()
    assert len(block_proxies(net, [(x, y)] * 5, batches=2)) == 9


def test_correlations_follow_scipy_and_the_figure_is_written(tmp_path) -> None:  # noqa: ANN001
    proxies = pd.DataFrame(
        {
            "block": range(5),
            "downsamples": [False, False, True, False, False],
            "block_influence": [0.1, 0.2, 0.3, 0.4, 0.5],  # same order as the damage
            "angular_distance": [0.5, 0.4, 0.3, 0.2, 0.1],  # reversed
            "relative_update": [1, 3, 2, 5, 4],
            "update_gradient_cos": [0.0] * 5,  # constant: no correlation defined
        }
    )
    sweep = pd.DataFrame(
        {
            "config": ["baseline", *(f"drop={i}" for i in range(5))],
            "deleted": [None, 0, 1, 2, 3, 4],
            "error": [0.1, 0.11, 0.12, 0.2, 0.3, 0.5],
        }
    )
    damage = single_deletion_damage(sweep)
    assert damage.tolist() == pytest.approx([0.01, 0.02, 0.1, 0.2, 0.4])
    table = proxy_correlations(proxies, damage).set_index("proxy")
    assert table.loc["block_influence", "kendall_tau"] == pytest.approx(1.0)
    assert table.loc["angular_distance", "spearman_rho"] == pytest.approx(-1.0)
    assert table.loc["relative_update", "kendall_tau"] == pytest.approx(0.6)
    assert math.isnan(table.loc["update_gradient_cos", "kendall_tau"])
    written = plot_proxies({"toy": (proxies, damage)}, tmp_path / "proxies")
    assert all(p.stat().st_size > 0 for p in written)


def test_block_proxies_run_on_every_vision_family() -> None:
    import torchvision

    from .conftest import tiny_vit

    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    convnext = timm.create_model("convnext_atto", pretrained=False, num_classes=6).eval()
    cases = [
        (tiny_vit().eval(), torch.randn(2, 3, 16, 16), 4),
        (torchvision.models.resnet18(num_classes=5).eval(), torch.randn(2, 3, 64, 64), 8),
        (convnext, torch.randn(2, 3, 64, 64), len([b for s in convnext.stages for b in s.blocks])),
    ]
    for model, x, n in cases:
        logits = model(x)
        table = block_proxies(model, [(x, torch.zeros(2, dtype=torch.long))])
        assert len(table) == n and logits.shape[0] == 2
        assert table[["block_influence", "relative_update"]].notna().all().all()
        assert ((table["angular_distance"] >= 0) & (table["angular_distance"] <= 1)).all()
