"""Figure helpers shared by the numeric simulations (S1–S3, S8): small Agg PNGs (their JSONL rows are written by
`threegate.records.write_jsonl`, their intervals come from `threegate.stats`).

matplotlib is imported inside `figure` only (never by `threegate/`), with the Agg backend, so no display is needed.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["DPI", "figure"]

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
