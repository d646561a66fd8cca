"""The paper's observations about checkpoint sets, as claims with verdicts (`threegate.claims`).

Each function reads the dict `threegate.study.analyse` builds and returns one `Claim`. Verdict rules:

* RL against SFT (sparsity, rotation, spectral shift): agrees when every RL run is on the paper's side of every
  SFT run, disagrees when every RL run is on the other side, otherwise (or without SFT runs) inconclusive.
* Effects against a baseline (Jaccard, overlaps, profile correlation): the interval mean ± 2 s/√n of the
  per-tensor (or per-pair) differences over all RL runs, through `verdict_from_interval`.
* Gate II theorems on real updates (Weyl, rigorous Wedin): agrees when every ratio is ≤ 1 up to the float32
  rounding slack of `threegate._numerics.tol`; these hold by theorem, so "disagrees" would mean a bug.
"""

import math

from threegate._numerics import tol
from threegate.claims import Claim, verdict_from_interval
from threegate.stats import mean_interval

__all__ = ["study_claims"]


def _fmt(x, spec: str = ".3g") -> str:
    return (
        "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)
    )


def _interval_text(mean, lo, hi, n) -> str:
    return f"{_fmt(mean)} [{_fmt(lo)}, {_fmt(hi)}] (n={n})"


def _separated(rl: list[float], sft: list[float], *, rl_larger: bool):
    if not rl or not sft:
        return "inconclusive"
    if rl_larger:
        rl, sft = [-x for x in rl], [-x for x in sft]
    if max(rl) < min(sft):
        return "agrees"
    if min(rl) > max(sft):
        return "disagrees"
    return "inconclusive"


def _runs(study: dict, kind: str) -> list[str]:
    return [r["name"] for r in study["runs"] if r["kind"] == kind]


def _sparsity(study: dict) -> Claim:
    t1 = {row["run"]: row for row in study["table1"]}
    rl = [t1[n]["sparsity"] for n in _runs(study, "rl") if t1[n]["sparsity"] is not None]
    sft = [t1[n]["sparsity"] for n in _runs(study, "sft") if t1[n]["sparsity"] is not None]
    obs = f"bf16 sparsity RL {', '.join(_fmt(x) for x in rl)}; SFT {', '.join(_fmt(x) for x in sft) or 'none'}"
    return Claim(
        "sparsity_rl_above_sft",
        "Table 1: RLVR leaves many more bf16 weights bitwise unchanged than SFT (36–92% vs ~0–15%).",
        obs,
        _separated(rl, sft, rl_larger=True),
    )


def _jaccard(study: dict) -> Claim:
    t2 = study.get("table2")
    paper = "Table 2: update masks of independent RL runs overlap above the Bernoulli baseline pq/(p+q−pq)."
    if not t2 or not t2["rows"]:
        return Claim("jaccard_above_random", paper, "fewer than two RL runs", "inconclusive")
    rows = [r for r in t2["rows"] if r["jaccard"] is not None and r["random"] is not None]
    mean, lo, hi, n = mean_interval(r["jaccard"] - r["random"] for r in rows)
    per = "; ".join(f"{r['type']} {_fmt(r['jaccard'])} vs {_fmt(r['random'])}" for r in rows)
    obs = (
        f"layer {t2['layer']}: J vs random {per}; mean difference {_interval_text(mean, lo, hi, n)}"
    )
    return Claim(
        "jaccard_above_random", paper, obs, verdict_from_interval(lo, hi, expect="positive")
    )


def _stripes(study: dict) -> Claim:
    paper = "Fig 3: row ratios of q and column ratios of o keep their peaks across checkpoints (stripes stay put)."
    vals, nulls = [], []
    for t in study.get("temporal", []):
        for key in ("q.row", "o.col"):
            p = t["profiles"].get(key)
            if p is None:
                continue
            corr = p["corr"]
            n = len(corr)
            vals += [
                corr[i][j] for i in range(n) for j in range(i + 1, n) if corr[i][j] is not None
            ]
            nulls.append(p["null_sd"])
    if not vals:
        return Claim("stripes_stable", paper, "no run with two or more checkpoints", "inconclusive")
    mean, lo, hi, n = mean_interval(vals)
    obs = (
        f"Pearson correlation of smoothed q-row / o-column update ratios between checkpoints "
        f"{_interval_text(mean, lo, hi, n)}; independent profiles: 0 ± {_fmt(max(nulls))} (1/√length)"
    )
    return Claim("stripes_stable", paper, obs, verdict_from_interval(lo, hi, expect="positive"))


def _rl_vs_sft(study: dict, field: str, cid: str, paper: str, what: str) -> Claim:
    pr = study["per_run"]
    rl = [pr[n][field] for n in _runs(study, "rl") if pr[n][field] is not None]
    sft = [pr[n][field] for n in _runs(study, "sft") if pr[n][field] is not None]
    ks = sorted({k for n in pr for k in pr[n]["k"]})
    obs = (
        f"{what} (mean over linear weights, k={ks}): RL {', '.join(_fmt(x) for x in rl)}; "
        f"SFT {', '.join(_fmt(x) for x in sft) or 'none'}"
    )
    return Claim(cid, paper, obs, _separated(rl, sft, rl_larger=False))


