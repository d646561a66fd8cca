"""Autoregressive sampling with a KV cache: prefill the prompt, then a `lax.scan` of decode steps.

Shapes: `b` batch, `p` prompt length (prompts LEFT-padded, `prompt_mask` True on real tokens), `n` new tokens,
`v` vocabulary. One compile per (cfg, b, p, n, greedy); temperature, top-p and the EOS id are traced values.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jaxtyping import ArrayLike, Bool, Float, Int

from threegate.lm.config import LlamaConfig
from threegate.lm.model import decode_hidden, prefill_hidden, stack_layers, unembed

__all__ = ["GenerateOutput", "generate", "generate_passes", "top_p_filter"]


class GenerateOutput(NamedTuple):
    """What `generate` returns.

    Attributes:
      tokens: int32 `[b, n]` sampled continuations (after an EOS the entries are still sampled but masked).
      logprobs: float32 `[b, n]`, $\\log \\pi_\\theta(y_j \\mid x, y_{<j})$ of each sampled token under the model at
        temperature 1 over the full vocabulary (not the tempered or nucleus-truncated sampling distribution) —
        the quantity policy-gradient ratios and KL estimates need. Equals `log_probs` on the concatenated sequence.
      mask: bool `[b, n]`, True up to and including the first EOS, False after it.
    """

    tokens: Array
    logprobs: Array
    mask: Array


def top_p_filter(logits: Float[Array, "*b v"], top_p: Float[ArrayLike, ""]) -> Float[Array, "*b v"]:
    """Keep the smallest set of most-likely tokens whose probability reaches `top_p` (nucleus); others → $-\\infty$.

    A token is kept when the mass of the tokens strictly more likely than it (in sorted order) is below
    `top_p`, so the most likely token is always kept and `top_p = 1` keeps every token of positive probability.
    Ties at the boundary are broken by the sort order (lower id first).
    """
    order = jnp.argsort(-logits, axis=-1, stable=True)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep_sorted = mass_before < jnp.asarray(top_p, logits.dtype)
    ranks = jnp.argsort(order, axis=-1)
    keep = jnp.take_along_axis(keep_sorted, ranks, axis=-1)
    return jnp.where(keep, logits, -jnp.inf)


def _pick(logits: Array, key: Array, temperature: Array, top_p: Array, greedy: bool) -> Array:
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    tempered = logits / temperature
    # The nucleus needs a sort of the vocabulary per row and token; at top_p = 1 it keeps every token, so skip it.
    tempered = jax.lax.cond(top_p < 1, top_p_filter, lambda z, _: z, tempered, top_p)
    return jax.random.categorical(key, tempered, axis=-1).astype(jnp.int32)


def _prefill_body(params, cfg, prompt_tokens, prompt_mask, *, max_new_tokens, group):
    """Float32 params, stacked layers, the last prompt position's logits `[b, V]` and the KV cache."""
    p = prompt_tokens.shape[1]
    # Upcast and stack the weights once per call: the decode steps then read float32 weights instead of
    # converting every bf16 weight again at every token.
    params = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    layers = stack_layers(params, cfg)
    # Each prompt of a group of `group` identical rows is prefilled once, its cache shared by the group.
    h, cache = prefill_hidden(
        params, cfg, prompt_tokens[::group], prompt_mask[::group], p + max_new_tokens, layers
    )
    logits = unembed(params, cfg, h[:, -1:])  # only the last prompt position needs logits
    if group > 1:
        cache = cache._replace(
            k=jnp.repeat(cache.k, group, axis=1),
            v=jnp.repeat(cache.v, group, axis=1),
            key_mask=jnp.repeat(cache.key_mask, group, axis=0),
            positions=jnp.repeat(cache.positions, group, axis=0),
        )
        logits = jnp.repeat(logits, group, axis=0)
    return params, layers, logits[:, -1], cache


