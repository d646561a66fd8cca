"""`threegate report DIR [--out FILE]`: one self-contained HTML page of everything threegate wrote under DIR.

Finds `verify.jsonl` (+ `errata.json`), simulation `result.json` files, `study.json` (+ `report.md`) and compare's
`summary.json` anywhere below DIR, and writes DIR/report.html (or FILE): every claim of the paper with its verdict
at the top, then each source with its tables and figures (embedded). Unreadable files are named on stderr, one line
each, and in the page; the rest still renders. Prints the report's path last on stdout.
"""

import argparse
import ast
import importlib.util
import sys
from pathlib import Path

__all__ = ["register", "run", "sim_catalog"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML report of the claims, checks, simulations and comparisons in DIR",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="folder holding threegate outputs")
    p.add_argument("--out", type=Path, metavar="FILE", help="output file (default DIR/report.html)")
    p.set_defaults(func=run)


def _summary_of(module: str) -> str:
    """The module-level `SUMMARY = "..."` of a simulation module, read from its source (nothing imported)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return ""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign | ast.AnnAssign)
            and any(
                isinstance(t, ast.Name) and t.id == "SUMMARY"
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return ""


def sim_catalog() -> dict:
    """name → SimInfo("S<n>", summary) for the simulations of `sims.REGISTRY`, in its order."""
    from sims import REGISTRY
    from threegate.report import SimInfo

    return {
        name: SimInfo(f"S{i}", _summary_of(module))
        for i, (name, module) in enumerate(REGISTRY.items(), 1)
    }


def run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from threegate import __version__
    from threegate.report import build_report, discover

    root: Path = args.dir
    found = discover(root)
    if found.empty and not found.problems:
        raise ValueError(
            f"{root}: no threegate outputs found (looked for verify.jsonl, result.json, study.json, "
            "summary.json)"
        )
    report = build_report(
        found,
        sim_catalog=sim_catalog(),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
    )
    for line in report.problems:
        print(f"threegate report: warning: {line}", file=sys.stderr)
    out: Path = args.out or root / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(report.html, encoding="utf-8")
    tmp.replace(out)
    counts = {
        v: sum(c.verdict == v for c in report.claims)
        for v in ("agrees", "disagrees", "inconclusive")
    }
    print(
        f"report: {len(report.claims)} claims ({counts['agrees']} agree, {counts['disagrees']} disagree, "
        f"{counts['inconclusive']} inconclusive) from {len(found.verify)} theorem check(s), "
        f"{len(found.sims)} simulation(s), {len(found.studies)} study(ies), {len(found.compares)} "
        f"comparison(s); {len(report.problems)} problem(s)",
        file=sys.stderr,
    )
    print(out)
    return 0
