"""The analysis of the controlled study (issue 16): pure functions of its rows, one row per checkpoint.

A row (`threegate.study.controlled.rows`) holds a checkpoint's run, method, lr, seed, storage, step and
`updates`, its probes (`accuracy`, `forward_kl`, `reverse_kl`, `text`, `cloze`), the trainer's log at that
step (`log_drift_efficiency`, …) and its geometry (`sparsity_all`, `overlap_principal_lift@64`, …); step 0 is
the base. From the rows:

* **trajectories** of every metric against the forward KL and against the accuracy gain, per run (the
  frontiers' points);
* **three matchings**, each giving RL − SFT differences (GRPO against off-policy and on-policy SFT) with CIs:
  matched lr and steps (the same lr and checkpoint, paired by seed: `threegate.stats.paired_diff_ci`);
  matched forward KL and matched accuracy gain (each run interpolated at a level by `at_level`; the runs of
  two methods that reach it compared by `threegate.stats.welch_diff_ci`);
* **the sparsity model** (`predict_sparsity`): bf16 sparsity from lr, updates, drift efficiency and the base's
  weight-magnitude distribution, against the measured one, run by run;
* **claims** with verdicts at each matching.

`at_level` is exact on trajectories that are linear in the level variable (tested).
"""

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from threegate.claims import Claim, verdict_from_interval
from threegate.stats import MeanCI, corr_ci, paired_diff_ci, welch_diff_ci

__all__ = [
    "GEOMETRY",
    "METRICS",
    "analyse_rows",
    "at_level",
    "geometry_summary",
    "half_ulp_histogram",
    "matched_at_levels",
    "matched_lr",
    "predict_sparsity",
    "value",
    "with_deltas",
]

#: bf16 keeps 8 significant bits: a normal weight in [2^e, 2^(e+1)) has ULP 2^(e-7), half of it 2^(e-8).
BF16_HALF_ULP_SHIFT = 8

#: Geometry fields of one checkpoint per k (`geometry_summary`), averaged over the measured linear tensors.
GEOMETRY = (
    "overlap_principal_lift",
    "overlap_low_lift",
    "overlap_principal_not_low_lift",
    "max_angle_deg",
    "nss",
    "dw2_over_gap",
    "principal_energy_fraction",
    "principal_energy_null",
)


def _mean(xs) -> float | None:
    v = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    return sum(v) / len(v) if v else None


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def geometry_summary(
    recs: list[dict], pairs: list[dict], key: str, twin: str | None = None
) -> dict:
    """The geometry of one tuned checkpoint `key` from its compare records (`tensors.jsonl` lines of that
    checkpoint), means over its 2-D linear tensors: overlap lifts (overlap / random baseline) with M_princ,
    M_low and M_princ ∩ M_low^c, the max principal angle (max over U and V), NSS (M12), ‖ΔW‖₂/γ_k and the
    principal energy fraction with its k²/(mn) null; with `twin` (the other seed's checkpoint), the Jaccard of
    their update masks and its Bernoulli baseline (`pairs.jsonl`)."""
    lin = [
        r for r in recs if r["tuned"] == key and len(r["shape"]) == 2 and r.get("layer") is not None
    ]
    out: dict[str, Any] = {}
    for f in ("overlap_principal", "overlap_low", "overlap_principal_not_low"):
        out[f"{f}_lift"] = _mean(_ratio(r.get(f), r.get(f + "_random")) for r in lin)
    out["max_angle_deg"] = _mean(
        max(r["max_angle_u_deg"], r["max_angle_v_deg"])
        for r in lin
        if r.get("max_angle_u_deg") is not None and r.get("max_angle_v_deg") is not None
    )
    out["nss"] = _mean(r.get("spectral_shift") for r in lin)
    out["dw2_over_gap"] = _mean(_ratio(r.get("dw_norm2"), r.get("gap_k")) for r in lin)
    out["principal_energy_fraction"] = _mean(r.get("principal_energy_fraction") for r in lin)
    out["principal_energy_null"] = _mean(r.get("principal_energy_null") for r in lin)
    if twin is not None:
        names = {r["name"] for r in lin}
        ps = [
            p for p in pairs if {p["tuned_a"], p["tuned_b"]} == {key, twin} and p["name"] in names
        ]
        out["jaccard_seeds"] = _mean(p.get("jaccard") for p in ps)
        out["jaccard_seeds_random"] = _mean(p.get("jaccard_random") for p in ps)
    return out


