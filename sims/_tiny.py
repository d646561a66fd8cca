"""The tiny "pretrained" model that simulations S4–S7 start from (digest §9.3 S4).

A 2-layer Llama from scratch, supervised on a character-level verifiable task (`CharTask`) until it is right
part of the time, so that RLVR has mixed rewards to learn from — the role the instruct model plays in the paper.
Cached per (size, seed) for the life of the process: S4–S7 in one `make run` pretrain once.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
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
    modulus: int
    sft_steps: int
    sft_lr: float
    prompts_per_step: int


#: quick: seconds on a 2-core CPU; default: a minute or so.
TINY_SIZES = {
    "quick": TinySize(
        d_model=32, n_layers=2, modulus=7, sft_steps=40, sft_lr=1e-2, prompts_per_step=32
    ),
    "default": TinySize(
        d_model=64, n_layers=2, modulus=11, sft_steps=80, sft_lr=1e-2, prompts_per_step=32
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
    """SFT from scratch on modadd, then round to bf16 once (the base is a bf16 checkpoint, as in the paper)."""
    if size not in TINY_SIZES:
        raise ValueError(f"size must be one of {tuple(TINY_SIZES)}, got {size!r}")
    s = TINY_SIZES[size]
    task = CharTask("modadd", modulus=s.modulus)
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
    params = jax.tree.map(lambda x: np.asarray(x.astype(np.float32)), res.params)
    acc = evaluate(params, mcfg, task, task.all_problems(), jax.random.key(seed))["accuracy"]
    return TinyBase(mcfg, task, params, acc)
