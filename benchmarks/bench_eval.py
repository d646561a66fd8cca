"""Benchmark the held-out evaluation on SmolLM2 against its FLOP floor, and check its numbers. Not a test.

Evaluates the bf16 base exactly as `threegate train --model smollm2` does before training (`eval_report`: greedy
and avg@4 at temperature 0.7, 16 new tokens, key 0) on the problems of a committed `eval_before.json` (default:
the DAPO run's, which evaluated the bf16 base), and reports in one run:

* `eval_seconds` (wall, second of two evaluations: the first compiles) and `compile_seconds`;
* `same_numbers`: whether the per-problem greedy and avg@4 scores equal the committed ones;
* the floor (`threegate.lm.flops.necessary_generation_flops` on the real prompt and completion lengths: each
  prompt prefilled once for all five passes, one decode forward per generated token that is followed by
  another) over the float32 GEMM rate measured here, and `eval_over_floor`;
* `peak_rss_mb` and the load average before and after.

Usage: python benchmarks/bench_eval.py [--before reports/smollm2/dapo-s0/eval_before.json] [--json out.json]
"""

import argparse
import json
import os
import time


class _Recording:
    """The task, recording real prompt lengths per prefill and completion lengths per scored pass."""

    def __init__(self, task):
        self._task = task
        self.prompt_lens, self.completion_lens = [], []

    def __getattr__(self, name):
        return getattr(self._task, name)

    def prompts(self, problems):
        import numpy as np

        tokens, pmask = self._task.prompts(problems)
        self.prompt_lens.append(np.asarray(pmask).sum(1))
        return tokens, pmask

    def score(self, problems, tokens, mask):
        import numpy as np

        self.completion_lens.append(np.asarray(mask).sum(1))
        return self._task.score(problems, tokens, mask)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="reports/smollm2/dapo-s0/eval_before.json")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    from bench_lab import emit, gemm_rate, peak_rss_mb

    from threegate.lm.evaluation import eval_report
    from threegate.lm.flops import necessary_generation_flops
    from threegate.lm.smollm2 import load_smollm2
    from threegate.lm.tasks import Problems, TextTask, parse_ranges

    committed = json.loads(open(args.before).read())
    load_before = os.getloadavg()
    mcfg, params, tok = load_smollm2()
    base = {k: v.astype(jnp.bfloat16) for k, v in params.items()}
    del params
    task = _Recording(
        TextTask(
            tok, "addition", 2, 7, 1.0, -1.0, max_new_tokens=16, ranges=parse_ranges("1+1,2+1,2+2")
        )
    )
    problems = Problems(
        np.asarray(committed["problems"]["a"], np.int32),
        np.asarray(committed["problems"]["b"], np.int32),
    )
    times = []
    for _ in range(2):
        task.prompt_lens.clear()
        task.completion_lens.clear()
        t = time.perf_counter()
        rep = eval_report(
            base,
            mcfg,
            task,
            problems,
            jax.random.key(0),
            k=committed["k"],
            temperature=committed["temperature"],
        )
        times.append(time.perf_counter() - t)
    rss = peak_rss_mb()
    same = rep["per_problem"] == committed["per_problem"]
    # real lengths of the last evaluation: one prefill per batch, one score per pass and batch
    n = len(problems.a)
    batches = len(task.prompt_lens)
    passes = len(task.completion_lens) // batches
    per_pass = [
        np.concatenate([task.completion_lens[i * passes + j] for i in range(batches)])
        for j in range(passes)
    ]
    prompt_lens = np.concatenate(task.prompt_lens)
    rows = min(len(prompt_lens), n)
    need = necessary_generation_flops(mcfg, prompt_lens[:rows], [c[:rows] for c in per_pass])
    rate = gemm_rate()
    floor = need / rate
    out = {
        "workload": {
            "model": "SmolLM2-135M-Instruct (bf16 base)",
            "problems": n,
            "passes": passes,
            "k": committed["k"],
            "new_tokens": 16,
            "prompt_len_real_mean": float(prompt_lens[:rows].mean()),
            "completion_len_real_mean": float(np.mean([c[:rows].mean() for c in per_pass])),
        },
        "eval_seconds": times[-1],
        "compile_seconds": times[0] - times[-1],
        "same_numbers": bool(same),
        "accuracy": rep["accuracy"],
        "greedy_accuracy": rep["greedy_accuracy"],
        "committed_accuracy": committed["accuracy"],
        "committed_greedy_accuracy": committed["greedy_accuracy"],
        "committed_seconds": committed.get("seconds"),
        "necessary_flops": need,
        "gemm_flops_per_s": rate,
        "flop_floor_seconds": floor,
        "eval_over_floor": times[-1] / floor,
        "peak_rss_mb": rss,
    }
    emit(out, load_before, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