# ----------------------------------------------------------------------------------------- reading rows


def value(row: dict, metric: str) -> float | None:
    """The number a metric name stands for in a row (module docstring of `METRICS`)."""
    getter = METRICS.get(metric)
    if getter is None:
        v = row.get(metric)
    else:
        v = getter(row)
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _nested(*path):
    def get(row):
        x = row
        for p in path:
            if not isinstance(x, dict) or p not in x:
                return None
            x = x[p]
        return x

    return get


#: What the analysis compares, by name → how to read it from a row.
METRICS: dict[str, Any] = {
    "accuracy": _nested("accuracy"),
    "greedy_accuracy": _nested("greedy_accuracy"),
    "forward_kl": _nested("forward_kl", "per_token"),
    "reverse_kl": _nested("reverse_kl", "per_token"),
    "text_nats": _nested("text", "nats_per_token"),
    "cloze_accuracy": _nested("cloze", "accuracy"),
    "cloze_margin": _nested("cloze", "margin"),
    "sparsity_all": _nested("sparsity_all"),
    "sparsity_linear": _nested("sparsity_linear"),
    "drift_efficiency": _nested("log_drift_efficiency"),
}


def _base_of(rows: Sequence[dict]) -> dict:
    for r in rows:
        if r["step"] == 0:
            return r
    raise ValueError("the rows hold no step-0 (base) row")


def _runs(rows: Sequence[dict]) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["run"]].append(r)
    return {k: sorted(v, key=lambda r: r["step"]) for k, v in by.items()}


#: Geometry that is exactly 0 for a zero update (step 0); the overlap lifts and Jaccard are undefined there.
_ZERO_AT_BASE = ("max_angle_deg", "nss", "dw2_over_gap")


def with_deltas(rows: Sequence[dict]) -> list[dict]:
    """Rows with the changes against the base (accuracy gain, forgetting: text nats up, cloze margin and
    accuracy down), and the base's own geometry filled in where a zero update defines it (sparsity 1, angle,
    NSS and ‖ΔW‖₂/γ_k 0)."""
    base = _base_of(rows)
    zero_at_base = {m for r in rows for m in r if m.split("@")[0] in _ZERO_AT_BASE}
    out = []
    for r in rows:
        r = dict(r)
        if (
            r["step"] == 0
        ):  # the base against itself: no update, what each metric is exactly for ΔW = 0
            r |= {m: 0.0 for m in zero_at_base if r.get(m) is None}
            r |= {m: 1.0 for m in ("sparsity_all", "sparsity_linear") if r.get(m) is None}
        for m, sign in (
            ("accuracy", 1),
            ("text_nats", 1),
            ("cloze_margin", -1),
            ("cloze_accuracy", -1),
        ):
            a, b = value(r, m), value(base, m)
            r[{"accuracy": "accuracy_gain", "text_nats": "forgetting_nats",
               "cloze_margin": "forgetting_cloze_margin", "cloze_accuracy": "forgetting_cloze"}[m]] = (
                None if a is None or b is None else sign * (a - b)
            )  # fmt: skip
        out.append(r)
    return out


# ------------------------------------------------------------------------------------------- matchings


def at_level(
    xs: Sequence[float | int | None], ys: Sequence[float | int | None], level: float | int
) -> float | None:
    """`y` where the trajectory `x` first reaches `level`, linearly interpolated on that segment.

    With points $(x_i, y_i)$ in step order, the first segment with $x_i \\le \\ell \\le x_{i+1}$ (or
    $x_i \\ge \\ell \\ge x_{i+1}$ after the start lies above) gives $y_i + (y_{i+1}-y_i)(\\ell-x_i)/(x_{i+1}-x_i)$;
    a point exactly at the level gives its `y`. None when the trajectory never reaches the level, or a point
    on the way has no value. Exact when y is linear in x along the segment.
    """
    pts = list(zip(xs, ys, strict=True))
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 is None or x1 is None or y0 is None or y1 is None:
            return None
        if x0 == level:
            return float(y0)
        if (x0 - level) * (x1 - level) <= 0:
            if x1 == x0:
                return float(y0)
            return float(y0 + (y1 - y0) * (level - x0) / (x1 - x0))
    if pts and pts[-1][0] == level and pts[-1][1] is not None:
        return float(pts[-1][1])
    return None


