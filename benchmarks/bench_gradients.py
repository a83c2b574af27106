"""Exact path-length gradient decomposition against the paper's sampled estimator.

Two measurements, side by side in one run:

1. Speed, on a CIFAR ResNet (ResNet-56 by default: 27 blocks) and a small batch: the exact
   decomposition (every length, one polynomial backward pass) against the paper's estimator
   (single random paths, 1,000 per length). The estimator is timed at ``--samples`` per length
   and extrapolated linearly to 1,000 (its cost is exactly linear in the number of samples,
   after one shared forward pass).
2. Error, on a network small enough for brute force over all 2^n paths (ResNet-20: 9 blocks,
   512 paths, float64): the exact decomposition, the sampled estimator (1,000 per length) and
   the sign estimator against the truth built from every single-path gradient.

    PYTHONPATH=. python benchmarks/bench_gradients.py [--depth 56] [--images 8] [--samples 10]
        [--out benchmarks/results/bench_gradients.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from benchmark_models import randomize_batchnorm  # the script's own folder
from torch import Tensor

from resnet_ensemble.core.gradients import (
    effective_path_range,
    path_length_gradients,
    path_length_norms,
    sample_path_gradients,
    sign_estimator,
    single_path_gradient,
    summarize_sampled,
)
from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.paths import path_length_counts


def _batch(images: int, size: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(images, 3, size, size, generator=g, dtype=dtype),
        torch.randint(0, 10, (images,), generator=g),
    )


def _timed(fn):  # noqa: ANN001, ANN202
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def speed(depth: int, images: int, samples: int) -> dict:
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(depth)).eval()
    x, y = _batch(images, 32, torch.float32)
    n = (depth - 2) // 2
    path_length_gradients(model, x[:1], y[:1], max_length=1)  # warm-up (allocator, kernels)

    def ordinary() -> Tensor:
        leaf = x.clone().requires_grad_()
        return torch.autograd.grad(F.cross_entropy(model(leaf), y), leaf)[0]

    grad, t_ordinary = _timed(ordinary)
    exact, t_exact = _timed(lambda: path_length_gradients(model, x, y))
    table, t_sampled = _timed(lambda: sample_path_gradients(model, (x, y), samples, seed=0))
    t_sampled_1000 = t_sampled * 1000 / samples
    naive_lengths = range(0, n + 1, max(1, n // 8))

    def naive() -> None:  # one forward and backward per path, as a hook-based loop does it
        rng = torch.Generator().manual_seed(1)
        for k in naive_lengths:
            single_path_gradient(model, x, y, torch.randperm(n, generator=rng)[:k].tolist())

    _, t_naive = _timed(naive)
    t_naive_per_path = t_naive / len(naive_lengths)
    rel = float((exact.sum(0) - grad).norm() / grad.norm())
    summary = summarize_sampled(table, n)
    return {
        "model": f"resnet{depth} (n = {n} blocks), random weights, randomized BatchNorm",
        "images": images,
        "dtype": "float32",
        "ordinary_backward_s": t_ordinary,
        "exact_s": t_exact,
        "exact_in_ordinary_backwards": t_exact / t_ordinary,
        "exact_sum_rel_error": rel,
        "sampled_samples_per_length": samples,
        "sampled_s": t_sampled,
        "sampled_s_per_path": t_sampled / len(table),
        "sampled_1000_per_length_s_extrapolated": t_sampled_1000,
        "speedup_exact_vs_1000_per_length": t_sampled_1000 / t_exact,
        "naive_s_per_path": t_naive_per_path,
        "naive_1000_per_length_s_extrapolated": t_naive_per_path * 1000 * (n + 1),
        "effective_range_exact_95": effective_path_range(path_length_norms(exact), n).__dict__,
        "effective_range_sampled_95": effective_path_range(summary["total"], n).__dict__,
    }


def accuracy(depth: int, images: int, samples: int, draws: int) -> dict:
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(depth)).double().eval()
    x, y = _batch(images, 16, torch.float64)
    n = (depth - 2) // 2
    counts = path_length_counts(n)

    def brute() -> tuple[Tensor, list[list[float]]]:
        sums = torch.zeros(n + 1, *x.shape, dtype=torch.float64)
        norms: list[list[float]] = [[] for _ in range(n + 1)]
        for k in range(n + 1):
            for subset in itertools.combinations(range(n), k):
                g = single_path_gradient(model, x, y, subset)
                sums[k] += g
                norms[k].append(float(g.norm()))
        return sums, norms

    (truth, norms), t_brute = _timed(brute)
    exact, t_exact = _timed(lambda: path_length_gradients(model, x, y))
    table, t_sampled = _timed(lambda: sample_path_gradients(model, (x, y), samples, seed=0))
    signs, t_signs = _timed(lambda: sign_estimator(model, x, y, draws=draws, seed=0))
    summary = summarize_sampled(table, n)
    mean_truth = torch.tensor([sum(v) / len(v) for v in norms], dtype=torch.float64)
    sq_truth = torch.tensor([sum(a * a for a in v) for v in norms], dtype=torch.float64)
    mean_sampled = torch.tensor(summary["mean"].to_numpy())
    sem_sampled = torch.tensor(summary["sem"].to_numpy())
    sq_signs = torch.tensor(signs["sum_sq"].to_numpy())
    sem_signs = torch.tensor(signs["sum_sq_sem"].to_numpy())
    inner = slice(1, n)  # lengths 0 and n have a single path: every method is exact there
    exact_err = (exact - truth).flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1)
    return {
        "model": f"resnet{depth} (n = {n} blocks, {2**n} paths), float64, {images} images 16x16",
        "brute_force_s": t_brute,
        "exact_s": t_exact,
        "exact_max_rel_error": float(exact_err.max()),
        "sampled_samples_per_length": samples,
        "sampled_s": t_sampled,
        "sampled_mean_norm_max_rel_error": float(
            ((mean_sampled - mean_truth).abs() / mean_truth)[inner].max()
        ),
        "sampled_max_abs_z": float(((mean_sampled - mean_truth).abs() / sem_sampled)[inner].max()),
        "sign_draws": draws,
        "sign_s": t_signs,
        "sign_sum_sq_max_rel_error": float(((sq_signs - sq_truth).abs() / sq_truth)[inner].max()),
        "sign_max_abs_z": float(((sq_signs - sq_truth).abs() / sem_signs)[inner].max()),
        # How much paths of one length cancel: norm of their summed gradient over the sum of
        # their norms (the paper's "total"); 1 would mean all aligned.
        "alignment_by_length": [
            float(path_length_norms(truth)[k] / (mean_truth[k] * counts[k])) for k in range(n + 1)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=56, help="CIFAR ResNet for the timing")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--samples", type=int, default=10, help="sampled paths per length")
    parser.add_argument("--small-depth", type=int, default=20, help="brute-force net, n <= 12")
    parser.add_argument("--small-samples", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=200, help="sign-estimator draws")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    fast = speed(args.depth, args.images, args.samples)
    small = accuracy(args.small_depth, 2, args.small_samples, args.draws)
    print(f"threads: {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    print(f"\n{fast['model']}, {fast['images']} images 32x32, CPU")
    print(f"{'method':50s} {'seconds':>10s}")
    print(f"{'ordinary backward (forward + backward)':50s} {fast['ordinary_backward_s']:10.2f}")
    print(f"{'exact decomposition, all lengths':50s} {fast['exact_s']:10.2f}")
    label = f"sampled (batched), {fast['sampled_samples_per_length']} per length (measured)"
    print(f"{label:50s} {fast['sampled_s']:10.2f}")
    label = "sampled (batched), 1000 per length (extrapolated)"
    print(f"{label:50s} {fast['sampled_1000_per_length_s_extrapolated']:10.0f}")
    label = "naive per-path loop, 1000 per length (extrap.)"
    print(f"{label:50s} {fast['naive_1000_per_length_s_extrapolated']:10.0f}")
    print(
        "ratio, batched 1000-per-length estimator / exact: "
        f"{fast['speedup_exact_vs_1000_per_length']:.0f}x"
    )
    print(f"exact entries sum to the gradient: rel. error {fast['exact_sum_rel_error']:.1e}")
    ex, sa = fast["effective_range_exact_95"], fast["effective_range_sampled_95"]
    print(
        f"95% effective range: exact norms {ex['lo']}-{ex['hi']}, "
        f"sampled totals {sa['lo']}-{sa['hi']}"
    )

    print(f"\n{small['model']}: error against brute force (lengths 1..n-1)")
    print(f"{'method':34s} {'seconds':>8s} {'max rel. error':>15s} {'max |z|':>8s}")
    print(f"{'brute force, every path':34s} {small['brute_force_s']:8.2f} {'(truth)':>15s}")
    print(
        f"{'exact decomposition':34s} {small['exact_s']:8.2f} {small['exact_max_rel_error']:15.1e}"
    )
    print(
        f"{'sampled mean norm, ' + str(small['sampled_samples_per_length']) + '/length':34s} "
        f"{small['sampled_s']:8.2f} {small['sampled_mean_norm_max_rel_error']:15.1e} "
        f"{small['sampled_max_abs_z']:8.2f}"
    )
    print(
        f"{'sign estimator sum sq, ' + str(small['sign_draws']) + ' draws':34s} "
        f"{small['sign_s']:8.2f} {small['sign_sum_sq_max_rel_error']:15.1e} "
        f"{small['sign_max_abs_z']:8.2f}"
    )
    align = ", ".join(f"{a:.2f}" for a in small["alignment_by_length"])
    print(f"|sum of length-k path gradients| / sum of their norms, k = 0..n: {align}")

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "command": "benchmarks/bench_gradients.py "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "speed": fast,
            "accuracy": small,
        }
        args.out.write_text(json.dumps(record, indent=2, default=float) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
