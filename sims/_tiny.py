"""The tiny "pretrained" model that simulations S4–S7 start from (digest §9.3 S4).

A 2-layer Llama from scratch, supervised on a character-level verifiable task (`CharTask`) until it is right
part of the time, so that RLVR has mixed rewards to learn from — the role the instruct model plays in the paper.
Cached per (size, seed) for the life of the process: S4–S7 in one `make run` pretrain once.

The task is one-digit addition (`a+b=` → two answer digits then EOS, 100 problems), not modular addition:
modadd is a grokking-type task, and within a budget of seconds a from-scratch model only learns its answer
format (an independent float32 optax loop over the same forward plateaus at $\\tfrac12\\ln p$ per token, i.e.
chance on the digit), so its greedy accuracy stays at or below chance and RL groups have no mixed rewards.
Addition has structure the model picks up fast (carry digit, then units digit), and reaches the wanted
"right part of the time" (greedy accuracy ~0.5 at quick size) in tens of steps.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from threegate.lm.config import LlamaConfig
from threegate.lm.fit import evaluate, fit
from threegate.lm.model import init_params
from threegate.lm.tasks import CHAR_VOCAB, CharTask
from threegate.lm.train import TrainConfig

__all__ = ["TINY_SIZES", "TinyBase", "TinySize", "pretrained"]


@dataclasses.dataclass(frozen=True)
class TinySize:
    """Model and pretraining budget of one simulation size."""

    d_model: int
    n_layers: int
    n_digits: int
    sft_steps: int
    sft_lr: float
    prompts_per_step: int


#: quick: seconds on a 2-core CPU; default: a minute or so. Both give a base that is right about half the time
#: (greedy, over all 100 problems), so RL groups have mixed rewards.
TINY_SIZES = {
    "quick": TinySize(
        d_model=32, n_layers=2, n_digits=1, sft_steps=60, sft_lr=3e-3, prompts_per_step=32
    ),
    "default": TinySize(
        d_model=64, n_layers=2, n_digits=1, sft_steps=100, sft_lr=3e-3, prompts_per_step=32
    ),
}


class TinyBase(NamedTuple):
    """A pretrained tiny model: its shape, task, bf16-representable float32 params and greedy accuracy."""

    mcfg: LlamaConfig
    task: CharTask
    params: dict
    greedy_accuracy: float


@functools.lru_cache(maxsize=4)
def pretrained(size: str = "quick", seed: int = 0) -> TinyBase:
    """SFT from scratch on one-digit addition, then round to bf16 once (the base is a bf16 checkpoint, as in
    the paper): the returned float32 params are exactly bf16-representable."""
    if size not in TINY_SIZES:
        raise ValueError(f"size must be one of {tuple(TINY_SIZES)}, got {size!r}")
    s = TINY_SIZES[size]
    task = CharTask("addition", n_digits=s.n_digits)
    mcfg = LlamaConfig.tiny(CHAR_VOCAB, d_model=s.d_model, n_layers=s.n_layers, max_seq_len=32)
    params0 = init_params(mcfg, jax.random.key(seed))
    cfg = TrainConfig(
        algo="sft",
        steps=s.sft_steps,
        lr=s.sft_lr,
        prompts_per_step=s.prompts_per_step,
        minibatches=4,
        seed=seed,
    )
    res = fit(cfg, mcfg, task, params0)
    # the stored params are already bf16; round explicitly anyway, so the base is bf16 whatever `fit` returns
    params = jax.tree.map(
        lambda x: np.asarray(jnp.asarray(x).astype(jnp.bfloat16).astype(jnp.float32)), res.params
    )
    acc = evaluate(params, mcfg, task, task.all_problems(), jax.random.key(seed))["accuracy"]
    return TinyBase(mcfg, task, params, acc)
