"""Held-out evaluation of a policy on a verifiable task: avg@k sampled accuracy and greedy accuracy, with 95% CIs.

`accuracy` is the paper's avg@k: for each of $n$ problems draw $k$ completions at the rollout temperature,
$\\bar x_i = \\frac1k\\sum_j \\mathbb 1[\\text{correct}_{ij}]$, and average over problems. Its 95% interval is the
normal one over problems, $\\bar x \\pm 1.96\\, s/\\sqrt n$ (problems are the independent unit; the $k$ samples of a
problem are not independent of each other's difficulty). Greedy accuracy gets a Wilson score interval. Two
evaluations of the same problems compare by `paired_difference` (per-problem differences, normal interval).
"""

import math
from collections import defaultdict
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from threegate.lm.config import LlamaConfig

__all__ = ["Z95", "eval_report", "mean_ci", "paired_difference", "wilson_ci"]

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% normal interval of the mean of `x` (n ≥ 2; the interval is NaN for n < 2)."""
    x = np.asarray(x, np.float64)
    m = float(x.mean()) if x.size else math.nan
    if x.size < 2:
        return m, math.nan, math.nan
    half = Z95 * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m, m - half, m + half


def wilson_ci(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    p, z2 = successes / n, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _generate_all(params, mcfg, task, problems, key, *, greedy, temperature, batch_size):
    from threegate.lm.sample import generate

    a, b = np.asarray(problems.a), np.asarray(problems.b)
    correct, texts = [], []
    for i, start in enumerate(range(0, a.shape[0], batch_size)):
        sub = type(problems)(
            jnp.asarray(a[start : start + batch_size]), jnp.asarray(b[start : start + batch_size])
        )
        n_sub = sub.a.shape[0]
        if n_sub < batch_size:  # pad the last batch to the compiled shape
            pad = batch_size - n_sub
            sub_padded = type(problems)(
                jnp.concatenate([sub.a, jnp.repeat(sub.a[:1], pad)]),
                jnp.concatenate([sub.b, jnp.repeat(sub.b[:1], pad)]),
            )
        else:
            sub_padded = sub
        prompts, pmask = task.prompts(sub_padded)
        out = generate(
            params,
            mcfg,
            jnp.asarray(prompts),
            jnp.asarray(pmask),
            jax.random.fold_in(key, i),
            max_new_tokens=task.answer_len,
            temperature=temperature,
            greedy=greedy,
            eos_id=task.eos_id,
        )
        tokens, mask = np.asarray(out.tokens)[:n_sub], np.asarray(out.mask)[:n_sub]
        _, c = task.score(sub, tokens, mask)
        correct.append(np.asarray(c))
        if hasattr(task, "replies"):
            texts += task.replies(tokens, mask)
    return np.concatenate(correct), texts


def eval_report(
    params: dict,
    mcfg: LlamaConfig,
    task: Any,
    problems,
    key: jax.Array,
    *,
    k: int = 4,
    temperature: float = 1.0,
    batch_size: int = 256,
    examples: int = 8,
) -> dict[str, Any]:
    """Greedy and avg@k sampled accuracy of `params` on fixed `problems`, overall and per operand range.

    Returns a JSON-ready dict: `n`, `k`, `temperature`, `accuracy` (avg@k) with `accuracy_ci`, `greedy_accuracy`
    with `greedy_ci`, `per_range` (the same per operand range when the task has `range_of`), `per_problem`
    (`avg_at_k` and `greedy` lists, for paired comparisons) and a few greedy replies as `examples`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    greedy, texts = _generate_all(
        params, mcfg, task, problems, key, greedy=True, temperature=1.0, batch_size=batch_size
    )
    sampled = np.stack(
        [
            _generate_all(
                params,
                mcfg,
                task,
                problems,
                jax.random.fold_in(key, 1000 + j),
                greedy=False,
                temperature=temperature,
                batch_size=batch_size,
            )[0]
            for j in range(k)
        ],
        axis=1,
    ).astype(np.float64)
    avg = sampled.mean(axis=1)

    def summary(idx):
        m, lo, hi = mean_ci(avg[idx])
        g = int(greedy[idx].sum())
        return {
            "n": int(idx.size),
            "accuracy": m,
            "accuracy_ci": [lo, hi],
            "greedy_accuracy": g / idx.size,
            "greedy_ci": list(wilson_ci(g, int(idx.size))),
        }

    everything = np.arange(avg.size)
    report: dict[str, Any] = {"k": k, "temperature": float(temperature), **summary(everything)}
    if hasattr(task, "range_of"):
        groups = defaultdict(list)
        for i, r in enumerate(task.range_of(problems)):
            groups[r].append(i)
        report["per_range"] = {r: summary(np.asarray(ix)) for r, ix in sorted(groups.items())}
    report["per_problem"] = {"avg_at_k": avg.tolist(), "greedy": greedy.astype(int).tolist()}
    if texts:
        a, b = np.asarray(problems.a).tolist(), np.asarray(problems.b).tolist()
        report["examples"] = [
            {"a": a[i], "b": b[i], "reply": texts[i], "correct": bool(greedy[i])}
            for i in range(min(examples, len(texts)))
        ]
    return report


def paired_difference(before: dict, after: dict, field: str = "avg_at_k") -> dict[str, float]:
    """after − before on the same problems: mean per-problem difference and its 95% interval."""
    x = np.asarray(before["per_problem"][field], np.float64)
    y = np.asarray(after["per_problem"][field], np.float64)
    if x.shape != y.shape:
        raise ValueError(f"evaluations differ in size: {x.size} vs {y.size} problems")
    m, lo, hi = mean_ci(y - x)
    return {"difference": m, "ci": [lo, hi]}
