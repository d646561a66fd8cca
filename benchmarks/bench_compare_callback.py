"""Benchmark `ThreeGateCallback`'s overhead in TRL's `GRPOTrainer`: the same run with and without it, in one process.

Not a test. A random Llama (`--hidden`, `--layers`; 7.3M parameters by default) with a character tokenizer built
offline, `--steps` GRPO steps on CPU (batch 8, group 4, `--new-tokens` completion tokens), once without and once
with `ThreeGateCallback(every=--every)`; prints both wall times, the callback's own seconds (`cb.seconds`: its
step-0 snapshot and base work, then each measurement) and their share of the run, with the load average. The
issue's goal is <= 5% at every 10 steps on the SmolLM2 workload of `make bench-trl`.

Usage: python benchmarks/bench_compare_callback.py [--steps 20] [--every 10] [--hidden 256] [--layers 8]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import datasets
    import torch
    import transformers
    import trl

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_integrations_callback import (
        _tokenizer,
    )  # the offline character tokenizer of the tests

    from threegate.integrations import ThreeGateCallback

    tok, vocab = _tokenizer()
    cfg = transformers.LlamaConfig(
        hidden_size=args.hidden,
        intermediate_size=3 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=4,
        vocab_size=vocab,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        max_position_embeddings=128,
    )

    def run(with_cb: bool, out: str):
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(cfg)
        rows = [{"prompt": f"{a}+{b}="} for a in range(8) for b in range(8)]
        targs = trl.GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=8,
            num_generations=4,
            max_completion_length=args.new_tokens,
            learning_rate=1e-4,
            max_steps=args.steps,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            bf16=False,
            seed=0,
            dataloader_num_workers=0,
            disable_tqdm=True,
            beta=0.0,
        )
        trainer = trl.GRPOTrainer(
            model=model,
            reward_funcs=[lambda completions, **_: [float(c.count("1")) for c in completions]],
            args=targs,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tok,
        )
        cb = ThreeGateCallback(every=args.every).attach(trainer) if with_cb else None
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
        return wall, (cb.seconds if cb else 0.0), n_params(model), cb

    def n_params(model):
        return sum(x.numel() for x in model.parameters())

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        plain, _, n, _ = run(False, tmp + "/a")
        with_cb, cb_s, _, cb = run(True, tmp + "/b")
    load1 = os.getloadavg()
    res = {
        "params": n,
        "steps": args.steps,
        "every": args.every,
        "without_s": plain,
        "with_s": with_cb,
        "callback_s": cb_s,
        "callback_share": cb_s / plain,
        "setup_s": cb.setup_seconds,
        "measure_s": cb.measure_seconds,
        "loadavg_before": load0,
        "loadavg_after": load1,
    }
    print(
        f"{n / 1e6:.1f}M parameters, {args.steps} GRPO steps: without {plain:.1f} s, with {with_cb:.1f} s; "
        f"callback's own {cb_s:.1f} s = {100 * cb_s / plain:.1f}% of the run (every {args.every}): setup "
        f"{cb.setup_seconds:.1f} s, measurements {', '.join(f'{x:.1f}' for x in cb.measure_seconds)} s"
    )
    print(f"load average before {load0}, after {load1}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
