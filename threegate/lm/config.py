"""The shape of a Llama decoder, as a frozen (hashable) dataclass usable as a static `jax.jit` argument.

The fields follow Hugging Face's `LlamaConfig` under shorter names: `d_model` = hidden_size, `d_ff` =
intermediate_size, `n_heads` = num_attention_heads, `n_kv_heads` = num_key_value_heads, `rms_eps` = rms_norm_eps,
`max_seq_len` = max_position_embeddings. A checkpoint folder stores it as `config.json` (`to_json`/`from_json`).
"""

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["LlamaConfig"]


@dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters of a Llama-architecture decoder (RMSNorm, RoPE, GQA, SwiGLU).

    Attributes:
      vocab_size: $V$, rows of the embedding.
      d_model: $d$, width of the residual stream.
      n_layers: $L$, number of decoder blocks.
      n_heads: $H_q$, query heads.
      n_kv_heads: $H_{kv}$, key/value heads; $H_q$ must be a multiple (GQA group size $H_q/H_{kv}$).
      head_dim: $D$, width of one head (even, for RoPE); $H_q D$ need not equal $d$.
      d_ff: width of the SwiGLU hidden layer.
      rope_theta: RoPE base $\\theta$ (frequencies $\\theta^{-2j/D}$).
      rms_eps: $\\epsilon$ inside the RMSNorm square root.
      tie_embeddings: whether the output projection is the embedding matrix (no `lm_head.weight`).
      max_seq_len: the longest sequence the model is meant for (KV-cache and context bound).
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    tie_embeddings: bool = True
    max_seq_len: int = 2048

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "d_model",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "head_dim",
            "d_ff",
            "max_seq_len",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LlamaConfig.{name} must be a positive int, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if not (self.rope_theta > 1 and self.rms_eps > 0):
            raise ValueError(
                f"need rope_theta > 1 and rms_eps > 0, got {self.rope_theta}, {self.rms_eps}"
            )
        if not isinstance(self.tie_embeddings, bool):
            raise TypeError(f"tie_embeddings must be a bool, got {self.tie_embeddings!r}")
        # Store floats as Python floats, so equal configs hash equal whatever numeric type came in.
        object.__setattr__(self, "rope_theta", float(self.rope_theta))
        object.__setattr__(self, "rms_eps", float(self.rms_eps))

    @property
    def n_rep(self) -> int:
        """GQA group size $H_q / H_{kv}$: query heads sharing one key/value head."""
        return self.n_heads // self.n_kv_heads

    @property
    def q_dim(self) -> int:
        """$H_q D$, rows of `q_proj.weight`."""
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """$H_{kv} D$, rows of `k_proj.weight` and `v_proj.weight`."""
        return self.n_kv_heads * self.head_dim

    @classmethod
    def tiny(
        cls,
        vocab_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        n_kv_heads: int = 2,
        d_ff: int | None = None,
        max_seq_len: int = 64,
        **kwargs: Any,
    ) -> "LlamaConfig":
        """A small from-scratch model: `head_dim = d_model // n_heads`, `d_ff` defaults to $4d$."""
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of n_heads={n_heads}")
        return cls(
            vocab_size=vocab_size,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            n_kv_heads=n_kv_heads,
            head_dim=d_model // n_heads,
            d_ff=4 * d_model if d_ff is None else d_ff,
            max_seq_len=max_seq_len,
            **kwargs,
        )

    @classmethod
    def from_hparams(cls, hparams: Any) -> "LlamaConfig":
        """From a GGUF `LlamaHParams` (attributes n_layers, d_model, ..., context_length, tie_embeddings)."""
        arch = getattr(hparams, "arch", "llama")
        if arch != "llama":
            raise ValueError(f"not a Llama architecture: {arch!r}")
        return cls(
            vocab_size=int(hparams.vocab_size),
            d_model=int(hparams.d_model),
            n_layers=int(hparams.n_layers),
            n_heads=int(hparams.n_heads),
            n_kv_heads=int(hparams.n_kv_heads),
            head_dim=int(hparams.head_dim),
            d_ff=int(hparams.d_ff),
            rope_theta=float(hparams.rope_theta),
            rms_eps=float(hparams.rms_eps),
            tie_embeddings=bool(hparams.tie_embeddings),
            max_seq_len=int(hparams.context_length),
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-serializable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LlamaConfig":
        """Inverse of `to_dict`; keys that are not fields (e.g. provenance notes) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"LlamaConfig is missing field(s) {missing}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> str:
        """The fields as a JSON object (the content of a checkpoint's `config.json`)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LlamaConfig":
        """Inverse of `to_json` (takes the JSON text, not a path)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"config is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ValueError("config JSON must be an object")
        return cls.from_dict(data)
