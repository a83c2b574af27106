"""The path-length gradient decomposition against brute force over every path, against
hand-written path forwards, and against the ordinary gradient, in float64.

The independent reference for one path is a "gated" hand-written forward: every block computes
both branches at the full network's values, but the branch a path does not take is detached,
so autograd's ordinary gradient of that forward is exactly the single-path gradient.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from resnet_ensemble.core.gradients import (
    effective_path_range,
    path_length_gradients,
    path_length_norms,
    sample_path_gradients,
    sign_estimator,
    single_path_gradient,
    summarize_sampled,
)
from resnet_ensemble.models import cifar_resnet, plain_net
from resnet_ensemble.models.cifar import PreActBlock
from resnet_ensemble.studies.experiment import open_experiment
from resnet_ensemble.studies.gradient_analysis import gradient_outputs, study_gradients

from .conftest import randomize_batchnorm, save_tiny_checkpoint, tiny_vit
from .reference import (
    _cifar_shortcut,
    cifar_blocks,
    reference_model,
    torchvision_resnet_blocks,
    vit_units,
)


def _only(keep: Tensor, drop: Tensor) -> Tensor:
    """``keep + drop`` in value; the gradient flows through ``keep`` only."""
    return keep + drop.detach()


def _gated_cifar(model: nn.Module, x: Tensor, subset: set[int]) -> Tensor:
    h = model.conv1(x)
    if not model.preact:
        h = torch.relu(model.bn1(h))
    for i, blk in enumerate(cifar_blocks(model)):
        short = _cifar_shortcut(blk, h)
        if isinstance(blk, PreActBlock):
            res = blk.conv2(torch.relu(blk.bn2(blk.conv1(torch.relu(blk.bn1(h))))))
        else:
            res = blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(h)))))
        res = res * blk.drop_path.survival
        z = _only(res, short) if i in subset else _only(short, res)
        h = z if isinstance(blk, PreActBlock) else torch.relu(z)
    if model.preact:
        h = torch.relu(model.bn_final(h))
    return model.fc(h.mean(dim=(2, 3)))


def _gated_torchvision(model: nn.Module, x: Tensor, subset: set[int]) -> Tensor:
    h = model.maxpool(torch.relu(model.bn1(model.conv1(x))))
    for i, blk in enumerate(torchvision_resnet_blocks(model)):
        short = h if blk.downsample is None else blk.downsample(h)
        res = blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(h)))))
        h = torch.relu(_only(res, short) if i in subset else _only(short, res))
    return model.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def _gated_vit(model: nn.Module, x: Tensor, subset: set[int]) -> Tensor:
    h = model.conv_proj(x).flatten(2).transpose(1, 2)
    h = torch.cat([model.class_token.expand(x.shape[0], -1, -1), h], 1)
    h = h + model.encoder.pos_embedding
    for i, (layer, kind) in enumerate(vit_units(model)):
        if kind == "attention":
            a = layer.ln_1(h)
            res = layer.self_attention(a, a, a, need_weights=False)[0]
        else:
            res = layer.mlp(layer.ln_2(h))
        h = _only(res, h) if i in subset else _only(h, res)
    return model.heads(model.encoder.ln(h)[:, 0])


def _reference_path(gated, model: nn.Module, x: Tensor, y: Tensor, subset) -> Tensor:  # noqa: ANN001
    leaf = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(F.cross_entropy(gated(model, leaf, set(subset)), y), leaf)
    return g


def _ordinary(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    leaf = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(F.cross_entropy(model(leaf), y), leaf)
    return g


def _all_subsets(n: int):  # noqa: ANN202
    return itertools.chain.from_iterable(itertools.combinations(range(n), k) for k in range(n + 1))


def _resnet14(**kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(cifar_resnet(14, **kwargs)).double().eval()  # type: ignore[arg-type]


def _batch(size: int = 8, count: int = 2, classes: int = 10) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(count, 3, size, size, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (count,), generator=g)


@pytest.mark.parametrize(
    "kwargs",
    [{"shortcut": "A"}, {"shortcut": "B"}, {"preact": True, "shortcut": "B"}],
    ids=["optionA", "optionB", "preact-B"],
)
def test_every_path_brute_force(kwargs: dict) -> None:
    """All 64 paths of a 6-block ResNet: each single path equals the gated hand-written
    forward; their sums per length equal the decomposition; all of them, the gradient."""
    model, (x, y) = _resnet14(**kwargs), _batch()
    per_length = path_length_gradients(model, x, y)
    assert per_length.shape == (7, *x.shape)
    by_length = torch.zeros_like(per_length)
    for subset in _all_subsets(6):
        g = single_path_gradient(model, x, y, subset)
        expected = _reference_path(_gated_cifar, model, x, y, subset)
        torch.testing.assert_close(g, expected, rtol=1e-10, atol=1e-15)
        by_length[len(subset)] += expected
    torch.testing.assert_close(per_length, by_length, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(by_length.sum(0), _ordinary(model, x, y), rtol=1e-10, atol=1e-15)
    assert (path_length_norms(per_length) > 0).all()


def _torchvision_resnet18() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(torchvision.models.resnet18(num_classes=7)).double().eval()


def test_torchvision_resnet_sums_and_single_paths() -> None:
    model = _torchvision_resnet18()
    x, y = _batch(size=32, count=1, classes=7)
    per_length = path_length_gradients(model, x, y)
    assert per_length.shape == (9, *x.shape)
    torch.testing.assert_close(per_length.sum(0), _ordinary(model, x, y), rtol=1e-9, atol=1e-15)
    for subset in [(), (0, 2), (1, 3, 4, 7), tuple(range(8))]:  # 2, 4 and 6 downsample
        torch.testing.assert_close(
            single_path_gradient(model, x, y, subset),
            _reference_path(_gated_torchvision, model, x, y, subset),
            rtol=1e-10,
            atol=1e-15,
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shortcut": "A"},
        {"shortcut": "B"},
        {"preact": True, "shortcut": "A"},
        {"preact": True, "shortcut": "B"},
        {"stochastic_depth": 0.5},
    ],
    ids=["A", "B", "preact-A", "preact-B", "stochastic-depth"],
)
def test_builtin_resnet20_sums_to_the_gradient(kwargs: dict) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(20, **kwargs)).double().eval()  # type: ignore[arg-type]
    x, y = _batch(size=8, count=3)
    per_length = path_length_gradients(model, x, y)
    assert per_length.shape == (10, *x.shape)
    torch.testing.assert_close(per_length.sum(0), _ordinary(model, x, y), rtol=1e-10, atol=1e-15)


def test_vit_every_path() -> None:
    model = tiny_vit().double()  # 2 layers: 4 residual units
    x, y = _batch(size=16, count=2, classes=5)
    per_length = path_length_gradients(model, x, y)
    by_length = torch.zeros_like(per_length)
    for subset in _all_subsets(4):
        g = single_path_gradient(model, x, y, subset)
        torch.testing.assert_close(
            g, _reference_path(_gated_vit, model, x, y, subset), rtol=1e-9, atol=1e-15
        )
        by_length[len(subset)] += g
    torch.testing.assert_close(per_length, by_length, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(per_length.sum(0), _ordinary(model, x, y), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("k", [0, 2, 4, 5, 6, 10])
def test_max_length_keeps_short_lengths_and_lumps_the_rest(k: int) -> None:
    model, (x, y) = _resnet14(), _batch()
    full = path_length_gradients(model, x, y)
    cut = path_length_gradients(model, x, y, max_length=k)
    assert cut.shape == full.shape
    top = min(k, 6)
    torch.testing.assert_close(cut[: top + 1], full[: top + 1], rtol=1e-12, atol=0.0)
    if k < 6:
        torch.testing.assert_close(cut[k + 1], full[k + 1 :].sum(0), rtol=1e-10, atol=1e-16)
        assert torch.count_nonzero(cut[k + 2 :]) == 0
    torch.testing.assert_close(cut.sum(0), _ordinary(model, x, y), rtol=1e-10, atol=1e-15)


def test_chunking_does_not_change_the_result() -> None:
    model, (x, y) = _resnet14(shortcut="B"), _batch(count=3)
    whole = path_length_gradients(model, x, y)
    for rows in (1, 2, 5):
        torch.testing.assert_close(path_length_gradients(model, x, y, chunk_size=rows), whole)


def test_refusals() -> None:
    x, y = _batch()
    with pytest.raises(ValueError, match="paths are not defined without shortcuts"):
        path_length_gradients(plain_net(8).double(), x, y)
    with pytest.raises(ValueError, match="max_length"):
        path_length_gradients(_resnet14(), x, y, max_length=-1)
    with pytest.raises(ValueError, match="out of range"):
        single_path_gradient(_resnet14(), x, y, [6])


def test_model_is_left_as_it_was() -> None:
    model = _resnet14().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _batch()
    path_length_gradients(model, x, y)
    sample_path_gradients(model, (x, y), samples_per_length=2)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def _brute_norms(model: nn.Module, x: Tensor, y: Tensor) -> dict[int, list[float]]:
    norms: dict[int, list[float]] = {k: [] for k in range(7)}
    for subset in _all_subsets(6):
        norms[len(subset)].append(float(single_path_gradient(model, x, y, subset).norm()))
    return norms


def test_sampled_rows_are_exactly_their_paths() -> None:
    model, (x, y) = _resnet14(shortcut="A"), _batch()
    table = sample_path_gradients(model, (x, y), samples_per_length=3, seed=5)
    assert len(table) == 7 * 3 and list(table.columns) == ["length", "sample", "norm", "blocks"]
    for _, row in table.iterrows():
        subset = [] if row["blocks"] == "none" else _parse(row["blocks"])
        assert len(subset) == row["length"]
        expected = _reference_path(_gated_cifar, model, x, y, subset).norm()
        assert row["norm"] == pytest.approx(float(expected), rel=1e-10)


def _parse(text: str) -> list[int]:
    from resnet_ensemble.paths import parse_blocks

    return parse_blocks(text)


def test_sampled_mean_agrees_with_brute_force() -> None:
    """Seeded; each sampled mean lies within 3 standard errors of the mean over all paths of
    that length (lengths 0 and 6 have one path: exact)."""
    model, (x, y) = _resnet14(shortcut="B"), _batch(count=1)
    truth = _brute_norms(model, x, y)
    table = sample_path_gradients(model, (x, y), samples_per_length=120, seed=0)
    summary = summarize_sampled(table, 6)
    for _, row in summary.iterrows():
        k = int(row["length"])
        mean = sum(truth[k]) / len(truth[k])
        assert abs(row["mean"] - mean) <= 3 * row["sem"] + 1e-12 * mean
        assert row["paths"] == math.comb(6, k)
        assert row["total"] == pytest.approx(row["mean"] * math.comb(6, k))
    assert summary["share"].sum() == pytest.approx(1.0)


def test_sign_estimator_is_unbiased_for_summed_squares() -> None:
    """Seeded; the mean over 400 draws lies within 4 standard errors of the brute-force sum of
    squared single-path norms, for every length (0 and 6 are exact: one path, no cross term)."""
    model, (x, y) = _resnet14(shortcut="A"), _batch(count=1)
    truth = [0.0] * 7
    for subset in _all_subsets(6):
        truth[len(subset)] += float(single_path_gradient(model, x, y, subset).norm()) ** 2
    est = sign_estimator(model, x, y, draws=400, seed=0, draws_per_pass=100)
    for k in range(7):
        row = est.iloc[k]
        assert abs(row["sum_sq"] - truth[k]) <= 4 * row["sum_sq_sem"] + 1e-10 * truth[k]
        assert row["mean_sq"] == pytest.approx(row["sum_sq"] / math.comb(6, k))
    assert est.iloc[0]["sum_sq_sem"] == pytest.approx(0.0, abs=1e-20)


def test_effective_range_of_concentrated_gradient() -> None:
    magnitude = [0.0] * 55
    for k in range(5, 18):
        magnitude[k] = 1.0
    magnitude[30] = 0.01
    r = effective_path_range(magnitude, 54, share=0.95)
    assert (r.lo, r.hi) == (5, 17)
    assert r.gradient_share == pytest.approx(13 / 13.01)
    assert round(100 * r.path_share, 2) == 0.45
    with pytest.raises(ValueError, match="one magnitude per length"):
        effective_path_range(magnitude[:-1], 54)


# ----------------------------------------------------------------------------------------------
# Where the gradient is measured, and which norm


def _stem_output(model: nn.Module, x: Tensor) -> Tensor:
    return torch.relu(model.bn1(model.conv1(x)))


def _gated_from_stem(model: nn.Module, h: Tensor, subset: set[int]) -> Tensor:
    """The gated forward of ``_gated_cifar`` from the first block's input on."""
    for i, blk in enumerate(cifar_blocks(model)):
        short = _cifar_shortcut(blk, h)
        res = blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(h))))) * blk.drop_path.survival
        h = torch.relu(_only(res, short) if i in subset else _only(short, res))
    return model.fc(h.mean(dim=(2, 3)))


