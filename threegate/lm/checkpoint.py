"""Training checkpoints: bf16 safetensors under Hugging Face Llama names, plus `config.json`.

A checkpoint is a folder `DIR/step_XXXXXX/` holding `model.safetensors` (or HF shards + index, via
`threegate.checkpoints.save_safetensors`) and `config.json` (`LlamaConfig.to_json()`), so `threegate compare`
and Hugging Face both read it. Tensors are written exactly as given (bf16 stays bf16 bit for bit); loading returns
the same bits, so a save/load round trip is bitwise.
"""

import os
from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from jax import Array

from threegate.errors import CheckpointError
from threegate.lm.config import LlamaConfig

__all__ = ["CONFIG_FILE", "load_checkpoint", "save_checkpoint", "step_dir"]

CONFIG_FILE = "config.json"


def step_dir(out: str | os.PathLike[str], step: int) -> Path:
    """`out/step_XXXXXX` (six digits, so folders sort by step)."""
    return Path(out) / f"step_{step:06d}"


def save_checkpoint(
    path: str | os.PathLike[str],
    params: Mapping[str, Array | np.ndarray],
    cfg: LlamaConfig,
    *,
    dtype=ml_dtypes.bfloat16,
    max_shard_bytes: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write `params` (cast to `dtype`, default bf16; a bf16 input is written bit for bit) and `config.json`.

    Tensors are written in sorted name order, one at a time (a float32 → bf16 cast rounds to nearest even,
    as the trainer's stored parameters are rounded).

    Returns:
      The checkpoint folder.
    """
    from threegate.checkpoints import save_safetensors

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    dt = np.dtype(dtype)

    def items():
        for name in sorted(params):
            yield name, np.asarray(jnp.asarray(params[name]).astype(dt))

    save_safetensors(items(), folder, max_shard_bytes=max_shard_bytes, metadata=metadata)
    (folder / CONFIG_FILE).write_text(cfg.to_json())
    return folder


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[LlamaConfig, dict[str, Array]]:
    """Read a checkpoint folder written by `save_checkpoint` (or any HF Llama safetensors folder with a
    threegate `config.json`): the config and every tensor as a jax array in its stored dtype."""
    from threegate.checkpoints import open_checkpoint

    folder = Path(path)
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_FILE} (not a threegate training checkpoint)")
    cfg = LlamaConfig.from_json(cfg_path.read_text())
    with open_checkpoint(folder) as ckpt:
        params = {name: jnp.asarray(ckpt.load(name)) for name in ckpt.names()}
    return cfg, params
