"""`threegate train {sft,grpo,dapo,reinforce}`: train a JAX Llama on a verifiable task, log and checkpoint.

Writes `OUT/log.jsonl` (one record per step, flushed), `OUT/train_config.json`, `OUT/run.json` (the command's
settings), `OUT/eval.json` (held-out evaluation before and after: for text tasks avg@k sampled accuracy at the
rollout temperature and greedy accuracy with 95% CIs and their paired difference; for tiny char tasks greedy
accuracy), `OUT/gates.jsonl` (with `--gates N`: Gate I and Gate III measured on N updates), bf16 checkpoints
`OUT/step_XXXXXX/` (step 0 = the bf16 base, first) and the latest full training state in `OUT/resume/`
(`--resume` continues an interrupted run from it: same records as one uninterrupted run).
"""

import argparse

__all__ = ["register", "run"]

_MASKS = ("principal", "nonprincipal", "low", "safe", "random")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="SFT / GRPO / DAPO / REINFORCE++ on a tiny or SmolLM2 Llama (bf16 stored, fp32 master)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("algo", choices=("sft", "grpo", "dapo", "reinforce"))
    p.add_argument("--model", default="tiny", help="tiny | smollm2 | PATH to a checkpoint folder")
    p.add_argument("--task", default="modadd", choices=("addition", "modadd"))
    p.add_argument("--digits", type=int, default=2, help="operand digits (addition)")
    p.add_argument("--modulus", type=int, default=7, help="p for modadd")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument(
        "--lr", type=float, default=None, help="default: 3e-3 for tiny from scratch, 1e-5 otherwise"
    )
    p.add_argument(
        "--init",
        default=None,
        help="start from this checkpoint folder (overrides --model's weights)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompts", type=int, default=16, help="prompts per step")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument(
        "--minibatches", type=int, default=4, help="gradient updates per step (x epochs)"
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--beta", type=float, default=0.0, help="reference-KL coefficient")
    p.add_argument("--kl", choices=("k1", "k3"), default="k3")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument(
        "--reward-wrong", type=float, default=-1.0, help="reward of a wrong answer (-1 or 0)"
    )
    p.add_argument("--mask", choices=_MASKS, default=None)
    p.add_argument("--mask-alpha", type=float, default=0.5)
    p.add_argument("--mask-rank", type=int, default=16)
    p.add_argument("--adapter", choices=("lora", "pissa"), default=None)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument(
        "--checkpoints",
        type=int,
        default=0,
        help="also checkpoint at N evenly spaced steps (3: 1/3, 2/3 and the end, for Fig 3)",
    )
    p.add_argument(
        "--ranges",
        default="1+1,2+1,2+2",
        help="operand ranges of SmolLM2's addition task, digits of a + digits of b (default 1+1,2+1,2+2)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="rollout and eval temperature (smollm2: 0.7)",
    )
    p.add_argument("--max-new-tokens", type=int, default=16, help="reply length (text tasks)")
    p.add_argument("--eval-k", type=int, default=4, help="samples per eval problem (avg@k)")
    p.add_argument(
        "--heldout-split",
        choices=("unordered", "ordered"),
        default="unordered",
        help="hold out a+b and b+a together (default) or the first, ordered split of reports/smollm2",
    )
    p.add_argument("--gates", type=int, default=0, help="gate-check N evenly spaced updates")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume/")
    p.add_argument(
        "--no-kl-metrics",
        action="store_true",
        help="do not log the KL to the base and the entropy per step (saves one base forward per step)",
    )
    p.add_argument(
        "--no-remat",
        action="store_true",
        help="keep every block's activations for the backward pass (faster, much more memory)",
    )
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation")
    p.add_argument(
        "--eval-before",
        default=None,
        metavar="FILE",
        help="reuse another run's base evaluation (its eval_before.json): same base, problems and settings",
    )
    p.add_argument("--eval-size", type=int, default=None, help="held-out problems (smollm2: 240)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def _model(args):
    """(model config, initial params, task, from_scratch)."""
    import jax

    from threegate.lm.checkpoint import load_checkpoint
    from threegate.lm.config import LlamaConfig
    from threegate.lm.model import check_params, init_params
    from threegate.lm.tasks import CHAR_VOCAB, CharTask, TextTask

    def char_task():
        return CharTask(args.task, args.digits, args.modulus, 1.0, args.reward_wrong)

    def text_task(tok):
        from threegate.lm.tasks import parse_ranges

        return TextTask(
            tok,
            args.task,
            args.digits,
            args.modulus,
            1.0,
            args.reward_wrong,
            max_new_tokens=args.max_new_tokens,
            ranges=parse_ranges(args.ranges),
            heldout_commuted=args.heldout_split == "unordered",
        )

    if args.model == "smollm2":
        from threegate.lm.smollm2 import load_smollm2

        mcfg, params, tok = load_smollm2()
        task, scratch = text_task(tok), False
    elif args.model == "tiny":
        task = char_task()
        mcfg = LlamaConfig.tiny(CHAR_VOCAB, d_model=64, n_layers=2, max_seq_len=32)
        params, scratch = init_params(mcfg, jax.random.key(args.seed)), True
    else:
        mcfg, params = load_checkpoint(args.model)
        scratch = False
        if mcfg.vocab_size == CHAR_VOCAB:
            task = char_task()
        else:
            from threegate.lm.smollm2 import load_smollm2

            task = text_task(load_smollm2()[2])
    if args.init is not None:
        mcfg, params = load_checkpoint(args.init)
        check_params(params, mcfg)
        scratch = False
    return mcfg, params, task, scratch


def evenly_spaced(steps: int, n: int) -> list[int]:
    """n steps spread over 1..steps ending at `steps` (e.g. 30, 3 → [10, 20, 30]); [] for n = 0."""
    return (
        sorted({max(1, round(steps * j / n)) for j in range(1, n + 1)})
        if n > 0 and steps > 0
        else []
    )


def _evaluate(params, mcfg, task, problems, args, temperature):
    import jax

    from threegate.lm.evaluation import eval_report
    from threegate.lm.fit import evaluate

    if hasattr(task, "range_of"):
        return eval_report(
            params, mcfg, task, problems, jax.random.key(0), k=args.eval_k, temperature=temperature
        )
    return evaluate(params, mcfg, task, problems, jax.random.key(0))


def params_digest(params: dict) -> str:
    """sha256 of a params dict: names, dtypes, shapes and bytes, in name order."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for name in sorted(params):
        x = np.asarray(params[name])
        h.update(f"{name}|{x.dtype}|{x.shape}|".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _reuse_eval(path, problems, settings: dict) -> dict:
    """A base evaluation from another run, after checking it evaluated this base on these problems alike."""
    import json
    from pathlib import Path

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--eval-before: no such file {path}")
    before = json.loads(path.read_text())
    if not isinstance(before, dict) or not isinstance(before.get("problems"), dict):
        raise ValueError(f"--eval-before {path}: not an eval_before.json (no problems recorded)")
    for key, want in settings.items():
        if before.get(key) != want:
            raise ValueError(
                f"--eval-before {path}: {key} is {before.get(key)!r}, this run needs {want!r}"
            )
    got = before["problems"]
    if (
        got.get("a") != np.asarray(problems.a).tolist()
        or got.get("b") != np.asarray(problems.b).tolist()
    ):
        raise ValueError(f"--eval-before {path}: evaluated other problems than this run's")
    return before


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    import jax
    import jax.numpy as jnp
    import numpy as np
    from tqdm import tqdm

    from threegate.lm.adapters import AdapterConfig
    from threegate.lm.evaluation import paired_difference
    from threegate.lm.fit import fit
    from threegate.lm.train import TrainConfig

    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    if args.max_new_tokens < 1 or args.eval_k < 1 or args.gates < 0 or args.checkpoints < 0:
        raise ValueError(
            "--max-new-tokens and --eval-k must be >= 1, --gates and --checkpoints >= 0"
        )
    mcfg, params, task, scratch = _model(args)
    text = hasattr(task, "range_of")
    lr = args.lr if args.lr is not None else (3e-3 if scratch else 1e-5)
    temperature = args.temperature if args.temperature is not None else (0.7 if text else 1.0)
    adapter = None
    if args.adapter is not None:
        adapter = AdapterConfig(args.adapter, args.rank, args.lora_alpha)
    cfg = TrainConfig(
        algo=args.algo,
        steps=args.steps,
        lr=lr,
        weight_decay=args.weight_decay,
        prompts_per_step=args.prompts,
        group_size=args.group_size,
        epochs=args.epochs,
        minibatches=args.minibatches,
        beta=args.beta,
        kl_estimator=args.kl,
        temperature=temperature,
        mask=args.mask,
        mask_alpha=args.mask_alpha,
        mask_rank=args.mask_rank,
        adapter=adapter,
        kl_metrics=not args.no_kl_metrics,
        remat=not args.no_remat,
        seed=args.seed,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.resume and (out / "log.jsonl").exists() and (out / "log.jsonl").stat().st_size:
        raise ValueError(f"{out} already holds a run (log.jsonl); use --resume or another --out")
    run_file = out / "run.json"
    argv = {k: v for k, v in vars(args).items() if k != "func"}
    if (
        args.resume and run_file.is_file()
    ):  # keep the command that started the run; note the resumption
        record = json.loads(run_file.read_text())
        record.setdefault("resumed", []).append(argv)
    else:
        record = {"argv": argv}
    run_file.write_text(json.dumps(record, indent=2, default=str))
    eval_size = args.eval_size if args.eval_size is not None else (240 if text else 128)
    if text:
        problems = task.eval_problems(eval_size)
    else:  # tiny char tasks: problems of the training distribution (modadd 7 has only 49)
        problems = task.sample(jax.random.key(10_000 + args.seed), eval_size)
    # the base as every run starts from it: bf16(params) (a float32 source is rounded once)
    base = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    before_file = out / "eval_before.json"
    before = None
    settings = None
    if not args.no_eval:
        settings = {
            "k": args.eval_k if text else None,
            "temperature": temperature,
            "max_new_tokens": args.max_new_tokens if text else None,
            "base_digest": params_digest(base),
        }
    if not args.no_eval:
        if args.resume and before_file.is_file():
            before = json.loads(before_file.read_text())
            if "problems" in before:  # evaluate after on exactly the problems evaluated before
                problems = type(problems)(
                    jnp.asarray(before["problems"]["a"], jnp.int32),
                    jnp.asarray(before["problems"]["b"], jnp.int32),
                )
        elif args.eval_before is not None:
            before = _reuse_eval(args.eval_before, problems, settings)
            before["reused_from"] = str(args.eval_before)
            before_file.write_text(json.dumps(before, indent=2))
        else:
            t0 = time.perf_counter()
            before = _evaluate(base, mcfg, task, problems, args, temperature)
            before["seconds"] = time.perf_counter() - t0
            before["problems"] = {
                "a": np.asarray(problems.a).tolist(),
                "b": np.asarray(problems.b).tolist(),
            }
            before |= settings
            before_file.write_text(json.dumps(before, indent=2))
    bar = tqdm(total=args.steps, disable=args.no_progress, desc=f"train {args.algo}", unit="step")

    def progress(rec):
        bar.set_postfix(
            reward=f"{rec['reward']:.3f}", acc=f"{rec['accuracy']:.3f}", kl=f"{rec['kl_k3']:.2e}"
        )
        bar.update(1)

    try:
        res = fit(
            cfg,
            mcfg,
            task,
            params,
            out=out,
            checkpoint_every=args.checkpoint_every,
            checkpoint_steps=evenly_spaced(args.steps, args.checkpoints),
            callback=progress,
            resume=args.resume,
            gates_steps=evenly_spaced(args.steps, args.gates),
        )
    finally:
        bar.close()
    summary = {"steps": args.steps, "eval_size": eval_size, "temperature": temperature}
    if before is not None:
        t0 = time.perf_counter()
        after = _evaluate(res.params, mcfg, task, problems, args, temperature)
        after["seconds"] = time.perf_counter() - t0
        summary |= {"eval_before": before, "eval_after": after}
        if text:
            summary["difference"] = {
                "accuracy": paired_difference(before, after, "avg_at_k"),
                "greedy_accuracy": paired_difference(before, after, "greedy"),
            }
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    brief = {k: v for k, v in summary.items() if k not in ("eval_before", "eval_after")}
    for key in ("eval_before", "eval_after"):
        if key in summary:
            brief[key] = {
                k: summary[key][k]
                for k in ("accuracy", "accuracy_ci", "greedy_accuracy", "greedy_ci", "reward")
                if k in summary[key]
            }
    print(json.dumps(brief))
    return 0
