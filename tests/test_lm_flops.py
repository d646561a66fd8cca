"""FLOP counts of the lab (threegate.lm.flops): the necessary floor against an explicit per-token count."""

from threegate.lm.config import LlamaConfig
from threegate.lm.flops import (
    forward_flops,
    grpo_step_flops,
    necessary_generation_flops,
    necessary_step_flops,
)

CFG = LlamaConfig.tiny(50, d_model=32, n_layers=3, max_seq_len=64)


def _token_forward(cfg, keys, logits):
    """One query token over `keys` key slots, with or without logits: `forward_flops` of a single token."""
    return forward_flops(cfg, 1, keys, 1 if logits else 0)


def test_necessary_flops_equal_an_explicit_token_by_token_count():
    prompt_lens, completion_lens, group = [5, 5, 7, 7], [3, 1, 4, 2], 2
    rollout = update = 0
    for i, (t, n) in enumerate(zip(prompt_lens, completion_lens, strict=True)):
        if i % group == 0:  # prefill: position j sees j + 1 keys; logits only at the last
            rollout += sum(_token_forward(CFG, j + 1, j == t - 1) for j in range(t))
        for j in range(n - 1):  # decode: feed completion token j at position t + j
            rollout += _token_forward(CFG, t + j + 1, True)
        # update: forward + backward (2x) over the real sequence, logits at the n positions predicting it
        fwd = sum(_token_forward(CFG, j + 1, t - 1 <= j < t + n - 1) for j in range(t + n))
        update += 3 * fwd
    got = necessary_step_flops(CFG, prompt_lens, completion_lens, group=group)
    assert (got.rollout, got.update) == (rollout, update)


def test_floor_is_below_what_the_padded_step_computes():
    b, t, n, g = 8, 6, 4, 4
    need = necessary_step_flops(CFG, [t] * b, [n] * b, group=g)
    padded = grpo_step_flops(CFG, b, t, n, group=g, logprob_passes=0)
    assert need.update < padded.update  # causal attention, no padding
    assert need.rollout < padded.rollout  # no decode after the last token, causal prefill
    # an empty completion: the update still runs the prompt (no logits), 3 passes per row
    prompt_only = 3 * b * sum(forward_flops(CFG, 1, j + 1, 0) for j in range(t))
    assert necessary_step_flops(CFG, [t] * b, [0] * b, group=g).update == prompt_only


def test_generation_floor_prefills_each_prompt_once_across_passes():
    t, n1, n2 = [5, 7, 6], [3, 1, 4], [2, 2, 5]
    one = necessary_generation_flops(CFG, t, [n1])
    assert one == necessary_step_flops(CFG, t, n1, group=1).rollout
    prefills = necessary_generation_flops(CFG, t, [])
    two = necessary_generation_flops(CFG, t, [n1, n2])
    assert two == one + necessary_step_flops(CFG, t, n2, group=1).rollout - prefills
    assert prefills == sum(sum(_token_forward(CFG, j + 1, j == s - 1) for j in range(s)) for s in t)
