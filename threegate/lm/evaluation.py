"""Accuracy of a policy on a fixed problem set, per problem, and confidence intervals of means (metric M15).

`per_problem_accuracy` is the paper's pass@1 estimated as avg@k (k sampled completions per problem, the fraction
correct; Evalchemy style, App. C) or greedy (k = 1, argmax decoding). `mean_ci` gives a Student-t interval for the
mean of per-unit scores, and `paired_diff_ci` the interval of the mean of paired differences (two policies scored on
the same units). Host-side NumPy/SciPy on the scores; the sampling itself runs on the device.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MeanCI", "mean_ci", "paired_diff_ci", "per_problem_accuracy"]


def per_problem_accuracy(
    params: dict,
    mcfg: Any,
    task: Any,
    problems: Any,
    key: jax.Array,
    *,
    k: int = 1,
    greedy: bool = False,
    temperature: float = 1.0,
) -> np.ndarray:
    """Fraction of `k` completions that the verifier accepts, for each of the `n` problems: `[n]` float64.

    Sampled at `temperature` with top-p 1 (greedy: argmax, `k` must be 1). One batch of `n·k` sequences (the
    problems tiled `k` times), so the same key gives the same completions.
    """
    from threegate.lm.sample import generate

    if k < 1 or (greedy and k != 1):
        raise ValueError(f"need k >= 1 (and k == 1 when greedy), got k={k}")
    n = int(np.asarray(problems.a).shape[0])
    tiled = jax.tree.map(lambda x: jnp.tile(jnp.asarray(x), k), problems)
    prompts, pmask = task.prompts(tiled)
    out = generate(
        params,
        mcfg,
        jnp.asarray(prompts),
        jnp.asarray(pmask),
        key,
        max_new_tokens=task.answer_len,
        temperature=temperature,
        top_p=1.0,
        greedy=greedy,
        eos_id=task.eos_id,
    )
    _, correct = task.score(tiled, out.tokens, out.mask)
    return np.asarray(correct, np.float64).reshape(k, n).mean(axis=0)


class MeanCI(NamedTuple):
    """A mean and its two-sided confidence interval (`lo`, `hi`), from `n` units."""

    mean: float
    lo: float
    hi: float
    n: int


def mean_ci(x: ArrayLike, level: float = 0.95) -> MeanCI:
    """Student-t interval $\\bar x \\pm t_{(1+\\ell)/2,\\,n-1}\\, s/\\sqrt n$ for the mean of the units `x`.

    One unit gives an infinite interval (no spread to estimate); identical units a zero-width one.
    """
    from scipy import stats

    x = np.asarray(x, np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"need a non-empty array of finite scores, got {x.size} values")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m = float(x.mean())
    if x.size == 1:
        return MeanCI(m, -np.inf, np.inf, 1)
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return MeanCI(m, m - half, m + half, int(x.size))


def paired_diff_ci(a: ArrayLike, b: ArrayLike, level: float = 0.95) -> MeanCI:
    """`mean_ci(a - b)` for scores of two policies on the same units (same problems, same seed index)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same shape, got {a.shape} and {b.shape}")
    return mean_ci(a - b, level)
