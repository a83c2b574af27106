"""Ship a trained checkpoint as the embedded default: the same weights, without the resume state.

``ensemble-lesion train`` writes the optimizer's momentum and the RNG states into its checkpoint
so that ``--resume`` can continue exactly; the package only needs the weights and what rebuilds
the model, which halves the file. The training metadata (command, seed, epochs, hardware, wall
time, test error) is kept, so the shipped file still says how it was made.

    python experiments/ship_embedded_model.py scratch/embedded/resnet32_fmnist.pt \\
        [--out resnet_ensemble/assets/embedded_resnet.pt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet_ensemble.models.checkpoints import load_checkpoint, save_checkpoint
from resnet_ensemble.models.specs import EMBEDDED_CHECKPOINT, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "checkpoint", type=Path, help="a checkpoint written by ensemble-lesion train"
    )
    parser.add_argument("--out", type=Path, default=EMBEDDED_CHECKPOINT)
    args = parser.parse_args()

    raw = load_checkpoint(args.checkpoint)
    loaded = load_model(str(args.checkpoint), device="cpu")
    metadata = dict(raw["metadata"])
    metadata["shipped_from_sha256"] = loaded.sha256
    save_checkpoint(
        args.out,
        loaded.model,
        arch=raw["arch"],
        arch_kwargs=raw["arch_kwargs"],
        dataset=raw["dataset"],
        metadata=metadata,
        epoch=raw.get("epoch"),
        normalization=(raw["normalization"]["mean"], raw["normalization"]["std"]),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
