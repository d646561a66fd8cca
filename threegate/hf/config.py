"""Hugging Face `config.json` and `generation_config.json` for a Llama decoder, and back.

Field map (ours → HF `LlamaConfig`): `d_model` → hidden_size, `d_ff` → intermediate_size, `n_layers` →
num_hidden_layers, `n_heads` → num_attention_heads, `n_kv_heads` → num_key_value_heads, `head_dim` → head_dim,
`rope_theta` → rope_theta (and `rope_parameters`, transformers ≥ 5), `rms_eps` → rms_norm_eps, `tie_embeddings`
→ tie_word_embeddings, `max_seq_len` → max_position_embeddings. The rest is fixed by our architecture
(`threegate.lm.model`): SiLU-gated MLP, no biases, plain RoPE (no scaling), no dropout.

The dict is written so that transformers 4.x and 5.x, vLLM and other readers of the legacy keys agree:
`rope_theta` at top level beside `rope_parameters`, `torch_dtype` beside `dtype`.
"""

from typing import Any, NamedTuple

from threegate.lm.config import LlamaConfig

__all__ = ["SpecialIds", "generation_config", "hf_config", "llama_config_from_hf"]


class SpecialIds(NamedTuple):
    """Token ids the model's configs name (None where the vocabulary has none)."""

    bos: int | None
    eos: int | None
    pad: int | None


def hf_config(cfg: LlamaConfig, ids: SpecialIds, dtype: str = "bfloat16") -> dict[str, Any]:
    """The `config.json` of `LlamaForCausalLM` with the shape `cfg`, special `ids` and stored `dtype`."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.rms_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": ids.bos,
        "eos_token_id": ids.eos,
        "pad_token_id": ids.pad,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


def generation_config(ids: SpecialIds) -> dict[str, Any]:
    """`generation_config.json`: which ids start, end and pad a generation (sampling left to the caller)."""
    return {"bos_token_id": ids.bos, "eos_token_id": ids.eos, "pad_token_id": ids.pad}


def llama_config_from_hf(data: dict[str, Any]) -> LlamaConfig:
    """Our `LlamaConfig` from an HF Llama `config.json` dict (inverse of `hf_config` on the shape fields).

    Raises:
      ValueError: not a Llama config, or one with features our model lacks (biases, RoPE scaling, another
        activation).
    """
    if data.get("model_type") != "llama":
        raise ValueError(f"not a Hugging Face Llama config (model_type={data.get('model_type')!r})")
    unsupported = [k for k in ("attention_bias", "mlp_bias") if data.get(k)] + [
        k for k in ("rope_scaling",) if data.get(k)
    ]
    rope = data.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        unsupported.append(f"rope_type={rope['rope_type']}")
    if data.get("hidden_act", "silu") != "silu":
        unsupported.append(f"hidden_act={data['hidden_act']}")
    if unsupported:
        raise ValueError(f"Llama config uses features threegate's model lacks: {unsupported}")
    heads = int(data["num_attention_heads"])
    theta = data.get("rope_theta", rope.get("rope_theta", 10000.0))
    return LlamaConfig(
        vocab_size=int(data["vocab_size"]),
        d_model=int(data["hidden_size"]),
        n_layers=int(data["num_hidden_layers"]),
        n_heads=heads,
        n_kv_heads=int(data.get("num_key_value_heads") or heads),
        head_dim=int(data.get("head_dim") or int(data["hidden_size"]) // heads),
        d_ff=int(data["intermediate_size"]),
        rope_theta=float(theta),
        rms_eps=float(data.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(data.get("tie_word_embeddings", False)),
        max_seq_len=int(data.get("max_position_embeddings", 2048)),
    )
