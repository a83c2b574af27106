"""Path counting against exact arithmetic, and subnetwork evaluation against a lesion loop."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binom
from torch import nn

from resnet_ensemble.core.interventions import lesion
from resnet_ensemble.data.datasets import load_dataset
from resnet_ensemble.models import cifar_resnet, plain_net
from resnet_ensemble.paths import (
    format_blocks,
    parse_blocks,
    path_fraction,
    path_length_counts,
    shortest_range_holding,
    summarize_paths,
)
from resnet_ensemble.studies.subnetworks import ensemble_view, evaluate_subnetworks, study_paths

from .conftest import randomize_batchnorm, save_tiny_checkpoint
from .reference import cifar_blocks, cifar_forward, reference_model


def test_counts_are_exact_binomials() -> None:
    assert path_length_counts(0) == [1]
    assert path_length_counts(3) == [1, 3, 3, 1]
    counts = path_length_counts(54)
    assert sum(counts) == 2**54
    assert counts[27] == math.comb(54, 27)
    big = path_length_counts(1000)
    assert all(isinstance(c, int) for c in big)
    assert sum(big) == 2**1000  # no float anywhere
    assert big[500] == math.comb(1000, 500) and big[0] == big[1000] == 1


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_counts_refuse_non_integers(bad: object) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        path_length_counts(bad)  # type: ignore[arg-type]


def test_paper_path_ranges_for_54_blocks() -> None:
    s = summarize_paths(54, share=0.95)
    assert (s.mean, s.std) == (27.0, math.sqrt(54) / 2)
    # The shortest range holding 95% of the 2^54 paths; 21-33 holds only 92.4%.
    assert (s.lo, s.hi) == (20, 34)
    assert s.fraction == pytest.approx(binom.cdf(34, 54, 0.5) - binom.cdf(19, 54, 0.5), abs=1e-15)
    assert s.fraction >= 0.95 > path_fraction(54, 21, 33)
    # The paper's "19 to 35": 27 +- 1.96 * 3.674 = 19.8..34.2, rounded outward.
    assert (s.normal_lo, s.normal_hi) == (19, 35)
    assert s.normal_fraction == pytest.approx(0.98017, abs=1e-5)


def test_paper_effective_paths_are_045_percent() -> None:
    assert round(100 * path_fraction(54, 5, 17), 2) == 0.45
    assert path_fraction(54, 0, 54) == 1.0
    assert path_fraction(3, 1, 1) == 3 / 8
    with pytest.raises(ValueError, match="lo <= hi"):
        path_fraction(54, 17, 5)


def test_large_n_summary_is_exact() -> None:
    s = summarize_paths(1000, share=0.95)
    inside = sum(path_length_counts(1000)[s.lo : s.hi + 1])
    assert inside * 20 >= 19 * 2**1000  # exact: at least 95%
    # One length shorter on either side falls below 95%.
    for lo, hi in ((s.lo + 1, s.hi), (s.lo, s.hi - 1)):
        assert sum(path_length_counts(1000)[lo : hi + 1]) * 20 < 19 * 2**1000


def _brute_shortest(weights: list[float], share: float) -> tuple[int, int]:
    total = sum(weights)
    best = None
    for lo in range(len(weights)):
        for hi in range(lo, len(weights)):
            mass = sum(weights[lo : hi + 1])
            if mass >= share * total - 1e-12:
                key = (hi - lo, -mass, lo)
                if best is None or key < best[0]:
                    best = (key, (lo, hi))
                break
    assert best is not None
    return best[1]


def test_shortest_range_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 12))
        weights = [float(w) for w in rng.exponential(size=m) * (rng.random(m) > 0.3)]
        if sum(weights) == 0:
            continue
        share = float(rng.choice([0.5, 0.9, 0.95, 1.0]))
        lo, hi, held = shortest_range_holding(weights, share)
        assert (lo, hi) == _brute_shortest(weights, share)
        assert held == pytest.approx(sum(weights[lo : hi + 1]) / sum(weights))


def test_shortest_range_refusals() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        shortest_range_holding([1.0, -1.0], 0.5)
    with pytest.raises(ValueError, match="zero"):
        shortest_range_holding([0.0, 0.0], 0.5)
    with pytest.raises(ValueError, match="share"):
        shortest_range_holding([1.0], 1.5)


def test_block_sets_round_trip() -> None:
    assert format_blocks([7, 0, 1, 2, 3, 5]) == "0-3,5,7"
    assert format_blocks([]) == "none"
    for subset in ([], [4], [0, 2, 3, 4, 9, 10]):
        assert parse_blocks(format_blocks(subset)) == subset


def _model() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(cifar_resnet(14, shortcut="B")).eval()  # 6 blocks


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Labels are the full network's own predictions on most images, so that the errors of the
    subnetworks spread out instead of all sitting near chance."""
    g = torch.Generator().manual_seed(0)
    model, data = _model(), []
    for _ in range(2):
        x = torch.randn(6, 3, 16, 16, generator=g)
        with torch.no_grad():
            y = model(x).argmax(1)
        y[:2] = torch.randint(0, 10, (2,), generator=g)
        data.append((x, y))
    return data


