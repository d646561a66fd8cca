"""Benchmark the RL lab's SmolLM2 GRPO step against its FLOP floor (`make bench-lab`). Not a test.

Workload (issue 8): SmolLM2-135M-Instruct from its bf16 base, the chat addition task, 8 prompts × group 8, 16 new
tokens, one gradient update per step (`minibatches=1`), float32 master and bf16 stored weights. Runs `fit` for
`--steps` steps and reports, in one run on one machine:

* `step_seconds`: median wall time of the steps after the first (rollout + verifier + log-probs + update);
* `compile_seconds`: first step minus that median (XLA compilation of rollout and update);
* `flops`: the step's matmul FLOPs by phase (`threegate.lm.flops.grpo_step_flops`: rollout with each of the 8
  prompts prefilled once for its group, the current and reference log-prob passes, forward + backward), and
  the count if every row's prompt were prefilled (what a trainer without prompt sharing computes);
* `gemm_flops_per_s`: the machine's float32 GEMM rate, measured here with a jitted 2048³ matmul (best of 5);
* `flop_floor_seconds` = flops / gemm_flops_per_s, and `step_over_floor`;
* `peak_rss_mb` (this process's VmHWM) and the load average before and after (timings on a loaded machine are
  not comparable).

Usage: python benchmarks/bench_lab.py [--steps 4] [--json out.json]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="steps to run (the first one compiles)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.steps < 2:
        raise SystemExit("bench_lab: --steps must be >= 2 (the first step compiles)")

    import jax

    from threegate.lm.fit import fit
    from threegate.lm.flops import grpo_step_flops
    from threegate.lm.smollm2 import load_smollm2
    from threegate.lm.tasks import TextTask
    from threegate.lm.train import TrainConfig

    load_before = os.getloadavg()
    mcfg, params, tok = load_smollm2()
    task = TextTask(tok, max_new_tokens=args.new_tokens)
    cfg = TrainConfig(
        algo="grpo",
        steps=args.steps,
        lr=1e-6,
        prompts_per_step=args.prompts,
        group_size=args.group_size,
        minibatches=1,
        temperature=0.7,
    )
    res = fit(cfg, mcfg, task, params)
    secs = [r["seconds"] for r in res.logs]
    step = statistics.median(secs[1:])
    rate = gemm_rate()
    b = args.prompts * args.group_size
    flops = grpo_step_flops(mcfg, b, task.prompt_len, args.new_tokens, group=args.group_size)
    flops_full = grpo_step_flops(mcfg, b, task.prompt_len, args.new_tokens)
    floor = flops.total / rate
    out = {
        "workload": {
            "model": "SmolLM2-135M-Instruct (bf16 base)",
            "prompts": args.prompts,
            "group_size": args.group_size,
            "prompt_len": task.prompt_len,
            "new_tokens": args.new_tokens,
            "updates_per_step": 1,
        },
        "step_seconds": step,
        "step_seconds_all": secs,
        "rollout_seconds": statistics.median(r["rollout_seconds"] for r in res.logs[1:]),
        "update_seconds": statistics.median(r["update_seconds"] for r in res.logs[1:]),
        "compile_seconds": secs[0] - step,
        "flops": flops.total,
        "flops_by_phase": flops._asdict(),
        "flops_if_every_row_prefilled": flops_full.total,
        "gemm_flops_per_s": rate,
        "flop_floor_seconds": floor,
        "step_over_floor": step / floor,
        "peak_rss_mb": peak_rss_mb(),
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