def test_at_blocks_splits_the_gradient_at_the_first_block_input() -> None:
    """Every path's gradient at the input of the residual part, by a hand-written gated
    forward that starts there; their sums per length, and all of them the ordinary gradient
    with respect to the stem's output."""
    model, (x, y) = _resnet14(), _batch()
    per_length = path_length_gradients(model, x, y, at="blocks")
    h0 = _stem_output(model, x).detach()
    assert per_length.shape == (7, *h0.shape)
    by_length = torch.zeros_like(per_length)
    for subset in _all_subsets(6):
        leaf = h0.clone().requires_grad_()
        loss = F.cross_entropy(_gated_from_stem(model, leaf, set(subset)), y)
        by_length[len(subset)] += torch.autograd.grad(loss, leaf)[0]
    torch.testing.assert_close(per_length, by_length, rtol=1e-10, atol=1e-15)
    leaf = h0.clone().requires_grad_()
    rest = model.fc(model.layer3(model.layer2(model.layer1(leaf))).mean(dim=(2, 3)))
    (ordinary,) = torch.autograd.grad(F.cross_entropy(rest, y), leaf)
    torch.testing.assert_close(per_length.sum(0), ordinary, rtol=1e-10, atol=1e-15)


def test_sampled_paths_at_blocks_are_their_paths() -> None:
    model, (x, y) = _resnet14(), _batch()
    h0 = _stem_output(model, x).detach()
    rows = sample_path_gradients(model, (x, y), 3, seed=1, at="blocks")
    for length, blocks, norm in zip(rows["length"], rows["blocks"], rows["norm"], strict=True):
        subset = set(_parse(blocks)) if blocks != "none" else set()
        assert len(subset) == length
        leaf = h0.clone().requires_grad_()
        loss = F.cross_entropy(_gated_from_stem(model, leaf, subset), y)
        assert norm == pytest.approx(float(torch.autograd.grad(loss, leaf)[0].norm()), rel=1e-9)


