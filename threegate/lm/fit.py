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

DAPO's dynamic sampling on the host path refills the batch as the paper's runs did (App. C.1): it draws rounds of
`prompts_per_step` prompts, keeps the groups whose rewards are not all equal, and stops when `prompts_per_step`
such groups are collected or after `dapo_max_rounds` rounds (then all-equal groups fill the rest and carry zero
weight). On the fused jnp path it oversamples `dapo_max_rounds`·P prompts in one rollout and keeps mixed groups
first (`select_groups`).

Gate checks (`gates_steps`): at those steps the update is also measured by `threegate.lm.gates` — Gate III exactly
on every stored tensor, Gate I on the step's batch — and one record per checked step goes to `out/gates.jsonl`.
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

from threegate.errors import CheckpointError
from threegate.lm.checkpoint import save_checkpoint, step_dir
from threegate.lm.config import LlamaConfig
from threegate.lm.train import (
    STORED_DTYPE,
    Batch,
    Frozen,
    TrainConfig,
    TrainState,
    host_metrics,
    make_train,
    select_groups,
)

__all__ = [
    "GATES_FILE",
    "LOG_FILE",
    "MASKS_FILE",
    "FitResult",
    "evaluate",
    "fit",
    "load_masks",
    "save_masks",
]

LOG_FILE = "log.jsonl"
GATES_FILE = "gates.jsonl"
RESUME_DIR = "resume"
#: the trainable-entry masks of a sparse run (`save_masks`), written at step 0
MASKS_FILE = "masks.npz"


class FitResult(NamedTuple):
    """Final state, the frozen inputs, the per-step records, and the final params as the model runs them
    (the stored bf16 params, or the merged adapter weights)."""

    state: TrainState
    frozen: Frozen
    logs: list[dict[str, float]]
    params: dict


def _config_json(cfg: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True, default=str)


def _same_config(text: str, cfg: TrainConfig) -> bool:
    """Whether a saved `train_config.json` describes `cfg`; fields it lacks (added to `TrainConfig` after it was
    written) count as their defaults, which is what the run that wrote it did."""
    saved = json.loads(text)
    defaults = json.loads(_config_json(TrainConfig()))
    return {**defaults, **saved} == json.loads(_config_json(cfg))


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
    resume: bool = False,
    gates_steps: Iterable[int] = (),
) -> FitResult:
    """Train from `params0` (float32 or bf16 full params) and return the final state and the logs.

    Args:
      cfg: the run (algorithm, optimizer, batch, clip, KL, mask/adapter, seed).
      mcfg: the model's shape.
      task: a `CharTask` or `TextTask`.
      params0: initial full params; the base is their bf16 rounding (step 0, the KL reference, the master's start).
      out: folder for `log.jsonl`, `train_config.json`, checkpoints and the resume state (None: nothing on disk).
      checkpoint_every: also checkpoint every this many steps (0: only step 0, `checkpoint_steps` and the last).
      checkpoint_steps: extra steps to checkpoint.
      callback: called with each record (e.g. a progress bar).
      resume: continue from `out/resume/` (same config required); a run with no saved state starts afresh.
      gates_steps: steps (1-based) whose update is gate-checked into `out/gates.jsonl` (full fine-tuning only).
    """
    fns, step_jit, rollout_jit, update_jit, batch_jit = _compiled(
        dataclasses.replace(cfg, seed=0), mcfg, task
    )
    k_init, k_run = jax.random.split(jax.random.key(cfg.seed))
    state, frozen = fns.init(params0, k_init)
    wanted = set(checkpoint_steps) | {cfg.steps}
    if checkpoint_every > 0:
        wanted |= set(range(checkpoint_every, cfg.steps + 1, checkpoint_every))
    gates_steps = set(gates_steps)
    if gates_steps and cfg.adapter is not None:
        raise ValueError("gate checks need full fine-tuning (no adapter)")
    log = gates_log = None
    start_step = 0
    logs: list[dict[str, float]] = []
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        cfg_file = out / "train_config.json"
        if resume and cfg_file.is_file() and not _same_config(cfg_file.read_text(), cfg):
            raise ValueError(
                f"{out}: --resume with a different configuration than train_config.json"
            )
        saved = _load_resume(out, state) if resume else None
        if saved is not None:
            state, start_step = saved
            logs = _truncate_jsonl(out / LOG_FILE, start_step)
            _truncate_jsonl(out / GATES_FILE, start_step)
        else:
            cfg_file.write_text(_config_json(cfg))
            _save(out, 0, fns, state, frozen, mcfg)
            if cfg.mask is not None and frozen.masks is not None:
                save_masks(out / MASKS_FILE, frozen.masks)
            for f in (LOG_FILE, GATES_FILE):
                (out / f).write_text("")
        log = open(out / LOG_FILE, "a")
        gates_log = open(out / GATES_FILE, "a") if gates_steps else None
    try:
        for t in range(start_step, cfg.steps):
            key = jax.random.fold_in(k_run, t)
            start = time.perf_counter()
            check = (t + 1) in gates_steps
            if check:
                before = (_copy(state.stored), _copy(state.master))
            if step_jit is not None and not check:
                state, metrics = step_jit(state, frozen, key)
                batch, timing = None, {}
            elif (
                step_jit is not None
            ):  # the same step in two halves, to keep its batch for the gates
                batch, k_upd = batch_jit(state, frozen, key)
                state, metrics = update_jit(state, frozen, batch, k_upd)
                timing = {}
            else:
                batch, k_upd, timing = _host_batch(cfg, task, fns, rollout_jit, state, frozen, key)
                t_upd = time.perf_counter()
                state, metrics = update_jit(state, frozen, batch, k_upd)
                jax.block_until_ready(state.stored)
                timing["update_seconds"] = time.perf_counter() - t_upd
            record = {"step": t + 1, **host_metrics(metrics), **timing}
            record["seconds"] = time.perf_counter() - start
            logs.append(record)
            if check and batch is not None and gates_log is not None:
                gates_log.write(json.dumps(_gates(cfg, mcfg, t + 1, before, state, batch)) + "\n")
                gates_log.flush()
            if log is not None:
                log.write(json.dumps(record) + "\n")
                log.flush()
                if t + 1 in wanted:
                    _save(out, t + 1, fns, state, frozen, mcfg)
                    _save_resume(out, t + 1, state)
            if callback is not None:
                callback(record)
    finally:
        for f in (log, gates_log):
            if f is not None:
                f.close()
    return FitResult(state, frozen, logs, fns.effective(state, frozen))


