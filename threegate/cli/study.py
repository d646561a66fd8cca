"""`threegate study smollm2`: train what is missing, then the paper's checkpoint experiments on SmolLM2 runs.

Writes `OUT/study.json` (tables, per-layer measurements, `claims` with verdicts), `OUT/report.md` and the
figures (PNG), plus the `compare` folders they come from. Runs come from `--runs` (default `OUT/runs`): finished
ones are reused, interrupted ones resumed, missing ones trained with the preset (`--no-train` only analyses).
"""

import argparse

__all__ = ["register", "run"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "study",
        help="the paper's checkpoint experiments (Tables 1-2, Figs 2-5, Gate II) on SmolLM2 runs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", choices=("smollm2",))
    p.add_argument("--out", required=True)
    p.add_argument(
        "--runs", default=None, help="folder of `threegate train` runs (default OUT/runs)"
    )
    p.add_argument("--preset", choices=("quick", "full"), default="quick")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study")
    p.add_argument("--no-train", action="store_true", help="analyse the finished runs only")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from threegate.cli import main as cli_main
    from threegate.errors import ThreegateError
    from threegate.study.analyse import analyse
    from threegate.study.report import write_report
    from threegate.study.smollm2 import PRESETS, discover_runs, run_specs, study_config

    preset = PRESETS[args.preset]
    out = Path(args.out)
    root = Path(args.runs) if args.runs else out / "runs"
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_train:
        for name, argv in run_specs(preset, root):
            folder = root / name
            if (folder / "eval.json").is_file():
                print(f"study: {name} done, reused", file=sys.stderr)
                continue
            resume = ["--resume"] if (folder / "log.jsonl").is_file() else []
            print(f"study: training {name}", file=sys.stderr)
            if cli_main([*argv, *resume]) != 0:
                raise ThreegateError(f"training {name} failed (see the line above)")
    base, runs = discover_runs(root)
    study = analyse(
        base,
        runs,
        out / "analysis",
        study_config(preset, args.resume),
        progress=lambda m: print(f"study: {m}", file=sys.stderr),
    )
    study["preset"] = args.preset
    study["evals"] = {r.name: json.loads((root / r.name / "eval.json").read_text()) for r in runs}
    for ev in study["evals"].values():  # the per-problem arrays stay in the runs' own eval.json
        for key in ("eval_before", "eval_after"):
            if key in ev:
                ev[key].pop("per_problem", None)
    (out / "study.json").write_text(json.dumps(study, indent=1) + "\n")
    write_report(study, out)
    print(f"wrote {out / 'study.json'} and {out / 'report.md'}")
    return 0
