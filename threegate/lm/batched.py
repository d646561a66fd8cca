"""Several runs of one training step at once: the lab's `step` vmapped over runs that differ only in data.

Runs that share a `TrainConfig` up to their *arrays* — the seed, the sparse mask (`Frozen.masks`), the adapter's
initialisation (LoRA vs PiSSA: same shapes, different `TrainState.master` and `Frozen.base`) — share one compiled
step: `jit(vmap(step))` over the stacked `(TrainState, Frozen, key)`. Each run keeps the key schedule of `fit`
(`threegate.lm.fit.run_keys`), so run `r` is the run `fit` would make with
that seed and those arrays, up to the rounding of batched matmuls.

Shapes: `R` runs; a stacked pytree has a leading axis `R` on every leaf.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from threegate.lm.config import LlamaConfig
from threegate.lm.fit import run_keys, step_record
from threegate.lm.tasks import Task
from threegate.lm.train import Frozen, TrainConfig, TrainState, make_train

__all__ = ["BatchedResult", "fit_batched", "init_run", "stack", "unstack"]


def stack(trees: Sequence[Any]) -> Any:
    """Stack same-structure pytrees along a new leading axis `R`."""
    if not trees:
        raise ValueError("need at least one pytree to stack")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, i: int) -> Any:
    """Run `i` of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


def init_run(
    cfg: TrainConfig, mcfg: LlamaConfig, task: Task, params0: dict, seed: int
) -> tuple[TrainState, Frozen]:
    """`make_train(cfg, ...).init` with `fit`'s key for `seed` (masks and adapters as `fit` would build them)."""
    k_init, _ = run_keys(seed)
    params0 = {k: jnp.asarray(v) for k, v in params0.items()}
    return make_train(cfg, mcfg, task).init(params0, k_init)


class BatchedResult(NamedTuple):
    """Final stacked state and frozen inputs, per-run logs (`logs[r][t]`, `fit`'s records without `seconds`) and
    per-run final params as the model runs them (bf16 stored params, or merged adapter weights)."""

    state: TrainState
    frozen: Frozen
    logs: list[list[dict[str, float]]]
    params: list[dict]


def fit_batched(
    cfg: TrainConfig,
    mcfg: LlamaConfig,
    task: Task,
    inits: Sequence[tuple[TrainState, Frozen]],
    seeds: Sequence[int],
    *,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> BatchedResult:
    """Train `len(inits)` runs for `cfg.steps` steps with one compiled, vmapped step.

    Args:
      cfg: the configuration whose `make_train(...).step` every run uses (jnp tasks only). Its `mask` must be set
        (any kind) when the runs carry masks, and its `adapter` must have the runs' shapes and scale.
      mcfg, task: the model shape and a `CharTask`.
      inits: per run `(TrainState, Frozen)`, e.g. from `init_run` with `Frozen.masks` replaced.
      seeds: per run, the seed whose `fit` key schedule the run follows.
      callback: called after each step with `(run index, record)`.
    """
    if len(inits) != len(seeds) or not inits:
        raise ValueError(f"need one seed per init, got {len(inits)} inits and {len(seeds)} seeds")
    fns = make_train(cfg, mcfg, task)
    if fns.step is None:
        raise ValueError("fit_batched needs a jnp task (CharTask)")
    state = stack([s for s, _ in inits])
    frozen = stack([f for _, f in inits])
    k_runs = jnp.stack([run_keys(int(s))[1] for s in seeds])
    step = jax.jit(jax.vmap(fns.step), donate_argnums=0)
    logs: list[list[dict[str, float]]] = [[] for _ in inits]
    for t in range(cfg.steps):
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(k_runs, t)
        state, metrics = step(state, frozen, keys)
        host = jax.tree.map(np.asarray, metrics)
        for r in range(len(inits)):
            record = step_record(t, {k: v[r] for k, v in host.items()})
            logs[r].append(record)
            if callback is not None:
                callback(r, record)
    effective = jax.jit(jax.vmap(fns.effective))(state, frozen)
    params = [jax.tree.map(np.asarray, unstack(effective, r)) for r in range(len(inits))]
    return BatchedResult(state, frozen, logs, params)