def _copy(tree):
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _gates(cfg, mcfg, step, before, state, batch) -> dict:
    from threegate.lm.gates import gate1_record, gate3_record

    stored_before, master_before = before
    rl = cfg.algo != "sft"
    return {
        "step": step,
        "gate3": gate3_record(stored_before, state.stored, master_before, state.master),
        "gate1": gate1_record(
            stored_before,
            state.stored,
            mcfg,
            batch,
            temperature=cfg.temperature if rl else 1.0,
            eps_low=cfg.eps_low if rl else None,
            eps_high=cfg.clip_high if rl else None,
        ),
    }


@functools.lru_cache(maxsize=8)
def _compiled(cfg: TrainConfig, mcfg: LlamaConfig, task: Any):
    """`make_train` and its jitted step functions, cached per (config, model, task): a second `fit` with the same
    configuration (another seed, or the same one to check determinism) reuses the compiled code."""
    fns = make_train(cfg, mcfg, task)
    step_jit = None if fns.step is None else jax.jit(fns.step, donate_argnums=0)
    batch_jit = None if fns.sample_batch is None else jax.jit(fns.sample_batch)
    return fns, step_jit, jax.jit(fns.rollout), jax.jit(fns.update, donate_argnums=0), batch_jit


def _host_round(cfg, task, fns, rollout_jit, state, frozen, k_prob, k_roll):
    problems = task.sample(k_prob, cfg.prompts_per_step)
    problems = jax.tree.map(lambda x: jnp.repeat(x, cfg.group, axis=0), problems)
    prompts, pmask = task.prompts(problems)
    out = rollout_jit(state, frozen, jnp.asarray(prompts), jnp.asarray(pmask), k_roll)
    tokens, mask = np.asarray(out.tokens), np.asarray(out.mask)
    rewards, correct = task.score(problems, tokens, mask)
    targets, tmask = task.references(problems)
    return [np.asarray(x) for x in (prompts, pmask, tokens, mask, rewards, correct, targets, tmask)]


def _host_batch(cfg, task, fns, rollout_jit, state, frozen, key):
    """The same sampling as `make_train(...).step`, with the verifier on the host (text tasks); DAPO refills."""
    k_prob, k_roll, k_upd = jax.random.split(key, 3)
    t0 = time.perf_counter()
    g, p = cfg.group, cfg.prompts_per_step
    refill = cfg.algo == "dapo" and cfg.dynamic_sampling
    rounds = cfg.dapo_max_rounds if refill else 1
    parts = []
    for r in range(rounds):
        kp, kr = (
            (k_prob, k_roll)
            if r == 0
            else (jax.random.fold_in(k_prob, r), jax.random.fold_in(k_roll, r))
        )
        parts.append(_host_round(cfg, task, fns, rollout_jit, state, frozen, kp, kr))
        if refill:
            rewards = np.concatenate([x[4] for x in parts]).reshape(-1, g)
            if int(np.sum(np.any(rewards != rewards[:, :1], axis=1))) >= p:
                break
    fields = [np.concatenate(xs) for xs in zip(*parts, strict=True)]
    sampled = fields[0].shape[0] // g
    if sampled > p:
        keep = np.asarray(select_groups(jnp.asarray(fields[4].reshape(-1, g)), p))
        rows = (keep[:, None] * g + np.arange(g)[None, :]).reshape(-1)
        fields = [x[rows] for x in fields]
    batch = Batch(*(jnp.asarray(x) for x in fields))
    timing = {"rollout_seconds": time.perf_counter() - t0, "sampled_groups": float(sampled)}
    return batch, k_upd, timing


