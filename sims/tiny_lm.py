"""S4, the core reproduction on a tiny LM (digest §9.3 S4; paper Sec. 2, 4.1, 4.2).

From the tiny bf16 base (`sims._tiny.pretrained`), five RLVR runs — GRPO with two seeds, DAPO, REINFORCE++ and
GRPO on a different data stream (seed) — and one SFT run with the same optimizer and learning rate, all through
`threegate.lm.fit` (float32 master, bf16 stored, bf16 checkpoints at step 0 and three later steps). Then the
paper's checkpoint experiments through `threegate.study.analyse`: Table 1 (sparsity), Table 2 (Jaccard against
the Bernoulli baseline), consensus maps, row/column update ratios over time, principal angles and NSS (RL against
SFT), overlaps with $M_{princ}$ / $M_{low}$, Gate II on the real updates, each claim with a verdict.

Outputs in `out/tiny-lm/`: `runs/<run>/` (log.jsonl, checkpoints), `runs.jsonl` (one line per run: final greedy
accuracy, sparsity, KL), `analysis/` (compare folders, `study.json`, figures), `result.json`.
"""

import dataclasses
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from sims._contract import Claim, check_size, write_result
from sims._tiny import TinyBase, pretrained
from threegate.lm.checkpoint import save_checkpoint, step_dir
from threegate.lm.fit import evaluate, fit
from threegate.lm.train import TrainConfig
from threegate.records import JsonlWriter
from threegate.study import Run, StudyConfig, analyse

__all__ = ["NAME", "RL_SIZES", "SUMMARY", "RLSize", "rl_config", "run", "train_run"]

NAME = "tiny-lm"
SUMMARY = "S4: tiny LM, 5 RLVR runs + 1 SFT from one bf16 base; Tables 1-2, Figs 2-5, Gate II (paper Sec. 2, 4)"


@dataclasses.dataclass(frozen=True)
class RLSize:
    """Fine-tuning budget of one size: steps, checkpoints, batch, learning rate (RL and SFT alike), rank k."""

    steps: int
    checkpoints: tuple[int, ...]
    lr: float
    prompts_per_step: int
    group_size: int
    minibatches: int
    k: int


#: quick: what the tests run; default: a longer run. The learning rate is small enough that many per-step
#: updates stay below half a bf16 ULP, as in the paper's runs.
RL_SIZES = {
    "quick": RLSize(
        steps=16,
        checkpoints=(4, 8, 16),
        lr=1e-5,
        prompts_per_step=8,
        group_size=8,
        minibatches=2,
        k=4,
    ),
    "default": RLSize(
        steps=60,
        checkpoints=(15, 30, 60),
        lr=1e-5,
        prompts_per_step=16,
        group_size=8,
        minibatches=4,
        k=8,
    ),
}

#: (name, kind, algo, seed offset): five RLVR runs and one SFT run.
RUNS = (
    ("grpo_seed1", "rl", "grpo", 1),
    ("grpo_seed2", "rl", "grpo", 2),
    ("dapo", "rl", "dapo", 3),
    ("reinforce_pp", "rl", "reinforce", 4),
    ("grpo_data2", "rl", "grpo", 105),
    ("sft", "sft", "sft", 6),
)


def rl_config(size: str, algo: str, seed: int) -> TrainConfig:
    """The fine-tuning config of S4–S5 (paper App. C.1 in kind: clip 0.2/0.28 for DAPO, no KL, ±1 reward)."""
    s = RL_SIZES[size]
    return TrainConfig(
        algo=algo,
        steps=s.steps,
        lr=s.lr,
        prompts_per_step=s.prompts_per_step,
        group_size=s.group_size,
        minibatches=s.minibatches,
        beta=0.0,
        seed=seed,
    )


def train_run(
    base: TinyBase, cfg: TrainConfig, folder: Path, checkpoints: tuple[int, ...], params0=None
) -> dict:
    """One run from `params0` (default the base) with bf16 checkpoints; its summary row."""
    res = fit(
        cfg,
        base.mcfg,
        base.task,
        base.params if params0 is None else params0,
        out=folder,
        checkpoint_steps=checkpoints,
    )
    params = jax.tree.map(lambda x: np.asarray(x.astype(np.float32)), res.params)
    acc = evaluate(params, base.mcfg, base.task, base.task.all_problems(), jax.random.key(0))
    last = res.logs[-1] if res.logs else {}
    return {
        "algo": cfg.algo,
        "seed": cfg.seed,
        "lr": cfg.lr,
        "steps": cfg.steps,
        "greedy_accuracy": acc["accuracy"],
        "sparsity": last.get("sparsity"),
        "sparsity_linear": last.get("sparsity_linear"),
        "kl_k3_last": last.get("kl_k3"),
        "reward_mean": float(np.mean([r["reward"] for r in res.logs])) if res.logs else None,
        "checkpoints": [str(step_dir(folder, t)) for t in checkpoints],
    }


def run(out: Path, size: str, seed: int) -> dict:
    """Pretrain (cached), fine-tune six runs, analyse; write `out/tiny-lm/result.json`."""
    check_size(size)
    start = time.perf_counter()
    root = Path(out) / NAME
    for sub in ("runs", "analysis"):
        shutil.rmtree(root / sub, ignore_errors=True)
    (root / "runs").mkdir(parents=True)
    s = RL_SIZES[size]
    base = pretrained(size, seed)
    base_ckpt = save_checkpoint(root / "runs" / "base", base.params, base.mcfg)
    rows, study_runs = [], []
    for name, kind, algo, offset in RUNS:
        cfg = rl_config(size, algo, 1000 * seed + offset)
        row = train_run(base, cfg, root / "runs" / name, s.checkpoints)
        rows.append({"run": name, "kind": kind, **row})
        study_runs.append(Run(name, kind, tuple(row["checkpoints"])))
    with JsonlWriter(root / "runs.jsonl") as w:
        for r in rows:
            w.write(r)
    study = analyse(str(base_ckpt), study_runs, root / "analysis", StudyConfig(k=s.k, alpha=0.5))
    claims = [
        Claim(f"S4.{c['id']}", c["paper"], c["observed"], c["verdict"]) for c in study["claims"]
    ]
    extra = {
        "base_greedy_accuracy": base.greedy_accuracy,
        "task": f"{base.task.name}, {base.task.n_digits} digit(s)",
        "runs": rows,
        "table1": study["table1"],
        "table2": study["table2"],
    }
    return write_result(
        root,
        name=NAME,
        size=size,
        seed=seed,
        seconds=time.perf_counter() - start,
        claims=claims,
        figures=[f"analysis/{f}" for f in study["figures"]],
        data=["runs.jsonl", "analysis/study.json"],
        extra=extra,
    )
