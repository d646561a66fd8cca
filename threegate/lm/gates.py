"""The three gates checked on real training updates (one record per checked outer step, `gates.jsonl`).

Gate III (Cor 3.6, exact): with stored weights $w$ before an update and the float32 master $m^+$ after it, the
update relative to the stored weight is $\\delta=\\mathrm{fl}_{32}(m^+-\\mathrm{f32}(w))$ and
`threegate.bf16.realized(w, δ)` predicts which stored weights change; the prediction is compared bit by bit with
the stored weights the trainer actually wrote ($w^+$, `TrainState.stored`). $\\mathrm{fl}_{32}(w+\\delta)=m^+$ when
the subtraction is exact (Sterbenz: $m^+$ and $w$ of one sign within a factor 2, which holds for every weight whose
update is small against it); a weight whose master crosses zero or leaves that range can round differently, and
then the prediction may miss: mismatches count them. Beside it: the paper's approximate rule
$|\\delta|>\\tfrac12\\mathrm{ULP}(w)$ (its mismatches are ties and binade edges), and, among the master entries this
step moved, the share that moved by less than $\\tfrac12\\mathrm{ULP}(w)$ — moves that Gate III filters out.

Gate I (Lemma F.5, F.9): on the step's own batch, the exact token-wise $D_{KL}(\\pi_{\\theta^+}\\|\\pi_\\theta)$ over the
vocabulary against the quadratic form $\\tfrac12\\Delta^\\top F(\\theta)\\Delta$ along the realized update
$\\Delta=\\mathrm{f32}(w^+)-\\mathrm{f32}(w)$ of the stored weights (one `jax.jvp` of the logits: no Fisher matrix,
`threegate.kl.fisher_form_categorical`), and against Lemma F.9's clipping bound
$\\max\\{-\\log(1-\\varepsilon_{low}),\\log(1+\\varepsilon_{high})\\}$ per token, whose premise (every sampled token's
ratio $r_t=\\pi_{\\theta^+}/\\pi_\\theta$ inside the clip band) is reported as measured.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from threegate import bf16
from threegate.kl import fisher_form_categorical, kl_categorical
from threegate.lm.logprobs import completion_logits

__all__ = ["gate1_record", "gate3_record"]


@jax.jit
def _gate3_tensor(w, w_after, master_before, master_after):
    m_after = master_after.astype(jnp.float32)
    delta = m_after - w.astype(jnp.float32)
    predicted = bf16.realized(w, delta)
    actual = bf16.to_bits(w_after) != bf16.to_bits(w)
    half = bf16.half_ulp(w)
    rule = jnp.abs(delta) > half
    step_move = jnp.abs(m_after - master_before.astype(jnp.float32))
    moved = step_move > 0
    return (
        jnp.sum(predicted),
        jnp.sum(actual),
        jnp.sum(predicted != actual),
        jnp.sum(rule != actual),
        jnp.sum(moved & (step_move < half)),
        jnp.sum(moved),
    )


def gate3_record(
    stored_before: dict, stored_after: dict, master_before: dict, master_after: dict
) -> dict:
    """Gate III per tensor: predicted / actual changed stored weights, mismatches of the exact rule and of the
    half-ULP rule, and how many of the moved master entries moved by less than half an ULP. Full fine-tuning
    only (flat dicts)."""
    per_tensor, tot = {}, np.zeros(6, np.int64)
    for name in sorted(stored_before):
        w = stored_before[name]
        vals = np.asarray(
            jax.device_get(
                _gate3_tensor(w, stored_after[name], master_before[name], master_after[name])
            ),
            np.int64,
        )
        tot += vals
        per_tensor[name] = {
            "size": int(w.size),
            "predicted": int(vals[0]),
            "actual": int(vals[1]),
            "mismatches": int(vals[2]),
            "half_ulp_rule_mismatches": int(vals[3]),
            "moved_below_half_ulp": int(vals[4]),
            "moved": int(vals[5]),
        }
    size = sum(v["size"] for v in per_tensor.values())
    moved = int(tot[5])
    return {
        "predicted": int(tot[0]),
        "actual": int(tot[1]),
        "mismatches": int(tot[2]),
        "half_ulp_rule_mismatches": int(tot[3]),
        "changed_fraction": int(tot[1]) / size,
        "moved_fraction": moved / size,
        "below_half_ulp_fraction": int(tot[4]) / moved if moved else None,
        "tensors": per_tensor,
    }


def _gate1_batch(before, after, mcfg, prompts, pmask, completion, cmask, temperature):
    p32 = jax.tree.map(lambda x: x.astype(jnp.float32), before)
    delta = jax.tree.map(lambda a, b: a.astype(jnp.float32) - b.astype(jnp.float32), after, before)

    def logits_of(p):
        return completion_logits(p, mcfg, prompts, pmask, completion, cmask, temperature)

    z, dz = jax.jvp(logits_of, (p32,), (delta,))
    z_after = logits_of(jax.tree.map(lambda x: x.astype(jnp.float32), after))
    kl = kl_categorical(z_after, z)  # KL(pi_after || pi_before), per token
    quad = 0.5 * fisher_form_categorical(z, dz)
    lp_b = jax.nn.log_softmax(z, axis=-1)
    lp_a = jax.nn.log_softmax(z_after, axis=-1)
    tok = completion[:, :, None]
    log_r = (
        jnp.take_along_axis(lp_a, tok, axis=-1)[..., 0]
        - jnp.take_along_axis(lp_b, tok, axis=-1)[..., 0]
    )
    return kl, quad, log_r


_gate1_jit = jax.jit(_gate1_batch, static_argnames=("mcfg",))


def gate1_record(
    before: dict,
    after: dict,
    mcfg,
    batch,
    *,
    temperature: float,
    eps_low: float | None,
    eps_high: float | None,
    chunk: int = 16,
) -> dict:
    """Gate I on a batch (`threegate.lm.train.Batch`): per-token KL, ½ΔᵀFΔ, their ratio, Lemma F.9's bound.

    `before`, `after`: the stored (bf16) params the model ran with before and after the update. Token averages
    are over real completion tokens (`completion_mask`). `eps_low`/`eps_high` None (SFT): no clipping bound.
    """
    kls, quads, log_rs, masks = [], [], [], []
    n = batch.prompts.shape[0]
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        kl, quad, log_r = _gate1_jit(
            before,
            after,
            mcfg,
            batch.prompts[sl],
            batch.prompt_mask[sl],
            batch.completion[sl],
            batch.completion_mask[sl],
            float(temperature),
        )
        kls.append(np.asarray(kl, np.float64))
        quads.append(np.asarray(quad, np.float64))
        log_rs.append(np.asarray(log_r, np.float64))
        masks.append(np.asarray(batch.completion_mask[sl]))
    m = np.concatenate(masks)
    kl, quad, log_r = (np.concatenate(x)[m] for x in (kls, quads, log_rs))
    rec = {
        "tokens": int(m.sum()),
        "kl_per_token": float(kl.mean()),
        "kl_max": float(kl.max()),
        "quad_per_token": float(quad.mean()),
        "kl_over_quad": float(kl.mean() / quad.mean()) if quad.mean() > 0 else None,
        "max_abs_log_ratio": float(np.abs(log_r).max()),
    }
    if eps_low is not None and eps_high is not None:
        bound = max(-math.log1p(-eps_low), math.log1p(eps_high))
        in_band = (log_r >= math.log1p(-eps_low)) & (log_r <= math.log1p(eps_high))
        rec |= {
            "clip_eps": [eps_low, eps_high],
            "f9_bound_per_token": bound,
            "kl_over_f9_bound": float(kl.mean() / bound),
            "f9_premise_fraction": float(in_band.mean()),
        }
    return rec
