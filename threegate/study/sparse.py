"""Sparse RL with one-shot masks (paper §5.1, Tables 4–5, Fig 9): the claims, from any model's runs.

The arms (`MASKS`): dense, $M_{princ}$ (M8), $M_{princ}^c$, $M_{low}$ (M9), the safe mask $M_{princ}^c\\cup M_{low}$, and
a random mask with the safe mask's per-layer size — GRPO from one base with gradient, update and weight decay masked.
`sparse_claims` turns their evaluation scores and token-wise KL-to-base trajectories (M14) into the paper's claims;
the tiny-model simulation S6 and the SmolLM2 study both call it.

Inputs:
* `scores[arm]` — `{"avg_at_k": [u], "greedy": [u]}` per-unit accuracies, the units (seed × problem cells, or
  problems) paired across arms (same problems, same eval keys); `"base"` is the base model.
* `kl[arm]` — `[S, T]` per-step KL to the base for `S` seeds. Seed `i` of every arm is paired; "dense" may hold
  more rows than the others (extra dense seeds): every pair of dense rows gives the seed-to-seed noise the
  safe mask's gap is read against.
"""

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from threegate.claims import Claim, Verdict, verdict_from_interval
from threegate.records import read_jsonl
from threegate.stats import MeanCI, mean_ci, paired_diff_ci
from threegate.stored import unchanged_mask_np

__all__ = [
    "MASKS",
    "ci_text",
    "equivalence_verdict",
    "kl_gap",
    "sparse_claims",
    "sparse_runs_study",
]

#: The six arms of Table 4, in its order.
MASKS = ("dense", "principal", "nonprincipal", "low", "safe", "random")


def ci_text(c: MeanCI, digits: int = 3) -> str:
    return f"{c.mean:+.{digits}f} [95% CI {c.lo:+.{digits}f}, {c.hi:+.{digits}f}]"


def equivalence_verdict(c: MeanCI, margin: float) -> Verdict:
    """ "≈" claims: agrees when the CI of the difference lies inside ±margin, disagrees when it lies outside."""
    if not (np.isfinite(c.lo) and np.isfinite(c.hi)):
        return "inconclusive"
    if -margin <= c.lo and c.hi <= margin:
        return "agrees"
    if c.lo > margin or c.hi < -margin:
        return "disagrees"
    return "inconclusive"