def _lesion_loop(model: nn.Module, data, kept: list[int]) -> tuple[float, list[torch.Tensor]]:  # noqa: ANN001
    """Error and softmax outputs of one subnetwork, one lesioned forward per batch."""
    drop = [i for i in range(6) if i not in kept]
    wrong, probs = 0, []
    with torch.no_grad(), lesion(model, drop=drop):
        for x, y in data:
            logits = model(x)
            wrong += int((logits.argmax(1) != y).sum())
            probs.append(torch.softmax(logits.double(), 1))
    return wrong / sum(len(y) for _, y in data), probs


def test_exhaustive_subnetworks_equal_a_lesion_loop() -> None:
    model, data = _model(), _data()
    table = evaluate_subnetworks(model, data, strategy="prefix")
    assert len(table) == 64 and table["kept"].is_unique
    assert set(table["images"]) == {12}
    prob_sum = [torch.zeros(6, 10, dtype=torch.float64) for _ in data]
    errors = []
    for subset in itertools.chain.from_iterable(
        itertools.combinations(range(6), k) for k in range(7)
    ):
        row = table[table["kept"] == format_blocks(subset)].iloc[0]
        error, probs = _lesion_loop(model, data, list(subset))
        assert row["error"] == pytest.approx(error, abs=1e-12)
        assert row["num_kept"] == len(subset)
        errors.append(error)
        for acc, p in zip(prob_sum, probs, strict=True):
            acc += p
    ensemble_wrong = sum(
        int((acc.argmax(1) != y).sum()) for acc, (_, y) in zip(prob_sum, data, strict=True)
    )
    view = table.attrs["ensemble"]
    assert view["ensemble_error"] == pytest.approx(ensemble_wrong / 12, abs=1e-12)
    assert view["full_error"] == pytest.approx(_lesion_loop(model, data, list(range(6)))[0])
    assert view["mean_subnetwork_error"] == pytest.approx(np.mean(errors))
    assert view["subnetworks"] == 64
    assert len(set(table["error"])) > 3  # the subnetworks really differ


def test_sampled_subnetworks_are_seeded_and_include_the_full_network_view() -> None:
    model, data = _model(), _data()
    a = evaluate_subnetworks(model, data, max_exhaustive=3, samples=10, seed=1)
    b = evaluate_subnetworks(model, data, max_exhaustive=3, samples=10, seed=1)
    assert 1 <= len(a) <= 10 and a["kept"].is_unique
    assert a.equals(b)
    for _, row in a.iterrows():
        error, _ = _lesion_loop(model, data, parse_blocks(row["kept"]))
        assert row["error"] == pytest.approx(error, abs=1e-12)
    view = ensemble_view(model, data, max_exhaustive=3, samples=10, seed=1)
    assert view.full_error == pytest.approx(_lesion_loop(model, data, list(range(6)))[0])
    assert view.subnetworks == len(a)


def test_plain_network_is_refused() -> None:
    with pytest.raises(ValueError, match="no shortcut"):
        evaluate_subnetworks(plain_net(8).eval(), _data())


# ----------------------------------------------------------------------------------------------
# study_paths: what ``ensemble-lesion paths`` runs, called directly


@pytest.fixture(scope="module")
def resnet8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-8 (3 blocks, two of them downsampling) checkpoint for the embedded 1-channel
    images, BatchNorm randomized so that deleting blocks changes answers."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "resnet8.pt", 8, 5)


