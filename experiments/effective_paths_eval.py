"""Issue 20: an effective-path network (trained on K random blocks per mini-batch) read at test
time three ways, side by side (``resnet_ensemble.studies.effective_path_eval``): residuals scaled by
K / n, BatchNorm statistics recalibrated for the full network, and the softmax averaged over
random K-block sub-networks. The paper (sec. 4.3: 5.96% at K = 23 of 54) does not say which.

    python experiments/effective_paths_eval.py results/converged/checkpoints/ep110k23.pt \
        --out results/converged/ep110k23/tables/evaluation.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet_ensemble.results import write_table
from resnet_ensemble.studies.effective_path_eval import evaluate_effective_path_network
from resnet_ensemble.studies.experiment import open_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--limit", type=int, help="test images (default: all)")
    parser.add_argument("--train-images", type=int, default=10240, help="for the recalibration")
    parser.add_argument("--draws", type=int, default=10, help="K-block sub-networks averaged")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    exp = open_experiment(
        args.checkpoint, dataset=args.dataset, limit=args.limit, device=args.device
    )
    meta = exp.describe()
    k = (meta.get("arch_kwargs") or {}).get("active_blocks") or _active_blocks(exp.model)
    test = [(x.to(exp.device), y.to(exp.device)) for x, y in exp.loader()]
    train = exp.random_batches(256, max(1, args.train_images // 256), split="train", seed=args.seed)
    table = evaluate_effective_path_network(
        exp.model, test, train, int(k), draws=args.draws, seed=args.seed
    )
    table.insert(0, "model", meta["model"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_table(
        args.out,
        table,
        "effective_path_evaluation",
        {**meta, "train_images": 256 * len(train), "draws": args.draws, "seed": args.seed},
    )
    print(table.to_string(index=False))
    print(f"wrote {args.out}")


def _active_blocks(model) -> int:  # type: ignore[no-untyped-def]
    """K from the residual scale K / n that an effective-path network evaluates with."""
    from resnet_ensemble.blocks.registry import residual_blocks

    blocks = residual_blocks(model)
    survival = float(blocks[0].module.drop_path.survival)
    return round(survival * len(blocks))


if __name__ == "__main__":
    main()
