"""Update masks of one run read from its checkpoints (M2), for analyses that compare runs with different bases.

`threegate compare` measures every run against one base; a run that starts from an intervened copy of the base
(S5) has its own step-0 checkpoint, so its update mask is taken against that.
"""

import os
import re

import numpy as np

from threegate.checkpoints import check_alignment, open_checkpoint
from threegate.compare.coords import changed_mask

__all__ = ["update_masks"]


def update_masks(
    start: str | os.PathLike[str], end: str | os.PathLike[str], include: str | None = None
) -> dict[str, np.ndarray]:
    """`{name: M}` with $M = \\mathbb 1[W_{end} \\not\\approx W_{start}]$ bitwise (Def 2.1) for every matrix of two
    aligned checkpoints whose name matches the regular expression `include` (all when None)."""
    if include is not None:
        re.compile(include)
    with open_checkpoint(start) as a, open_checkpoint(end) as b:
        names = check_alignment([a, b], include, None)
        out = {}
        for name in names:
            w0 = a.load(name)
            if w0.ndim == 2:
                out[name] = changed_mask(w0, b.load(name))[0]
        return out
