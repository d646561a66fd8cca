"""Accuracy of a policy on a fixed problem set, per problem, and confidence intervals of means (metric M15).

`per_problem_accuracy` is the paper's pass@1 estimated as avg@k (k sampled completions per problem, the fraction
correct; Evalchemy style, App. C) or greedy (k = 1, argmax decoding). `mean_ci` gives a Student-t interval for the
mean of per-unit scores (problems are the independent unit; the k samples of a problem share its difficulty),
`paired_diff_ci` the interval of the mean of paired differences (two policies scored on the same units), and
`wilson_ci` a Wilson score interval for a proportion (greedy accuracy). `eval_report` is the held-out evaluation
`threegate train` writes to `eval.json`: avg@k and greedy accuracy with their intervals, overall and per operand
range, in fixed-size batches. Host-side NumPy/SciPy on the scores; the sampling itself runs on the device.
"""

import math
from collections import defaultdict
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from threegate.lm.config import LlamaConfig
from threegate.lm.tasks import Problems, Task
from threegate.stats import MeanCI, mean_ci, paired_diff_ci, wilson_ci

__all__ = [
    "MeanCI",
    "Pass",
    "eval_report",
    "mean_ci",
    "paired_diff_ci",
    "paired_difference",
    "per_problem_accuracy",
    "score_passes",
    "wilson_ci",
]


def per_problem_accuracy(
    params: dict,
    mcfg: LlamaConfig,
    task: Task,
    problems: Problems,
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


class Pass(NamedTuple):
    """One decoding of a problem set: argmax (`greedy`) or sampling at `temperature` with PRNG `key`."""

    key: jax.Array
    greedy: bool
    temperature: float = 1.0


def score_passes(
    params: dict,
    mcfg: LlamaConfig,
    task: Task,
    problems: Problems,
    passes: list[Pass],
    *,
    batch_size: int = 256,
) -> list[tuple[np.ndarray, list[str]]]:
    """For each pass, which of the `n` problems the verifier accepts (`[n]` bool) and the replies' texts.

    Problems go in batches of `batch_size` (the last one padded to that compiled shape); each batch's prompts
    are prefilled once and decoded by every pass (`generate_passes`), pass `j` on batch `i` with key
    `fold_in(passes[j].key, i)`, exactly as one `generate` call per pass and batch would sample.
    """
    from threegate.lm.sample import generate_passes

    a, b = np.asarray(problems.a), np.asarray(problems.b)
    correct: list[list[np.ndarray]] = [[] for _ in passes]
    texts: list[list[str]] = [[] for _ in passes]
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
        outs = generate_passes(
            params,
            mcfg,
            prompts,
            pmask,
            [(jax.random.fold_in(p.key, i), p.greedy, p.temperature) for p in passes],
            max_new_tokens=task.answer_len,
            eos_id=task.eos_id,
        )
        for j, out in enumerate(outs):
            tokens, mask = np.asarray(out.tokens)[:n_sub], np.asarray(out.mask)[:n_sub]
            _, c = task.score(sub, tokens, mask)
            correct[j].append(np.asarray(c))
            replies = task.replies(tokens, mask)
            if replies is not None:
                texts[j] += replies
    return [(np.concatenate(c), t) for c, t in zip(correct, texts, strict=True)]


def eval_report(
    params: dict,
    mcfg: LlamaConfig,
    task: Task,
    problems: Problems,
    key: jax.Array,
    *,
    k: int = 4,
    temperature: float = 1.0,
    batch_size: int = 256,
    examples: int = 8,
) -> dict[str, Any]:
    """Greedy and avg@k sampled accuracy of `params` on fixed `problems`, overall and per operand range.

    Returns a JSON-ready dict: `n`, `k`, `temperature`, `accuracy` (avg@k) with `accuracy_ci`, `greedy_accuracy`
    with `greedy_ci`, `per_range` (the same per stratum, e.g. operand range, when the task has strata), `per_problem`
    (`avg_at_k` and `greedy` lists, for paired comparisons) and a few greedy replies as `examples`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    passes = [Pass(key, True)] + [
        Pass(jax.random.fold_in(key, 1000 + j), False, temperature) for j in range(k)
    ]
    scored = score_passes(params, mcfg, task, problems, passes, batch_size=batch_size)
    greedy, texts = scored[0]
    sampled = np.stack([c for c, _ in scored[1:]], axis=1).astype(np.float64)
    avg = sampled.mean(axis=1)

    def summary(idx):
        m, lo, hi, _ = (
            mean_ci(avg[idx]) if idx.size > 1 else (float(avg[idx].mean()), math.nan, math.nan, 1)
        )
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
    strata = task.strata(problems)
    if strata is not None:
        groups = defaultdict(list)
        for i, r in enumerate(strata):
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


def paired_difference(before: dict, after: dict, field: str = "avg_at_k") -> dict[str, Any]:
    """after − before of two `eval_report`s on the same problems: the mean per-problem difference and its 95%
    Student-t interval (`paired_diff_ci`)."""
    x = np.asarray(before["per_problem"][field], np.float64)
    y = np.asarray(after["per_problem"][field], np.float64)
    if x.shape != y.shape:
        raise ValueError(f"evaluations differ in size: {x.size} vs {y.size} problems")
    ci = paired_diff_ci(y, x)
    return {"difference": ci.mean, "ci": [ci.lo, ci.hi], "n": ci.n}
