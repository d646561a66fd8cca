"""S5, geometry interventions (digest §9.3 S5; paper Sec. 4.3, Fig 6, App. D / Prop D.1).

On the S4 base (`sims._tiny.pretrained`): block 0 gets Rotate + Permute (a Haar V/O rotation and a swap of the
KV heads with their query groups), block 1 gets Rotate only. Both are function-preserving; the invariance is
measured in float32 (max |Δlogit| over every problem's prompt and answer; asserted in the tests) and, for
information, after the bf16 rounding that storage adds (a rotation is not exact in bf16: the rotated weights are
rounded again). GRPO then runs from the plain and from the intervened model (two seeds each, the same seeds),
and the bitwise update masks (each run against its own step 0) are compared per tensor with the Jaccard index
and its Bernoulli baseline, reference = the first plain run:

* intervened tensors (block 0 q/k/v/o, block 1 v/o) in raw coordinates: the paper sees the overlap fall to the
  random level; untouched tensors (the MLPs, block 1 q/k) keep the overlap of two plain runs;
* block 0 after mapping the permutation back (`unpermute_mask`): q/k were only permuted, so their overlap should
  come back; v/o were also rotated, which has no coordinate-wise inverse.

Outputs in `out/interventions/`: `runs/<run>/` (logs and bf16 checkpoints), `overlaps.jsonl` (one line per
tensor and run), `fig6_overlap.png`, `result.json`.
"""

import math
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sims._contract import Claim, check_size, write_result
from sims._tiny import pretrained
from sims.tiny_lm import RL_SIZES, rl_config, train_run
from threegate._numerics import tol
from threegate.checkpoints import classify, layer_index
from threegate.lm.interventions import haar_orthogonal, permute_heads, rotate_vo, unpermute_mask
from threegate.lm.model import forward
from threegate.masks import jaccard, jaccard_baseline
from threegate.records import JsonlWriter
from threegate.stats import mean_interval
from threegate.study.updates import update_masks

__all__ = ["NAME", "SUMMARY", "intervene", "invariance", "run"]

NAME = "interventions"
SUMMARY = "S5: V/O rotation + head permutation on the tiny LM; RL update overlap collapses where the geometry moved (Sec. 4.3)"

#: The seven projection weights of each block (the tensors compared).
LINEAR = r"\.(?:q|k|v|o|gate|up|down)_proj\.weight$"

#: The paper's layout scaled down: (block, edits). Block 0: Rotate + Permute; block 1: Rotate.
PLAN = ((0, ("rotate", "permute")), (1, ("rotate",)))


def intervene(params: dict, mcfg, seed: int) -> tuple[dict, dict]:
    """The intervened float32 params and a description of the edits (rotation seeds, permutation)."""
    new = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    perm = list(range(mcfg.n_kv_heads))[::-1]
    for layer, edits in PLAN:
        if "rotate" in edits:
            new = rotate_vo(
                new,
                mcfg,
                layer,
                haar_orthogonal(jax.random.key(10_000 + seed + layer), mcfg.head_dim),
            )
        if "permute" in edits:
            new = permute_heads(new, mcfg, layer, perm)
    return new, {"plan": [[layer, list(edits)] for layer, edits in PLAN], "perm_kv": perm}


def _sequences(base) -> jax.Array:
    p = base.task.all_problems()
    prompts, _ = base.task.prompts(p)
    refs, _ = base.task.references(p)
    return jnp.concatenate([prompts, refs], axis=1)


def invariance(plain: dict, intervened: dict, base) -> dict:
    """max |Δlogit| between the plain and intervened model on every problem (float32, and bf16-stored)."""
    tokens = _sequences(base)
    ref = forward(plain, base.mcfg, tokens)
    f32 = forward(intervened, base.mcfg, tokens)
    rounded = {k: v.astype(jnp.bfloat16).astype(jnp.float32) for k, v in intervened.items()}
    bf = forward(rounded, base.mcfg, tokens)
    scale = float(jnp.max(jnp.abs(ref)))
    return {
        "max_abs_logit": scale,
        # float32 rounding of a d_model-long reduction, relative to the logits' scale (threegate._numerics)
        "tolerance": tol(jnp.float32, base.mcfg.d_model) * scale,
        "max_logit_diff_float32": float(jnp.max(jnp.abs(f32 - ref))),
        "max_logit_diff_bf16_stored": float(jnp.max(jnp.abs(bf - ref))),
        "tokens": int(tokens.size),
    }