def _decode_body(
    params, layers, cfg, logits, cache, key, temperature, top_p, eos_id, *, steps, greedy
):
    """`steps` tokens per row from the prompt's logits and cache (see `generate`)."""
    b = logits.shape[0]
    keys = jax.random.split(key, steps)

    def step(carry, step_key):
        logits, cache, done = carry
        token = _pick(logits, step_key, temperature, top_p, greedy)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), token[:, None], axis=-1)[
            :, 0
        ]
        live = ~done
        done = done | (token == eos_id)
        h, cache = decode_hidden(params, cfg, cache, token, layers)
        next_logits = unembed(params, cfg, h)
        return (next_logits, cache, done), (token, logp, live)

    init = (logits, cache, jnp.zeros((b,), bool))
    _, (tokens, logps, live) = jax.lax.scan(step, init, keys)
    return GenerateOutput(tokens.T, logps.T, live.T)


@partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "greedy", "group"))
def _generate(
    params,
    cfg,
    prompt_tokens,
    prompt_mask,
    key,
    temperature,
    top_p,
    eos_id,
    *,
    max_new_tokens,
    greedy,
    group,
):
    params, layers, logits, cache = _prefill_body(
        params, cfg, prompt_tokens, prompt_mask, max_new_tokens=max_new_tokens, group=group
    )
    return _decode_body(
        params,
        layers,
        cfg,
        logits,
        cache,
        key,
        temperature,
        top_p,
        eos_id,
        steps=max_new_tokens,
        greedy=greedy,
    )


@partial(jax.jit, static_argnames=("cfg", "max_new_tokens"))
def _prefill_jit(params, cfg, prompt_tokens, prompt_mask, *, max_new_tokens):
    _, _, logits, cache = _prefill_body(
        params, cfg, prompt_tokens, prompt_mask, max_new_tokens=max_new_tokens, group=1
    )
    return logits, cache


@partial(jax.jit, static_argnames=("cfg", "steps", "greedy"))
def _decode_jit(params, cfg, logits, cache, key, temperature, top_p, eos_id, *, steps, greedy):
    params = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    layers = stack_layers(params, cfg)
    return _decode_body(
        params,
        layers,
        cfg,
        logits,
        cache,
        key,
        temperature,
        top_p,
        eos_id,
        steps=steps,
        greedy=greedy,
    )


def generate_passes(
    params: dict,
    cfg: LlamaConfig,
    prompt_tokens: Int[ArrayLike, "b p"],
    prompt_mask: Bool[ArrayLike, "b p"],
    passes: list[tuple[Array, bool, float]],
    *,
    max_new_tokens: int,
    eos_id: int | None = None,
) -> list[GenerateOutput]:
    """Several `generate` calls on the same prompts with the prompt prefilled once: one output per pass
    `(key, greedy, temperature)` (top-p 1). Pass `i` samples exactly as `generate(..., key=key_i,
    greedy=greedy_i, temperature=temperature_i)` does (same keys, same per-row noise): an evaluation's greedy and
    k sampled passes share one prefill, which is most of their matmul work."""
    prompt_tokens = jnp.asarray(prompt_tokens, jnp.int32)
    prompt_mask = jnp.asarray(prompt_mask)
    _check_prompts(cfg, prompt_tokens, prompt_mask, max_new_tokens)
    logits, cache = _prefill_jit(
        params, cfg, prompt_tokens, prompt_mask, max_new_tokens=max_new_tokens
    )
    eos = jnp.asarray(-1 if eos_id is None else eos_id, jnp.int32)
    outs = []
    for key, greedy, temperature in passes:
        if not greedy and not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0 (use greedy for argmax), got {temperature}")
        outs.append(
            _decode_jit(
                params,
                cfg,
                logits,
                cache,
                key,
                jnp.asarray(temperature if not greedy else 1.0, jnp.float32),
                jnp.asarray(1.0, jnp.float32),
                eos,
                steps=max_new_tokens,
                greedy=bool(greedy),
            )
        )
    return outs


