"""The effective range's uncertainty: the bootstrap over sampled paths and the range implied by
the fitted decay, checked against scipy's binomial and against hand-built samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from resnet_ensemble.studies.gradient_analysis import bootstrap_effective_range, decay_implied_range


def _shortest_binomial_range(n: int, p: float, share: float) -> tuple[int, int]:
    """By brute force over every (lo, hi): the shortest range with at least ``share`` of
    Binomial(n, p), the one holding most among equally short ones."""
    pmf = binom.pmf(np.arange(n + 1), n, p)
    best = None
    for lo in range(n + 1):
        for hi in range(lo, n + 1):
            held = pmf[lo : hi + 1].sum()
            if held >= share - 1e-12:
                key = (hi - lo, -held)
                if best is None or key < best[0]:
                    best = (key, (lo, hi))
                break
    assert best is not None
    return best[1]


@pytest.mark.parametrize(("n", "factor"), [(54, 0.27), (54, 0.47), (18, 0.6), (1500, 0.5)])
def test_decay_implied_range_is_a_binomial_range(n: int, factor: float) -> None:
    # C(n, k) f^k is proportional to Binomial(n, f / (1 + f))'s pmf.
    implied = decay_implied_range({"factor_per_block": factor}, n)
    assert (implied["lo"], implied["hi"]) == _shortest_binomial_range(
        n, factor / (1 + factor), 0.95
    )


def test_decay_implied_range_needs_a_fit() -> None:
    assert decay_implied_range(None, 54) is None


def _samples(n: int, per_length: int, spread: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n + 1):
        centre = 0.4**k
        for s in range(per_length):
            noise = rng.lognormal(0.0, spread) if spread else 1.0
            rows.append({"batch": 0, "length": k, "sample": s, "norm": centre * noise})
    return pd.DataFrame(rows)


def test_bootstrap_without_spread_is_the_point_range() -> None:
    n = 20
    frame = _samples(n, 5, spread=0.0)
    boot = bootstrap_effective_range(frame, n, draws=50)
    # Every resample has the same means: the range of C(n, k) 0.4^k, Binomial(n, 0.4/1.4).
    lo, hi = _shortest_binomial_range(n, 0.4 / 1.4, 0.95)
    assert boot["lo_95ci"] == [lo, lo]
    assert boot["hi_95ci"] == [hi, hi]


def test_bootstrap_interval_widens_with_spread_and_holds_the_point_range() -> None:
    n = 20
    frame = _samples(n, 8, spread=1.5)
    narrow = bootstrap_effective_range(_samples(n, 8, spread=0.05), n, draws=200)
    wide = bootstrap_effective_range(frame, n, draws=200)
    width = lambda b: (b["hi_95ci"][1] - b["hi_95ci"][0]) + (b["lo_95ci"][1] - b["lo_95ci"][0])  # noqa: E731
    assert width(wide) > width(narrow)
    assert wide == bootstrap_effective_range(frame, n, draws=200)  # seeded


def test_bootstrap_needs_every_length() -> None:
    frame = _samples(6, 3, spread=0.5)
    assert bootstrap_effective_range(frame[frame["length"] != 3], 6) is None


def test_analysis_keeps_every_sampled_path() -> None:
    import torch

    from resnet_ensemble.models import build_builtin
    from resnet_ensemble.studies.gradient_analysis import analyze_gradients

    torch.manual_seed(0)
    model = build_builtin("resnet14", num_classes=3, in_channels=1).eval()
    batches = [(torch.randn(4, 1, 12, 12), torch.randint(0, 3, (4,))) for _ in range(2)]
    analysis = analyze_gradients(model, batches, samples_per_length=3, sign_draws=0)
    samples = analysis.samples
    n = analysis.n
    assert len(samples) == 2 * 3 * (n + 1)
    # The table's sampled mean is the plain mean of the kept rows, length by length.
    means = samples.groupby("length")["norm"].mean()
    assert np.allclose(analysis.table["sampled_mean"].to_numpy(), means.to_numpy())
    # A sampled path of length k keeps k blocks.
    kept = samples["blocks"].map(lambda b: 0 if b == "none" else len(str(b).split(",")))
    ranges = samples["blocks"].astype(str).str.contains("-")
    assert (kept[~ranges] == samples["length"][~ranges]).all()
    assert analysis.meta["effective_bootstrap"]["measurements_per_length"] == 6
