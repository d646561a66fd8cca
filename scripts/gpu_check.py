"""Accelerator check for `threegate compare` and the lab (run by `make gpu-check`; needs a GPU unless `--allow-cpu`).

Without an accelerator backend it stops at once with one line on stderr
("gpu-check: no GPU backend found (jax backend: cpu)") and exit status 1; `--allow-cpu` runs the same checks on
the CPU alone (a dry run, e.g. at a tiny `--shape` with `--model tiny`). On each device (accelerator and CPU):

1. Times compare's per-tensor spectral step (base decomposition + principal mask scores, then the tuned
   decomposition, angles, $\\|\\Delta W\\|_2$ and energy share) and the whole per-tensor record on a bf16
   `--shape` matrix pair (default 1536 x 8960, a Qwen2.5-1.5B down_proj).
2. Times the bitwise pass (`threegate.bf16.change_counts`, jitted, on the device) on the same pair and checks its
   count against compare's host pass (`threegate.compare.coords.changed_mask`): they must agree exactly.
3. Times a GRPO step of the lab (`threegate.lm.fit`, `--model smollm2`: SmolLM2-135M, `--prompts` prompts x
   `--group` completions of `--new-tokens` tokens, one update per step; `--model tiny`: the tiny char model): the
   first step (compile + run) and the best later step.
4. Checks the sin-Theta floor of float32 matmuls at default vs "highest" precision at a true
   $\\sin\\theta = 10^{-5}$ ($m = 1024$, $k = 8$; shared/style.md §2: default precision floors at about 2e-4 on an
   H100 because of TF32, "highest" keeps 1e-5), and that compare's own angle path reads the planted angle.
5. Writes everything to `--out/gpu_check.json`.

Usage: python scripts/gpu_check.py --out DIR [--shape 1536 8960] [--k 64] [--repeats 2] [--model smollm2|tiny]
       [--grpo-steps 3] [--allow-cpu]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np


def _timed(fn, repeats: int) -> dict:
    """First call (compile + run) and the best of the following `repeats` calls, in seconds."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return {"first_s": first, "best_s": best if repeats else None}


