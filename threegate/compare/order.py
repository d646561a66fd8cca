"""The canonical order of a `threegate compare` run's lines, so that the final files do not depend on scheduling.

Drivers append lines as units finish (the Ray driver in completion order, a resumed run after what was there).
Stream order is the serial run's: names by `stream_key` (embedding, blocks by numeric layer, the rest); within
a name, tensor records and profiles by the tuned checkpoint's position on the command line (the base's
singular values first), pairs by (tuned_a, tuned_b). `canonicalize(out, tuned)` rewrites `tensors.jsonl`,
`pairs.jsonl` and `profiles.jsonl` in that order (each file replaced atomically) at the end of a complete run,
keeping the last of duplicate lines (a unit that a resumed run redid after a crash cut its record); `summarize` sorts the same way before it aggregates, so its floating-point sums are taken in one
order whatever the file order.
"""

from collections.abc import Callable
from pathlib import Path

from threegate.checkpoints import stream_key
from threegate.records import read_jsonl, write_jsonl

__all__ = ["canonicalize", "pair_order", "profile_order", "tensor_order"]


def _position(tuned: list[str]) -> Callable[[str | None], int]:
    index = {key: i for i, key in enumerate(tuned)}
    return lambda key: -1 if key is None else index.get(key, len(index))


def tensor_order(tuned: list[str]) -> Callable[[dict], tuple]:
    """Sort key of `tensors.jsonl` records."""
    pos = _position(tuned)
    return lambda r: (stream_key(r["name"]), pos(r["tuned"]))


def profile_order(tuned: list[str]) -> Callable[[dict], tuple]:
    """Sort key of `profiles.jsonl` lines (tuned None, the base's spectrum, first)."""
    return tensor_order(tuned)


def pair_order(r: dict) -> tuple:
    """Sort key of `pairs.jsonl` records."""
    return (stream_key(r["name"]), r["tuned_a"], r["tuned_b"])


def _rewrite(path: Path, key: Callable[[dict], tuple], ident: Callable[[dict], tuple]) -> None:
    if not path.exists():
        return
    last = {
        ident(r): r for r in read_jsonl(path)
    }  # a unit redone after a crash: keep its last lines
    lines = sorted(last.values(), key=key)
    write_jsonl(path, lines)


def canonicalize(out: Path, tuned: list[str]) -> None:
    """Rewrite the run's JSONL files of `out` in stream order (see the module docstring)."""
    _rewrite(out / "tensors.jsonl", tensor_order(tuned), lambda r: (r["name"], r["tuned"]))
    _rewrite(out / "pairs.jsonl", pair_order, lambda r: (r["name"], r["tuned_a"], r["tuned_b"]))
    _rewrite(
        out / "profiles.jsonl", profile_order(tuned), lambda r: (r["name"], r["tuned"], *sorted(r))
    )
