"""The run folder's appending JSONL files (`RunWriters`) and the heap release between units, shared by the
serial and the Ray backends of `threegate compare`."""

import ctypes
import ctypes.util
from pathlib import Path

from threegate.compare.work import UnitCost, UnitResult
from threegate.records import JsonlWriter

__all__ = ["RunWriters", "release_heap"]


def release_heap() -> None:
    """Hand freed heap memory back to the OS (glibc `malloc_trim`); a no-op where there is no glibc.

    Each large tensor frees a few hundred MB of temporaries; glibc keeps much of it mapped, and across
    hundreds of tensors the retained heap, not the live data, would set the peak RSS.
    """
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    if _LIBC and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


_LIBC = None


class RunWriters:
    """The run's appending JSONL files; `write` adds one unit's lines (each flushed)."""

    def __init__(self, out: Path):
        self._files = [
            JsonlWriter(out / f) for f in ("tensors.jsonl", "pairs.jsonl", "profiles.jsonl")
        ]
        self._costs = JsonlWriter(out / "costs.jsonl")

    def write(self, result: UnitResult, costs: list[UnitCost]) -> None:
        tw, pw, fw = self._files
        for line in result.profiles:
            fw.write(line)
        for rec in result.tensors:
            tw.write(rec)
        for rec in result.pairs:
            pw.write(rec)
        for c in costs:
            self._costs.write(c._asdict())

    def close(self) -> None:
        for w in (*self._files, self._costs):
            w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
