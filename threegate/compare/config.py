"""The settings of one `threegate compare` run (`CompareConfig`), shared by the driver and both backends."""

import dataclasses
import re
from pathlib import Path

__all__ = ["SETTING_FIELDS", "CompareConfig"]

#: Settings a resumed run must share with the stored one (the name filter may differ: resume a filtered run
#: with the full set).
SETTING_FIELDS = ("k", "alpha", "spectral", "dtype", "embeddings")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Settings of one `threegate compare` run (see the command's help for each)."""

    base: str
    tuned: tuple[str, ...]
    out: str
    k: int = 64
    alpha: float = 0.5
    include: str | None = None
    exclude: str | None = None
    spectral: bool = True
    dtype: str = "float32"
    resume: bool = False
    embeddings: bool = False
    layer: str | None = None
    block_bytes: int = 32 * 2**20
    ray: str | None = None
    max_retries: int = 3

    def __post_init__(self):
        if not self.tuned:
            raise ValueError("compare needs at least one tuned checkpoint")
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"--k must be a positive integer, got {self.k}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"--alpha must be in (0, 1), got {self.alpha}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"--dtype must be float32 or float64, got {self.dtype}")
        for flag, rx in (("--include", self.include), ("--exclude", self.exclude)):
            if rx is not None:
                try:
                    re.compile(rx)
                except re.error as err:
                    raise ValueError(f"{flag} {rx!r}: bad regular expression ({err})") from None
        if len(set(self.keys())) != len(self.tuned):
            raise ValueError("the same tuned checkpoint is given twice")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(
                f"--max-retries must be a non-negative integer, got {self.max_retries}"
            )
        if self.ray is not None and not self.ray.strip():
            raise ValueError("--ray ADDRESS: empty address")

    def keys(self) -> list[str]:
        """The tuned checkpoints' resolved paths (the `tuned` field of the records)."""
        return [str(Path(t).resolve()) for t in self.tuned]
