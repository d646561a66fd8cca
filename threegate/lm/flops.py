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

__all__ = ["GRPOStepFlops", "forward_flops", "grpo_step_flops"]


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
