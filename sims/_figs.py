"""Figure and data-file helpers shared by the numeric simulations (S1–S3, S8): small Agg PNGs and JSONL rows.

matplotlib is imported inside `figure` only (never by `threegate/`), with the Agg backend, so no display is needed.
"""

import contextlib
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sims._contract import _jsonable

__all__ = ["DPI", "figure", "interval", "write_jsonl"]

#: Resolution of every figure (small PNGs: they are embedded in the report).
DPI = 100


@contextlib.contextmanager
def figure(path: Path, ncols: int = 1, width: float = 4.2, height: float = 3.2) -> Iterator[Any]:
    """A figure with `ncols` axes, saved to `path` as a PNG at `DPI` and closed on exit; yields the axes list."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    try:
        yield list(axes[0])
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """One JSON object per line (NumPy/JAX values made plain; NaN/inf → null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(_jsonable(row), allow_nan=False) + "\n")


def interval(mean: float, se: float, z: float = 1.96) -> tuple[float, float]:
    """The normal-approximation interval mean ± z·se (NaN-safe: a non-finite input gives (nan, nan))."""
    if not (math.isfinite(mean) and math.isfinite(se)):
        return math.nan, math.nan
    return mean - z * se, mean + z * se
