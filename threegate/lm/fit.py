"""The host driver of `threegate.lm.train`: the loop that calls the jitted step, logs, checkpoints and resumes.

`fit` runs `TrainConfig.steps` steps of `make_train(...)`: a fused jitted `step` for jnp tasks (`CharTask`), or a
jitted rollout → host verifier → jitted update for text tasks (SmolLM2). Per step it produces one record (`step`,
`reward`, `accuracy`, `kl_k1`, `kl_k3`, `kl_exact`, `entropy`, `loss`, `grad_norm`, `clip_frac`, `sparsity`,
`sparsity_linear`, `kept_frac`, `response_len`, `gen_tokens`, `seconds`, and on the host path `rollout_seconds`,
`update_seconds`, `sampled_groups`), appended to `out/log.jsonl` (flushed per step) and handed to `callback`.

Checkpoints (bf16, HF names) go to `out/step_XXXXXX/`: step 0 (the base, `bf16(params0)`) first, then the steps
asked for and the last step. With each checkpoint the full training state (float32 master, optimizer moments, step)
is written to `out/resume/`, replacing the previous one; `fit(..., resume=True)` continues from it, and since every
step's randomness is `fold_in(key, step)`, an interrupted and resumed run gives the same records as one run.
A sparse run (`cfg.mask`) also writes its fixed trainable-entry masks, bit-packed, to `out/masks.npz` (`load_masks`).

DAPO's dynamic sampling refills the batch by one rule on both paths (`threegate.lm.batch`, App. C.1): rounds of
`prompts_per_step` prompts until that many groups with mixed rewards are collected or `dapo_max_rounds` rounds;
all-equal groups fill the rest and carry zero weight.

Gate checks (`gates_steps`): at those steps the update is also measured by `threegate.lm.gates` — Gate III exactly
on every stored tensor, Gate I on the step's batch — and one record per checked step goes to `out/gates.jsonl`.
"""

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from threegate.lm.batch import Batch, host_sample_batch
from threegate.lm.config import LlamaConfig
from threegate.lm.run_folder import (
    GATES_FILE,
    LOG_FILE,
    MASKS_FILE,
    RunFolder,
    load_masks,
    save_masks,
)
from threegate.lm.tasks import Task
from threegate.lm.train import (
    Frozen,
    Metrics,
    Params,
    TrainConfig,
    TrainFns,
    TrainState,
    host_metrics,
    make_train,
)

__all__ = [
    "GATES_FILE",
    "LOG_FILE",
    "MASKS_FILE",
    "FitResult",
    "evaluate",
    "fit",
    "load_masks",
    "run_keys",
    "save_masks",
    "step_record",
]


class FitResult(NamedTuple):
    """Final state, the frozen inputs, the per-step records, and the final params as the model runs them
    (the stored bf16 params, or the merged adapter weights)."""

    state: TrainState
    frozen: Frozen
    logs: list[dict[str, float]]
    params: Params


def run_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """`(k_init, k_run)` of a run with `seed`; step `t` (0-based) uses `fold_in(k_run, t)`. Every driver (`fit`,
    `fit_batched`, `train_seeds`) keeps this schedule, so a run is the same run whichever driver made it."""
    k_init, k_run = jax.random.split(jax.random.key(seed))
    return k_init, k_run


def step_record(
    t: int, metrics: Mapping[str, ArrayLike], timing: dict[str, float] | None = None
) -> dict[str, float | int]:
    """The log record of step `t` (0-based): `step` = t + 1, the metrics as floats, the host timings."""
    return {"step": t + 1, **host_metrics(metrics), **(timing or {})}


def checkpoint_schedule(steps: int, every: int, extra: Iterable[int]) -> set[int]:
    """The steps (1-based) after which a checkpoint is written: `extra`, every `every`-th (0: none), the last."""
    wanted = set(extra) | {steps}
    if every > 0:
        wanted |= set(range(every, steps + 1, every))
    return wanted


class _Stepper:
    """One step of a run, the strategy chosen once: the fused jitted step (jnp tasks), or the jitted rollout, the
    host verifier (`host_sample_batch`) and the jitted update (text tasks). `keep_batch` (gate-checked steps)
    runs the fused step as its two halves so that the batch is returned."""

    def __init__(self, cfg: TrainConfig, mcfg: LlamaConfig, task: Task):
        self.cfg, self.task = cfg, task
        self.fns, self._step, self._rollout, self._update, self._sample = _compiled(
            dataclasses.replace(cfg, seed=0), mcfg, task
        )

    def __call__(
        self, state: TrainState, frozen: Frozen, key: jax.Array, *, keep_batch: bool
    ) -> tuple[TrainState, Metrics, Batch | None, dict[str, float]]:
        if self._step is not None and not keep_batch:
            state, metrics = self._step(state, frozen, key)
            return state, metrics, None, {}
        if self._step is not None:
            batch, k_upd = self._sample(state, frozen, key)
            state, metrics = self._update(state, frozen, batch, k_upd)
            return state, metrics, batch, {}
        cfg = self.cfg
        roll = functools.partial(self._rollout, state, frozen)
        batch, k_upd, timing = host_sample_batch(
            self.task,
            roll,
            key,
            prompts=cfg.prompts_per_step,
            group=cfg.group,
            refill_rounds=cfg.refill_rounds,
        )
        t_upd = time.perf_counter()
        state, metrics = self._update(state, frozen, batch, k_upd)
        jax.block_until_ready(state.stored)
        return state, metrics, batch, {**timing, "update_seconds": time.perf_counter() - t_upd}