def _edited(name: str) -> str | None:
    """Which edit touched this tensor ("rotate+permute", "rotate", "permute") or None."""
    layer, t = layer_index(name), classify(name)
    for lay, edits in PLAN:
        if lay != layer:
            continue
        hit = [
            e
            for e in edits
            if (e == "rotate" and t in ("v_proj", "o_proj"))
            or (e == "permute" and t in ("q_proj", "k_proj", "v_proj", "o_proj"))
        ]
        return "+".join(hit) or None
    return None


def _rows(ref: dict, other: dict, run: str, mcfg, perm) -> list[dict]:
    rows = []
    for name, m0 in ref.items():
        m1 = other[name]
        edit = _edited(name)
        p, q = float(m0.mean()), float(m1.mean())
        row = {
            "run": run,
            "name": name,
            "layer": layer_index(name),
            "type": classify(name),
            "edit": edit,
            "density_ref": p,
            "density": q,
            "jaccard": float(jaccard(m0, m1)),
            "random": float(jaccard_baseline(p, q)),
        }
        if edit is not None and "permute" in edit and run.startswith("intervened"):
            back = unpermute_mask(m1, classify(name), mcfg, perm)
            row["jaccard_unpermuted"] = float(jaccard(m0, back))
        rows.append(row)
    for r in rows:
        r["lift"] = r["jaccard"] / r["random"] if r["random"] else math.nan
        if "jaccard_unpermuted" in r:
            r["lift_unpermuted"] = (
                r["jaccard_unpermuted"] / r["random"] if r["random"] else math.nan
            )
    return rows


def _fmt(t) -> str:
    mean, lo, hi, n = t
    return f"{mean:.3g} [{lo:.3g}, {hi:.3g}] (n={n})"


def _claims(rows: list[dict], inv: dict) -> list[Claim]:
    interv = [r for r in rows if r["run"].startswith("intervened")]
    plain = [r for r in rows if r["run"].startswith("plain")]
    moved = mean_interval(r["lift"] for r in interv if r["edit"] is not None)
    still = mean_interval(r["lift"] for r in interv if r["edit"] is None)
    control = mean_interval(r["lift"] for r in plain)
    claims = []
    # intervened tensors near random: their lift interval is closer to 1 than to the untouched tensors' lift
    verdict = "inconclusive"
    if moved[3] > 1 and still[3] > 1 and math.isfinite(moved[2]):
        mid = 1 + 0.5 * (still[0] - 1)
        verdict = (
            "agrees" if moved[2] < mid else ("disagrees" if moved[1] > mid else "inconclusive")
        )
    claims.append(
        Claim(
            "S5.intervened_overlap_random",
            "Fig 6: after Rotate(+Permute), the overlap of RL update masks with a plain run falls to the random level in the intervened layers.",
            f"Jaccard lift (J / Bernoulli baseline; random = 1) in intervened tensors {_fmt(moved)}; untouched tensors {_fmt(still)}",
            verdict,
        )
    )
    lo = still[1] - moved[2]
    claims.append(
        Claim(
            "S5.untouched_overlap_high",
            "Fig 6: untouched layers keep a high overlap with the plain run (as two plain runs do).",
            f"lift in untouched tensors {_fmt(still)} vs intervened {_fmt(moved)}; two plain runs, all tensors {_fmt(control)}",
            "agrees"
            if lo > 0 and still[1] > 1
            else ("disagrees" if still[2] < moved[1] else "inconclusive"),
        )
    )
    qk = [r for r in interv if r["edit"] == "permute"]
    raw = mean_interval(r["lift"] for r in qk)
    back = mean_interval(r["lift_unpermuted"] for r in qk)
    claims.append(
        Claim(
            "S5.permutation_mapped_back",
            "Sec. 4.3 (digest proposal): a head permutation only relabels coordinates, so mapping it back should restore the overlap.",
            f"permuted-only tensors (block 0 q/k): lift raw {_fmt(raw)}, after mapping back {_fmt(back)}",
            "agrees" if back[1] > raw[2] else ("disagrees" if back[2] < raw[1] else "inconclusive"),
        )
    )
    claims.append(
        Claim(
            "S5.invariance_float32",
            "Prop D.1: V/O rotation and head permutation leave the function unchanged.",
            f"max |Δlogit| {inv['max_logit_diff_float32']:.2e} in float32 (logits up to {inv['max_abs_logit']:.3g}, "
            f"rounding tolerance {inv['tolerance']:.1e}); "
            f"{inv['max_logit_diff_bf16_stored']:.2e} once the intervened weights are stored in bf16",
            "agrees" if inv["max_logit_diff_float32"] <= inv["tolerance"] else "disagrees",
        )
    )
    return claims