def _ci_dict(c: MeanCI) -> dict:
    return {"mean": c.mean, "lo": c.lo, "hi": c.hi, "n": c.n}


def matched_lr(
    rows: Sequence[dict], metrics: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> list[dict]:
    """At each lr and step, `a − b` of each metric for each method pair, paired by seed (bf16 runs only)."""
    by = defaultdict(dict)
    for r in rows:
        if r["storage"] == "bfloat16" and r["step"] > 0:
            by[(r["lr"], r["step"], r["method"])][r["seed"]] = r
    out = []
    for lr, step in sorted({(k[0], k[1]) for k in by}):
        for a, b in pairs:
            ra, rb = by.get((lr, step, a), {}), by.get((lr, step, b), {})
            seeds = sorted(set(ra) & set(rb))
            row = {"lr": lr, "step": step, "a": a, "b": b, "seeds": seeds}
            for m in metrics:
                va = [value(ra[s], m) for s in seeds]
                vb = [value(rb[s], m) for s in seeds]
                ok = [
                    (x, y) for x, y in zip(va, vb, strict=True) if x is not None and y is not None
                ]
                a_, b_ = (
                    (np.asarray(v, np.float64) for v in zip(*ok, strict=True)) if ok else ([], [])
                )
                row[m] = _ci_dict(paired_diff_ci(a_, b_)) if ok else None
            out.append(row)
    return out


def _common_levels(reach: dict[str, list[float]], fractions: Sequence[float]) -> list[float]:
    """Levels inside the range every method reaches: fractions of the smallest of the methods' maxima
    (`reach[method]`: the largest level each of its runs reached)."""
    top = min((max(r, default=0.0) for r in reach.values()), default=0.0)
    return [f * top for f in fractions] if top > 0 else []


def matched_at_levels(
    rows: Sequence[dict],
    x_metric: str,
    metrics: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    fractions: Sequence[float] = (0.25, 0.5, 0.75),
) -> dict:
    """Each run interpolated at levels of `x_metric` (`at_level`), the levels at `fractions` of the range
    common to the methods of `pairs`; per level and method pair, Welch's `a − b` over the runs that reach it
    (bf16 runs). Returns `{"x": x_metric, "levels": [...], "rows": [...]}`."""
    runs = _runs([r for r in rows if r["storage"] == "bfloat16"])
    methods = sorted({m for p in pairs for m in p})
    reach: dict[str, list[float]] = {m: [] for m in methods}
    per_run = {}
    for name, rs in runs.items():
        m = rs[-1]["method"]
        if m not in reach:
            continue
        xs = [value(r, x_metric) for r in rs]
        reach[m].append(max((x for x in xs if x is not None), default=0.0))
        per_run[name] = (m, xs, rs)
    levels = _common_levels(reach, fractions)
    out = []
    for level in levels:
        vals: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in methods}
        for _, (m, xs, rs) in per_run.items():
            for metric in metrics:
                y = at_level(xs, [value(r, metric) for r in rs], level)
                if y is not None:
                    vals[m][metric].append(y)
        for a, b in pairs:
            row = {"level": level, "a": a, "b": b}
            for metric in metrics:
                va, vb = vals[a][metric], vals[b][metric]
                row[metric] = (
                    _ci_dict(welch_diff_ci(np.asarray(va), np.asarray(vb))) if va and vb else None
                )
                row[f"{metric}_runs"] = [len(va), len(vb)]
            out.append(row)
    return {"x": x_metric, "levels": levels, "rows": out}


# ----------------------------------------------------------------------------------- the sparsity model


