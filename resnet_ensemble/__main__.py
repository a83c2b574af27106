"""``python -m resnet_ensemble`` is ``ensemble-lesion`` (and what torchrun launches)."""

from resnet_ensemble.cli import main

if __name__ == "__main__":
    main()
