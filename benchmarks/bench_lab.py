"""Benchmark the RL lab's SmolLM2 GRPO step against its necessary FLOP floor (`make bench-lab`). Not a test.

Workload: SmolLM2-135M-Instruct from its bf16 base, the chat addition task, 8 prompts × group 8, 16 new tokens,
one gradient update per step (`minibatches=1`, β = 0), float32 master and bf16 stored weights. In one process:

1. `fit` for `--steps` steps with the per-step KL instrumentation off (`kl_metrics=False`): the step itself.
   `peak_rss_mb` (VmHWM) is read right after it, so it is the step's memory (model load included).
2. `fit` again with the instrumentation on: its extra median seconds are the KL phase (`kl_phase_seconds`).
3. The float32 GEMM rate of this machine, a jitted 2048³ matmul (best of 5).

The floor (`threegate.lm.flops.necessary_step_flops`) counts the matmul work a step cannot avoid, on the real
tokens of the batches the run sampled: each distinct prompt prefilled once with logits only where a token is
sampled, one decode forward per sampled token that is followed by another, and one forward + backward over
every sequence without padding with logits only at completion positions. `flop_floor_seconds` = that over the
GEMM rate; `step_over_floor` = step seconds over it. Per phase (rollout incl. the verifier, update) the same
ratio, and the FLOPs the code computes (padded shapes, `grpo_step_flops` without the old/ref passes).
Also the load average before and after (timings on a loaded machine are not comparable).

Usage: python benchmarks/bench_lab.py [--steps 4] [--no-remat] [--json out.json]
"""

import argparse
import json
import os
import statistics
import time


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """float32 FLOP/s of a jitted n×n×n matmul at "highest" precision (best of `repeats`)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: jnp.matmul(x, y, precision="highest"))
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def emit(record: dict, load_before, path: str | None) -> None:
    """Add the machine's fields (backend, cores, load average before and now) to a benchmark record, print it and
    write it to `path` (when given)."""
    import jax

    record |= {
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(record, indent=2))
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(record, f, indent=2)


def peak_rss_mb() -> float | None:
    """This process's resident high-water mark (VmHWM), MB; None where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class _Recording:
    """The task, recording each rollout's real prompt and completion lengths (what the floor counts)."""

    def __init__(self, task):
        self._task = task
        self._pmask = None
        self.lengths = []  # per rollout: (prompt_lens [B], completion_lens [B])

    def __getattr__(self, name):
        return getattr(self._task, name)

    def prompts(self, problems):
        tokens, pmask = self._task.prompts(problems)
        self._pmask = pmask
        return tokens, pmask

    def score(self, problems, tokens, mask):
        import numpy as np

        self.lengths.append((np.asarray(self._pmask).sum(1), np.asarray(mask).sum(1)))
        return self._task.score(problems, tokens, mask)


def _median_after_first(logs, key):
    return statistics.median(r[key] for r in logs[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="steps per run (the first one compiles)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument(
        "--no-remat", action="store_true", help="keep the blocks' activations (more memory)"
    )
    ap.add_argument("--no-kl-phase", action="store_true", help="skip the second (instrumented) run")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.steps < 2:
        raise SystemExit("bench_lab: --steps must be >= 2 (the first step compiles)")

    import dataclasses

    import numpy as np

    from threegate.lm.fit import fit
    from threegate.lm.flops import grpo_step_flops, necessary_step_flops
    from threegate.lm.smollm2 import load_smollm2
    from threegate.lm.tasks import TextTask
    from threegate.lm.train import TrainConfig

    load_before = os.getloadavg()
    mcfg, params, tok = load_smollm2()
    task = _Recording(TextTask(tok, max_new_tokens=args.new_tokens))
    cfg = TrainConfig(
        algo="grpo",
        steps=args.steps,
        lr=1e-6,
        prompts_per_step=args.prompts,
        group_size=args.group_size,
        minibatches=1,
        temperature=0.7,
        kl_metrics=False,
        remat=not args.no_remat,
    )
    res = fit(cfg, mcfg, task, params)
    rss = peak_rss_mb()
    lengths = task.lengths[1:]  # the steps after the first (one rollout each: GRPO, no refill)
    secs = [r["seconds"] for r in res.logs]
    step = statistics.median(secs[1:])
    rollout = _median_after_first(res.logs, "rollout_seconds")
    update = _median_after_first(res.logs, "update_seconds")
    kl_phase = None
    if not args.no_kl_phase:
        res_kl = fit(dataclasses.replace(cfg, kl_metrics=True), mcfg, task, params)
        kl_phase = _median_after_first(res_kl.logs, "update_seconds") - update
    rate = gemm_rate()
    b = args.prompts * args.group_size
    need = [necessary_step_flops(mcfg, t, n, group=args.group_size) for t, n in lengths]
    need_rollout = statistics.median(x.rollout for x in need)
    need_update = statistics.median(x.update for x in need)
    floor = (need_rollout + need_update) / rate
    computed = grpo_step_flops(
        mcfg, b, task.prompt_len, args.new_tokens, group=args.group_size, logprob_passes=0
    )
    out = {
        "workload": {
            "model": "SmolLM2-135M-Instruct (bf16 base)",
            "prompts": args.prompts,
            "group_size": args.group_size,
            "prompt_len_padded": task.prompt_len,
            "prompt_len_real_mean": float(np.mean([t.mean() for t, _ in lengths])),
            "new_tokens": args.new_tokens,
            "completion_len_real_mean": float(np.mean([n.mean() for _, n in lengths])),
            "updates_per_step": 1,
            "remat": not args.no_remat,
            "kl_metrics": False,
        },
        "step_seconds": step,
        "step_seconds_all": secs,
        "rollout_seconds": rollout,
        "update_seconds": update,
        "kl_phase_seconds": kl_phase,
        "compile_seconds": secs[0] - step,
        "necessary_flops": {"rollout": need_rollout, "update": need_update},
        "computed_flops": {"rollout": computed.rollout, "update": computed.update},
        "gemm_flops_per_s": rate,
        "flop_floor_seconds": floor,
        "step_over_floor": step / floor,
        "rollout_over_floor": rollout / (need_rollout / rate),
        "update_over_floor": update / (need_update / rate),
        "peak_rss_mb": rss,
    }
    emit(out, load_before, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