def _embedded(images: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("embedded", "test", limit=images)
    x = torch.stack([data[i][0] for i in range(len(data))])
    return x, torch.tensor([data[i][1] for i in range(len(data))])


def test_study_counts_any_network_and_writes_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    seen: list[int] = []
    study = study_paths(num_blocks=54, on_counted=lambda s: seen.append(s.n))
    assert seen == [54] and list(tmp_path.iterdir()) == []
    assert [int(c) for c in study.table["paths"]] == [math.comb(54, k) for k in range(55)]
    assert (study.summary.normal_lo, study.summary.normal_hi) == (19, 35)
    assert study.plan is None and study.subnetworks is None and study.ensemble is None
    with pytest.raises(ValueError, match="no sub-networks"):
        study.error_by_blocks_kept()

    study = study_paths(num_blocks=7, out=tmp_path / "t" / "p.csv")
    assert study.table_path == tmp_path / "t" / "p.csv"
    written = pd.read_csv(study.table_path)
    assert written["paths"].tolist() == [math.comb(7, k) for k in range(8)]
    meta = json.loads((tmp_path / "t" / "p.json").read_text())
    assert meta["table"] == "paths" and meta["n"] == 7 and meta["model"] == "any network"


def test_study_evaluates_every_subnetwork_against_the_hand_written_forward(
    resnet8: Path, tmp_path: Path
) -> None:
    images = 40
    counted: list[bool] = []
    study = study_paths(
        {"model_spec": str(resnet8), "limit": images, "batch_size": 16, "device": "cpu"},
        exhaustive=True,
        out=tmp_path / "p.csv",
        on_counted=lambda s: counted.append(s.subnetworks is None and s.plan is not None),
    )
    assert counted == [True]  # told before the slow part, once
    assert study.n == 3 and study.plan is not None and study.plan.every
    assert study.plan.max_exhaustive == 12  # the CPU default
    frame = study.subnetworks
    assert frame is not None and len(frame) == 2**3
    by_size = study.error_by_blocks_kept()
    assert by_size["count"].tolist() == [math.comb(3, k) for k in range(4)]

    # Each sub-network against the reference forward with the other blocks deleted.
    model = reference_model(resnet8)
    blocks = cifar_blocks(model)
    x, y = _embedded(images)
    probs = torch.zeros(images, 10, dtype=torch.float64)
    errors = {}
    with torch.no_grad():
        for kept in itertools.chain.from_iterable(
            itertools.combinations(range(3), k) for k in range(4)
        ):
            logits = cifar_forward(model, x, [(b, i in kept) for i, b in enumerate(blocks)])
            errors[format_blocks(kept)] = float((logits.argmax(1) != y).float().mean())
            probs += torch.softmax(logits.double(), 1)
    assert dict(zip(frame["kept"], frame["error"], strict=True)) == pytest.approx(errors)
    assert len(set(errors.values())) > 1  # deleting blocks matters here
    view = study.ensemble
    assert view is not None and view.images == images
    assert view.full_error == pytest.approx(errors["0-2"])
    assert view.ensemble_error == pytest.approx(float((probs.argmax(1) != y).float().mean()))

    assert study.subnetworks_path == tmp_path / "p.subnetworks.csv"
    meta = json.loads((tmp_path / "p.subnetworks.json").read_text())
    assert meta["table"] == "subnetworks" and meta["exhaustive"] is True
    assert meta["ensemble"]["ensemble_error"] == view.ensemble_error
    paths_meta = json.loads((tmp_path / "p.json").read_text())
    assert paths_meta["num_blocks"] == 3 and paths_meta["images"] == images


def test_study_samples_above_max_exhaustive(resnet8: Path) -> None:
    settings = {"model_spec": str(resnet8), "limit": 8, "device": "cpu"}
    study = study_paths(settings, exhaustive=True, max_exhaustive=2, samples=5, seed=3)
    assert study.plan is not None and not study.plan.every and study.plan.samples == 5
    frame = study.subnetworks
    assert frame is not None and 1 <= len(frame) <= 5 and frame["kept"].is_unique
    again = study_paths(settings, exhaustive=True, max_exhaustive=2, samples=5, seed=3)
    assert again.subnetworks is not None
    assert again.subnetworks["kept"].tolist() == frame["kept"].tolist()


def test_study_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not num_blocks"):
        study_paths(num_blocks=4, exhaustive=True)
    with pytest.raises(ValueError, match="no shortcut"):
        study_paths({"model_spec": "plain20", "device": "cpu"})
    with pytest.raises(ValueError, match="it is a folder"):
        study_paths(num_blocks=4, out=tmp_path)