def half_ulp_histogram(checkpoint: str | Path) -> dict:
    """The base's bf16 rounding thresholds: counts of weights per binary exponent e (a normal |w| in
    [2^e, 2^(e+1)) has half-ULP 2^(e-8)), all tensors and linear ones, and the zeros (`"zero"`)."""
    from threegate.checkpoints import is_linear, open_checkpoint

    counts = {"all": defaultdict(int), "linear": defaultdict(int)}
    with open_checkpoint(checkpoint) as ck:
        for name in ck.names():
            w = np.abs(ck.load(name).astype(np.float32)).ravel()
            zero = int(np.sum(w == 0))
            e = np.floor(np.log2(w[w > 0])).astype(np.int64)
            vals, cnt = np.unique(e, return_counts=True)
            for group in ("all", "linear") if is_linear(name) else ("all",):
                counts[group]["zero"] += zero
                for v, c in zip(vals.tolist(), cnt.tolist(), strict=True):
                    counts[group][str(v)] += c
    return {g: dict(c) for g, c in counts.items()}


def predict_sparsity(hist: dict, displacement: float, model: str = "exponential") -> float:
    """Predicted bf16 sparsity when each weight's net master move is `displacement` (model "step") or
    exponentially distributed with that mean ("exponential"): a weight stays unchanged when its move is
    below its half-ULP $h = 2^{e-8}$, $P = 1[h \\ge D]$ or $1-e^{-h/D}$; zeros change under any move."""
    total = sum(hist.values())
    if total == 0:
        raise ValueError("empty histogram")
    if displacement <= 0:
        return 1.0
    keep = 0.0
    for e, c in hist.items():
        if e == "zero":
            continue
        h = 2.0 ** (int(e) - BF16_HALF_ULP_SHIFT)
        keep += c * (
            float(h >= displacement) if model == "step" else -math.expm1(-h / displacement)
        )
    return keep / total


def sparsity_model(rows: Sequence[dict], hist: dict) -> dict:
    """Per bf16 checkpoint with a logged drift efficiency: measured sparsity (all tensors) against the
    prediction from $D = e\\cdot\\eta\\cdot N$ (drift efficiency × lr × updates: Adam moves a coordinate by
    about η per update) and from $D = e\\cdot\\bar\\tau$ (the measured mean path length, i.e. the mean net
    move), under both displacement models; mean absolute error per model."""
    pts = []
    for r in rows:
        eff, meas = r.get("log_drift_efficiency"), r.get("log_sparsity")
        if r["storage"] != "bfloat16" or r["step"] == 0 or eff is None or meas is None:
            continue
        d_nominal = eff * r["lr"] * r["updates"]
        d_measured = eff * r["log_drift_travel"] if r.get("log_drift_travel") is not None else None
        p = {
            "run": r["run"],
            "method": r["method"],
            "lr": r["lr"],
            "step": r["step"],
            "measured": meas,
        }
        for tag, d in (("nominal", d_nominal), ("measured_path", d_measured)):
            for model in ("step", "exponential"):
                p[f"{tag}_{model}"] = None if d is None else predict_sparsity(hist["all"], d, model)
        pts.append(p)
    errors = {}
    for tag in ("nominal", "measured_path"):
        for model in ("step", "exponential"):
            k = f"{tag}_{model}"
            e = [abs(p[k] - p["measured"]) for p in pts if p.get(k) is not None]
            errors[k] = sum(e) / len(e) if e else None
    best = min((k for k in errors if errors[k] is not None), key=lambda k: errors[k], default=None)
    return {"points": pts, "mean_abs_error": errors, "best": best}


# -------------------------------------------------------------------------------------------- the claims


#: The geometry metrics of the paper's claims, at the first (largest) k of the preset, and their sign.
def _paper_claims(k: int) -> list[tuple[str, str, str, str]]:
    return [
        ("sparser", "sparsity_all", "positive", "RL leaves more bf16 weights unchanged than SFT"),
        ("off_principal", f"overlap_principal_lift@{k}", "negative",
         "RL's updates overlap the principal weights less than SFT's"),
        ("less_rotation", f"max_angle_deg@{k}", "negative", "RL rotates the top-k subspaces less than SFT"),
        ("less_spectral_shift", f"nss@{k}", "negative", "RL moves the spectrum less than SFT (NSS)"),
    ]  # fmt: skip


