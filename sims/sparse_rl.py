"""S6: sparse RL fine-tuning with one-shot masks (paper Sec. 5.1, Tables 4–5, Fig. 9; digest §9.3 S6).

From the tiny pretrained base (`sims._tiny.pretrained`), GRPO runs that may only move a fixed set of linear-layer
entries, chosen once from $W_0$ (the lab's `TrainConfig(mask=...)`: gradient, AdamW update and decoupled weight
decay all masked, so frozen entries keep their bf16 bits):

* dense (all entries), "principal" $M_{princ}$ (M8: top-α of $|W_0^{(k)}|$, rank-k reconstruction),
  "nonprincipal" $M_{princ}^c$, "low" $M_{low}$ (M9: bottom-α of $|W_0|$), "safe" $M_{princ}^c\\cup M_{low}$,
  and "random" (per layer as many entries as "safe", uniformly placed).

Every mask kind × seed is one run; all runs share one compiled step (`threegate.lm.batched.fit_batched`; the lab runs
dense as the all-True mask). Per step the lab logs the token-wise KL to the base (M14; `kl_exact` = $\\sum_v \\pi\\log(\\pi/\\pi_0)$
averaged over on-policy tokens, with its k1/k3 estimates). After training each run is scored on every problem of
the task, avg@k sampled and greedy (M15).

Expected (paper, Table 4–5 and Fig. 9): accuracy safe ≈ dense > $M_{princ}^c$ ≈ random > $M_{princ}$; the safe
mask's KL trajectory tracks dense while $M_{princ}$'s rises slowest. These are REPORTED with verdicts, never
asserted. What is guaranteed (frozen entries bitwise unchanged; an all-True mask is the dense run) is tested.
"""

import dataclasses
import itertools
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from sims import _rl
from sims._contract import Claim, check_size, write_result
from threegate.lm.batched import fit_batched, init_run
from threegate.lm.train import TrainConfig
from threegate.records import JsonlWriter
from threegate.stats import mean_ci
from threegate.stored import unchanged_mask
from threegate.study.sparse import MASKS, sparse_claims

NAME = "sparse-rl"
SUMMARY = (
    "S6 sparse RL (Sec. 5.1): GRPO on the tiny base with fixed masks (dense, M_princ, M_princ^c, M_low, "
    "safe, random); token-wise KL to base and accuracy with CIs"
)

__all__ = ["MASKS", "NAME", "SIZES", "SUMMARY", "SparseRLConfig", "init_runs", "run", "train_runs"]


@dataclasses.dataclass(frozen=True)
class SparseRLConfig:
    """The S6 experiment (GRPO as in the lab's tests; masks as in Sec. 5.1 with α = 0.5).

    Attributes:
      steps, lr, prompts_per_step, group_size, minibatches, weight_decay: the GRPO runs.
      n_seeds: RL seeds per mask (seeds `seed, seed + 1, ...`).
      eval_k: samples per problem for avg@k.
      mask_alpha, mask_rank: α of M8/M9 and the rank k of the principal reconstruction (d/8, like 64 of 512).
      margin: equivalence margin (accuracy) for the "≈" claims.
    """

    steps: int
    lr: float
    prompts_per_step: int
    group_size: int
    minibatches: int
    n_seeds: int
    eval_k: int
    mask_rank: int
    weight_decay: float = 0.01
    mask_alpha: float = 0.5
    margin: float = 0.05

    def train_config(self, mask: str | None, seed: int) -> TrainConfig:
        return TrainConfig(
            algo="grpo",
            steps=self.steps,
            lr=self.lr,
            weight_decay=self.weight_decay,
            prompts_per_step=self.prompts_per_step,
            group_size=self.group_size,
            minibatches=self.minibatches,
            mask=mask,
            mask_alpha=self.mask_alpha,
            mask_rank=self.mask_rank,
            seed=seed,
        )


SIZES = {
    "quick": SparseRLConfig(
        steps=16, lr=1e-3, prompts_per_step=16, group_size=8, minibatches=2, n_seeds=2, eval_k=4,
        mask_rank=4,
    ),
    "default": SparseRLConfig(
        steps=32, lr=5e-4, prompts_per_step=16, group_size=8, minibatches=2, n_seeds=2, eval_k=8,
        mask_rank=8,
    ),
}  # fmt: skip


def init_runs(scfg: SparseRLConfig, base, seeds) -> tuple[list[tuple[str, int]], list, TrainConfig]:
    """One `(TrainState, Frozen)` per (seed, mask kind), keyed as `fit` would key that run.

    Each kind's masks come from `init_run` with that `TrainConfig(mask=kind)` (the lab's `build_masks`); "dense"
    is `TrainConfig(mask=None)`, which the lab runs as the all-True mask. Returns `(specs, inits, step_config)`.
    """
    specs, inits = [], []
    for s, kind in itertools.product(seeds, MASKS):
        cfg = scfg.train_config(None if kind == "dense" else kind, s)
        state, frozen = init_run(cfg, base.mcfg, base.task, base.params, s)
        specs.append((kind, s))
        inits.append((state, frozen))
    return specs, inits, scfg.train_config("safe", seeds[0])