def _check_prompts(cfg, prompt_tokens, prompt_mask, max_new_tokens) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if (
        prompt_tokens.ndim != 2
        or prompt_mask.shape != prompt_tokens.shape
        or prompt_mask.dtype != jnp.bool_
    ):
        raise TypeError(
            f"need int prompt_tokens [b, p] and a bool prompt_mask of the same shape, got "
            f"{prompt_tokens.dtype}{list(prompt_tokens.shape)} and {prompt_mask.dtype}{list(prompt_mask.shape)}"
        )
    if prompt_tokens.shape[1] + max_new_tokens > cfg.max_seq_len:
        raise ValueError(
            f"prompt length {prompt_tokens.shape[1]} + max_new_tokens {max_new_tokens} exceeds max_seq_len "
            f"{cfg.max_seq_len}"
        )
    if not isinstance(prompt_mask, jax.core.Tracer) and not bool(
        np.all(np.asarray(prompt_mask)[:, -1])
    ):
        raise ValueError("prompts must be left-padded: prompt_mask[:, -1] must be all True")


def generate(
    params: dict,
    cfg: LlamaConfig,
    prompt_tokens: Int[ArrayLike, "b p"],
    prompt_mask: Bool[ArrayLike, "b p"],
    key: Array,
    *,
    max_new_tokens: int,
    temperature: float | int = 1.0,
    top_p: float | int = 1.0,
    greedy: bool = False,
    eos_id: int | None = None,
    group: int = 1,
) -> GenerateOutput:
    """Sample `max_new_tokens` tokens after each (left-padded) prompt.

    Token $y_j \\sim \\mathrm{softmax}(z_j / T)$ restricted to its top-p nucleus (`top_p_filter`), or
    $y_j = \\arg\\max z_j$ when `greedy`. Decoding does not stop at EOS (shapes are static): `mask` marks the tokens
    up to and including the first `eos_id`.

    Args:
      params, cfg: the model.
      prompt_tokens: int `[b, p]`, left-padded; every row needs at least one real token.
      prompt_mask: bool `[b, p]`, True on real tokens; its last column must be all True (left padding).
      key: PRNG key (unused when greedy).
      max_new_tokens: $n \\ge 1$; `p + n` must not exceed `cfg.max_seq_len`.
      temperature: $T > 0$ (ignored when greedy).
      top_p: nucleus mass in (0, 1].
      greedy: argmax decoding.
      eos_id: the id that ends a sequence (None: no EOS, `mask` all True).
      group: the prompts come in consecutive groups of `group` identical rows (GRPO's G completions per
        prompt); each group's prompt is prefilled once. Only rows `::group` are read.

    Returns:
      `GenerateOutput(tokens, logprobs, mask)`, each `[b, n]`.
    """
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if not greedy and not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got {temperature}")
    if not 0 < float(top_p) <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    prompt_tokens = jnp.asarray(prompt_tokens)
    prompt_mask = jnp.asarray(prompt_mask)
    _check_prompts(cfg, prompt_tokens, prompt_mask, max_new_tokens)
    if (
        isinstance(group, int)
        and group > 1
        and not isinstance(prompt_tokens, jax.core.Tracer)
        and prompt_tokens.shape[0] % group == 0
    ):
        rows = np.asarray(prompt_tokens).reshape(-1, group, prompt_tokens.shape[1])
        masks = np.asarray(prompt_mask).reshape(-1, group, prompt_tokens.shape[1])
        if not ((rows == rows[:, :1]).all() and (masks == masks[:, :1]).all()):
            raise ValueError(f"group={group}: the prompts of a group must be identical rows")
    if not isinstance(group, int) or group < 1 or prompt_tokens.shape[0] % group:
        raise ValueError(
            f"group must be a positive int dividing the batch {prompt_tokens.shape[0]}, got {group!r}"
        )
    eos = jnp.asarray(-1 if eos_id is None else eos_id, jnp.int32)
    return _generate(
        params,
        cfg,
        prompt_tokens.astype(jnp.int32),
        prompt_mask,
        key,
        jnp.asarray(temperature if not greedy else 1.0, jnp.float32),
        jnp.asarray(top_p, jnp.float32),
        eos,
        max_new_tokens=max_new_tokens,
        greedy=greedy,
        group=group,
    )