def _figure(rows: list[dict], root: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted({r["run"] for r in rows})
    names = sorted({r["name"] for r in rows}, key=lambda n: (layer_index(n), classify(n)))
    fig, ax = plt.subplots(figsize=(10, 3.4))
    x = np.arange(len(names))
    for i, run in enumerate(runs):
        lift = {r["name"]: r["lift"] for r in rows if r["run"] == run}
        ax.bar(
            x + (i - len(runs) / 2 + 0.5) * 0.8 / len(runs),
            [lift[n] for n in names],
            0.8 / len(runs),
            label=run,
        )
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    for j, n in enumerate(names):
        if _edited(n):
            ax.axvspan(j - 0.45, j + 0.45, color="orange", alpha=0.15, lw=0)
    ax.set_xticks(
        x,
        [f"L{layer_index(n)} {classify(n).split('_')[0]}" for n in names],
        rotation=60,
        fontsize=7,
    )
    ax.set_ylabel("Jaccard / random baseline")
    ax.set_title(
        "Overlap of RL update masks with plain run 1 (shaded: intervened tensors; dashed: random)",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(root / "fig6_overlap.png", dpi=110)
    plt.close(fig)
    return "fig6_overlap.png"


def run(out: Path, size: str, seed: int) -> dict:
    """Intervene, check invariance, run GRPO from both models, compare masks; write `out/interventions/`."""
    check_size(size)
    start = time.perf_counter()
    root = Path(out) / NAME
    shutil.rmtree(root / "runs", ignore_errors=True)
    (root / "runs").mkdir(parents=True)
    s = RL_SIZES[size]
    base = pretrained(size, seed)
    plain = {k: jnp.asarray(v, jnp.float32) for k, v in base.params.items()}
    intervened, plan = intervene(plain, base.mcfg, seed)
    inv = invariance(plain, intervened, base)
    masks = {}
    for model, params0 in (("plain", plain), ("intervened", intervened)):
        for i in (1, 2):
            name = f"{model}_seed{i}"
            cfg = rl_config(size, "grpo", 1000 * seed + i)
            folder = root / "runs" / name
            train_run(base, cfg, folder, (s.steps,), params0=params0)
            masks[name] = update_masks(
                folder / "step_000000", folder / f"step_{s.steps:06d}", include=LINEAR
            )
    ref = masks.pop("plain_seed1")
    rows = []
    for name, m in masks.items():
        rows += _rows(ref, m, name, base.mcfg, plan["perm_kv"])
    with JsonlWriter(root / "overlaps.jsonl") as w:
        for r in rows:
            w.write(r)
    fig = _figure(rows, root)
    return write_result(
        root,
        name=NAME,
        size=size,
        seed=seed,
        seconds=time.perf_counter() - start,
        claims=_claims(rows, inv),
        figures=[fig],
        data=["overlaps.jsonl"],
        extra={"invariance": inv, "interventions": plan, "reference_run": "plain_seed1"},
    )
