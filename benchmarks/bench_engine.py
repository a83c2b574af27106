"""The evaluation engine against the naive loop, side by side in one run.

The naive way (``naive_evaluate_routes``) runs one full intervened forward per route and batch.
The engine (``evaluate_routes``) merges routes on their common prefixes (``prefix``) or stacks
deletion masks along the batch (``mask``). Both see the same images, already in memory, after a
warm-up; each time is the best of ``--repeats`` runs, naive and engine interleaved so that a
busy machine slows both alike.

Cases:
- ``single``: the full net and each block deleted alone (paper Fig. 3), n + 1 routes
- ``multi``: k = 1..max_k random non-downsampling blocks deleted, ``samples`` draws each (Fig. 5a)
- ``exhaustive``: every one of the 2^n subsets of blocks of a small net (the unrolled paths view)

The limit: the speed-up the engine could reach if only whole-block runs cost anything, i.e. naive
whole-block evaluations / engine whole-block evaluations. Naive: the number of blocks each route
keeps, summed over routes. Engine (prefix): the nodes of the ``PrefixTree`` that run a block whole
(``PrefixTree.evaluations`` minus the deleted steps). A deleted step runs only its shortcut
(identity, or option A's strided slice with zero channels) and counts as free; the stem (one conv)
and the head (pool + linear, once per route in both) are left out. In a CIFAR ResNet every block
costs the same FLOPs (channels double where the resolution halves), so block runs measure work.

    PYTHONPATH=. python benchmarks/bench_engine.py [--cases single,multi,exhaustive]
        [--depth 56] [--images 512] [--batch-size 256] [--repeats 3] [--device cpu]
        [--dtype fp32|bf16] [--compare-mask] [--json PATH] [--markdown PATH]
"""

from __future__ import annotations

import contextlib
import itertools
import json
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import torch
from benchmark_models import randomize_batchnorm  # the script's own folder
from torch import Tensor, nn

from resnet_ensemble.blocks.registry import anatomy
from resnet_ensemble.core.engine import PrefixTree, _choose, evaluate_routes, naive_evaluate_routes
from resnet_ensemble.core.interventions import plan_route
from resnet_ensemble.models import cifar_resnet
from resnet_ensemble.studies.sweeps import multi_deletions, single_deletions

Batches = list[tuple[Tensor, Tensor]]


@dataclass
class CaseResult:
    """One case: what ran, how long each way took, and the block-count limit."""

    case: str
    model: str
    routes: int
    images: int
    strategy: str
    naive_s: float
    engine_s: float
    naive_blocks: int
    engine_blocks: int
    predicted_naive_s: float
    predicted_engine_s: float
    agree: bool

    @property
    def ratio(self) -> float:
        return self.naive_s / self.engine_s

    @property
    def limit(self) -> float:
        return self.naive_blocks / self.engine_blocks

    @property
    def of_limit(self) -> float:
        return self.ratio / self.limit

    @property
    def timed_limit(self) -> float:
        return self.predicted_naive_s / self.predicted_engine_s

    @property
    def of_timed_limit(self) -> float:
        return self.ratio / self.timed_limit

    def row(self) -> dict:
        per_s = self.images * self.routes
        return {
            **asdict(self),
            "ratio": self.ratio,
            "limit": self.limit,
            "of_limit": self.of_limit,
            "timed_limit": self.timed_limit,
            "of_timed_limit": self.of_timed_limit,
            "naive_images_routes_per_s": per_s / self.naive_s,
            "engine_images_routes_per_s": per_s / self.engine_s,
        }


def _model(depth: int, device: str) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(cifar_resnet(depth)).eval().to(device)


