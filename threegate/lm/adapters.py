"""Low-rank adapters for the RL lab: LoRA and PiSSA, merged back into a full HF-named params dict.

Shapes (HF `nn.Linear.weight` layout): a targeted weight $W_0\\in\\mathbb R^{m\\times n}$ (`[out, in]`) gets
$A\\in\\mathbb R^{r\\times n}$ and $B\\in\\mathbb R^{m\\times r}$, and the forward pass sees
$$W = W_{frozen} + s\\,BA .$$

* LoRA (Hu et al. 2021): $W_{frozen}=W_0$, $s=\\alpha/r$, $A\\sim\\mathcal N(0, 1/n)$, $B=0$, so $W=W_0$ at init.
* PiSSA (Meng et al. 2024; paper §5.2, §7.6 of the digest): with $W_0=U\\Sigma V^\\top$,
  $A=\\Sigma_r^{1/2}V_r^\\top$, $B=U_r\\Sigma_r^{1/2}$ (scaled by $s^{-1/2}$ each, so $s\\,BA=U_r\\Sigma_rV_r^\\top$),
  and the frozen residual $W_{res}=W_0-s\\,BA$. The residual is formed from $A$, $B$ *as stored* (rounded to
  `store_dtype`), so `merge` returns $W_0$ to float32 rounding at init whatever the adapter dtype.

Adapters are a dict `name -> LoraPair(a, b)` keyed by the targeted HF weight name; `merge` returns a full params dict
(all other tensors passed through), so `threegate.lm.model.forward` is unchanged.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from threegate._numerics import matmul

__all__ = [
    "LINEAR_MODULES",
    "AdapterConfig",
    "LoraPair",
    "init_adapters",
    "merge",
    "target_names",
]

#: The seven linear projections of a Llama block (HF names).
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class AdapterConfig:
    """Which adapter, where, and how big.

    Attributes:
      kind: "lora" or "pissa".
      rank: $r\\ge1$ (clipped to $\\min(m,n)$ per matrix).
      alpha: LoRA $\\alpha$; the scale is $s=\\alpha/r$ (PiSSA folds $s$ into its init, so the choice is immaterial
        at init and only rescales the learning dynamics, exactly as in peft).
      targets: module suffixes to adapt (default: all seven linear projections).
    """

    kind: Literal["lora", "pissa"] = "lora"
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = LINEAR_MODULES

    def __post_init__(self):
        if self.kind not in ("lora", "pissa"):
            raise ValueError(f"adapter must be 'lora' or 'pissa', got {self.kind!r}")
        if self.rank < 1 or self.alpha <= 0:
            raise ValueError(f"need rank >= 1 and alpha > 0, got {self.rank}, {self.alpha}")
        unknown = set(self.targets) - set(LINEAR_MODULES)
        if unknown:
            raise ValueError(
                f"unknown adapter targets {sorted(unknown)}; choose from {LINEAR_MODULES}"
            )

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoraPair(NamedTuple):
    """One adapter: `a` $[r, n]$ and `b` $[m, r]$; the update is $s\\,BA$."""

    a: Float[Array, "r n"]
    b: Float[Array, "m r"]


def target_names(names, targets: tuple[str, ...] = LINEAR_MODULES) -> list[str]:
    """The 2-D weights among `names` whose module is in `targets` (e.g. `model.layers.0.self_attn.q_proj.weight`)."""
    out = []
    for name in sorted(names):
        parts = name.split(".")
        if len(parts) >= 2 and parts[-1] == "weight" and parts[-2] in targets:
            out.append(name)
    return out


def _lora_init(w: Array, rank: int, key: Array) -> LoraPair:
    m, n = w.shape
    a = jax.random.normal(key, (rank, n), jnp.float32) / jnp.sqrt(jnp.float32(n))
    return LoraPair(a, jnp.zeros((m, rank), jnp.float32))


def _pissa_init(w: Array, rank: int, scale: float) -> LoraPair:
    u, s, vt = jnp.linalg.svd(w, full_matrices=False)
    root = jnp.sqrt(s[:rank] / scale)
    return LoraPair(root[:, None] * vt[:rank], u[:, :rank] * root[None, :])


def init_adapters(
    params: Mapping[str, Array],
    cfg: AdapterConfig,
    key: Array,
    store_dtype=jnp.float32,
) -> tuple[dict[str, Array], dict[str, LoraPair]]:
    """Split `params` into frozen float32 tensors and trainable adapters.

    Args:
      params: a full HF-named params dict (any float dtype; upcast to float32 exactly).
      cfg: the adapter configuration.
      key: PRNG key (LoRA's $A$; one fold per targeted weight, in sorted name order).
      store_dtype: the dtype the adapters are kept in during training (bf16 in mixed precision). The returned
        adapters are rounded to it and then held in float32; PiSSA's residual uses these rounded values.

    Returns:
      (frozen, adapters): `frozen` has every name of `params` in float32 ($W_0$, or $W_{res}$ for PiSSA's targets);
      `adapters` maps each targeted name to its `LoraPair` (float32 values representable in `store_dtype`).
    """
    names = target_names(params, cfg.targets)
    if not names:
        raise ValueError(f"no weight in params matches adapter targets {cfg.targets}")
    frozen = {k: jnp.asarray(v).astype(jnp.float32) for k, v in params.items()}
    adapters: dict[str, LoraPair] = {}
    for i, name in enumerate(names):
        w = frozen[name]
        r = min(cfg.rank, *w.shape)
        if cfg.kind == "lora":
            pair = _lora_init(w, r, jax.random.fold_in(key, i))
        else:
            pair = _pissa_init(w, r, cfg.scale)
        pair = LoraPair(*(x.astype(store_dtype).astype(jnp.float32) for x in pair))
        adapters[name] = pair
        if cfg.kind == "pissa":
            frozen[name] = w - cfg.scale * matmul(pair.b, pair.a)
    return frozen, adapters


def merge(
    frozen: Mapping[str, Array], adapters: Mapping[str, LoraPair], scale: float
) -> dict[str, Array]:
    """Full params $W = W_{frozen} + s\\,BA$ for adapted names (float32, "highest" matmul); others unchanged."""
    out = dict(frozen)
    for name, pair in adapters.items():
        a = pair.a.astype(jnp.float32)
        b = pair.b.astype(jnp.float32)
        out[name] = frozen[name].astype(jnp.float32) + scale * matmul(b, a)
    return out