def test_per_image_norm_is_the_mean_norm_of_each_images_own_gradient() -> None:
    """``per_image``: the mean over images of the norm of the gradient of that image's own
    loss, taken image by image with autograd; independent of the batch size."""
    model, (x, y) = _resnet14(), _batch(count=4)
    per_length = path_length_gradients(model, x, y)
    total = path_length_norms(per_length.sum(0, keepdim=True), "per_image")
    own = [float(_ordinary(model, x[i : i + 1], y[i : i + 1]).norm()) for i in range(4)]
    assert float(total[0]) == pytest.approx(sum(own) / 4, rel=1e-9)
    batch = path_length_norms(per_length.sum(0, keepdim=True), "batch")
    assert float(batch[0]) == pytest.approx(float(_ordinary(model, x, y).norm()), rel=1e-9)
    rows = sample_path_gradients(model, (x, y), 2, lengths=[0, 6], norm="per_image")
    for length, norm in zip(rows["length"], rows["norm"], strict=True):
        subset = set(range(6)) if length == 6 else set()
        own = [
            float(_reference_path(_gated_cifar, model, x[i : i + 1], y[i : i + 1], subset).norm())
            for i in range(4)
        ]
        assert norm == pytest.approx(sum(own) / 4, rel=1e-9)


def test_unknown_places_and_norms_are_refused() -> None:
    model, (x, y) = _resnet14(), _batch()
    with pytest.raises(ValueError, match="at must be one of image, blocks"):
        path_length_gradients(model, x, y, at="logits")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="norm must be one of batch, per_image"):
        sample_path_gradients(model, (x, y), 1, norm="max")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# study_gradients: what ``ensemble-lesion gradients`` runs, called directly


