"""Shared pieces of the RL simulations S6 and S7: per-run JSONL, evaluation of a finished run, verdict rules, figures.

Evaluation (M15): every run is scored on all $p^2$ problems of the tiny task, as avg@k (k completions sampled at
T = 1) and greedy. The RL prompts are drawn from the same finite table, so this is in-distribution accuracy; the
table is the whole task. Confidence intervals are over (seed, problem) cells, paired across runs that share the
seed index and the eval key (common random numbers), so they reflect eval sampling and seed-to-seed variation only
through the seeds run.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sims._contract import Verdict, _jsonable
from threegate.lm.evaluation import MeanCI, paired_diff_ci, per_problem_accuracy

__all__ = [
    "JsonlAppender",
    "bar_figure",
    "ci_text",
    "equivalence_verdict",
    "eval_run",
    "line_figure",
    "paired",
    "tail_mean",
]


class JsonlAppender:
    """Append one JSON record per line to a file, flushed each time (results appear while the sim runs);
    NaN/inf are written as null."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def __call__(self, record: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(_jsonable(record), allow_nan=False) + "\n")


def eval_run(params: dict, base: Any, eval_seed: int, k: int) -> dict[str, np.ndarray]:
    """Per-problem avg@k (sampled, T = 1) and greedy accuracy `[p²]` of `params` on every problem of the task."""
    problems = base.task.all_problems()
    key = jax.random.key(eval_seed)
    sampled = per_problem_accuracy(params, base.mcfg, base.task, problems, key, k=k)
    greedy = per_problem_accuracy(params, base.mcfg, base.task, problems, key, greedy=True)
    return {"avg_at_k": sampled, "greedy": greedy}


def ci_text(c: MeanCI, digits: int = 3) -> str:
    return f"{c.mean:+.{digits}f} [95% CI {c.lo:+.{digits}f}, {c.hi:+.{digits}f}]"


def equivalence_verdict(c: MeanCI, margin: float) -> Verdict:
    """ "≈" claims: agrees when the CI of the difference lies inside ±margin, disagrees when it lies outside."""
    if not (np.isfinite(c.lo) and np.isfinite(c.hi)):
        return "inconclusive"
    if -margin <= c.lo and c.hi <= margin:
        return "agrees"
    if c.lo > margin or c.hi < -margin:
        return "disagrees"
    return "inconclusive"


def paired(scores: dict[str, np.ndarray], a: str, b: str) -> MeanCI:
    """CI of mean(scores[a] − scores[b]) over the (seed, problem) cells."""
    return paired_diff_ci(scores[a], scores[b])


def tail_mean(logs: Sequence[dict], field: str, frac: float = 0.25) -> float:
    """Mean of `field` over the last `frac` of the steps (at least one step)."""
    n = max(1, round(frac * len(logs)))
    return float(np.mean([r[field] for r in logs[-n:]]))


def line_figure(
    path: Path, curves: dict[str, np.ndarray], *, xlabel: str, ylabel: str, title: str
) -> None:
    """Small PNG: one line per label (mean over seeds), shaded min–max over seeds. `curves[label]` is `[S, T]`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
    for label, c in curves.items():
        c = np.asarray(c, np.float64)
        x = np.arange(1, c.shape[1] + 1)
        (line,) = ax.plot(x, c.mean(axis=0), label=label, lw=1.5)
        if c.shape[0] > 1:
            ax.fill_between(x, c.min(axis=0), c.max(axis=0), color=line.get_color(), alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bar_figure(
    path: Path, labels: Sequence[str], cis: Sequence[MeanCI], greedy: Sequence[float], *, title: str
) -> None:
    """Small PNG: avg@k with its 95% CI per run group, greedy accuracy as a marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
    x = np.arange(len(labels))
    means = np.array([c.mean for c in cis])
    err = np.array([[c.mean - c.lo for c in cis], [c.hi - c.mean for c in cis]])
    ax.bar(x, means, yerr=np.nan_to_num(err, posinf=0.0), capsize=3, color="#8fb3d9", label="avg@k")
    ax.plot(x, greedy, "k_", markersize=14, label="greedy")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