def _fmt_ci(c: dict | None) -> str:
    if c is None:
        return "no matched pair"
    return f"{c['mean']:+.3g} [{c['lo']:.3g}, {c['hi']:.3g}] (n={c['n']})"


def _verdict(c: dict | None, expect: str) -> str:
    return "inconclusive" if c is None else verdict_from_interval(c["lo"], c["hi"], expect=expect)


def _claims_at(match: str, rows_: list[dict], k: int, key: str) -> list[Claim]:
    """The paper's four claims (GRPO against off-policy SFT) at one row of a matching's table: the lowest lr
    (the paper's regime) for `key="lr"`, the middle level for `key="level"`."""
    out = []
    for cid, metric, expect, text in _paper_claims(k):
        cands = [
            r for r in rows_ if r["a"] == "grpo" and r["b"] == "sft" and r.get(metric) is not None
        ]
        if key == "lr":
            cands = [r for r in cands if r["lr"] == min(x["lr"] for x in cands)] if cands else []
            pick = cands[-1] if cands else None
        else:
            pick = cands[len(cands) // 2] if cands else None
        c = None if pick is None else pick[metric]
        where = "" if pick is None else f" at {key} {pick[key]:.3g}"
        out.append(
            Claim(
                f"{match}.{cid}",
                text + f" ({match.replace('_', ' ')})",
                f"GRPO − SFT {metric}{where}: {_fmt_ci(c)}",
                _verdict(c, expect),
            )
        )
    return out


def _ablation_claim(rows: Sequence[dict], k: int) -> Claim:
    """Does the GRPO/SFT contrast on the geometry survive float32 storage (no Gate III)? Per metric, the
    float32 runs' GRPO − SFT difference at their last step (paired by seed) against the bf16 twins' sign."""
    last = max((r["step"] for r in rows if r["storage"] == "float32"), default=None)
    parts, agree, flip = [], 0, 0
    for _, metric, _, _ in _paper_claims(k)[1:]:
        diffs = {}
        for storage in ("float32", "bfloat16"):
            by = defaultdict(dict)
            for r in rows:
                if r["storage"] == storage and r["step"] == last and value(r, metric) is not None:
                    by[r["method"]][(r["lr"], r["seed"])] = value(r, metric)
            keys = sorted(set(by["grpo"]) & set(by["sft"]))
            if storage == "bfloat16":  # the twins: the lr of the ablation only
                lrs = {r["lr"] for r in rows if r["storage"] == "float32"}
                keys = [x for x in keys if x[0] in lrs]
            if keys:
                a = np.asarray([by["grpo"][x] for x in keys])
                b = np.asarray([by["sft"][x] for x in keys])
                diffs[storage] = paired_diff_ci(a, b)
        if len(diffs) < 2:
            continue
        f, b = diffs["float32"], diffs["bfloat16"]
        same = np.sign(f.mean) == np.sign(b.mean)
        sure = math.isfinite(f.lo) and (f.lo > 0 or f.hi < 0)
        agree += bool(same and sure)
        flip += bool(not same and sure)
        parts.append(f"{metric}: f32 {f.mean:+.3g} [{f.lo:.3g}, {f.hi:.3g}] vs bf16 {b.mean:+.3g}")
    n = len(parts)
    verdict = (
        "agrees" if n and agree == n else "disagrees" if n and flip > n / 2 else "inconclusive"
    )
    return Claim(
        "ablation.contrast_survives_float32",
        "The GRPO/SFT contrast in geometry is not an artefact of bf16 storage: it keeps its sign with "
        "float32 weights (no Gate III)",
        "; ".join(parts) or "no float32 runs with both methods",
        verdict,
    )


def _competing_claims(
    rows: list[dict], model: dict, kl_match: dict, acc_match: dict, k: int
) -> list[Claim]:
    claims = []
    # precision and step size: the sparsity model explains the sparsity, and no method effect is left
    pts = model["points"]
    best = model["best"]
    if best is not None:
        resid = defaultdict(list)
        for p in pts:
            resid[p["method"]].append(p["measured"] - p[best])
        err = model["mean_abs_error"][best]
        if resid.get("grpo") and resid.get("sft"):
            c = welch_diff_ci(np.asarray(resid["grpo"]), np.asarray(resid["sft"]))
            verdict = (
                "agrees" if err < 0.05 and c.lo <= 0 <= c.hi
                else "disagrees" if (c.lo > 0 or c.hi < 0) else "inconclusive"
            )  # fmt: skip
            observed = (
                f"model {best}: mean |error| {err:.3g} over {len(pts)} checkpoints; GRPO − SFT residual "
                f"{c.mean:+.3g} [{c.lo:.3g}, {c.hi:.3g}]"
            )
        else:
            verdict, observed = "inconclusive", "no GRPO and SFT checkpoints to compare"
        claims.append(
            Claim(
                "competing.sparsity_from_precision",
                "Sparsity follows from lr, steps and |w| whatever the objective (arXiv 2602.03839): the "
                "rounding model predicts it and leaves no method effect",
                observed,
                verdict,
            )
        )
    # on-policy data: lower forward KL at matched accuracy
    cands = [
        r for r in acc_match["rows"] if r["a"] == "grpo" and r["b"] == "sft" and r.get("forward_kl")
    ]
    c = cands[-1]["forward_kl"] if cands else None
    claims.append(
        Claim(
            "competing.rl_lower_forward_kl_at_matched_accuracy",
            "At matched accuracy gain RL has a lower forward KL(π₀‖π) than off-policy SFT (RL's Razor)",
            f"GRPO − SFT forward KL at gain {cands[-1]['level']:.3g}: {_fmt_ci(c)}" if cands
            else "no accuracy gain common to both methods",
            _verdict(c, "negative"),
        )
    )  # fmt: skip
    # forgetting tracks forward KL across methods
    xs, ys = [], []
    for r in rows:
        x, y = value(r, "forward_kl"), r.get("forgetting_nats")
        if r["step"] > 0 and x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    cc = corr_ci(np.asarray(xs), np.asarray(ys))
    claims.append(
        Claim(
            "competing.forgetting_tracks_forward_kl",
            "Forgetting (nats/token on held-out English) tracks the forward KL across methods (RL's Razor)",
            f"Pearson r = {cc.mean:.3g} [{cc.lo:.3g}, {cc.hi:.3g}] over {cc.n} checkpoints",
            verdict_from_interval(cc.lo, cc.hi, expect="positive"),
        )
    )
    # on-policy SFT sits with RL
    votes = []
    for metric in ("sparsity_all", f"overlap_principal_lift@{k}", "forgetting_nats"):
        with_rl = [
            r for r in kl_match["rows"] if r["a"] == "rft" and r["b"] == "grpo" and r.get(metric)
        ]
        with_sft = [
            r for r in kl_match["rows"] if r["a"] == "rft" and r["b"] == "sft" and r.get(metric)
        ]
        if not with_rl or not with_sft:
            continue
        d_rl, d_sft = with_rl[-1][metric], with_sft[-1][metric]
        rl_same = d_rl["lo"] <= 0 <= d_rl["hi"]
        sft_same = d_sft["lo"] <= 0 <= d_sft["hi"]
        votes.append((metric, rl_same and not sft_same, sft_same and not rl_same, d_rl, d_sft))
    agree = sum(v[1] for v in votes)
    disagree = sum(v[2] for v in votes)
    verdict = (
        "agrees" if votes and agree > len(votes) / 2
        else "disagrees" if votes and disagree > len(votes) / 2 else "inconclusive"
    )  # fmt: skip
    observed = (
        "; ".join(
            f"{m}: rft − grpo {_fmt_ci(a)}, rft − sft {_fmt_ci(b)}" for m, _, _, a, b in votes
        )
        or "no matched forward-KL level with all three methods"
    )
    claims.append(
        Claim(
            "competing.on_policy_sft_with_rl",
            "On-policy SFT sits with RL, not with off-policy SFT, at matched forward KL (Retaining by Doing)",
            observed,
            verdict,
        )
    )
    return claims


def _regime(rows: list[dict], lrs: Sequence[float]) -> dict:
    """Per lr: end-of-run reverse KL (token-wise, to the base on the policy's samples) and accuracy gain, per
    method, and whether the lowest lr sits in the paper's regime (≤ 0.05 nats/token with a measurable gain)."""
    out: dict[str, Any] = {"per_lr": []}
    runs = _runs([r for r in rows if r["storage"] == "bfloat16"])
    for lr in lrs:
        for m in sorted({r["method"] for r in rows}):
            ends = [rs[-1] for rs in runs.values() if rs[-1]["lr"] == lr and rs[-1]["method"] == m]
            if not ends:
                continue
            kl = [value(e, "reverse_kl") for e in ends]
            gain = [e.get("accuracy_gain") for e in ends]
            out["per_lr"].append(
                {
                    "lr": lr,
                    "method": m,
                    "reverse_kl_end": _mean(kl),
                    "forward_kl_end": _mean(value(e, "forward_kl") for e in ends),
                    "accuracy_gain_end": _mean(gain),
                    "runs": len(ends),
                }
            )
    low = [p for p in out["per_lr"] if p["lr"] == min(lrs)]
    out["lowest_lr_kl_ok"] = bool(low) and all(
        p["reverse_kl_end"] is not None and p["reverse_kl_end"] <= 0.05 for p in low
    )
    return out


def analyse_rows(
    rows: Sequence[dict],
    *,
    preset_name: str,
    lrs: Sequence[float],
    base_sparsity: dict,
    ks=(64, 16),
) -> dict:
    """The study dict of the controlled study (module docstring): matchings, sparsity model, claims."""
    rows = with_deltas(rows)
    k = ks[0]
    geo = [
        f"{g}@{kk}"
        for kk in ks
        for g in ("overlap_principal_lift", "max_angle_deg", "nss", "dw2_over_gap")
    ]
    metrics = [
        "sparsity_all", "sparsity_linear", *geo, f"principal_energy_fraction@{k}",
        "forward_kl", "reverse_kl", "accuracy_gain", "forgetting_nats", "forgetting_cloze_margin",
        "forgetting_cloze", "drift_efficiency",
    ]  # fmt: skip
    pairs = [("grpo", "sft"), ("grpo", "rft"), ("rft", "sft"), ("rft", "grpo")]
    lr_match = matched_lr(rows, metrics, pairs[:3])
    kl_match = matched_at_levels(rows, "forward_kl", metrics, pairs)
    acc_match = matched_at_levels(rows, "accuracy_gain", metrics, pairs)
    model = sparsity_model(rows, base_sparsity)
    end_lr = (
        [r for r in lr_match if r["step"] == max(x["step"] for x in lr_match)] if lr_match else []
    )
    claims = (
        _claims_at("matched_lr", end_lr, k, "lr")
        + _claims_at("matched_kl", kl_match["rows"], k, "level")
        + _claims_at("matched_accuracy", acc_match["rows"], k, "level")
        + _competing_claims(rows, model, kl_match, acc_match, k)
        + [_ablation_claim(rows, k)]
    )
    return {
        "claims": [c._asdict() for c in claims],
        "preset_name": preset_name,
        "regime": _regime(rows, lrs),
        "matched_lr": lr_match,
        "matched_kl": kl_match,
        "matched_accuracy": acc_match,
        "sparsity_model": model,
        "ablation": _ablation(rows),
        "metrics": metrics,
    }


def _ablation(rows: Sequence[dict]) -> list[dict]:
    """The float32-storage runs beside their bf16 twins (same method, lr, seed, step): every metric."""
    bf = {
        (r["method"], r["lr"], r["seed"], r["step"]): r for r in rows if r["storage"] == "bfloat16"
    }
    out = []
    for r in rows:
        if r["storage"] != "float32" or r["step"] == 0:
            continue
        twin = bf.get((r["method"], r["lr"], r["seed"], r["step"]))
        out.append(
            {
                "run": r["run"],
                "step": r["step"],
                "twin": None if twin is None else twin["run"],
                **{
                    m: {"float32": r.get(m), "bfloat16": None if twin is None else twin.get(m)}
                    for m in r
                    if "@" in m
                },
                "sparsity_bf16_counterfactual": r.get("log_sparsity_bf16"),
                "sparsity_bf16_twin": None if twin is None else twin.get("log_sparsity"),
            }
        )
    return out
