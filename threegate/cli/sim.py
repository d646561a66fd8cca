"""`threegate sim NAME|all`: run the toy simulations of `sims/` (digest §9.3 S1–S8) on the sim contract.

Each simulation writes OUT/NAME/result.json (claims with verdicts), its data (JSONL) and figures (PNG);
`threegate sim --list` names the eight with one line each. Modules are imported only when needed, and a registered
module that is not present in this installation is listed as "(not installed)" and skipped by `all`.
"""

import argparse
import importlib
import sys
from pathlib import Path

_SIZES = ("quick", "default")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sim",
        help="run a toy simulation of the paper's claims (S1-S8), or all of them",
        description=(
            "Run a toy simulation (or `all`) and write OUT/NAME/result.json with the paper's claims and a verdict "
            "for each (agrees / disagrees / inconclusive), plus JSONL data and PNG figures."
        ),
    )
    p.add_argument("name", nargs="?", help="a simulation name (see --list) or 'all'")
    p.add_argument("--list", action="store_true", help="list the simulations and exit")
    p.add_argument("--size", choices=_SIZES, default="quick", help="quick (< 1 min) or default")
    p.add_argument("--out", type=Path, default=Path("results/sim"))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _module(name: str):
    """The module of `name`, or None when its file is not part of this installation."""
    from sims import REGISTRY

    path = REGISTRY[name]
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as err:
        if err.name == path:
            return None
        raise


def _list() -> int:
    from sims import REGISTRY

    width = max(map(len, REGISTRY))
    for i, name in enumerate(REGISTRY, start=1):
        mod = _module(name)
        summary = mod.SUMMARY if mod is not None else "(not installed)"
        print(f"S{i}  {name:<{width}}  {summary}")
    return 0


def _claims_table(results: list[dict]) -> str:
    rows = [("sim", "claim", "verdict", "observed")]
    for res in results:
        for c in res["claims"]:
            rows.append((res["sim"], c["id"], c["verdict"], c["observed"]))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c:<{w2}}  {d}" for a, b, c, d in rows)


def run(args: argparse.Namespace) -> int:
    from sims import REGISTRY

    if args.list:
        return _list()
    if args.name is None:
        raise ValueError("give a simulation name, 'all', or --list")
    if args.name != "all" and args.name not in REGISTRY:
        raise ValueError(f"unknown simulation {args.name!r}; known: all, {', '.join(REGISTRY)}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    names = list(REGISTRY) if args.name == "all" else [args.name]
    results = []
    for name in names:
        mod = _module(name)
        if mod is None:
            if args.name != "all":
                raise ValueError(f"simulation {name!r} is registered but not installed")
            print(f"{name}: not installed, skipped", file=sys.stderr)
            continue
        print(f"{name}: running ({args.size}, seed {args.seed})", file=sys.stderr)
        res = mod.run(args.out, args.size, args.seed)
        print(f"{name}: wrote {args.out / name / 'result.json'}", file=sys.stderr)
        results.append(res)
    if results:
        print(_claims_table(results))
    return 0