def train_runs(scfg: SparseRLConfig, base, seeds, on_step=None):
    """Train every (seed, mask) run with one vmapped step. Returns `(specs, BatchedResult)`."""
    specs, inits, step_cfg = init_runs(scfg, base, seeds)

    def callback(r, record):
        if on_step is not None:
            kind, s = specs[r]
            on_step({"mask": kind, "seed": s, **record})

    res = fit_batched(
        step_cfg, base.mcfg, base.task, inits, [s for _, s in specs], callback=callback
    )
    return specs, res


def _mask_share(frozen_masks: dict) -> float:
    """Share of linear-layer parameters that are trainable (Table 4's "#params")."""
    n = sum(int(np.asarray(m).size) for m in frozen_masks.values())
    return sum(int(np.asarray(m).sum()) for m in frozen_masks.values()) / n


def _masked_entries_changed(base_params: dict, stored: dict, masks: dict) -> int:
    """How many frozen entries changed their stored bf16 value (Def 2.1, `threegate.stored`; the lab guarantees 0)."""
    changed = 0
    for name, m in masks.items():
        m = np.asarray(m)
        before = jnp.asarray(base_params[name]).astype(jnp.bfloat16)
        after = jnp.asarray(stored[name]).astype(jnp.bfloat16)
        changed += int(np.sum(~np.asarray(unchanged_mask(before, after))[~m]))
    return changed


def _claims(scfg, scores, kl) -> tuple[list[Claim], dict]:
    return sparse_claims(scores, kl, eval_k=scfg.eval_k, margin=scfg.margin, prefix="S6.")


def run(out: Path, size: str = "quick", seed: int = 0) -> dict:
    """Run S6 at `size` from `pretrained(size, seed)` and write `out/sparse-rl/` (see `sims._contract`)."""
    check_size(size)
    from sims._tiny import pretrained

    start = time.perf_counter()
    scfg = SIZES[size]
    d = Path(out) / NAME
    d.mkdir(parents=True, exist_ok=True)
    base = pretrained(size, seed)
    seeds = [seed + i for i in range(scfg.n_seeds)]
    steps_log = JsonlWriter(d / "steps.jsonl", fresh=True)
    runs_log = JsonlWriter(d / "runs.jsonl", fresh=True)
    specs, res = train_runs(scfg, base, seeds, on_step=steps_log)

    # evaluation: every run and the base, with the eval key of its seed index (paired across masks)
    per = {k: {"avg_at_k": [], "greedy": []} for k in ("base", *MASKS)}
    for i in range(len(seeds)):
        ev = _rl.eval_run(base.params, base, 10_000 + i, scfg.eval_k)
        for f in ev:
            per["base"][f].append(ev[f])
    kl = {k: [] for k in MASKS}
    shares = {}
    for r, (kind, s) in enumerate(specs):
        i = seeds.index(s)
        ev = _rl.eval_run(res.params[r], base, 10_000 + i, scfg.eval_k)
        for f in ev:
            per[kind][f].append(ev[f])
        masks = {n: np.asarray(m[r]) for n, m in res.frozen.masks.items()}
        shares.setdefault(kind, _mask_share(masks))
        kl[kind].append(np.asarray([rec["kl_exact"] for rec in res.logs[r]]))
        runs_log(
            {
                "mask": kind,
                "seed": s,
                "param_share": _mask_share(masks),
                "avg_at_k": float(ev["avg_at_k"].mean()),
                "greedy": float(ev["greedy"].mean()),
                "eval_k": scfg.eval_k,
                "final_reward": _rl.tail_mean(res.logs[r], "reward"),
                "final_kl_exact": _rl.tail_mean(res.logs[r], "kl_exact"),
                "final_sparsity_linear": res.logs[r][-1]["sparsity_linear"],
                "masked_entries_changed": _masked_entries_changed(
                    base.params, res.params[r], masks
                ),
            }
        )
    scores = {k: {f: np.concatenate(v[f]) for f in v} for k, v in per.items()}
    kl = {k: np.stack(v) for k, v in kl.items()}
    steps_log.close()
    runs_log.close()
    claims, summary = _claims(scfg, scores, kl)

    _rl.line_figure(
        d / "kl.png",
        {k: kl[k] for k in MASKS},
        xlabel="GRPO step",
        ylabel="token-wise KL to base",
        title=f"S6 KL(π‖π_base) per step ({len(seeds)} seeds; band = min–max)",
    )
    labels = ["base", *MASKS]
    _rl.bar_figure(
        d / "accuracy.png",
        labels,
        [mean_ci(scores[k]["avg_at_k"]) for k in labels],
        [float(scores[k]["greedy"].mean()) for k in labels],
        title=f"S6 accuracy after {scfg.steps} GRPO steps (avg@{scfg.eval_k}, 95% CI)",
    )
    return write_result(
        d,
        name=NAME,
        size=size,
        seed=seed,
        seconds=time.perf_counter() - start,
        claims=claims,
        figures=["kl.png", "accuracy.png"],
        data=["steps.jsonl", "runs.jsonl"],
        extra={
            "config": dataclasses.asdict(scfg),
            "base_greedy_accuracy": base.greedy_accuracy,
            "param_share": shares,
            **summary,
        },
    )
