"""Shared pieces of the RL simulations S6 and S7: evaluation of a finished run (verdict rules and
figures are the library's: `threegate.study.sparse`, `threegate.study.figures`).

Evaluation (M15): every run is scored on all $p^2$ problems of the tiny task, as avg@k (k completions sampled at
T = 1) and greedy. The RL prompts are drawn from the same finite table, so this is in-distribution accuracy; the
table is the whole task. Confidence intervals are over (seed, problem) cells, paired across runs that share the
seed index and the eval key (common random numbers), so they reflect eval sampling and seed-to-seed variation only
through the seeds run.
"""

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from threegate.lm.evaluation import per_problem_accuracy
from threegate.stats import MeanCI, paired_diff_ci
from threegate.study.figures import bar_figure, line_figure
from threegate.study.sparse import ci_text, equivalence_verdict

__all__ = [
    "bar_figure",
    "ci_text",
    "equivalence_verdict",
    "eval_run",
    "line_figure",
    "paired",
    "tail_mean",
]


def eval_run(params: dict, base: Any, eval_seed: int, k: int) -> dict[str, np.ndarray]:
    """Per-problem avg@k (sampled, T = 1) and greedy accuracy `[p²]` of `params` on every problem of the task."""
    problems = base.task.all_problems()
    key = jax.random.key(eval_seed)
    sampled = per_problem_accuracy(params, base.mcfg, base.task, problems, key, k=k)
    greedy = per_problem_accuracy(params, base.mcfg, base.task, problems, key, greedy=True)
    return {"avg_at_k": sampled, "greedy": greedy}


def paired(scores: dict[str, np.ndarray], a: str, b: str) -> MeanCI:
    """CI of mean(scores[a] − scores[b]) over the (seed, problem) cells."""
    return paired_diff_ci(scores[a], scores[b])


def tail_mean(logs: Sequence[dict], field: str, frac: float = 0.25) -> float:
    """Mean of `field` over the last `frac` of the steps (at least one step)."""
    n = max(1, round(frac * len(logs)))
    return float(np.mean([r[field] for r in logs[-n:]]))