def bf16_pair(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A bf16 matrix and a copy with about half of its entries moved one ULP away from zero."""
    rng = np.random.default_rng(0)
    w0 = (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(ml_dtypes.bfloat16)
    w1 = w0.copy()
    w1.view(np.uint16)[...] += (rng.random(shape, dtype=np.float32) < 0.5).astype(np.uint16)
    return w0, w1


def spectral_timings(shape: tuple[int, int], k: int, repeats: int, device) -> dict:
    from threegate.compare.metrics import tensor_metrics
    from threegate.compare.spectrum import base_spectral, tuned_spectral

    w0, w1 = bf16_pair(shape)
    with jax.default_device(device):

        def step():
            spec, _ = base_spectral(w0, k, "float32")
            tuned_spectral(w0, w1, spec, "float32")

        def record():
            return tensor_metrics("model.layers.0.mlp.down_proj.weight", w0, w1, k, 0.5)

        out = {
            "spectral_step": _timed(step, repeats),
            "tensor_record": _timed(record, max(1, repeats // 2)),
        }
        rec = record().record
    out["max_angle_u_deg"] = rec["max_angle_u_deg"]
    out["spectral_shift"] = rec["spectral_shift"]
    return out


def sin_theta_floor(device, m: int = 1024, k: int = 8, true_sin: float = 1e-5) -> dict:
    """$\\|(I - UU^\\top)\\tilde U\\|_2$ at a planted angle, float32, default vs "highest" matmul precision."""
    from threegate.spectral import principal_angles

    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((m, k + 1)))
    u = q[:, :k]
    theta = np.arcsin(true_sin)
    u_t = u.copy()
    u_t[:, k - 1] = (
        np.cos(theta) * q[:, k - 1] + np.sin(theta) * q[:, k]
    )  # rotate one direction by theta
    a, b = jnp.asarray(u, jnp.float32), jnp.asarray(u_t, jnp.float32)
    with jax.default_device(device):
        a, b = jax.device_put(a, device), jax.device_put(b, device)
        res = {}
        for prec in ("default", "highest"):
            p = None if prec == "default" else jax.lax.Precision.HIGHEST
            f = jax.jit(
                lambda x, y, p=p: jnp.linalg.norm(
                    y - jnp.matmul(x, jnp.matmul(x.T, y, precision=p), precision=p), 2
                )
            )
            res[prec] = float(f(a, b))
        res["compare_angle_path_sin"] = float(np.sin(np.asarray(principal_angles(a, b)).max()))
    res["true_sin"] = true_sin
    return res


def bitwise_timings(shape: tuple[int, int], repeats: int, device) -> dict:
    """The bitwise pass on `device` (`threegate.bf16.change_counts`), and its count against compare's host pass."""
    from threegate import bf16
    from threegate.compare.coords import changed_mask

    w0, w1 = bf16_pair(shape)
    host = int(np.count_nonzero(changed_mask(w0, w1)[0]))
    a, b = jax.device_put(w0, device), jax.device_put(w1, device)
    count = jax.jit(lambda x, y: bf16.change_counts(x, y).changed)

    def run():
        return count(a, b).block_until_ready()

    out = {"bitwise_pass": _timed(run, repeats)}
    out["changed"] = int(run())
    out["changed_host"] = host
    out["counts_agree"] = out["changed"] == host
    return out


def grpo_timings(model: str, steps: int, prompts: int, group: int, new_tokens: int, device) -> dict:
    """Seconds of `steps` GRPO steps of the lab (`threegate.lm.fit`) on `device`: the first (compile + run) and
    the best later one, with the losses."""
    from threegate.lm.fit import fit
    from threegate.lm.train import TrainConfig

    with jax.default_device(device):
        if model == "smollm2":
            from threegate.lm.smollm2 import load_smollm2
            from threegate.lm.tasks import TextTask

            mcfg, params, tok = load_smollm2()
            task = TextTask(tok, max_new_tokens=new_tokens)
        else:
            from threegate.lm.config import LlamaConfig
            from threegate.lm.model import init_params
            from threegate.lm.tasks import CHAR_VOCAB, CharTask

            task = CharTask("modadd", 2, 7, 1.0, -1.0)
            mcfg = LlamaConfig.tiny(CHAR_VOCAB, d_model=32, n_layers=1, max_seq_len=32)
            params = init_params(mcfg, jax.random.key(0))
        cfg = TrainConfig(
            algo="grpo", steps=steps, prompts_per_step=prompts, group_size=group, minibatches=1
        )
        logs = fit(cfg, mcfg, task, params).logs
    secs = [r["seconds"] for r in logs]
    return {
        "model": model,
        "prompts": prompts,
        "group": group,
        "new_tokens": new_tokens if model == "smollm2" else task.answer_len,
        "first_step_s": secs[0],
        "best_step_s": min(secs[1:]) if len(secs) > 1 else None,
        "loss": [r["loss"] for r in logs],
        "finite": bool(np.all(np.isfinite([r["loss"] for r in logs]))),
    }


def _s(x) -> str:
    return "-" if x is None else f"{x:.2f} s"


def _speedup(report: dict, section: str, field: str) -> float | None:
    """CPU best / accelerator best of one timing (None when either is missing)."""
    try:
        c, a = (
            report[f"{section}_cpu"][field]["best_s"],
            report[f"{section}_accelerator"][field]["best_s"],
        )
    except KeyError:
        return None
    return c / a if c and a else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/gpu-check"))
    p.add_argument("--shape", type=int, nargs=2, default=(1536, 8960), metavar=("M", "N"))
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--model", choices=("smollm2", "tiny"), default="smollm2", help="GRPO step model"
    )
    p.add_argument("--grpo-steps", type=int, default=3, help="GRPO steps to time (0: skip)")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument(
        "--allow-cpu", action="store_true", help="dry run on the CPU when there is no accelerator"
    )
    args = p.parse_args(argv)
    backend = jax.default_backend()
    if backend == "cpu" and not args.allow_cpu:
        print(f"gpu-check: no GPU backend found (jax backend: {backend})", file=sys.stderr)
        return 1
    devices = jax.devices()
    cpu = jax.devices("cpu")[0]
    print(
        f"backend: {backend}; devices: {', '.join(getattr(d, 'device_kind', str(d)) for d in devices)}"
    )
    shape = tuple(args.shape)
    report: dict = {
        "backend": backend,
        "devices": [getattr(d, "device_kind", str(d)) for d in devices],
        "jax_version": jax.__version__,
        "shape": list(shape),
        "k": args.k,
    }
    targets = [("cpu", cpu)] + ([("accelerator", devices[0])] if backend != "cpu" else [])
    for label, dev in targets:
        report[f"timing_{label}"] = t = spectral_timings(shape, args.k, args.repeats, dev)
        print(
            f"{label:<11} spectral step: first {_s(t['spectral_step']['first_s'])}, best"
            f" {_s(t['spectral_step']['best_s'])}; whole record: best {_s(t['tensor_record']['best_s'])}"
        )
        report[f"bitwise_{label}"] = b = bitwise_timings(shape, args.repeats, dev)
        print(
            f"{label:<11} bitwise pass: first {_s(b['bitwise_pass']['first_s'])}, best"
            f" {_s(b['bitwise_pass']['best_s'])}; changed {b['changed']} (host pass {b['changed_host']})"
        )
        if args.grpo_steps > 0:
            g = grpo_timings(
                args.model, args.grpo_steps, args.prompts, args.group, args.new_tokens, dev
            )
            report[f"grpo_{label}"] = g
            print(
                f"{label:<11} GRPO step ({g['model']}, {g['prompts']}x{g['group']}, {g['new_tokens']} tokens):"
                f" first {_s(g['first_step_s'])}, best {_s(g['best_step_s'])}"
            )
        report[f"sin_theta_{label}"] = s = sin_theta_floor(dev)
        print(
            f"{label:<11} sinΘ at true 1e-5: default {s['default']:.2e}, highest {s['highest']:.2e},"
            f" compare's angle path {s['compare_angle_path_sin']:.2e}"
        )
    if backend != "cpu":
        report["speedup_spectral_step"] = _speedup(report, "timing", "spectral_step")
        report["speedup_bitwise_pass"] = _speedup(report, "bitwise", "bitwise_pass")
        if args.grpo_steps > 1:
            c, a = report["grpo_cpu"]["best_step_s"], report["grpo_accelerator"]["best_step_s"]
            report["speedup_grpo_step"] = c / a
        print(
            "accelerator speedup (CPU best / accelerator best): "
            + ", ".join(
                f"{k[8:]} x{v:.1f}" for k, v in report.items() if k.startswith("speedup_") and v
            )
        )
    else:
        print("no accelerator (--allow-cpu): CPU numbers only")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out / 'gpu_check.json'}")
    bad = [k for k, v in report.items() if k.startswith("bitwise_") and not v["counts_agree"]]
    if bad:
        print(
            f"gpu-check: the device bitwise pass disagrees with the host pass ({', '.join(bad)})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
