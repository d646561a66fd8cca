"""Records on disk: one JSON sanitiser, crash-safe JSON Lines, and strict JSON files.

Every record threegate writes goes through `to_jsonable`, so every file is strict JSON (`allow_nan=False`):

* NumPy and JAX arrays become lists, NumPy scalars Python numbers (anything with `__array__`; jax itself is
  not imported here, so the CLI still starts without it), tuples lists, mapping keys strings;
* a non-finite float becomes `null` by default. This is the rule `compare`, the studies and the simulations
  used (their readers take None for "undefined"). The theorem checker (`threegate verify`) wrote "inf" / "-inf"
  / "nan" strings instead, because a ratio of $+\\infty$ (a bound violated at rhs = 0) and an undefined one
  are different findings; it keeps that encoding with `nonfinite="str"`. Those were the only disagreement of
  the former three sanitisers, besides two smaller ones settled here: a JAX array was passed through unchanged
  by `compare`'s (json then failed) and an unknown type was passed through by two of them and refused by the
  third — it is now refused with a `TypeError` naming it, which `json.dumps` would have raised anyway.

JSON Lines (`read_jsonl`, `JsonlWriter`, `write_jsonl`): one object per line. An interrupted run can leave a
partial last line; `read_jsonl` ignores it and `JsonlWriter` cuts it off before appending, so the file stays
valid JSONL and no complete record is ever lost. Every record is flushed to the OS as it is written (a killed
process loses nothing); `fsync` (a power loss) runs at most every `FSYNC_S` seconds and at close: an fsync per
record cost 20 ms each, seconds per run. `write_jsonl` (all rows at once) and `write_json` write to a
temporary file and rename it over the target, so a reader never sees half a file.
"""

import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "FSYNC_S",
    "JsonlWriter",
    "json_line",
    "read_jsonl",
    "to_jsonable",
    "write_json",
    "write_jsonl",
]

#: Longest time between two fsyncs of an open `JsonlWriter`.
FSYNC_S = 2.0


def _float(v: float, nonfinite: str) -> float | str | None:
    if math.isfinite(v):
        return v
    return None if nonfinite == "null" else str(v)


def to_jsonable(x: Any, *, nonfinite: Literal["null", "str"] = "null") -> Any:
    """`x` as plain JSON data (module docstring): arrays → lists, NumPy scalars → Python, non-finite floats →
    None (`nonfinite="null"`) or "inf"/"-inf"/"nan" (`nonfinite="str"`).

    Raises:
      TypeError: a value JSON cannot hold (named in the message).

    Example:
      >>> import numpy as np
      >>> to_jsonable({"a": np.float32(0.5), "b": (1, float("nan")), 3: np.array([1.0, np.inf])})
      {'a': 0.5, 'b': [1, None], '3': [1.0, None]}
      >>> to_jsonable([float("inf"), np.nan], nonfinite="str")
      ['inf', 'nan']
    """
    if nonfinite not in ("null", "str"):
        raise ValueError(f"nonfinite must be 'null' or 'str', got {nonfinite!r}")
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return _float(float(x), nonfinite)
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v, nonfinite=nonfinite) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_jsonable(v, nonfinite=nonfinite) for v in x]
    if hasattr(x, "__array__"):  # NumPy arrays and scalars, JAX arrays
        a = np.asarray(x)
        if a.dtype.kind in "iub" or (a.dtype.kind == "f" and np.isfinite(a).all()):
            return a.tolist()  # nothing to replace: no per-element pass
        return to_jsonable(a.tolist(), nonfinite=nonfinite)
    raise TypeError(f"cannot write a {type(x).__name__} to JSON")


def json_line(record: Mapping[str, Any]) -> str:
    """One JSONL line (with its newline) of `record`, sanitised by `to_jsonable`, strict JSON.

    Example:
      >>> json_line({"step": 1, "kl": float("nan")})
      '{"step": 1, "kl": null}\\n'
    """
    return json.dumps(to_jsonable(record), allow_nan=False) + "\n"


def read_jsonl(path: str | os.PathLike[str]) -> list[dict]:
    """All complete records of `path` ([] if absent); a last line without its newline is ignored.

    Raises:
      ValueError: a complete line that is not a JSON object (the file is corrupt, not merely truncated).

    Example:
      >>> import pathlib, tempfile
      >>> p = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
      >>> _ = p.write_text('{"step": 1}\\n{"step": 2}\\n{"ste')  # killed mid-line
      >>> read_jsonl(p)
      [{'step': 1}, {'step': 2}]
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
    truncated tail on open. `fresh=True` starts the file empty (and creates its folder) instead."""

    def __init__(self, path: str | os.PathLike[str], *, fresh: bool = False):
        self.path = Path(path)
        if fresh:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(b"")
        elif self.path.exists():
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                with open(self.path, "r+b") as f:
                    f.truncate(end)
        self._file = open(self.path, "a", encoding="utf-8")
        self._synced = time.monotonic()

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json_line(record))
        self._file.flush()
        if time.monotonic() - self._synced >= FSYNC_S:
            os.fsync(self._file.fileno())
            self._synced = time.monotonic()

    __call__ = write

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write `rows` as the whole of `path` (one `json_line` each), atomically (temporary file, then rename).

    Example:
      >>> import pathlib, tempfile
      >>> p = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
      >>> write_jsonl(p, [{"x": 1.0}, {"x": float("inf")}])
      >>> p.read_text()
      '{"x": 1.0}\\n{"x": null}\\n'
    """
    _replace(Path(path), "".join(json_line(r) for r in rows))


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1) -> None:
    """Write `obj` (sanitised by `to_jsonable`) as strict JSON with a final newline, atomically.

    Example:
      >>> import pathlib, tempfile
      >>> p = pathlib.Path(tempfile.mkdtemp()) / "result.json"
      >>> write_json(p, {"mean": float("nan")}, indent=None)
      >>> p.read_text()
      '{"mean": null}\\n'
    """
    _replace(Path(path), json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n")
