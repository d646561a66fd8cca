"""Benchmark TRL's `GRPOTrainer` on SmolLM2-135M-Instruct with the lab's GRPO workload (issue 10, part 3).

Not a test. The model is SmolLM2 exported by `threegate export-hf` (or `--model DIR`, any exported folder),
trained by TRL on the CPU with the workload of `make bench-lab`:

* P prompts × a group of G completions per step (default 8 × 8), N new tokens (default 16), sampling at
  temperature 0.7 (the lab's rollout temperature), top-p 1;
* the lab's addition task (`threegate.lm.tasks.TextTask`: "Compute 17 + 8. Reply with only the number." through
  the chat template, operand ranges 1+1, 2+1, 2+2), problems drawn by `TextTask.sample`;
* reward = our verifier (`TextTask.score`, `parse_reply`: the answer line's integer equals a+b; +1 / -1);
* one optimizer update per step (one generation batch, one iteration, no gradient accumulation), AdamW at
  lr 1e-5, weight decay 0.01, gradient clip 1.0, constant schedule, no KL term (β = 0), clip ε = 0.2.

Torch runs on `--threads` threads (default 2, also for OpenMP/MKL). The trainer runs in a child process so its
peak RSS (`VmHWM`) is its own; the child also reports its RSS after imports (torch, transformers, TRL and the
JAX that `threegate.lm.tasks` imports) and after loading the model. Per step (between TRL's `on_step_begin` and
`on_step_end` callbacks) it times the whole step and, by wrapping `GRPOTrainer` methods: generation
(`_generate`), reward (`_calculate_rewards`), the rest of `_generate_and_score_completions` (tokenizing,
advantages), forward + loss (`compute_loss`), and backward + optimizer (the remainder). Medians are over the
steps after `--warmup`.

`--ours JSON` reads the lab's benchmark JSON (`step_seconds`, optionally `peak_rss_mb`) and prints both side
by side with the ratio TRL / ours. Results go to `--json`.

Usage: python benchmarks/bench_trl.py [--prompts 8 --group 8 --new-tokens 16 --steps 5 --warmup 1]
       [--threads 2] [--model DIR] [--json out.json] [--ours lab.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1024 * 1024


def _status_mb(field: str) -> float:
    """A `/proc/self/status` memory field (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------------------------------------ child


def _child(spec_path: Path) -> dict:
    """Run TRL's GRPO for `spec['steps']` steps; return the timings and memory figures."""
    spec = json.loads(spec_path.read_text())
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from threegate.lm.tasks import Problems, TextTask
    from threegate.lm.tokenizer import Tokenizer

    rss_imports = _status_mb("VmRSS")
    model_dir = Path(spec["model"])
    special = json.loads((model_dir / "tokenizer_config.json").read_text())
    ours = Tokenizer.from_file(
        model_dir / "tokenizer.json", bos=special.get("bos_token"), eos=special["eos_token"]
    )
    task = TextTask(ours, max_new_tokens=spec["new_tokens"])
    rows = [
        {"prompt": [{"role": "user", "content": task.question(a, b)}], "a": a, "b": b}
        for a, b in zip(spec["a"], spec["b"], strict=True)
    ]

    def addition_reward(completion_ids, a, b, **_):
        """`TextTask.score` on TRL's completions (token ids up to and including EOS)."""
        width = max(1, *(len(c) for c in completion_ids))
        comp = np.full((len(completion_ids), width), task.eos_id, np.int32)
        mask = np.zeros(comp.shape, bool)
        for i, c in enumerate(completion_ids):
            comp[i, : len(c)] = c
            mask[i, : len(c)] = True
        reward, _ = task.score(Problems(np.asarray(a), np.asarray(b)), comp, mask)
        return reward.tolist()

    # Control: the verifier rewards a planted right answer and penalizes a wrong one.
    a0, b0 = spec["a"][0], spec["b"][0]
    right, wrong = ([*ours.encode(f"{v}"), task.eos_id] for v in (a0 + b0, a0 + b0 + 1))
    if addition_reward([right, wrong], [a0, a0], [b0, b0]) != [1.0, -1.0]:
        raise RuntimeError(
            "the reward function does not reproduce the verifier on a planted answer"
        )

    current: dict[str, float] = {}
    steps: list[dict[str, float]] = []

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                current[name] = current.get(name, 0.0) + time.perf_counter() - t0

        return wrapper

    class TimedGRPO(GRPOTrainer):
        def _generate(self, *a, **k):
            return timed("generation", super()._generate)(*a, **k)

        def _calculate_rewards(self, *a, **k):
            return timed("reward", super()._calculate_rewards)(*a, **k)

        def _generate_and_score_completions(self, *a, **k):
            return timed("generate_and_score", super()._generate_and_score_completions)(*a, **k)

        def compute_loss(self, *a, **k):
            return timed("forward", super().compute_loss)(*a, **k)

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            current.clear()
            current["_t0"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            total = time.perf_counter() - current.pop("_t0")
            gs = current.get("generate_and_score", 0.0)
            gen, rew = current.get("generation", 0.0), current.get("reward", 0.0)
            fwd = current.get("forward", 0.0)
            steps.append(
                {
                    "step": total,
                    "generation": gen,
                    "reward": rew,
                    "scoring_other": gs - gen - rew,
                    "forward": fwd,
                    "backward_optimizer": total - gs - fwd,
                    "rss_mb": _status_mb("VmRSS"),
                }
            )

    dtype = getattr(torch, spec["dtype"])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rss_model = _status_mb("VmRSS")
    p, g = spec["prompts"], spec["group"]
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        config = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=p * g,
            num_generations=g,
            max_completion_length=spec["new_tokens"],
            gradient_accumulation_steps=1,
            steps_per_generation=1,
            num_iterations=1,
            learning_rate=spec["lr"],
            weight_decay=0.01,
            max_grad_norm=1.0,
            lr_scheduler_type="constant",
            beta=0.0,
            epsilon=0.2,
            loss_type="grpo",
            temperature=0.7,
            top_p=1.0,
            max_steps=spec["steps"],
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            bf16=False,
            seed=spec["seed"],
            shuffle_dataset=False,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = TimedGRPO(
            model=model,
            reward_funcs=[addition_reward],
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[StepClock()],
        )
        trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    import transformers
    import trl

    return {
        "steps": steps,
        "reward_mean_per_step": rewards,
        "rss_after_imports_mb": rss_imports,
        "rss_after_model_mb": rss_model,
        "peak_rss_mb": _status_mb("VmHWM"),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
        "torch_threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------------------------ driver


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _ours_summary(path: Path) -> dict:
    data = json.loads(path.read_text())
    if "step_seconds" not in data:
        raise SystemExit(f"bench_trl: {path} has no 'step_seconds'")
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="an exported HF folder (default: export smollm2)")
    p.add_argument("--prompts", type=int, default=8, help="P prompts per step (default 8)")
    p.add_argument("--group", type=int, default=8, help="G completions per prompt (default 8)")
    p.add_argument(
        "--new-tokens", type=int, default=16, help="N tokens per completion (default 16)"
    )
    p.add_argument("--steps", type=int, default=5, help="optimizer steps (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the median")
    p.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads (default 2)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--ours", type=Path, help="the lab benchmark's JSON, printed side by side")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print("BENCH " + json.dumps(_child(args.child)), flush=True)
        return 0
    if args.group < 2 or args.prompts < 1 or args.new_tokens < 1:
        raise SystemExit("bench_trl: need --group >= 2, --prompts >= 1 and --new-tokens >= 1")
    if not 0 <= args.warmup < args.steps:
        raise SystemExit(
            f"bench_trl: need 0 <= --warmup < --steps, got {args.warmup}, {args.steps}"
        )
    ours = _ours_summary(args.ours) if args.ours else None

    import jax

    from threegate.lm.smollm2 import load_smollm2
    from threegate.lm.tasks import TextTask

    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        model = args.model
        if model is None:
            from threegate.hf import export_hf

            model = Path(tmp) / "smollm2-hf"
            export_hf("smollm2", model)
        # the lab's problem distribution (bench_lab draws its own problems from the same one)
        problems = TextTask(load_smollm2()[2]).sample(
            jax.random.key(args.seed), args.prompts * args.steps
        )
        spec = {
            "model": str(model),
            "a": [int(v) for v in problems.a],
            "b": [int(v) for v in problems.b],
            "prompts": args.prompts,
            "group": args.group,
            "new_tokens": args.new_tokens,
            "steps": args.steps,
            "threads": args.threads,
            "dtype": args.dtype,
            "lr": args.lr,
            "seed": args.seed,
        }
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        env = os.environ | {
            "OMP_NUM_THREADS": str(args.threads),
            "MKL_NUM_THREADS": str(args.threads),
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "JAX_PLATFORMS": "cpu",
        }
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(spec_path)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"bench_trl: the TRL run failed (exit {proc.returncode}): {tail[0]}")
    child = json.loads(lines[-1][6:])
    measured = child["steps"][args.warmup :]
    keys = ["step", "generation", "reward", "scoring_other", "forward", "backward_optimizer"]
    res = {
        "tool": "trl.GRPOTrainer",
        "workload": {
            "prompts": args.prompts,
            "group": args.group,
            "new_tokens": args.new_tokens,
            "task": "addition (2 digits), chat template",
            "updates_per_step": 1,
            "dtype": args.dtype,
            "threads": args.threads,
        },
        "steps": args.steps,
        "warmup": args.warmup,
        "step_seconds": _median(measured, "step"),
        "breakdown_seconds": {k: _median(measured, k) for k in keys[1:]},
        "per_step": child["steps"],
        "peak_rss_mb": child["peak_rss_mb"],
        "rss_after_imports_mb": child["rss_after_imports_mb"],
        "rss_after_model_mb": child["rss_after_model_mb"],
        "reward_mean_per_step": child["reward_mean_per_step"],
        "versions": child["versions"],
        "torch_threads": child["torch_threads"],
    }
    print(
        f"TRL GRPOTrainer, {args.prompts}x{args.group} completions of {args.new_tokens} tokens, "
        f"{args.threads} threads, {args.dtype}; median of {len(measured)} step(s) after {args.warmup} warm-up"
    )
    for k in keys:
        v = res["step_seconds"] if k == "step" else res["breakdown_seconds"][k]
        print(f"  {k:<20} {v:9.2f} s")
    print(
        f"  peak RSS {res['peak_rss_mb']:.0f} MB (after imports {res['rss_after_imports_mb']:.0f} MB, "
        f"after model load {res['rss_after_model_mb']:.0f} MB)"
    )
    if ours is not None:
        ratio = res["step_seconds"] / ours["step_seconds"]
        res["ours"] = {"file": str(args.ours), "step_seconds": ours["step_seconds"]}
        res["ratio_trl_over_ours"] = ratio
        print(
            f"  ours (lab)          {ours['step_seconds']:9.2f} s/step  ->  TRL / ours = {ratio:.2f} "
            f"({'ours faster' if ratio > 1 else 'TRL faster'})"
        )
        if "peak_rss_mb" in ours:
            res["ours"]["peak_rss_mb"] = ours["peak_rss_mb"]
            res["rss_ratio_trl_over_ours"] = res["peak_rss_mb"] / ours["peak_rss_mb"]
            print(
                f"  peak RSS ours {ours['peak_rss_mb']:.0f} MB, TRL {res['peak_rss_mb']:.0f} MB  ->  "
                f"TRL / ours = {res['rss_ratio_trl_over_ours']:.2f}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
