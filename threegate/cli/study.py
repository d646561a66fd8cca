"""`threegate study smollm2|controlled`: train what is missing, then the experiments on SmolLM2 runs.

`controlled`: RL against off-policy and on-policy SFT over a learning-rate grid with two seeds and the float32
storage ablation, probed at every checkpoint (accuracy, forward and reverse KL, forgetting) and measured by
`compare`; matched lr and steps, matched forward KL, matched accuracy gain (`threegate.study.controlled`).
`--ray [ADDRESS]` dispatches its runs as Ray tasks. Writes OUT/study.json, OUT/report.md, OUT/figures/.

`smollm2`:
Writes `OUT/study.json` (tables, per-layer measurements, `claims` with verdicts), `OUT/report.md` and the
figures (PNG), plus the `compare` folders they come from. Runs come from `--runs` (default `OUT/runs`): finished
ones are reused, interrupted ones resumed, missing ones trained with the preset (`--no-train` only analyses).
Stages: the four runs (SFT, GRPO ×2, DAPO) and their checkpoint analysis; the six sparse-RL arms (one-shot masks,
Tables 4–5, Fig 9); the base policy's Fisher curvature along principal and other directions
(`OUT/curvature/curvature.jsonl`, resumable). A stage whose runs are not all finished is reported as missing.
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
    p.add_argument("model", choices=("smollm2", "controlled"), help="which study")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--runs", default=None, help="folder of `threegate train` runs (default OUT/runs)"
    )
    p.add_argument("--preset", choices=("quick", "full"), default="quick")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study")
    p.add_argument(
        "--no-train", action="store_true", help="analyse the finished runs only (smollm2)"
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the controlled study's runs as Ray tasks (a local instance, or a cluster's address)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    if args.model == "controlled":
        return _controlled(args)
    if args.ray is not None:
        raise ValueError("--ray is for the controlled study")
    return _smollm2(args)


def _controlled(args) -> int:
    import sys

    from threegate.study.controlled import run_study

    if args.runs is not None or args.no_train:
        raise ValueError("--runs and --no-train are for the smollm2 study")
    say = lambda m: print(f"study: {m}", file=sys.stderr)  # noqa: E731
    run_study(
        args.out,
        args.preset,
        resume=args.resume,
        backend="process" if args.ray is None else "ray",
        ray_address=args.ray or "local",
        say=say,
    )
    return 0


def _smollm2(args) -> int:
    import json
    import sys
    from pathlib import Path

    from threegate.lm.queue import run_queue
    from threegate.records import to_jsonable, write_json
    from threegate.study.analyse import analyse
    from threegate.study.report import write_report
    from threegate.study.smollm2 import (
        PRESETS,
        discover_runs,
        run_specs,
        sparse_specs,
        study_config,
    )

    preset = PRESETS[args.preset]
    out = Path(args.out)
    root = Path(args.runs) if args.runs else out / "runs"
    out.mkdir(parents=True, exist_ok=True)
    say = lambda m: print(f"study: {m}", file=sys.stderr)  # noqa: E731
    sparse = [(name, spec) for _, name, spec in sparse_specs(preset, root)]
    if not args.no_train:  # each run in its own process: a sweep's peak memory is one run's
        run_queue([*run_specs(preset, root), *sparse], root, backend="process", say=say)
    base, runs = discover_runs(root, [name for name, _ in run_specs(preset, root)])
    study = analyse(
        base,
        runs,
        out / "analysis",
        study_config(preset, args.resume),
        progress=say,
    )
    study["preset"] = args.preset
    study["sparse"] = _sparse_stage(preset, root, out, runs, say)
    study["curvature"] = _curvature_stage(preset, base, out, args.resume, say)
    for stage in (study["sparse"], study["curvature"]):
        if stage and stage.get("claims"):
            study["claims"] += stage["claims"]
            study["figures"] += stage.get("figures", [])
    study["evals"] = {r.name: json.loads((root / r.name / "eval.json").read_text()) for r in runs}
    for ev in study["evals"].values():  # the per-problem arrays stay in the runs' own eval.json
        for key in ("eval_before", "eval_after"):
            if key in ev:
                ev[key].pop("per_problem", None)
    study = to_jsonable(study)
    write_json(out / "study.json", study)
    write_report(study, out)
    print(f"wrote {out / 'study.json'} and {out / 'report.md'}")
    return 0


def _same_recipe(a, b) -> bool:
    """Two runs' train_config.json agree except for the seed and the number of steps."""
    import json

    ca, cb = (json.loads((f / "train_config.json").read_text()) for f in (a, b))
    drop = ("seed", "steps")
    return {k: v for k, v in ca.items() if k not in drop} == {
        k: v for k, v in cb.items() if k not in drop
    }


def _sparse_stage(preset, root, out, runs, say) -> dict:
    from threegate.study.smollm2 import sparse_specs
    from threegate.study.sparse import sparse_runs_study

    arms = {arm: root / name for arm, name, _ in sparse_specs(preset, root)}
    missing = [f.name for f in arms.values() if not (f / "eval.json").is_file()]
    if missing:
        return {"missing": missing, "claims": []}
    say("sparse RL: analysing the six arms")
    dense = arms["dense"]
    extra = [
        root / r.name
        for r in runs
        if r.kind == "rl" and (root / r.name).resolve() != dense.resolve()
        and _same_recipe(root / r.name, dense)
        and _seed(root / r.name) != _seed(dense)
    ]  # fmt: skip
    return sparse_runs_study(arms, extra_dense=extra, out=out / "analysis")


def _seed(folder) -> int:
    import json

    return json.loads((folder / "train_config.json").read_text())["seed"]


def _curvature_stage(preset, base, out, resume, say) -> dict:
    from threegate.lm.checkpoint import load_checkpoint
    from threegate.lm.smollm2 import load_smollm2
    from threegate.lm.tasks import TextTask, parse_ranges
    from threegate.study.curvature import (
        CurvatureConfig,
        curvature_claims,
        curvature_figure,
        curvature_summary,
        measure_curvature,
    )

    mcfg, params = load_checkpoint(base)
    task = TextTask(
        load_smollm2()[2],
        "addition",
        2,
        7,
        1.0,
        -1.0,
        max_new_tokens=preset.new_tokens,
        ranges=parse_ranges("1+1,2+1,2+2"),
        heldout_commuted=preset.split == "unordered",
    )
    cfg = CurvatureConfig(
        layers=preset.curvature_layers,
        k=preset.k,
        directions=preset.curvature_directions,
        prompts=preset.curvature_prompts,
    )
    records = measure_curvature(params, mcfg, task, out / "curvature", cfg, resume=resume, say=say)
    summary = curvature_summary(records)
    (out / "analysis").mkdir(parents=True, exist_ok=True)
    curvature_figure(summary, out / "analysis" / "curvature.png")
    return {
        "figures": ["curvature.png"],
        "settings": {**cfg.__dict__, "layers": list(cfg.layers)},
        "file": "curvature/curvature.jsonl",
        "summary": summary,
        "tensors": [
            {
                "name": r["name"],
                "layer": r["layer"],
                "type": r["type"],
                "k": r["k"],
                "means": {f: r["families"][f]["mean"] for f in r["families"]},
                "ratios": r["ratios"],
            }
            for r in records
        ],
        "claims": [c._asdict() for c in curvature_claims(summary)],
    }
