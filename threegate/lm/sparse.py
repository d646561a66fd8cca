"""Sparse fine-tuning helpers of the RL lab: one-shot update masks from $W_0$, and bf16 update sparsity.

Masks are `{name: bool [m, n]}` over the linear projections (HF names, `[out, in]`), True = trainable. Sparsity
(Def 2.2, M1) is measured on the stored bf16 tensors with the one definition of "unchanged" of
`threegate.stored` (equal codes, a signed-zero flip unchanged), the rule `threegate compare` uses.
"""

import jax
import jax.numpy as jnp

from threegate.stored import count_unchanged

__all__ = ["LINEAR_MODULES", "build_masks", "is_linear_name", "unchanged_fraction"]

#: The seven linear projections of a Llama block (the paper's "linear layers").
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def is_linear_name(name: str) -> bool:
    """Whether an HF name is one of the seven linear projections of a block (the paper's "linear layers")."""
    parts = name.split(".")
    return len(parts) >= 2 and parts[-1] == "weight" and parts[-2] in LINEAR_MODULES


def build_masks(cfg, params: dict, key: jax.Array) -> dict | None:
    """Fixed trainable-entry masks for every linear weight of `params` (None when `cfg.mask` is None).

    `cfg` is a `TrainConfig` (fields `mask`, `mask_alpha`, `mask_rank`).

    Built from $W_0$ once (one-shot masks, paper §5.1): M8 `principal_mask(W, k, α)` and M9
    `low_magnitude_mask(W, α)`; "random" draws, per layer, exactly as many entries as "safe" has.
    """
    if cfg.mask is None:
        return None
    from threegate.masks import low_magnitude_mask, principal_mask

    masks = {}
    for i, name in enumerate(sorted(n for n in params if is_linear_name(n))):
        w = params[name].astype(jnp.float32)
        k = min(cfg.mask_rank, *w.shape)
        princ = principal_mask(w, k, cfg.mask_alpha)
        if cfg.mask == "principal":
            m = princ
        elif cfg.mask == "nonprincipal":
            m = ~princ
        else:
            low = low_magnitude_mask(w, cfg.mask_alpha)
            m = low if cfg.mask == "low" else low | ~princ
            if cfg.mask == "random":
                order = jax.random.permutation(jax.random.fold_in(key, i), m.size)
                ranks = (
                    jnp.zeros(m.size, jnp.int32).at[order].set(jnp.arange(m.size, dtype=jnp.int32))
                )
                m = (ranks < jnp.sum(m)).reshape(m.shape)
        masks[name] = m
    return masks


def unchanged_fraction(stored: dict, ref: dict) -> dict:
    """Unchanged fraction (Def 2.1 via `threegate.stored.count_unchanged`) of the stored params vs step 0 (the
    bf16 base; float32-stored params are compared with its exact float32 values): all tensors, and linear
    layers only."""
    same_all = n_all = same_lin = n_lin = 0
    for name, w in stored.items():
        r = ref[name]
        # float32 storage against the bf16 base: the base's values upcast exactly (bf16 ⊂ f32)
        eq = count_unchanged(w, r if r.dtype == w.dtype else r.astype(w.dtype))
        same_all, n_all = same_all + eq, n_all + w.size
        if is_linear_name(name):
            same_lin, n_lin = same_lin + eq, n_lin + w.size
    # The counts travel too: a float32 ratio computed on the device can come out as 1 - 2^-24 for equal
    # counts (XLA turns the division by a constant into a reciprocal multiply); `host_metrics` divides exactly.
    return {
        "sparsity": same_all.astype(jnp.float32) / n_all,
        "sparsity_linear": same_lin.astype(jnp.float32) / max(n_lin, 1),
        "unchanged": same_all,
        "unchanged_linear": same_lin,
        "params": jnp.asarray(n_all, jnp.int32),
        "params_linear": jnp.asarray(n_lin, jnp.int32),
    }