def _batches(images: int, batch_size: int, device: str) -> Batches:
    """Random 3x32x32 images (timing only), already on the device."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (images,), generator=g)
    return [
        (x[i : i + batch_size].to(device), y[i : i + batch_size].to(device))
        for i in range(0, images, batch_size)
    ]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autocast(device: str, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _timed(fn: Callable[[], object], device: str) -> tuple[object, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def block_counts(model: nn.Module, routes: Sequence[Sequence[int]]) -> tuple[int, int]:
    """Whole-block runs per batch: (naive, engine with prefix sharing)."""
    found = anatomy(model)
    steps = [plan_route(found, r) for r in routes]
    naive = sum(sum(s.keep for s in st) for st in steps)
    tree = PrefixTree(steps)
    engine = sum(1 for node in tree.nodes() if node.step is not None and node.step.keep)
    return naive, engine


@dataclass
class Costs:
    """Measured seconds per pass over the data of each piece: stem, each block whole and
    deleted (its shortcut), head."""

    stem: float
    whole: list[float]
    deleted: list[float]
    head: float


def measure_costs(model: nn.Module, data: Batches, device: str, dtype: str) -> Costs:
    """Time every piece on the activations of the full network, best of 5, summed over the
    batches. On a CPU a stage-1 block (16 channels at 32x32) costs more than a stage-3 block
    (64 channels at 8x8) although their FLOPs are equal: its BatchNorm, ReLU and addition move
    4x more memory; so equal block counts are not equal time."""
    found = anatomy(model)
    n = len(found.blocks)
    stem = head = 0.0
    whole, deleted = [0.0] * n, [0.0] * n

    def best(fn: Callable[[], Tensor]) -> tuple[Tensor, float]:
        fn()  # warm-up: this shape's kernels and buffers
        times = []
        for _ in range(5):
            out, t = _timed(fn, device)
            times.append(t)
        return out, min(times)  # type: ignore[return-value]

    with torch.inference_mode(), _autocast(device, dtype):
        for x, _ in data:
            h, t = best(lambda x=x: found.stem(x))
            stem += t
            for i, blk in enumerate(found.blocks):
                _, t_skip = best(lambda h=h, blk=blk: blk.skip(h))
                h, t = best(lambda h=h, blk=blk: blk.forward(h))
                whole[i] += t
                deleted[i] += t_skip
            head += best(lambda h=h: found.head(h))[1]
    return Costs(stem, whole, deleted, head)


def predicted_times(
    model: nn.Module, routes: Sequence[Sequence[int]], costs: Costs
) -> tuple[float, float]:
    """(naive, engine) seconds predicted from the measured piece costs: the naive way runs a
    stem, every step and a head per route; the engine one stem, every tree node, a head per
    route. Their ratio is the limit with real per-block costs."""
    found = anatomy(model)
    steps = [plan_route(found, r) for r in routes]

    def step_cost(s: object) -> float:
        return costs.whole[s.block] if s.keep else costs.deleted[s.block]  # type: ignore[attr-defined]

    naive = sum(costs.stem + sum(map(step_cost, st)) + costs.head for st in steps)
    tree = PrefixTree(steps)
    engine = costs.stem + sum(step_cost(nd.step) for nd in tree.nodes() if nd.step is not None)
    engine += costs.head * len(routes)
    return naive, engine


def _routes(case: str, depth: int, max_k: int, samples: int) -> list[tuple[int, ...]]:
    found = anatomy(cifar_resnet(depth))
    n = len(found.blocks)
    if case == "single":
        return [s.route for s in single_deletions(found)]
    if case == "multi":
        return [s.route for s in multi_deletions(found, max_k=max_k, samples=samples, seed=0)]
    subsets = itertools.product([False, True], repeat=n)  # every subset of blocks kept
    return [tuple(i for i in range(n) if keep[i]) for keep in subsets]


def _repeat_best(
    fns: dict[str, Callable[[], object]], repeats: int, device: str
) -> tuple[dict[str, float], dict[str, object]]:
    best = dict.fromkeys(fns, float("inf"))
    out: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved: background load hits every method alike
            out[name], t = _timed(fn, device)
            best[name] = min(best[name], t)
    return best, out


def run_case(
    case: str,
    depth: int,
    images: int,
    batch_size: int,
    repeats: int,
    device: str,
    dtype: str,
    strategy: str,
    max_k: int,
    samples: int,
    compare_mask: bool,
) -> tuple[CaseResult, dict[str, float] | None]:
    model = _model(depth, device)
    data = _batches(images, batch_size, device)
    routes = _routes(case, depth, max_k, samples)
    found = anatomy(model)
    chosen = _choose(strategy, found, [plan_route(found, r) for r in routes])
    amp = dtype == "bf16"

    def naive() -> list[float]:
        with _autocast(device, dtype):
            return naive_evaluate_routes(model, data, routes)

    def engine(how: str = strategy) -> Callable[[], list[float]]:
        return lambda: evaluate_routes(model, data, routes, strategy=how, amp=amp)  # type: ignore[arg-type]

    # Warm-up on one batch and a few routes: allocator, kernel selection, lazy inits.
    with _autocast(device, dtype):
        naive_evaluate_routes(model, data[:1], routes[:2])
    evaluate_routes(model, data[:1], routes[:2], strategy=strategy, amp=amp)  # type: ignore[arg-type]

    fns: dict[str, Callable[[], object]] = {"naive": naive, "engine": engine()}
    deletions = case in ("single", "multi")
    if compare_mask and deletions:
        fns.update({"prefix": engine("prefix"), "mask": engine("mask")})
        evaluate_routes(model, data[:1], routes[:2], strategy="mask", amp=amp)
    best, out = _repeat_best(fns, repeats, device)
    naive_blocks, engine_blocks = block_counts(model, routes)
    costs = measure_costs(model, data, device, dtype)
    predicted_naive, predicted_engine = predicted_times(model, routes, costs)
    result = CaseResult(
        case=case,
        model=f"resnet{depth} ({len(found.blocks)} blocks)",
        routes=len(routes),
        images=images,
        strategy=chosen,
        naive_s=best["naive"],
        engine_s=best["engine"],
        naive_blocks=naive_blocks,
        engine_blocks=engine_blocks,
        predicted_naive_s=predicted_naive,
        predicted_engine_s=predicted_engine,
        # Exact agreement in fp32; under bf16 the two ways round differently, so allow a little.
        agree=all(
            abs(a - b) <= (0 if dtype == "fp32" else 0.01)
            for a, b in zip(out["naive"], out["engine"], strict=True)  # type: ignore[call-overload]
        ),
    )
    strategies = {"prefix": best["prefix"], "mask": best["mask"]} if "mask" in best else None
    return result, strategies


def _fmt_table(results: Sequence[CaseResult], strategies: dict[str, dict[str, float]]) -> str:
    lines = [
        "| case | model | routes | images | strategy | naive s | engine s | measured ratio "
        "| limit: block runs | % of it | limit: timed pieces | % of it | same errors |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.case} | {r.model} | {r.routes} | {r.images} | {r.strategy} | {r.naive_s:.2f} "
            f"| {r.engine_s:.2f} | {r.ratio:.2f}x | {r.limit:.2f}x "
            f"({r.naive_blocks}/{r.engine_blocks}) | {100 * r.of_limit:.0f}% "
            f"| {r.timed_limit:.2f}x | {100 * r.of_timed_limit:.0f}% "
            f"| {'yes' if r.agree else 'NO'} |"
        )
    if strategies:
        lines += [
            "",
            "| case | prefix s | mask s | mask / prefix |",
            "|---|---:|---:|---:|",
        ]
        for case, t in strategies.items():
            lines.append(
                f"| {case} | {t['prefix']:.2f} | {t['mask']:.2f} | {t['mask'] / t['prefix']:.2f}x |"
            )
    return "\n".join(lines)


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@click.command(help=__doc__.split("\n\n")[0])
@click.option("--cases", default="single,multi,exhaustive", show_default=True)
@click.option("--depth", type=int, default=56, show_default=True, help="single and multi.")
@click.option("--images", type=int, default=512, show_default=True, help="single and multi.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--max-k", type=int, default=10, show_default=True, help="multi.")
@click.option("--samples", type=int, default=4, show_default=True, help="multi: draws per k.")
@click.option("--exhaustive-depth", type=int, default=20, show_default=True, help="2^n routes.")
@click.option("--exhaustive-images", type=int, default=128, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Best of this many.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
@click.option(
    "--strategy", type=click.Choice(["auto", "prefix", "mask"]), default="auto", show_default=True
)
@click.option("--compare-mask", is_flag=True, help="Also time prefix vs mask on deletion cases.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False), default=None)
def main(
    cases: str,
    depth: int,
    images: int,
    batch_size: int,
    max_k: int,
    samples: int,
    exhaustive_depth: int,
    exhaustive_images: int,
    repeats: int,
    device: str,
    dtype: str,
    strategy: str,
    compare_mask: bool,
    threads: int | None,
    json_path: str | None,
    md_path: str | None,
) -> None:
    results: list[CaseResult] = []
    strategies: dict[str, dict[str, float]] = {}
    with _threads(threads):
        machine = _machine(device)
        for case in [c.strip() for c in cases.split(",") if c.strip()]:
            exhaustive = case == "exhaustive"
            result, compared = run_case(
                case,
                exhaustive_depth if exhaustive else depth,
                exhaustive_images if exhaustive else images,
                batch_size,
                repeats,
                device,
                dtype,
                strategy,
                max_k,
                samples,
                compare_mask,
            )
            results.append(result)
            if compared:
                strategies[case] = compared
            click.echo(
                f"{case}: naive {result.naive_s:.2f} s, engine {result.engine_s:.2f} s, "
                f"{result.ratio:.2f}x; limits {result.limit:.2f}x (block runs), "
                f"{result.timed_limit:.2f}x (timed pieces)",
                err=True,
            )
    header = f"{machine}; {dtype}; batch {batch_size}; best of {repeats}; torch {torch.__version__}"
    table = _fmt_table(results, strategies)
    click.echo(header)
    click.echo(table)
    if md_path:
        Path(md_path).write_text(f"{header}\n\n{table}\n")
    if json_path:
        payload = {
            "machine": machine,
            "device": device,
            "dtype": dtype,
            "batch_size": batch_size,
            "repeats": repeats,
            "torch": torch.__version__,
            "cases": [r.row() for r in results],
            "strategies": strategies,
        }
        Path(json_path).write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