def _save(out: Path, step: int, fns, state, frozen, mcfg: LlamaConfig) -> None:
    params = fns.effective(state, frozen)
    save_checkpoint(step_dir(out, step), params, mcfg, metadata={"step": str(step)})


def save_masks(path: Path, masks: dict) -> None:
    """The trainable-entry masks of a sparse run, bit-packed (`np.packbits`, row-major) with their shapes."""
    arrays = {}
    for i, (_, m) in enumerate(sorted(masks.items())):
        m = np.asarray(m, bool)
        arrays[f"bits_{i:04d}"] = np.packbits(m.ravel())
        arrays[f"shape_{i:04d}"] = np.asarray(m.shape, np.int64)
    names = np.asarray(sorted(masks), dtype=np.str_)
    np.savez_compressed(path, names=names, **arrays)


def load_masks(path: Path) -> dict[str, np.ndarray]:
    """`save_masks`'s file back as `{name: bool [m, n]}`."""
    with np.load(path) as z:
        out = {}
        for i, name in enumerate(z["names"].tolist()):
            shape = tuple(int(x) for x in z[f"shape_{i:04d}"])
            bits = np.unpackbits(z[f"bits_{i:04d}"], count=int(np.prod(shape)))
            out[name] = bits.astype(bool).reshape(shape)
    return out


def _save_resume(out: Path, step: int, state: TrainState) -> None:
    """The full training state at `step` (master, optimizer, step) as safetensors; the pointer is swapped last."""
    from safetensors.numpy import save_file

    folder = out / RESUME_DIR
    folder.mkdir(exist_ok=True)
    leaves = jax.tree.leaves((state.master, state.opt_state))
    name = f"state_{step:06d}.safetensors"
    save_file({f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}, folder / name)
    tmp = folder / "latest.json.tmp"
    tmp.write_text(json.dumps({"step": step, "file": name, "leaves": len(leaves)}))
    os.replace(tmp, folder / "latest.json")
    for old in folder.glob("state_*.safetensors"):
        if old.name != name:
            old.unlink()


def _load_resume(out: Path, state: TrainState) -> tuple[TrainState, int] | None:
    """(state, step) from `out/resume/`, shaped like `state`; None when nothing was saved."""
    from safetensors.numpy import load_file

    pointer = out / RESUME_DIR / "latest.json"
    if not pointer.is_file():
        return None
    meta = json.loads(pointer.read_text())
    leaves, treedef = jax.tree.flatten((state.master, state.opt_state))
    stored = load_file(out / RESUME_DIR / meta["file"])
    if len(stored) != len(leaves):
        raise CheckpointError(
            f"{pointer}: saved state has {len(stored)} leaves, this run {len(leaves)}"
        )
    new = []
    for i, like in enumerate(leaves):
        x = stored[f"leaf_{i:05d}"]
        if x.shape != like.shape or x.dtype != like.dtype:
            raise CheckpointError(
                f"{pointer}: leaf {i} is {x.dtype}{x.shape}, expected {like.dtype}{like.shape}"
            )
        new.append(jnp.asarray(x))
    master, opt_state = jax.tree.unflatten(treedef, new)
    step = int(meta["step"])
    stored = jax.tree.map(lambda x: x.astype(STORED_DTYPE), master)
    return TrainState(master, stored, opt_state, jnp.asarray(step, jnp.int32)), step


def _truncate_jsonl(path: Path, step: int) -> list[dict]:
    """Keep the records of `path` with `step` ≤ `step` (rewritten in place); return them."""
    if not path.is_file():
        return []
    keep = []
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("step", 0) <= step:
                keep.append(rec)
    path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    return keep


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
    """Mean reward and accuracy of `params` on fixed `problems` (greedy decoding by default), in batches
    (`threegate.lm.evaluation` has the avg@k evaluation with confidence intervals)."""
    from threegate.lm.evaluation import Pass, score_passes

    [(correct, _)] = score_passes(
        params, mcfg, task, problems, [Pass(key, greedy, temperature)], batch_size=batch_size
    )
    reward = np.where(correct, task.reward_correct, task.reward_wrong)
    return {"reward": float(reward.mean()), "accuracy": float(correct.mean())}