def fit(
    cfg: TrainConfig,
    mcfg: LlamaConfig,
    task: Task,
    params0: Params,
    *,
    out: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    checkpoint_steps: Iterable[int] = (),
    callback: Callable[[dict[str, float]], None] | None = None,
    resume: bool = False,
    gates_steps: Iterable[int] = (),
) -> FitResult:
    """Train from `params0` (float32 or bf16 full params) and return the final state and the logs.

    Args:
      cfg: the run (algorithm, optimizer, batch, clip, KL, mask/adapter, seed).
      mcfg: the model's shape.
      task: a `CharTask` or `TextTask`.
      params0: initial full params; the base is their bf16 rounding (step 0, the KL reference, the master's start).
      out: folder for `log.jsonl`, `train_config.json`, checkpoints and the resume state (None: nothing on disk;
        `threegate.lm.run_folder` has the layout).
      checkpoint_every: also checkpoint every this many steps (0: only step 0, `checkpoint_steps` and the last).
      checkpoint_steps: extra steps to checkpoint.
      callback: called with each record (e.g. a progress bar).
      resume: continue from `out/resume/` (same config required); a run with no saved state starts afresh.
      gates_steps: steps (1-based) whose update is gate-checked into `out/gates.jsonl` (full fine-tuning only).
    """
    gates_steps = set(gates_steps)
    if gates_steps and cfg.adapter is not None:
        raise ValueError("gate checks need full fine-tuning (no adapter)")
    stepper = _Stepper(cfg, mcfg, task)
    fns = stepper.fns
    k_init, k_run = run_keys(cfg.seed)
    state, frozen = fns.init(params0, k_init)
    wanted = checkpoint_schedule(cfg.steps, checkpoint_every, checkpoint_steps)
    folder = None if out is None else RunFolder(out, cfg, mcfg, gates=bool(gates_steps))
    start, logs = 0, []
    if folder is not None:
        state, start, logs = folder.open(
            state, fns.effective(state, frozen), frozen.masks, resume=resume
        )
    try:
        for t in range(start, cfg.steps):
            t0 = time.perf_counter()
            check = (t + 1) in gates_steps
            before = (_copy(state.stored), _copy(state.master)) if check else None
            state, metrics, batch, timing = stepper(
                state, frozen, jax.random.fold_in(k_run, t), keep_batch=check
            )
            record = step_record(t, metrics, timing)
            record["seconds"] = time.perf_counter() - t0
            logs.append(record)
            if folder is not None:
                if check:
                    folder.gates(_gates(cfg, mcfg, t + 1, before, state, batch))
                folder.log(record)
                if t + 1 in wanted:
                    folder.checkpoint(t + 1, fns.effective(state, frozen), state)
            if callback is not None:
                callback(record)
    finally:
        if folder is not None:
            folder.close()
    return FitResult(state, frozen, logs, fns.effective(state, frozen))


def _copy(tree):
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _gates(
    cfg: TrainConfig, mcfg: LlamaConfig, step: int, before, state: TrainState, batch: Batch
) -> dict:
    """Gate III on every stored tensor and Gate I on the step's batch, at the algorithm's own temperature and
    clip range (teacher-forced algorithms: temperature 1, no clip)."""
    from threegate.lm.gates import gate1_record, gate3_record

    stored_before, master_before = before
    algo = cfg.algorithm
    return {
        "step": step,
        "gate3": gate3_record(stored_before, state.stored, master_before, state.master),
        "gate1": gate1_record(
            stored_before,
            state.stored,
            mcfg,
            batch,
            temperature=cfg.temperature if algo.tempered else 1.0,
            eps_low=cfg.eps_low if algo.uses_ratio else None,
            eps_high=cfg.clip_high if algo.uses_ratio else None,
        ),
    }


@functools.lru_cache(maxsize=8)
def _compiled(cfg: TrainConfig, mcfg: LlamaConfig, task: Task):
    """`make_train` and its jitted step functions, cached per (config, model, task): a second `fit` with the same
    configuration (another seed, or the same one to check determinism) reuses the compiled code."""
    fns: TrainFns = make_train(cfg, mcfg, task)
    step_jit = None if fns.step is None else jax.jit(fns.step, donate_argnums=0)
    sample_jit = None if fns.sample_batch is None else jax.jit(fns.sample_batch)
    return fns, step_jit, jax.jit(fns.rollout), jax.jit(fns.update, donate_argnums=0), sample_jit


def evaluate(
    params: Params,
    mcfg: LlamaConfig,
    task: Task,
    problems,
    key: jax.Array,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    batch_size: int = 256,
) -> dict[str, float]:
    """Mean reward and accuracy of `params` on fixed `problems` (greedy decoding by default), in batches
    (`threegate.lm.evaluation` has the avg@k evaluation with confidence intervals)."""
    from threegate.lm.evaluation import Pass, score_passes

    [(correct, _)] = score_passes(
        params, mcfg, task, problems, [Pass(key, greedy, temperature)], batch_size=batch_size
    )
    reward = np.where(correct, task.reward_correct, task.reward_wrong)
    return {"reward": float(reward.mean()), "accuracy": float(correct.mean())}
