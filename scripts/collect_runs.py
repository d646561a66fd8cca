"""Collect the small outputs of finished lab runs into a report folder (no checkpoints).

For each run folder under ROOT (one holding `train_config.json`): copies `log.jsonl`, `eval.json`, `gates.jsonl`,
`train_config.json` and `run.json` into OUT/NAME/, and writes OUT/runs.json with one row per run: name, algo,
seed, steps done, lr, batch (prompts × group, updates per step), median seconds per step, eval before/after
(avg@k accuracy and greedy accuracy with their 95% CIs and n) and the paired difference, the gate checks'
headline numbers, and the exact command that made it.

Usage: python scripts/collect_runs.py ROOT OUT
"""

import json
import shutil
import statistics
import sys
from pathlib import Path

FILES = (
    "log.jsonl",
    "eval.json",
    "gates.jsonl",
    "train_config.json",
    "run.json",
    "eval_before.json",
)


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _command(argv: dict) -> str:
    """The `threegate train` command line a run.json records."""
    a = dict(argv)
    parts = ["threegate train", a.pop("algo")]
    for k, v in sorted(a.items()):
        if k in ("func", "debug", "command") or v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        parts.append(flag if v is True else f"{flag} {v}")
    return " ".join(parts)


def _eval_brief(e: dict | None) -> dict | None:
    if not e:
        return None
    keys = (
        "n",
        "k",
        "temperature",
        "accuracy",
        "accuracy_ci",
        "greedy_accuracy",
        "greedy_ci",
        "per_range",
    )
    out = {k: e[k] for k in keys if k in e}
    if "per_range" in out:
        out["per_range"] = {
            r: {k: v[k] for k in ("n", "accuracy", "greedy_accuracy")}
            for r, v in out["per_range"].items()
        }
    return out


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: collect_runs.py ROOT OUT", file=sys.stderr)
        return 2
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    if not root.is_dir():
        print(f"collect_runs: {root} is not a folder", file=sys.stderr)
        return 2
    rows = []
    for run in sorted(p.parent for p in root.glob("*/train_config.json")):
        dest = out / run.name
        dest.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            if (run / f).is_file():
                shutil.copy2(run / f, dest / f)
        cfg = json.loads((run / "train_config.json").read_text())
        log = _jsonl(run / "log.jsonl")
        gates = _jsonl(run / "gates.jsonl")
        ev = json.loads((run / "eval.json").read_text()) if (run / "eval.json").is_file() else {}
        before = ev.get("eval_before")
        if before is None and (run / "eval_before.json").is_file():
            before = json.loads((run / "eval_before.json").read_text())
        argv = (
            json.loads((run / "run.json").read_text())["argv"]
            if (run / "run.json").is_file()
            else {}
        )
        rows.append(
            {
                "name": run.name,
                "algo": cfg["algo"],
                "seed": cfg["seed"],
                "steps": cfg["steps"],
                "steps_done": len(log),
                "finished": bool(ev),
                "lr": cfg["lr"],
                "batch": {
                    "prompts": cfg["prompts_per_step"],
                    "group": 1 if cfg["algo"] == "sft" else cfg["group_size"],
                    "updates_per_step": cfg["epochs"] * cfg["minibatches"],
                },
                "temperature": cfg["temperature"],
                "seconds_per_step": statistics.median(r["seconds"] for r in log[1:])
                if len(log) > 1
                else None,
                "eval_before": _eval_brief(before),
                "eval_after": _eval_brief(ev.get("eval_after")),
                "difference": ev.get("difference"),
                "reward_first_last_10": [
                    statistics.mean(r["reward"] for r in log[:10]) if log else None,
                    statistics.mean(r["reward"] for r in log[-10:]) if log else None,
                ],
                "sparsity_final": log[-1]["sparsity"] if log else None,
                "gates": [
                    {
                        "step": g["step"],
                        "gate3_mismatches": g["gate3"]["mismatches"],
                        "gate3_changed_fraction": g["gate3"]["changed_fraction"],
                        "gate3_below_half_ulp_fraction": g["gate3"]["below_half_ulp_fraction"],
                        "gate1_kl_per_token": g["gate1"]["kl_per_token"],
                        "gate1_kl_over_quad": g["gate1"]["kl_over_quad"],
                        "gate1_kl_over_f9_bound": g["gate1"].get("kl_over_f9_bound"),
                    }
                    for g in gates
                ],
                "command": _command(argv) if argv else None,
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out / 'runs.json'} ({len(rows)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