def _overlap(study: dict, field: str, expect: str, cid: str, paper: str) -> Claim:
    diffs = []
    for n in _runs(study, "rl"):
        for t in study["per_run"][n]["tensors"]:
            if t[field] is not None and t[field + "_random"] is not None:
                diffs.append(t[field] - t[field + "_random"])
    mean, lo, hi, cnt = mean_interval(diffs)
    obs = f"RL overlap minus its random baseline, per linear weight: {_interval_text(mean, lo, hi, cnt)}"
    return Claim(cid, paper, obs, verdict_from_interval(lo, hi, expect=expect))


def _principal_not_low(study: dict) -> Claim:
    diffs = []
    for n in _runs(study, "rl"):
        for t in study["per_run"][n]["tensors"]:
            a, ar = t["overlap_principal"], t["overlap_principal_random"]
            b, br = t["overlap_principal_not_low"], t["overlap_principal_not_low_random"]
            if None not in (a, ar, b, br) and ar > 0 and br > 0:
                diffs.append(b / br - a / ar)
    mean, lo, hi, cnt = mean_interval(diffs)
    obs = (
        "RL lift (overlap / baseline) with M_princ∩M_low^c minus lift with M_princ, per linear weight: "
        f"{_interval_text(mean, lo, hi, cnt)}"
    )
    return Claim(
        "overlap_principal_not_low_lower",
        "Fig 5: excluding low-magnitude weights, the overlap with principal weights drops further.",
        obs,
        verdict_from_interval(lo, hi, expect="negative"),
    )


def _bound(study: dict, field: str, cid: str, paper: str) -> Claim:
    worst, count, size = None, 0, 1
    for n in _runs(study, "rl") + _runs(study, "sft"):
        for t in study["per_run"][n]["tensors"]:
            if t[field] is not None:
                count += 1
                size = max(size, *t["shape"])
                worst = t[field] if worst is None else max(worst, t[field])
    if worst is None:
        return Claim(cid, paper, "no weight met the bound's premise", "inconclusive")
    slack = tol("float32", size)
    verdict = "agrees" if worst <= 1 + slack else "disagrees"
    obs = (
        f"max ratio lhs/rhs {_fmt(worst, '.4f')} over {count} weights (holds if ≤ 1 + {slack:.1e})"
    )
    return Claim(cid, paper, obs, verdict)


def _regime(study: dict) -> Claim:
    ratios = []
    for n in _runs(study, "rl"):
        ratios += [
            t["dw_norm2"] / t["gap_k"]
            for t in study["per_run"][n]["tensors"]
            if t["dw_norm2"] is not None and t["gap_k"]
        ]
    paper = "Gate II: RLVR updates are small against the spectral gap, ‖ΔW‖₂ < γ_k, so Wedin's bound is informative."
    if not ratios:
        return Claim("gate2_update_below_gap", paper, "no RL spectral records", "inconclusive")
    ratios.sort()
    med = ratios[len(ratios) // 2]
    below = sum(r < 1 for r in ratios) / len(ratios)
    obs = f"RL ‖ΔW‖₂/γ_k median {_fmt(med)} (max {_fmt(ratios[-1])}); below 1 for {below:.0%} of weights"
    return Claim("gate2_update_below_gap", paper, obs, "agrees" if med < 1 else "disagrees")


def study_claims(study: dict) -> list[Claim]:
    """Every claim the analysis can judge, in the paper's order."""
    return [
        _sparsity(study),
        _jaccard(study),
        _stripes(study),
        _rl_vs_sft(
            study,
            "mean_max_angle_deg",
            "rl_rotates_less",
            "Fig 4: RLVR barely rotates the top-k singular subspaces; SFT rotates them much more.",
            "max principal angle (degrees)",
        ),
        _rl_vs_sft(
            study,
            "mean_spectral_shift",
            "rl_spectrum_preserved",
            "Fig 4: RLVR nearly preserves the singular values (small NSS); SFT shifts them much more.",
            "normalized spectral shift",
        ),
        _overlap(
            study,
            "overlap_principal",
            "negative",
            "overlap_principal_sub_random",
            "Fig 5: RL update masks overlap principal weights M_princ less than a random mask would.",
        ),
        _overlap(
            study,
            "overlap_low",
            "positive",
            "overlap_low_super_random",
            "Fig 5: RL update masks overlap low-magnitude weights M_low more than a random mask would.",
        ),
        _principal_not_low(study),
        _bound(
            study,
            "wedin_rigorous_ratio",
            "wedin_rigorous_holds",
            "Thm 3.3 / Cor 3.4 (rigorous form, ‖ΔW‖₂ < γ_k): sin Θ ≤ ‖ΔW‖₂/(γ_k − ‖ΔW‖₂) on real updates.",
        ),
        _bound(
            study,
            "weyl_ratio",
            "weyl_holds",
            "Weyl: |σ_i(W+ΔW) − σ_i(W)| ≤ ‖ΔW‖₂ on real updates.",
        ),
        _regime(study),
    ]
