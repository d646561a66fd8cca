"""Matmul FLOP counts of the lab's Llama, for the FLOP floor of `make bench-lab`.

One multiply-add is 2 FLOPs. Counts follow what the code computes, padded shapes included: attention scores over
every key slot of the (padded) sequence or KV cache, the vocabulary projection only where logits are taken.
Element-wise work (norms, softmax, RoPE) is not counted: the floor is the matmul time at the measured GEMM rate.

Per token of a forward pass with `s` key slots, per layer: the projections
$2d(H_qD + 2H_{kv}D) + 2H_qDd + 3\\cdot 2 d\\,d_{ff}$, and attention $2\\cdot 2\\,s H_q D$ (scores and values);
the vocabulary projection costs $2dV$ per position with logits. A backward pass costs twice its forward
(gradients with respect to activations and to weights).
"""

from typing import NamedTuple

from threegate.lm.config import LlamaConfig

__all__ = [
    "GRPOStepFlops",
    "NecessaryStepFlops",
    "forward_flops",
    "grpo_step_flops",
    "necessary_generation_flops",
    "necessary_step_flops",
]


def _per_token_linear(cfg: LlamaConfig) -> int:
    d = cfg.d_model
    proj = 2 * d * (cfg.q_dim + 2 * cfg.kv_dim) + 2 * cfg.q_dim * d + 3 * 2 * d * cfg.d_ff
    return cfg.n_layers * proj


def forward_flops(cfg: LlamaConfig, tokens: int, key_slots: int, logit_positions: int) -> int:
    """Matmul FLOPs of one forward pass over `tokens` query tokens, each attending over `key_slots` slots, with
    logits at `logit_positions` positions."""
    attn = cfg.n_layers * 4 * key_slots * cfg.n_heads * cfg.head_dim
    return (
        tokens * (_per_token_linear(cfg) + attn)
        + logit_positions * 2 * cfg.d_model * cfg.vocab_size
    )


class GRPOStepFlops(NamedTuple):
    """Matmul FLOPs of one RL step, by phase."""

    rollout: int
    logprobs: int
    update: int

    @property
    def total(self) -> int:
        return self.rollout + self.logprobs + self.update


def grpo_step_flops(
    cfg: LlamaConfig,
    sequences: int,
    prompt_len: int,
    new_tokens: int,
    *,
    group: int = 1,
    logprob_passes: int = 2,
) -> GRPOStepFlops:
    """FLOPs of one step of `threegate.lm.train` on `sequences` = P·G rollouts of `new_tokens` after a
    `prompt_len`-token (padded) prompt.

    rollout: prefill of the `sequences / group` distinct prompts (logits at the last prompt position only) and
    `new_tokens` decode steps (the sampler also feeds the last sampled token), each over `prompt_len +
    new_tokens` cache slots; logprobs: `logprob_passes` forwards (current and reference policy) over the whole
    sequence with logits on the completion; update: forward + backward of the same, over all minibatches.
    """
    b, t, n = sequences, prompt_len, new_tokens
    full = t + n
    prefill = forward_flops(cfg, (b // group) * t, t, b // group)
    decode = n * forward_flops(cfg, b, full, b)
    one_pass = forward_flops(cfg, b * full, full, b * n)
    return GRPOStepFlops(prefill + decode, logprob_passes * one_pass, 3 * one_pass)


def _causal_attention(cfg: LlamaConfig, first: int, last: int) -> int:
    """Attention FLOPs of the queries at positions `first..last-1` (0-based), each over its causal prefix."""
    n = last - first
    keys = (first + 1 + last) * n // 2  # sum of (i + 1) for i in [first, last)
    return cfg.n_layers * 4 * cfg.n_heads * cfg.head_dim * keys


class NecessaryStepFlops(NamedTuple):
    """The necessary matmul FLOPs of one RL step with one update and no reference term, by phase."""

    rollout: int
    update: int

    @property
    def total(self) -> int:
        return self.rollout + self.update


def necessary_step_flops(
    cfg: LlamaConfig, prompt_lens, completion_lens, *, group: int
) -> NecessaryStepFlops:
    """The FLOP floor's numerator: the matmul work an RL step cannot avoid, counted on real tokens only.

    rollout: each distinct prompt (rows `::group`, `prompt_lens[i]` real tokens) prefilled once with causal
    attention and logits at its last position; then, per row, one decode forward for every sampled token that
    is followed by another (a row stops after its last real token), attending over its real prefix, with logits.
    update: one forward and one backward (2× the forward) over each row's real prompt and completion, causal,
    with logits only at the `completion_lens[i]` positions that predict completion tokens. No padding, no
    old-policy pass (one update per step: the ratio is 1) and no reference pass (β = 0).
    """
    per_tok = _per_token_linear(cfg)
    logit = 2 * cfg.d_model * cfg.vocab_size
    rollout = update = 0
    for i, (t, n) in enumerate(zip(prompt_lens, completion_lens, strict=True)):
        t, n = int(t), int(n)
        if i % group == 0:
            rollout += _prefill(cfg, t)
        rollout += _decodes(cfg, t, n)
        fwd = (t + n) * per_tok + _causal_attention(cfg, 0, t + n) + n * logit
        update += 3 * fwd
    return NecessaryStepFlops(rollout, update)


def _prefill(cfg: LlamaConfig, t: int) -> int:
    """A `t`-token prompt once, causal, logits at its last position."""
    return (
        t * _per_token_linear(cfg) + _causal_attention(cfg, 0, t) + 2 * cfg.d_model * cfg.vocab_size
    )


def _decodes(cfg: LlamaConfig, t: int, n: int) -> int:
    """The decode forwards of an `n`-token completion after a `t`-token prompt: one per token followed by
    another, over its real prefix, with logits."""
    k = max(n - 1, 0)
    per = _per_token_linear(cfg) + 2 * cfg.d_model * cfg.vocab_size
    return k * per + _causal_attention(cfg, t, t + k)


def necessary_generation_flops(cfg: LlamaConfig, prompt_lens, passes_completion_lens) -> int:
    """The floor of decoding the same prompts several times (an evaluation's greedy and k sampled passes):
    each distinct prompt (`prompt_lens`, real tokens) prefilled once, then for every pass the decode forwards its
    real completion tokens need (`passes_completion_lens[j][i]` tokens for prompt `i` in pass `j`)."""
    total = sum(_prefill(cfg, int(t)) for t in prompt_lens)
    for lens in passes_completion_lens:
        total += sum(_decodes(cfg, int(t), int(n)) for t, n in zip(prompt_lens, lens, strict=True))
    return total
