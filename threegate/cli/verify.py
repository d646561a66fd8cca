"""`threegate verify [--only ID ...] [--size tiny|default|large] [--seed N] [--out DIR]`: the theorem checker.

Runs the checker of each numbered result of arXiv 2511.08567 (`proofs_numeric.REGISTRY`), prints one row per result
(statements shortened), the full statement of each result (and its corrected form, where the paper's fails) and the
errata, and with `--out` writes DIR/verify.jsonl (one object per result, appended as soon as it finishes)
and DIR/errata.json. Exit status: 0 when every result is "holds", "holds-asymptotically" or "violated-as-stated"
(a known erratum whose corrected form holds); 1 when a result that must hold is violated; 2 for bad arguments or
results whose checker is missing.
"""

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

__all__ = ["format_statements", "format_table", "register", "run"]

_HELP = """Check all 24 numbered results of "The Path Not Taken" (arXiv 2511.08567) numerically, in float64.

Each result is tried on random, extremal and adversarial instances; asymptotic results by their rate. Status:
holds / holds-asymptotically / violated-as-stated (the paper's form fails, a corrected form holds; the worst
counter-example is reported) / violated (a real failure: exit status 1)."""

_STATEMENT_WIDTH = 58
_TEXT_WIDTH = 118


def register(subparsers) -> None:
    from proofs_numeric._sizes import SIZES

    p = subparsers.add_parser(
        "verify",
        help="check the paper's 24 numbered results numerically",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--only",
        nargs="+",
        action="extend",
        metavar="ID",
        help='only these results, by the paper\'s number (e.g. "3.3 E.1 F.13")',
    )
    p.add_argument("--size", choices=SIZES, default="default", help="sweep size (default: default)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--out", metavar="DIR", help="write DIR/verify.jsonl and DIR/errata.json")
    p.set_defaults(func=run)


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None:
        return "-"
    return format(x, spec) if isinstance(x, int | float) else str(x)