def kl_gap(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """Mean absolute gap between two KL trajectories, relative to the dense run's mean KL."""
    return float(np.mean(np.abs(a - b)) / scale) if scale > 0 else float("nan")


def _accuracy_claims(
    scores: Mapping[str, Mapping[str, np.ndarray]], *, eval_k: int, margin: float, prefix: str
) -> list[Claim]:
    """Table 4–5's four accuracy claims, from paired per-problem differences of avg@k."""
    base = mean_ci(scores["base"]["avg_at_k"])

    def d(a, b):
        return paired_diff_ci(scores[a]["avg_at_k"], scores[b]["avg_at_k"])

    learn, princ, safe_dense, safe_rand = (
        d("dense", "base"),
        d("nonprincipal", "principal"),
        d("safe", "dense"),
        d("safe", "random"),
    )
    return [
        Claim(
            f"{prefix}dense_learns",
            "Dense RLVR improves accuracy over the base (the premise of Table 4).",
            f"avg@{eval_k} dense − base = {ci_text(learn)} (base {base.mean:.3f}).",
            verdict_from_interval(learn.lo, learn.hi, expect="positive"),
        ),
        Claim(
            f"{prefix}nonprincipal_beats_principal",
            "At the same 50% of parameters, training M_princ^c beats training M_princ (Tables 4–5).",
            f"avg@{eval_k} M_princ^c − M_princ = {ci_text(princ)}.",
            verdict_from_interval(princ.lo, princ.hi, expect="positive"),
        ),
        Claim(
            f"{prefix}safe_matches_dense",
            "The safe mask M_princ^c ∪ M_low matches dense RLVR in accuracy (Tables 4–5).",
            f"avg@{eval_k} safe − dense = {ci_text(safe_dense)}; equivalence margin ±{margin}.",
            equivalence_verdict(safe_dense, margin),
        ),
        Claim(
            f"{prefix}safe_beats_random",
            "The safe mask beats a random mask of the same per-layer size (Tables 4–5).",
            f"avg@{eval_k} safe − random = {ci_text(safe_rand)}.",
            verdict_from_interval(safe_rand.lo, safe_rand.hi, expect="positive"),
        ),
    ]


def _kl_tracking_claim(
    kl: Mapping[str, np.ndarray], seeds: int, prefix: str
) -> tuple[Claim, dict, list]:
    """Fig 9: per seed, the safe mask's KL-trajectory gap to the dense run of the same seed (relative to dense's
    mean KL) against the seed-to-seed gap of dense itself. Returns the claim, the gaps and the noise gaps."""
    scale = float(np.mean(kl["dense"][:seeds]))
    gap = {k: [kl_gap(kl[k][i], kl["dense"][i], scale) for i in range(seeds)] for k in MASKS}
    noise = [
        kl_gap(kl["dense"][i], kl["dense"][j], scale)
        for i, j in itertools.combinations(range(kl["dense"].shape[0]), 2)
    ]
    g = {k: float(np.mean(v)) for k, v in gap.items()}
    if noise:
        nz = float(np.mean(noise))
        others = min(g[k] for k in ("principal", "nonprincipal", "low", "random"))
        verdict = (
            "agrees"
            if g["safe"] <= 2 * nz
            else ("disagrees" if g["safe"] > others else "inconclusive")
        )
        noise_txt = f"seed-to-seed gap of dense {nz:.2f}"
    else:
        verdict, noise_txt = "inconclusive", "no seed-to-seed baseline (one seed)"
    claim = Claim(
        f"{prefix}safe_tracks_dense_kl",
        "The safe mask's token-wise KL-to-base trajectory tracks dense RLVR (Fig. 9).",
        f"mean |KL_safe − KL_dense| / mean KL_dense = {g['safe']:.2f} vs {noise_txt}; "
        f"random {g['random']:.2f}, M_princ {g['principal']:.2f}, M_princ^c {g['nonprincipal']:.2f}, "
        f"M_low {g['low']:.2f}.",
        verdict,
    )
    return claim, g, noise


def _slowest_kl_claim(kl: Mapping[str, np.ndarray], seeds: int, prefix: str) -> tuple[Claim, dict]:
    """Fig 9: M_princ's final-quarter KL is the lowest of all masks in every seed. Returns the claim and the
    per-mask final KLs."""
    final = {
        k: np.asarray([v[-max(1, v.size // 4) :].mean() for v in kl[k][:seeds]]) for k in MASKS
    }
    lowest = all(final["principal"][i] < min(final[k][i] for k in MASKS if k != "principal")
                 for i in range(seeds))  # fmt: skip
    highest_half = all(
        final["principal"][i] > np.median([final[k][i] for k in MASKS]) for i in range(seeds)
    )
    claim = Claim(
        f"{prefix}principal_kl_slowest",
        "Training M_princ moves the policy least: its KL to the base rises slowest (Fig. 9).",
        "final-quarter mean KL per mask (mean over seeds): "
        + ", ".join(f"{k} {final[k].mean():.2e}" for k in MASKS)
        + ".",
        "agrees" if lowest else ("disagrees" if highest_half else "inconclusive"),
    )
    return claim, final


def sparse_claims(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    kl: Mapping[str, np.ndarray],
    *,
    eval_k: int,
    margin: float,
    prefix: str = "",
) -> tuple[list[Claim], dict]:
    """The five sparse-RL claims (ids `prefix + ...`) and a summary (accuracy CIs, KL gaps, final KL)."""
    claims = _accuracy_claims(scores, eval_k=eval_k, margin=margin, prefix=prefix)
    kl = {k: np.atleast_2d(np.asarray(v, np.float64)) for k, v in kl.items()}
    seeds = min(kl[k].shape[0] for k in MASKS)
    tracking, gaps, noise = _kl_tracking_claim(kl, seeds, prefix)
    slowest, final = _slowest_kl_claim(kl, seeds, prefix)
    summary = {
        "accuracy": {
            k: {
                "avg_at_k": mean_ci(v["avg_at_k"])._asdict(),
                "greedy": mean_ci(v["greedy"])._asdict(),
            }
            for k, v in scores.items()
        },
        "kl_gap_to_dense": gaps,
        "kl_seed_noise": float(np.mean(noise)) if noise else None,
        "final_kl": {k: final[k].tolist() for k in MASKS},
    }
    return [*claims, tracking, slowest], summary


def _frozen_check(folder, masks: dict) -> dict:
    """Entries changed (Def 2.1, `threegate.stored`) outside the mask between step 0 and the run's last
    checkpoint (must be 0), and inside it."""
    from threegate.checkpoints import open_checkpoint

    steps = sorted(folder.glob("step_*"))
    outside = inside = 0
    with open_checkpoint(steps[0]) as a, open_checkpoint(steps[-1]) as b:
        for name, m in masks.items():
            changed = ~unchanged_mask_np(np.asarray(a.load(name)), np.asarray(b.load(name)))
            outside += int(np.count_nonzero(changed & ~m))
            inside += int(np.count_nonzero(changed & m))
    return {"changed_outside_mask": outside, "changed_inside_mask": inside, "last": steps[-1].name}


def _load_arms(folders: Mapping[str, Path]) -> tuple[dict, dict]:
    """Each arm's `eval.json` and the per-problem scores (the base from the dense arm's evaluation before)."""
    evals = {m: json.loads((f / "eval.json").read_text()) for m, f in folders.items()}
    problems = {m: ev["eval_before"].get("problems") for m, ev in evals.items()}
    if any(p != problems["dense"] for p in problems.values()):
        raise ValueError("sparse arms were evaluated on different problems")
    scores = {
        "base": {k: np.asarray(v) for k, v in evals["dense"]["eval_before"]["per_problem"].items()}
    }
    for m in MASKS:
        scores[m] = {k: np.asarray(v) for k, v in evals[m]["eval_after"]["per_problem"].items()}
    return evals, scores


def _log(folder: Path) -> list[dict]:
    from threegate.lm.run_folder import LOG_FILE

    return read_jsonl(folder / LOG_FILE)


def _kl_of(folder: Path, steps: int | None = None) -> np.ndarray:
    return np.asarray([r["kl_exact"] for r in _log(folder)[:steps]], np.float64)


def _arm_row(m: str, folder: Path, kl: np.ndarray, summary: dict) -> dict:
    """One row of Table 4: the arm's run, final reward and KL, linear sparsity, accuracy, trainable share and
    (masked arms) the frozen-entry control."""
    from threegate.lm.run_folder import MASKS_FILE, load_masks

    recs = _log(folder)
    steps = kl.shape[1]
    row = {
        "arm": m,
        "run": folder.name,
        "steps": len(recs),
        "final_reward": float(np.mean([r["reward"] for r in recs[-max(1, len(recs) // 4) :]])),
        "final_kl_exact": float(kl[0, -max(1, steps // 4) :].mean()),
        "sparsity_linear": recs[-1]["sparsity_linear"] if recs else None,
        "avg_at_k": summary["accuracy"][m]["avg_at_k"],
        "greedy": summary["accuracy"][m]["greedy"],
    }
    mask_file = folder / MASKS_FILE
    if mask_file.is_file():
        masks = load_masks(mask_file)
        n = sum(x.size for x in masks.values())
        row["param_share"] = sum(int(x.sum()) for x in masks.values()) / n
        row |= _frozen_check(folder, masks)
    else:
        row["param_share"] = 1.0
    return row


def _draw(out: Path, kl: dict, summary: dict, k_eval: int) -> list[str]:
    from threegate.study.figures import bar_figure, line_figure

    out.mkdir(parents=True, exist_ok=True)
    line_figure(
        out / "sparse_kl.png",
        {m: kl[m] for m in MASKS},
        xlabel="GRPO step",
        ylabel="token-wise KL to base",
        title="Fig 9: KL(π‖π_base) per step by mask (dense band: seeds)",
    )
    labels = ["base", *MASKS]
    acc = summary["accuracy"]
    bar_figure(
        out / "sparse_accuracy.png",
        labels,
        [MeanCI(**acc[k]["avg_at_k"]) for k in labels],
        [acc[k]["greedy"]["mean"] for k in labels],
        title=f"Table 4: held-out avg@{k_eval} by mask (95% CI), greedy marked",
    )
    return ["sparse_kl.png", "sparse_accuracy.png"]


def sparse_runs_study(
    arms: Mapping[str, str | Path],
    *,
    extra_dense: Sequence[str | Path] = (),
    margin: float = 0.05,
    out: str | Path | None = None,
) -> dict:
    """Table 4/5 and Fig 9 from `threegate train grpo [--mask ...]` run folders, one per arm of `MASKS`.

    Every arm's `eval.json` must evaluate the same problems before (the base) and after; `log.jsonl` gives the
    per-step `kl_exact`. `extra_dense`: folders of dense runs with other seeds (their first steps' KL join the
    dense rows as the seed-to-seed noise). Masked arms' `masks.npz` give the trainable share and the control that
    no frozen entry changed a bit. With `out`, draws `sparse_kl.png` and `sparse_accuracy.png` there.
    """
    missing = [m for m in MASKS if m not in arms]
    if missing:
        raise ValueError(f"sparse study needs every arm of {MASKS}; missing {missing}")
    folders = {m: Path(arms[m]) for m in MASKS}
    evals, scores = _load_arms(folders)
    kl = {m: _kl_of(f)[None] for m, f in folders.items()}
    steps = kl["dense"].shape[1]
    used = [(str(f), x) for f in extra_dense if (x := _kl_of(Path(f), steps)).size == steps]
    if used:
        kl["dense"] = np.concatenate([kl["dense"], np.stack([x for _, x in used])])
    k_eval = evals["dense"]["eval_after"].get("k", 1)
    claims, summary = sparse_claims(scores, kl, eval_k=k_eval, margin=margin)
    return {
        "arms": [_arm_row(m, folders[m], kl[m], summary) for m in MASKS],
        "eval_k": k_eval,
        "margin": margin,
        "kl": {m: kl[m].tolist() for m in MASKS},
        "extra_dense": [f for f, _ in used],
        "summary": summary,
        "claims": [c._asdict() for c in claims],
        "figures": [] if out is None else _draw(Path(out), kl, summary, k_eval),
    }
