"""The paper's numbers, in one place: Veit, Wilber & Belongie (NeurIPS 2016), ResNet-110 on
CIFAR-10 (54 residual blocks). Reports, summaries and figures quote them from here.

Holds the numbers (``BLOCKS``, ``FULL_ERROR``, ``EFFECTIVE_LO`` / ``EFFECTIVE_HI`` /
``EFFECTIVE_PATH_SHARE``, ``PATHS_95``, ``EFFECTIVE_TRAINING_ERROR`` / ``EFFECTIVE_TRAINING_K``)
and the phrases that quote them (``full_error_text``, ``effective_text``, ``paths95_text``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BLOCKS",
    "EFFECTIVE_HI",
    "EFFECTIVE_LO",
    "EFFECTIVE_PATH_SHARE",
    "EFFECTIVE_TRAINING_ERROR",
    "EFFECTIVE_TRAINING_K",
    "FULL_ERROR",
    "PATHS_95",
    "effective_text",
    "full_error_text",
    "paths95_exact",
    "paths95_text",
]

BLOCKS = 54  # ResNet-110: 3 stages of 18 blocks
FULL_ERROR = 0.0610  # test error of the full network (Table/Fig. 3 baseline)
# Sec. 5: paths of lengths 5-17 carry almost all the gradient; they are 0.45% of all paths.
EFFECTIVE_LO, EFFECTIVE_HI = 5, 17
EFFECTIVE_PATH_SHARE = 0.0045
PATHS_95 = (19, 35)  # 95% of paths: mean 27 ± 1.96 sd
# Sec. 6: training only paths of effective length (23 of 54 blocks per mini-batch).
EFFECTIVE_TRAINING_ERROR = 0.0596
EFFECTIVE_TRAINING_K = 23


def full_error_text() -> str:
    """``6.10%``."""
    return f"{100 * FULL_ERROR:.2f}%"


def effective_text(dash: str = "–") -> str:
    """``5–17 (0.45% of paths)``."""
    return f"{EFFECTIVE_LO}{dash}{EFFECTIVE_HI} ({100 * EFFECTIVE_PATH_SHARE:.2f}% of paths)"


def paths95_exact() -> Any:
    """The shortest exact range of lengths holding 95% of the 2^54 paths (``paths``' summary:
    ``lo``, ``hi``, ``fraction``), computed rather than quoted."""
    from .paths import summarize_paths  # combinatorics: this module stays free of imports

    return summarize_paths(BLOCKS, 0.95)


def paths95_text(dash: str = "–") -> str:
    """``19–35 (mean ± 1.96 sd; the shortest exact range is 20–34)``: the paper's range beside
    the exact one of Binomial(54, 1/2)."""
    exact = paths95_exact()
    return (
        f"{PATHS_95[0]}{dash}{PATHS_95[1]} (mean ± 1.96 sd; the shortest exact range is "
        f"{exact.lo}{dash}{exact.hi})"
    )
