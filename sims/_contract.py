"""The contract every simulation of `sims/` follows (digest §9.3; run by `threegate sim NAME`).

A simulation is a module with

    NAME: str                      # the CLI name, e.g. "gate1-leash"
    SUMMARY: str                   # one line for `threegate sim --list`
    def run(out: Path, size: str, seed: int) -> dict   # size in SIZES

`run` writes everything under `out / NAME /`: `result.json` (the dict it returns, see `write_result`), its data as
JSONL and its figures as PNG. Same seed and size ⇒ the same numbers (only `seconds` differs).

`result.json`:

    {"sim": NAME, "size": "quick" | "default", "seed": int, "seconds": float,
     "claims": [{"id": str, "paper": str, "observed": str, "verdict": "agrees" | "disagrees" | "inconclusive"}],
     "figures": [paths relative to out / NAME], "data": [paths relative to out / NAME], ...extra keys}

Claims *report* what the paper observed; what the theory guarantees is asserted in the tests, not here.
"""

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from threegate.claims import VERDICTS, Claim, Verdict, verdict_from_interval
from threegate.records import to_jsonable, write_json

__all__ = [
    "SIZES",
    "VERDICTS",
    "Claim",
    "Verdict",
    "check_size",
    "verdict_from_interval",
    "write_result",
]

#: `quick`: under a minute each on a 2-core CPU (what the tests and `make run` use); `default`: under 10 minutes.
SIZES = ("quick", "default")


def check_size(size: str) -> None:
    """ValueError naming the contract's sizes unless `size` is one of them (every `run` calls it first)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")


def write_result(
    out_dir: Path,
    *,
    name: str,
    size: str,
    seed: int,
    seconds: float,
    claims: Iterable[Claim],
    figures: Sequence[str] = (),
    data: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict:
    """Validate and write `out_dir / "result.json"`; return the dict written."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    claims = [Claim(*c) for c in claims]
    for c in claims:
        if c.verdict not in VERDICTS:
            raise ValueError(f"claim {c.id}: verdict must be one of {VERDICTS}, got {c.verdict!r}")
    for rel in (*figures, *data):
        if not (out_dir / rel).is_file():
            raise FileNotFoundError(f"{name}: listed output {rel} was not written")
    result = {
        "sim": name,
        "size": size,
        "seed": int(seed),
        "seconds": float(seconds),
        "claims": [c._asdict() for c in claims],
        "figures": list(figures),
        "data": list(data),
        **(to_jsonable(extra) if extra else {}),
    }
    write_json(out_dir / "result.json", result, indent=2)
    return result