def _short(text: str, width: int = _STATEMENT_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _rate(summary: dict[str, Any]) -> str:
    """Fitted slopes per expected slope: "3.03 (3)", or "0.41..1.03 (0.5) x20" for several fits."""
    by_expected: dict[float, list[float]] = {}
    for r in summary.get("rate") or []:
        by_expected.setdefault(r["expected"], []).append(r["slope"])
    parts = []
    for expected, slopes in by_expected.items():
        if len(slopes) == 1:
            parts.append(f"{slopes[0]:.2f} ({expected:.3g})")
        else:
            parts.append(f"{min(slopes):.2f}..{max(slopes):.2f} ({expected:.3g}) x{len(slopes)}")
    return ", ".join(parts) or "-"


def _status(summary: dict[str, Any]) -> str:
    status = summary["status"]
    corrected = summary.get("corrected")
    if status == "violated-as-stated" and corrected:
        return f"{status}; corrected: max {_fmt(corrected['max_ratio'])}, {corrected['violations']} viol."
    return status


def format_table(summaries: list[dict[str, Any]]) -> str:
    """The verify table: id, statement, instances, worst lhs/rhs, violations, rate (slope (expected)), status."""
    head = ("id", "result", "inst", "max lhs/rhs", "viol", "rate", "status")
    rows = [
        (
            s["id"],
            _short(s.get("statement", "")),
            str(s.get("instances", "-")),
            _fmt(s.get("max_ratio")),
            str(s.get("violations", "-")),
            _rate(s),
            _status(s),
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {2, 3, 4}

    def line(r: tuple[str, ...]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, rows)])


def format_statements(summaries: list[dict[str, Any]], width: int = _TEXT_WIDTH) -> str:
    """The full statement of every row (the table truncates them), with the corrected form where there is one."""
    lines = []
    pad = max((len(s["id"]) for s in summaries), default=0) + 2
    for s in summaries:
        entries = [("", s.get("statement", ""))]
        corrected = s.get("corrected") or {}
        if corrected.get("statement"):
            entries.append(("corrected: ", corrected["statement"]))
        for i, (label, text) in enumerate(entries):
            first = (s["id"] if i == 0 else "").ljust(pad) + label
            lines += textwrap.wrap(
                text,
                width,
                initial_indent=first,
                subsequent_indent=" " * (pad + len(label)),
                break_on_hyphens=False,
            )
    return "\n".join(lines)


def _errata_lines(tables: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> list[str]:
    lines = []
    for e in tables:
        if e["verdict"] == "erratum":
            lines.append(
                f"  {e['source']}, {e['row']}: reported Avg {e['reported_avg']:.2f} != mean of the 4 benchmarks "
                f"{e['mean_of_4']:g} (diff {e['diff']:+g})"
            )
        elif e["verdict"] == "truncated":
            lines.append(
                f"  note: {e['source']}, {e['row']}: Avg {e['reported_avg']:.2f} is the truncated mean "
                f"{e['mean_of_4']:.6g} (within one unit of the last digit)"
            )
    for s in summaries:
        examples = s.get("counter_examples_by_kind") or [s.get("counter_example")]
        if s["status"] != "violated-as-stated" or not examples[0]:
            continue
        lines.append(
            f"  {s['id']}: violated as stated; worst counter-example of each instance kind:"
        )
        for ce in examples:
            lines.append(
                f"    {ce['kind']}: lhs/rhs {_fmt(ce['ratio'])} ({ce['lhs']:.6g} {ce['relation']} "
                f"{ce['rhs']:.6g} fails) on {json.dumps(ce['instance'], separators=(',', ':'))}"
            )
    return lines


def _environment(config) -> dict:
    import jax
    import numpy as np

    return {
        "seed": config.seed,
        "size": config.size,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
    }


def _check_all(
    ids: list[str], config, meta: dict, out_dir: Path | None
) -> tuple[list[dict], list[str]]:
    """Run each result's checker (progress on stderr; summaries to `out_dir/verify.jsonl` as they finish).
    Returns the summaries and the messages of results without a checker."""
    import proofs_numeric
    from proofs_numeric import CheckerMissingError
    from proofs_numeric.harness import jsonable, summarize
    from threegate.records import JsonlWriter

    jsonl = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        jsonl = JsonlWriter(out_dir / "verify.jsonl", fresh=True)
    summaries, missing = [], []
    try:
        for n, id in enumerate(ids, 1):
            t0 = time.perf_counter()
            try:
                module = proofs_numeric.load(id)
            except CheckerMissingError as err:
                missing.append(str(err))
                print(f"verify [{n}/{len(ids)}] {id}: {err}", file=sys.stderr)
                continue
            records = module.run(config)
            summary = summarize(id, records) | meta
            summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
            summaries.append(summary)
            if jsonl is not None:
                jsonl.write(jsonable(summary))
            print(
                f"verify [{n}/{len(ids)}] {id}: {summary['status']} "
                f"({len(records)} records, {summary['elapsed_s']:.1f} s)",
                file=sys.stderr,
            )
    finally:
        if jsonl is not None:
            jsonl.close()
    return summaries, missing


def _write_errata(path: Path, tables, summaries: list[dict], meta: dict) -> None:
    """`errata.json`: the table errata and every result violated as stated, with its corrected form."""
    from proofs_numeric.harness import jsonable
    from threegate.records import write_json

    results = [
        {
            "id": s["id"],
            "statement": s["statement"],
            "counter_example": s.get("counter_example"),
            "counter_examples_by_kind": s.get("counter_examples_by_kind"),
            "corrected": s.get("corrected"),
        }
        for s in summaries
        if s["status"] == "violated-as-stated"
    ]
    write_json(path, jsonable({"tables": tables, "results": results} | meta), indent=1)


def run(args: argparse.Namespace) -> int:
    from proofs_numeric import REGISTRY, CheckerMissingError
    from proofs_numeric.errata import table_errata
    from proofs_numeric.harness import VerifyConfig

    ids = list(dict.fromkeys(args.only)) if args.only else list(REGISTRY)
    unknown = [i for i in ids if i not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown result id(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    config = VerifyConfig(size=args.size, seed=args.seed)
    meta = _environment(config)
    out_dir = Path(args.out) if args.out else None
    start = time.perf_counter()
    summaries, missing = _check_all(ids, config, meta, out_dir)
    tables = table_errata()
    print(format_table(summaries))
    if summaries:
        print("\nstatements (as the paper states them; corrected form where the paper's fails):")
        print(format_statements(summaries))
    lines = _errata_lines(tables, summaries)
    if lines:
        print("\nerrata:")
        print("\n".join(lines))
    total = time.perf_counter() - start
    print(
        f"\n{len(summaries)} results in {total:.1f} s (size {config.size}, seed {config.seed}, "
        f"{meta['backend']}, float64)"
    )
    if out_dir is not None:
        _write_errata(out_dir / "errata.json", tables, summaries, meta)
    if missing:
        raise CheckerMissingError(f"{len(missing)} result(s) have no checker: {'; '.join(missing)}")
    return 1 if any(s["status"] == "violated" for s in summaries) else 0
