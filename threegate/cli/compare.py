"""`threegate compare BASE TUNED [TUNED ...] --out DIR`: every checkpoint metric of the paper, streaming."""

import argparse
import sys

__all__ = ["register", "run"]

_HELP = """Compare a base checkpoint with one or more tuned checkpoints, tensor by tensor.

Writes DIR/tensors.jsonl (one record per tensor and tuned checkpoint, appended as computed), DIR/pairs.jsonl
(Jaccard of update masks, with 2+ tuned checkpoints), DIR/summary.json, side .npz files and figures;
DIR/costs.jsonl logs each unit's wall and CPU seconds. --ray runs the tensors as Ray tasks, same records.
Checkpoints: .safetensors, *.safetensors.index.json, .gguf, or a folder holding one of them; a TUNED may be a
PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors), measured as merged over BASE.
Layer types come from config.json next to BASE (fused q/k/v and gate/up split, Conv1D transposed, MoE experts
indexed); anything left untyped, dtype differences and integer tensors are warned about on stderr.
Long runs resume (--resume); for live training runs see threegate.integrations.ThreeGateCallback."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="measure update sparsity, masks, angles and bounds between checkpoints",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("base", help="base checkpoint")
    p.add_argument("tuned", nargs="+", help="tuned checkpoint(s)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--k", type=int, default=64, help="rank for principal masks and subspaces (default 64)"
    )
    p.add_argument("--alpha", type=float, default=0.5, help="mask fraction (default 0.5)")
    p.add_argument(
        "--include", metavar="REGEX", help="only tensor names matching REGEX (re.search)"
    )
    p.add_argument("--exclude", metavar="REGEX", help="skip tensor names matching REGEX")
    p.add_argument("--no-spectral", dest="spectral", action="store_false", help="sparsity only")
    p.add_argument(
        "--embeddings",
        action="store_true",
        help="also do spectral work on embedding/lm_head matrices (needs several GB for large vocabularies)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue DIR, skipping records already there"
    )
    p.add_argument(
        "--figures", action=argparse.BooleanOptionalAction, default=True, help="draw figures"
    )
    p.add_argument(
        "--layer", metavar="NAME", help="layer index or tensor name for the per-layer figures"
    )
    p.add_argument(
        "--head-dim", type=int, help="head dimension for the figures, if no config says it"
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help='dtype of the spectral measurements (default float32, at "highest" matmul precision)',
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run each tensor (and row block) as a Ray task: without ADDRESS on a local Ray instance with "
        "this machine's cores, with one (auto, HOST:PORT, ray://HOST:PORT) on that cluster; the checkpoints "
        "and --out must be on storage every node sees (needs threegate[ray])",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        help="with --ray: retries of a task whose worker dies (default 3)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from threegate.compare.run import CompareConfig, run_compare
    from threegate.compare.summary import format_summary, summarize

    cfg = CompareConfig(
        base=args.base,
        tuned=tuple(args.tuned),
        out=args.out,
        k=args.k,
        alpha=args.alpha,
        include=args.include,
        exclude=args.exclude,
        spectral=args.spectral,
        dtype=args.dtype,
        resume=args.resume,
        embeddings=args.embeddings,
        layer=args.layer,
        ray=args.ray,
        max_retries=args.max_retries,
    )

    def progress(names):
        return tqdm(
            names, desc="compare", unit="tensor", file=sys.stderr, disable=not sys.stderr.isatty()
        )

    out = run_compare(cfg, progress=progress)
    summary = summarize(out)
    if args.figures:
        from threegate.compare.figures import draw_all

        drawn = draw_all(out, head_dim=args.head_dim)
        summary_note = f"{len(drawn)} figure(s) in {out}"
    else:
        summary_note = f"results in {out}"
    print(format_summary(summary))
    for line in summary.get("warnings", []):
        print(f"threegate compare: warning: {line}", file=sys.stderr)
    bad = sum(len(s["nonfinite_tensors"]) for s in summary["per_tuned"].values())
    if bad:
        print(
            f"threegate compare: {bad} tensor record(s) with NaN/Inf; their metrics are null",
            file=sys.stderr,
        )
    print(summary_note)
    return 0
