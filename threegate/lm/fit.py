"""The host driver of `threegate.lm.train`: the loop that calls the jitted step, logs and checkpoints.

`fit` runs `TrainConfig.steps` steps of `make_train(...)`: a fused jitted `step` for jnp tasks (`CharTask`), or a
jitted rollout → host verifier → jitted update for text tasks (SmolLM2). Per step it produces one record (`step`,
`reward`, `accuracy`, `kl_k1`, `kl_k3`, `kl_exact`, `entropy`, `loss`, `grad_norm`, `clip_frac`, `sparsity`,
`sparsity_linear`, `kept_frac`, `response_len`, `gen_tokens`, `seconds`), appended to `out/log.jsonl` (flushed
per step) and handed to `callback`. Checkpoints (bf16, HF names) go to `out/step_XXXXXX/`: step 0 (the base)
first, then every `checkpoint_every` steps and the last step. Same config and seed ⇒ identical records (except
`seconds`).
"""

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from threegate.lm.checkpoint import save_checkpoint, step_dir
from threegate.lm.config import LlamaConfig
from threegate.lm.train import Batch, Frozen, TrainConfig, TrainState, host_metrics, make_train

__all__ = ["LOG_FILE", "FitResult", "evaluate", "fit"]

LOG_FILE = "log.jsonl"


class FitResult(NamedTuple):
    """Final state, the frozen inputs, the per-step records, and the final params as the model runs them
    (the stored bf16 params, or the merged adapter weights)."""

    state: TrainState
    frozen: Frozen
    logs: list[dict[str, float]]
    params: dict


def _config_json(cfg: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True, default=str)


def fit(
    cfg: TrainConfig,
    mcfg: LlamaConfig,
    task: Any,
    params0: dict,
    *,
    out: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    checkpoint_steps: Iterable[int] = (),
    callback: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train from `params0` (float32 or bf16 full params) and return the final state and the logs.

    Args:
      cfg: the run (algorithm, optimizer, batch, clip, KL, mask/adapter, seed).
      mcfg: the model's shape.
      task: a `CharTask` or `TextTask`.
      params0: initial full params (the base; its bf16 rounding is step 0 and the KL reference).
      out: folder for `log.jsonl`, `train_config.json` and checkpoints (None: keep nothing on disk).
      checkpoint_every: also checkpoint every this many steps (0: only step 0 and the last step).
      checkpoint_steps: extra steps to checkpoint.
      callback: called with each record (e.g. a progress bar).
    """
    fns, step_jit, rollout_jit, update_jit = _compiled(dataclasses.replace(cfg, seed=0), mcfg, task)
    k_init, k_run = jax.random.split(jax.random.key(cfg.seed))
    state, frozen = fns.init(params0, k_init)
    wanted = set(checkpoint_steps) | {cfg.steps}
    if checkpoint_every > 0:
        wanted |= set(range(checkpoint_every, cfg.steps + 1, checkpoint_every))
    log = None
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(_config_json(cfg))
        _save(out, 0, fns, state, frozen, mcfg)
        log = open(out / LOG_FILE, "w")
    logs: list[dict[str, float]] = []
    try:
        for t in range(cfg.steps):
            key = jax.random.fold_in(k_run, t)
            start = time.perf_counter()
            if step_jit is not None:
                state, metrics = step_jit(state, frozen, key)
            else:
                batch, k_upd = _host_batch(cfg, task, fns, rollout_jit, state, frozen, key)
                state, metrics = update_jit(state, frozen, batch, k_upd)
            record = {"step": t + 1, **host_metrics(metrics)}
            record["seconds"] = time.perf_counter() - start
            logs.append(record)
            if log is not None:
                log.write(json.dumps(record) + "\n")
                log.flush()
                if t + 1 in wanted:
                    _save(out, t + 1, fns, state, frozen, mcfg)
            if callback is not None:
                callback(record)
    finally:
        if log is not None:
            log.close()
    return FitResult(state, frozen, logs, fns.effective(state, frozen))


@functools.lru_cache(maxsize=8)
def _compiled(cfg: TrainConfig, mcfg: LlamaConfig, task: Any):
    """`make_train` and its jitted step functions, cached per (config, model, task): a second `fit` with the same
    configuration (another seed, or the same one to check determinism) reuses the compiled code."""
    fns = make_train(cfg, mcfg, task)
    step_jit = None if fns.step is None else jax.jit(fns.step, donate_argnums=0)
    return fns, step_jit, jax.jit(fns.rollout), jax.jit(fns.update, donate_argnums=0)


def _host_batch(cfg, task, fns, rollout_jit, state, frozen, key):
    """The same sampling as `make_train(...).step`, with the verifier on the host (text tasks)."""
    k_prob, k_roll, k_upd = jax.random.split(key, 3)
    problems = task.sample(k_prob, cfg.prompts_per_step)
    problems = jax.tree.map(lambda x: jnp.repeat(x, cfg.group, axis=0), problems)
    prompts, pmask = task.prompts(problems)
    out = rollout_jit(state, frozen, jnp.asarray(prompts), jnp.asarray(pmask), k_roll)
    rewards, correct = task.score(problems, np.asarray(out.tokens), np.asarray(out.mask))
    targets, tmask = task.references(problems)
    batch = Batch(
        *(
            jnp.asarray(x)
            for x in (prompts, pmask, out.tokens, out.mask, rewards, correct, targets, tmask)
        )
    )
    return batch, k_upd


def _save(out: Path, step: int, fns, state, frozen, mcfg: LlamaConfig) -> None:
    params = fns.effective(state, frozen)
    save_checkpoint(step_dir(out, step), params, mcfg, metadata={"step": str(step)})


def evaluate(
    params: dict,
    mcfg: LlamaConfig,
    task: Any,
    problems,
    key: jax.Array,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    batch_size: int = 256,
) -> dict[str, float]:
    """Mean reward and accuracy of `params` on fixed `problems` (greedy decoding by default), in batches."""
    from threegate.lm.sample import generate

    a, b = np.asarray(problems.a), np.asarray(problems.b)
    rewards, correct = [], []
    for i, start in enumerate(range(0, a.shape[0], batch_size)):
        sub = type(problems)(
            jnp.asarray(a[start : start + batch_size]), jnp.asarray(b[start : start + batch_size])
        )
        prompts, pmask = task.prompts(sub)
        out = generate(
            params,
            mcfg,
            jnp.asarray(prompts),
            jnp.asarray(pmask),
            jax.random.fold_in(key, i),
            max_new_tokens=task.answer_len,
            temperature=temperature,
            top_p=1.0,
            greedy=greedy,
            eos_id=task.eos_id,
        )
        r, c = task.score(sub, out.tokens, out.mask)
        rewards.append(np.asarray(r))
        correct.append(np.asarray(c))
    return {
        "reward": float(np.concatenate(rewards).mean()),
        "accuracy": float(np.concatenate(correct).mean()),
    }
