"""`threegate train {sft,grpo,dapo,reinforce}`: train a JAX Llama on a verifiable task, log and checkpoint.

Writes `OUT/log.jsonl` (one record per step, flushed), `OUT/train_config.json`, `OUT/eval.json` (greedy accuracy
before and after on a fixed eval set) and bf16 checkpoints `OUT/step_XXXXXX/` (step 0 = the base, first).
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
    p.add_argument("--eval-size", type=int, default=128)
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
        return TextTask(tok, args.task, args.digits, args.modulus, 1.0, args.reward_wrong)

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


def run(args) -> int:
    import json
    from pathlib import Path

    import jax
    from tqdm import tqdm

    from threegate.lm.adapters import AdapterConfig
    from threegate.lm.fit import evaluate, fit
    from threegate.lm.train import TrainConfig

    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    mcfg, params, task, scratch = _model(args)
    lr = args.lr if args.lr is not None else (3e-3 if scratch else 1e-5)
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
        mask=args.mask,
        mask_alpha=args.mask_alpha,
        mask_rank=args.mask_rank,
        adapter=adapter,
        seed=args.seed,
    )
    out = Path(args.out)
    problems = task.sample(jax.random.key(10_000 + args.seed), args.eval_size)
    before = evaluate(params, mcfg, task, problems, jax.random.key(0))
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
            callback=progress,
        )
    finally:
        bar.close()
    after = evaluate(res.params, mcfg, task, problems, jax.random.key(0))
    summary = {
        "eval_before": before,
        "eval_after": after,
        "eval_size": args.eval_size,
        "steps": args.steps,
    }
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0