def test_study_matches_brute_force_over_every_path(tmp_path: Path) -> None:
    """The study's per-length norms against the sum of the gated single-path gradients of each
    length, on the batch it drew; those sums together are the ordinary gradient."""
    ckpt = save_tiny_checkpoint(tmp_path / "resnet8.pt", 8, 5)
    settings = {"model_spec": str(ckpt), "device": "cpu"}
    lines: list[str] = []
    study = study_gradients(
        settings,
        images=6,
        batches=1,
        samples_per_length=2,
        sign_draws=0,
        seed=4,
        out=tmp_path / "g.csv",
        on_start=lines.append,
    )
    assert len(lines) == 1 and "4 lengths" in lines[0]
    table = study.analysis.table
    assert table["num_paths"].tolist() == [math.comb(3, k) for k in range(4)]
    assert study.describe["split"] == "test"  # the embedded data have only a test split

    # The same batch, drawn again by seed; the model read with plain torch.load.
    ((x, y),) = open_experiment(**settings).random_batches(6, 1, seed=4)
    model = reference_model(ckpt).double()
    x = x.double()
    by_length = torch.zeros(4, *x.shape, dtype=torch.float64)
    for subset in _all_subsets(3):
        by_length[len(subset)] += _reference_path(_gated_cifar, model, x, y, subset)
    torch.testing.assert_close(by_length.sum(0), _ordinary(model, x, y), rtol=1e-9, atol=1e-12)
    expected = by_length.flatten(1).norm(dim=1)
    assert table["exact_norm"].tolist() == pytest.approx(expected.tolist(), rel=1e-4)

    written = pd.read_csv(tmp_path / "g.csv")
    assert written["exact_norm"].tolist() == pytest.approx(table["exact_norm"].tolist())
    meta = json.loads((tmp_path / "g.json").read_text())
    assert meta["table"] == "gradients" and meta["seed"] == 4 and meta["split"] == "test"
    assert study.report_path is None and not (tmp_path / "g.md").exists()


def test_study_report_puts_its_table_beside_it(tmp_path: Path) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "resnet8.pt", 8, 5)
    study = study_gradients(
        {"model_spec": str(ckpt), "device": "cpu"},
        images=4,
        batches=1,
        samples_per_length=2,
        sign_draws=0,
        report=tmp_path / "r.md",
    )
    assert study.table_path == tmp_path / "r.csv" and (tmp_path / "r.json").exists()
    assert study.figures_dir == tmp_path / "r_figures"
    report = (tmp_path / "r.md").read_text()
    assert "r_figures/" in report and "## Effective paths" in report


def test_gradient_outputs_refuse_clashes(tmp_path: Path) -> None:
    assert gradient_outputs(None, None) == (None, None)
    assert gradient_outputs(None, tmp_path / "r.md") == (tmp_path / "r.csv", tmp_path / "r.md")
    with pytest.raises(ValueError, match="Markdown"):
        gradient_outputs(None, tmp_path / "r.csv")
    with pytest.raises(ValueError, match="Markdown"):
        gradient_outputs(tmp_path / "g.csv", tmp_path / "g.json")
    with pytest.raises(ValueError, match="overwrite"):
        gradient_outputs(tmp_path / "g.md", tmp_path / "g.md")
