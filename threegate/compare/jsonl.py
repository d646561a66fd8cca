"""Crash-safe JSON Lines: one object per line, flushed per record; a truncated last line is dropped.

An interrupted run can leave a partial last line. `read_jsonl` ignores it; `JsonlWriter` cuts it off before
appending, so the file stays valid JSONL and no complete record is ever lost. Every record is flushed to the OS
as it is written (a killed process loses nothing); `fsync` (a power loss) runs at most every `FSYNC_S` seconds
and at close: an fsync per record cost 20 ms each, seconds per run.
"""

import json
import os
import time
from pathlib import Path

import numpy as np

__all__ = ["FSYNC_S", "JsonlWriter", "read_jsonl", "to_jsonable"]

#: Longest time between two fsyncs of an open `JsonlWriter`.
FSYNC_S = 2.0


def to_jsonable(x):
    """`x` with NumPy scalars/arrays turned into Python numbers/lists and non-finite floats into None."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "iub" or (x.dtype.kind == "f" and np.isfinite(x).all()):
            return x.tolist()  # nothing to replace: no per-element pass
        return to_jsonable(x.tolist())
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        x = float(x)
        return x if np.isfinite(x) else None
    return x


def read_jsonl(path: str | os.PathLike[str]) -> list[dict]:
    """All complete records of `path` ([] if absent); a last line without its newline is ignored.

    Raises:
      ValueError: a complete line that is not a JSON object (the file is corrupt, not merely truncated).
    """
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    end = data.rfind(b"\n") + 1
    out = []
    for i, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{p}: line {i} is not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{p}: line {i} is not a JSON object")
        out.append(obj)
    return out


class JsonlWriter:
    """Append records to a JSONL file, each flushed (fsync'ed every `FSYNC_S` s and at close); repairs a
    truncated tail on open."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if self.path.exists():
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                with open(self.path, "r+b") as f:
                    f.truncate(end)
        self._file = open(self.path, "a", encoding="utf-8")
        self._synced = time.monotonic()

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(to_jsonable(record), allow_nan=False) + "\n")
        self._file.flush()
        if time.monotonic() - self._synced >= FSYNC_S:
            os.fsync(self._file.fileno())
            self._synced = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
