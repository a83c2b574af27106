"""Peak memory and time of the exact path-length decomposition against the ordinary gradient.

The issue's bound: ResNet-110 (54 blocks) on a batch of 128 CIFAR images must fit in 16 GB.
The decomposition carries one cotangent per path length (55 of them) through the backward
pass, in chunks sized to a memory budget, so its peak should stay a small multiple of the
ordinary gradient's. Each way runs in its own process, so that one peak cannot hide the other.

    PYTHONPATH=. python benchmarks/bench_gradient_memory.py [--depth 110] [--images 128]
        [--device cpu|cuda]

On a CPU the peak is the process's maximum resident set size; on CUDA it is
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from resnet_ensemble.core.gradients import path_length_gradients
from resnet_ensemble.models import cifar_resnet


def _measure(way: str, depth: int, images: int, device: str) -> dict[str, float]:
    torch.manual_seed(0)
    model = cifar_resnet(depth).to(device).eval()
    x = torch.randn(images, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (images,), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if way == "ordinary":
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
        shape = tuple(grad.shape)
    else:
        per_length = path_length_gradients(model, x, y)
        shape = tuple(per_length.shape)
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"seconds": time.perf_counter() - start, "peak_gib": peak, "shape": list(shape)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--way", choices=["ordinary", "exact"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:  # the child process: measure one way, print JSON
        print(json.dumps(_measure(args.way, args.depth, args.images, args.device)))
        return
    results = {}
    for way in ("ordinary", "exact"):
        out = subprocess.run(
            [sys.executable, __file__, "--way", way, "--depth", str(args.depth),
             "--images", str(args.images), "--device", args.device],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results[way] = json.loads(out.stdout)
    n = 3 * ((args.depth - 2) // 6)
    print(f"ResNet-{args.depth} ({n} blocks), {args.images} images 3x32x32, {args.device}, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}")  # fmt: skip
    print("| way | output shape | seconds | peak memory (GiB) |")
    print("|---|---|---:|---:|")
    for way, r in results.items():
        print(f"| {way} | {tuple(r['shape'])} | {r['seconds']:.1f} | {r['peak_gib']:.2f} |")
    ratio = results["exact"]["peak_gib"] / results["ordinary"]["peak_gib"]
    print(f"exact / ordinary: {results['exact']['seconds'] / results['ordinary']['seconds']:.1f}x "
          f"time, {ratio:.1f}x peak memory")  # fmt: skip


if __name__ == "__main__":
    main()
