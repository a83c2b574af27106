"""Training throughput on the CPU: the options side by side, and the data path against the
model-only step.

For each depth, in one run:
- the model-only step (forward, backward, SGD on one batch already in memory) in fp32, under
  bf16 autocast, and under bf16 autocast with channels_last (and torch.compile with
  ``--compile``): which configuration trains fastest;
- the whole step as ``train`` runs it, data included: whole-batch tensor augmentation
  (``tensor_batches``) against torchvision's per-image pipeline in a DataLoader with 0 and 2
  workers, each as a share of the model-only step of the same configuration (the goal: at
  least 90%).

Images per second are medians over the timed steps, after warm-up. Fashion-MNIST's real
training split is used for the data paths (28x28, one channel).

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        MALLOC_TOP_PAD_=268435456 PYTHONPATH=. python benchmarks/bench_training.py \\
        [--depths 20 56 110] [--threads 2] [--steps 8] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from resnet_ensemble.data.datasets import CROP_FLIP_PADDING, dataset_info, load_dataset, make_loader
from resnet_ensemble.data.tensor_batches import TensorImages
from resnet_ensemble.models import build_builtin

BATCH = 128


def _step_fn(
    depth: int, amp: bool, channels_last: bool, compiled: bool
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    torch.manual_seed(0)
    model = build_builtin(f"resnet{depth}", num_classes=10, in_channels=1).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _images_per_second(
    step: Callable[[torch.Tensor, torch.Tensor], None],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    warmup: int = 2,
) -> float:
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        x, y = next(batches)
        step(x, y)
        if i >= warmup:
            times.append((time.perf_counter() - start) / len(y))
    return 1.0 / statistics.median(times)


def _repeat(x: torch.Tensor, y: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield x, y


def _forever(make: Callable[[int], Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        yield from make(epoch)
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 56, 110])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (slow start)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = dataset_info("fashion-mnist")
    train_set = load_dataset("fashion-mnist", "train", augment=True)
    tensors = TensorImages.from_dataset(train_set, info.mean, info.std)
    assert tensors is not None
    pad = CROP_FLIP_PADDING["fashion-mnist"]
    x = torch.randn(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))
    print(f"threads {args.threads}, batch {BATCH}, {args.steps} timed steps; img/s (median)")
    print()
    print("| depth | config | model-only | tensor batches | % | loader, 0 workers | % "
          "| loader, 2 workers | % |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    configs = [("fp32", False, False, False), ("bf16", True, False, False)]
    configs.append(("bf16 + channels_last", True, True, False))
    if args.compile:
        configs.append(("bf16 + channels_last + compile", True, True, True))
    for depth in args.depths:
        for name, amp, cl, compiled in configs:
            step = _step_fn(depth, amp, cl, compiled)
            model_only = _images_per_second(step, _repeat(x, y), args.steps)
            cells = [f"{model_only:.0f}"]
            sources = {
                "tensor": lambda e: tensors.batches(BATCH, seed=e, padding=pad, flip=True),
                "loader0": lambda e: make_loader(train_set, BATCH, shuffle=True, seed=e),
                "loader2": lambda e: make_loader(
                    train_set, BATCH, shuffle=True, seed=e, num_workers=2
                ),
            }
            for make in sources.values():
                rate = _images_per_second(step, _forever(make), args.steps)
                cells += [f"{rate:.0f}", f"{100 * rate / model_only:.0f}%"]
            print(f"| {depth} | {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
