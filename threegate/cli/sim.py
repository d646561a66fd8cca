"""`threegate sim NAME`: run a toy simulation from `sims/` and write its rows as JSONL."""

import argparse
import json
import sys
from pathlib import Path

SIMS = ("precision-lr",)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sim",
        help="run a toy simulation (precision-lr: Gate III learning-rate test, paper Sec. 2.3)",
        description="Run a toy simulation and write one JSON row per setting to OUT/NAME.jsonl.",
    )
    p.add_argument("name", choices=SIMS)
    p.add_argument("--out", type=Path, default=Path("results/sim"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", choices=("master", "bf16", "both"), default="both")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--size", type=int, default=256, help="matrix side length")
    p.add_argument("--heavy-tail", action="store_true", help="Student-t(3) initial weights")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sims.precision_lr import PrecisionLRConfig, sweep

    if args.steps < 1 or args.size < 2:
        raise ValueError(f"--steps must be >= 1 and --size >= 2, got {args.steps} and {args.size}")
    storages = ("master", "bf16") if args.storage == "both" else (args.storage,)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.jsonl"
    header = (
        f"{'storage':>7} {'lr':>8} {'sparsity':>9} {'ovl_low':>8} {'null':>5} {'unrealized':>10}"
    )
    print(header)
    with path.open("w") as fh:
        for storage in storages:
            cfg = PrecisionLRConfig(
                m=args.size,
                n=args.size,
                steps=args.steps,
                storage=storage,
                heavy_tail=args.heavy_tail,
            )
            for row in sweep(cfg, seed=args.seed):
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                print(
                    f"{storage:>7} {row['lr']:8.0e} {row['sparsity']:9.4f} "
                    f"{row['overlap_low']:8.4f} {row['overlap_low_baseline']:5.2f} "
                    f"{row['unrealized_step_fraction']:10.4f}"
                )
    print(f"wrote {path}", file=sys.stderr)
    return 0
