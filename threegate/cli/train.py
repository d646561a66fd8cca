"""`threegate train {sft,grpo,dapo,reinforce,rft}`: train a JAX Llama on a verifiable task, log and checkpoint.

Writes `OUT/log.jsonl` (one record per step, flushed), `OUT/train_config.json`, `OUT/run.json` (the command's
settings), `OUT/eval.json` (held-out evaluation before and after: for text tasks avg@k sampled accuracy at the
rollout temperature and greedy accuracy with 95% CIs and their paired difference; for tiny char tasks greedy
accuracy), `OUT/gates.jsonl` (with `--gates N`: Gate I and Gate III measured on N updates), bf16 checkpoints
`OUT/step_XXXXXX/` (step 0 = the bf16 base, first) and the latest full training state in `OUT/resume/`
(`--resume` continues an interrupted run from it: same records as one uninterrupted run).
"""

import argparse

__all__ = ["register", "run"]

# `threegate.lm.train.ALGOS` and `MASK_KINDS`, spelled out so that the CLI starts without importing JAX
# (tests/test_lm_algorithms.py checks that they agree).
ALGO_NAMES = ("sft", "grpo", "dapo", "reinforce", "rft")
MASK_NAMES = ("principal", "nonprincipal", "low", "safe", "random")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="SFT / GRPO / DAPO / REINFORCE++ / RFT on a tiny or SmolLM2 Llama (bf16 stored, fp32 master)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("algo", choices=ALGO_NAMES)
    _model_args(p.add_argument_group("model and task"))
    _train_args(p.add_argument_group("training"))
    _sparse_args(p.add_argument_group("sparse masks (M8/M9) and LoRA / PiSSA adapters"))
    _eval_args(p.add_argument_group("held-out evaluation before and after"))
    _output_args(p.add_argument_group("checkpoints, gate checks, resume and the run folder"))
    p.set_defaults(func=run)


def _model_args(p) -> None:
    p.add_argument("--model", default="tiny", help="tiny | smollm2 | PATH to a checkpoint folder")
    p.add_argument("--task", default="modadd", choices=("addition", "modadd"))
    p.add_argument("--digits", type=int, default=2, help="operand digits (addition)")
    p.add_argument("--modulus", type=int, default=7, help="p for modadd")
    p.add_argument(
        "--init", help="start from this checkpoint folder (instead of --model's weights)"
    )
    p.add_argument("--ranges", default="1+1,2+1,2+2", help="SmolLM2 addition: digits of a + of b")
    p.add_argument("--max-new-tokens", type=int, default=16, help="reply length (text tasks)")
    p.add_argument(
        "--heldout-split",
        choices=("unordered", "ordered"),
        default="unordered",
        help="hold out a+b and b+a together (default) or the first, ordered split of reports/smollm2",
    )


def _train_args(p) -> None:
    p.add_argument("--steps", type=int, required=True)
    p.add_argument(
        "--lr", type=float, default=None, help="default: 3e-3 for tiny from scratch, 1e-5 otherwise"
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
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="rollout and eval temperature (smollm2: 0.7)",
    )
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


def _sparse_args(p) -> None:
    p.add_argument("--mask", choices=MASK_NAMES, default=None)
    p.add_argument("--mask-alpha", type=float, default=0.5)
    p.add_argument("--mask-rank", type=int, default=16)
    p.add_argument("--adapter", choices=("lora", "pissa"), default=None)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)


def _eval_args(p) -> None:
    p.add_argument("--eval-k", type=int, default=4, help="samples per eval problem (avg@k)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation")
    p.add_argument(
        "--eval-before",
        default=None,
        metavar="FILE",
        help="reuse another run's base evaluation (its eval_before.json): same base, problems and settings",
    )
    p.add_argument("--eval-size", type=int, default=None, help="held-out problems (smollm2: 240)")


def _output_args(p) -> None:
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument(
        "--checkpoints",
        type=int,
        default=0,
        help="also checkpoint at N evenly spaced steps (3: 1/3, 2/3 and the end, for Fig 3)",
    )
    p.add_argument("--gates", type=int, default=0, help="gate-check N evenly spaced updates")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume/")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True)


def run(args) -> int:
    import json

    from tqdm import tqdm

    from threegate.lm.run import brief_summary, run_experiment, spec_from_options

    options = {k: v for k, v in vars(args).items() if k != "func"}
    spec = spec_from_options(**options)
    bar = tqdm(total=args.steps, disable=args.no_progress, desc=f"train {args.algo}", unit="step")

    def progress(rec):
        kl = rec.get("kl_k3", 0)
        bar.set_postfix(reward=f"{rec['reward']:.3f}", acc=f"{rec['accuracy']:.3f}", kl=f"{kl:.2e}")
        bar.update(1)

    try:
        summary = run_experiment(
            spec, args.out, resume=args.resume, callback=progress, options=options
        ).summary
    finally:
        bar.close()
    print(json.dumps(brief_summary(summary)))
    return 0
