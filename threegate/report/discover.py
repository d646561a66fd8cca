"""Find threegate outputs under a folder, by file name, and read them without ever failing on one file.

Recognized files (anywhere below the root, hidden folders skipped):

* `verify.jsonl` (`threegate verify --out`): one summary per result, with `errata.json` beside it.
* `result.json` with a `sim` key (`threegate sim`, the contract of `sims._contract`).
* `study.json` (the real-model study): a `claims` list, with `report.md` and PNG figures beside it.
* `summary.json` with `table1` or `per_tuned` (`threegate compare`), with its PNG figures beside it.

A file that cannot be read or parsed becomes a `Problem` (one line, naming the file); every other file still
counts. JSONL files lose only their bad lines.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CompareSource",
    "Found",
    "Problem",
    "SimSource",
    "StepsSource",
    "StudySource",
    "VerifySource",
    "discover",
]


@dataclass(frozen=True)
class Problem:
    """A file that was found but could not be used: `path` relative to the root, `message` one line."""

    path: str
    message: str

    def line(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class VerifySource:
    folder: Path
    rel: str
    summaries: list[dict]
    errata: dict | None


@dataclass
class SimSource:
    folder: Path
    rel: str
    result: dict


@dataclass
class StudySource:
    folder: Path
    rel: str
    study: dict
    markdown: str | None


@dataclass
class CompareSource:
    folder: Path
    rel: str
    summary: dict


@dataclass
class StepsSource:
    """A `ThreeGateCallback` JSONL (`threegate_steps.jsonl`): its per-step summary lines."""

    folder: Path
    rel: str
    steps: list[dict]


@dataclass
class Found:
    """Everything found under `root`, each list in path order."""

    root: Path
    verify: list[VerifySource] = field(default_factory=list)
    sims: list[SimSource] = field(default_factory=list)
    studies: list[StudySource] = field(default_factory=list)
    compares: list[CompareSource] = field(default_factory=list)
    steps: list[StepsSource] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.verify or self.sims or self.studies or self.compares or self.steps)


def _rel(root: Path, path: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return "." if rel == "" else rel


def _one_line(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:300]


def _read_json(root: Path, path: Path, problems: list[Problem]) -> Any:
    """The parsed file, or None (with a Problem) when it cannot be read or is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        problems.append(Problem(_rel(root, path), f"corrupt JSON: {_one_line(err)}"))
    except (OSError, UnicodeDecodeError) as err:
        problems.append(Problem(_rel(root, path), f"unreadable: {_one_line(err)}"))
    return None


def _read_jsonl(root: Path, path: Path, problems: list[Problem]) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        problems.append(Problem(_rel(root, path), f"unreadable: {_one_line(err)}"))
        return []
    rows, bad = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(n)
            continue
        if isinstance(row, dict) and isinstance(row.get("id"), str):
            rows.append(row)
        else:
            bad.append(n)
    if bad:
        lines = ", ".join(map(str, bad[:5])) + (" …" if len(bad) > 5 else "")
        problems.append(
            Problem(_rel(root, path), f"corrupt JSONL: {len(bad)} bad line(s) ({lines}) skipped")
        )
    return rows


def _read_steps(root: Path, path: Path, problems: list[Problem]) -> list[dict]:
    """The per-step summary lines of a `ThreeGateCallback` JSONL (its tensor records are skipped)."""
    from threegate.records import read_jsonl

    try:
        lines = read_jsonl(path)
    except (OSError, ValueError) as err:
        problems.append(Problem(_rel(root, path), f"unreadable: {_one_line(err)}"))
        return []
    return [
        r for r in lines if isinstance(r.get("summary"), dict) and isinstance(r.get("step"), int)
    ]


def _read_text(root: Path, path: Path, problems: list[Problem]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        problems.append(Problem(_rel(root, path), f"unreadable: {_one_line(err)}"))
        return None


def discover(root: str | Path) -> Found:
    """Walk `root` (sorted, hidden folders skipped) and collect every recognized output.

    Raises:
      NotADirectoryError / FileNotFoundError: `root` is not an existing folder.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    found = Found(root=root)
    problems = found.problems
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        rel = _rel(root, folder)
        names = set(filenames)
        if "verify.jsonl" in names:
            summaries = _read_jsonl(root, folder / "verify.jsonl", problems)
            errata = None
            if "errata.json" in names:
                errata = _read_json(root, folder / "errata.json", problems)
                if errata is not None and not isinstance(errata, dict):
                    problems.append(Problem(_rel(root, folder / "errata.json"), "not an object"))
                    errata = None
            found.verify.append(VerifySource(folder, rel, summaries, errata))
        if "result.json" in names:
            result = _read_json(root, folder / "result.json", problems)
            if isinstance(result, dict) and "sim" in result:
                found.sims.append(SimSource(folder, rel, result))
        if "study.json" in names:
            study = _read_json(root, folder / "study.json", problems)
            if isinstance(study, dict):
                md = None
                if "report.md" in names:
                    md = _read_text(root, folder / "report.md", problems)
                found.studies.append(StudySource(folder, rel, study, md))
            elif study is not None:
                problems.append(Problem(_rel(root, folder / "study.json"), "not an object"))
        if "threegate_steps.jsonl" in names:
            steps = _read_steps(root, folder / "threegate_steps.jsonl", problems)
            if steps:
                found.steps.append(StepsSource(folder, rel, steps))
        if "summary.json" in names:
            summary = _read_json(root, folder / "summary.json", problems)
            if isinstance(summary, dict) and ("table1" in summary or "per_tuned" in summary):
                found.compares.append(CompareSource(folder, rel, summary))
    return found
