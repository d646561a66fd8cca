"""The reader interface every checkpoint format implements (`Checkpoint`, `TensorInfo`), in a module of its own
so that the format modules (`threegate.checkpoints.formats`, `threegate.checkpoints.gguf`) depend on it and not
on each other."""

import abc
import operator
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, SupportsIndex

import numpy as np

__all__ = ["FORMATS", "Checkpoint", "TensorInfo"]

#: The formats `open_checkpoint` knows, as named in error messages and in `Checkpoint.format`.
FORMATS = ("safetensors", "safetensors-sharded", "gguf")


class TensorInfo(NamedTuple):
    """Name, shape and dtype of a stored tensor (the dtype `Checkpoint.load` returns)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


class Checkpoint(abc.ABC):
    """A read-only, lazily loaded set of named tensors.

    Subclasses set `path` (a `Path`), `format` (one of `FORMATS`) and `skipped` (name -> reason).
    Use as a context manager, or call `close()`.
    """

    path: Path
    format: str
    skipped: dict[str, str]

    @abc.abstractmethod
    def names(self) -> list[str]:
        """All readable tensor names, sorted."""

    @abc.abstractmethod
    def info(self, name: str) -> TensorInfo:
        """Shape and dtype of `name` without loading it; `KeyError`-like `CheckpointError` if absent."""

    @abc.abstractmethod
    def load(self, name: str) -> np.ndarray:
        """The whole tensor `name`, in the dtype of `info(name)`."""

    @abc.abstractmethod
    def load_rows(self, name: str, start: SupportsIndex, stop: SupportsIndex) -> np.ndarray:
        """Rows `start:stop` of tensor `name` (axis 0), reading only those rows where the format allows."""

    def close(self) -> None:  # noqa: B027  (optional hook: readers without handles need nothing)
        """Release file handles; the object must not be used afterwards."""

    def __enter__(self):
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in set(self.names())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {len(self.names())} tensors)"

    def _rows(self, name: str, start: SupportsIndex, stop: SupportsIndex) -> tuple[int, int, int]:
        """Validate a row range of `name`; returns (start, stop, number of rows) as ints."""
        shape = self.info(name).shape
        if not shape:
            raise ValueError(f"{name}: a scalar tensor has no rows")
        begin, end = operator.index(start), operator.index(stop)
        if not (0 <= begin <= end <= shape[0]):
            raise ValueError(f"{name}: rows {begin}:{end} out of range for {shape[0]} rows")
        return begin, end, shape[0]
