"""Aggregates of a `threegate compare` run, built from its JSONL files only (so an interrupted run summarizes too).

`summarize(out)` writes `summary.json`, `update_ratios.npz` (profiles) and, with two or more tuned checkpoints,
`consensus.npz` (the consensus ratios of `consensus/*.npz`), and returns the summary dict:

* `table1`: per tuned checkpoint, the Table-1 row (base, tuned, sparsity over all parameters) plus the
  linear-only sparsity (every projection matrix: q, k, v, o, gate, up, down, the parts of fused ones, MLA's
  q_a/q_b/kv_a/kv_b, routers, in every expert; `threegate.checkpoints.arch.PROJECTION_TYPES`).
* `per_tuned[key]`: `linear` and `all_matrices` aggregates (every 2-D record, `other` included), `by_type`,
  `by_layer` (the linear matrices of each block), and for MoE `by_expert` (per layer and expert: tensors,
  changed entries, sparsity, mean relative update).
* `warnings`: the run's warning lines (`run.json`), one per problem.
* `by_type`: per tuned checkpoint and layer type, means of the overlaps (M10) and their random baselines, mean
  max principal angle (M11, max over U and V), mean NSS (M12), worst Weyl/Wedin ratios, energy-share lift.
* `table2` (two or more tuned checkpoints): per layer type, the mean over tensors and off-diagonal pairs of
  the Jaccard of update masks (M3) and of its Bernoulli baseline $pq/(p+q-pq)$ over the same pairs (M4), for
  all layers and for the chosen layer (the paper's Table 2 uses block 13).
"""

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from threegate.checkpoints.arch import PROJECTION_TYPES
from threegate.compare.npz import save_npz
from threegate.compare.order import pair_order, tensor_order
from threegate.records import read_jsonl, to_jsonable

__all__ = ["format_summary", "load_profiles", "summarize"]


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _max(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


def _last_by_key(records: list[dict], fields: tuple[str, ...]) -> list[dict]:
    """Records deduplicated on `fields` (the last one wins, as a resumed run appends)."""
    seen = {}
    for r in records:
        seen[tuple(r.get(f) for f in fields)] = r
    return list(seen.values())


def _max_angle(r: dict) -> float | None:
    a, b = r.get("max_angle_u_deg"), r.get("max_angle_v_deg")
    return None if a is None or b is None else max(a, b)


def _type_stats(recs: list[dict]) -> dict:
    return {
        "tensors": len(recs),
        "sparsity": _sparsity(recs)[0],
        "overlap_principal": _mean(r.get("overlap_principal") for r in recs),
        "overlap_principal_random": _mean(r.get("overlap_principal_random") for r in recs),
        "overlap_low": _mean(r.get("overlap_low") for r in recs),
        "overlap_low_random": _mean(r.get("overlap_low_random") for r in recs),
        "overlap_principal_not_low": _mean(r.get("overlap_principal_not_low") for r in recs),
        "overlap_principal_not_low_random": _mean(
            r.get("overlap_principal_not_low_random") for r in recs
        ),
        "max_angle_deg_mean": _mean(_max_angle(r) for r in recs),
        "spectral_shift_mean": _mean(r.get("spectral_shift") for r in recs),
        "rel_update_fro_mean": _mean(r.get("rel_update_fro") for r in recs),
        "principal_energy_lift_mean": _mean(r.get("principal_energy_lift") for r in recs),
        "weyl_ratio_max": _max(r.get("weyl_ratio") for r in recs),
        "wedin_ratio_max": _max(r.get("wedin_ratio") for r in recs),
        "wedin_rigorous_ratio_max": _max(r.get("wedin_rigorous_ratio") for r in recs),
        "wedin_premise_false": sum(1 for r in recs if r.get("wedin_premise") is False),
    }


def _sparsity(recs: list[dict]) -> tuple[float | None, int, int]:
    ok = [r for r in recs if r.get("changed") is not None]
    numel = sum(r["numel"] for r in ok)
    changed = sum(r["changed"] for r in ok)
    excluded = sum(r["numel"] for r in recs if r.get("changed") is None)
    return (1.0 - changed / numel if numel else None), numel, excluded


def _is_linear(r: dict) -> bool:
    """A projection matrix (its record is 2-D; biases are typed "bias")."""
    return r["layer_type"] in PROJECTION_TYPES and len(r["shape"]) == 2


def _by_expert(recs: list[dict]) -> list[dict]:
    """Per (layer, expert) of the expert records: which experts the update touched, and how much."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in recs:
        if r.get("expert_kind") is not None:
            e = r.get("expert")
            groups[(r.get("layer"), r["expert_kind"], -1 if e is None else e)].append(r)
    rows = []
    for (layer, kind, e), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] is None, kv[0])):
        ok = [r for r in rs if r.get("changed") is not None]
        rows.append(
            {
                "layer": layer,
                "expert": None if e < 0 else e,
                "expert_kind": kind,
                "tensors": len(rs),
                "numel": sum(r["numel"] for r in rs),
                "changed": sum(r["changed"] for r in ok) if ok else None,
                "sparsity": _sparsity(rs)[0],
                "rel_update_fro_mean": _mean(r.get("rel_update_fro") for r in rs),
                "max_angle_deg_mean": _mean(_max_angle(r) for r in rs),
            }
        )
    return rows


def _table2(pairs: list[dict], tuned: list[str], layer: int | None) -> dict:
    def block(sel: list[dict]) -> dict:
        out = {}
        types = sorted({p["layer_type"] for p in sel})
        for t in types:
            ps = [p for p in sel if p["layer_type"] == t]
            j = _mean(p["jaccard"] for p in ps)
            b = _mean(p["jaccard_random"] for p in ps)
            matrix = np.eye(len(tuned))
            for i, a in enumerate(tuned):
                for k, c in enumerate(tuned):
                    if i < k:
                        v = _mean(
                            p["jaccard"] for p in ps if (p["tuned_a"], p["tuned_b"]) == (a, c)
                        )
                        matrix[i, k] = matrix[k, i] = math.nan if v is None else v
            out[t] = {
                "jaccard": j,
                "random": b,
                "ratio": j / b if j is not None and b else None,
                "tensors": len({p["name"] for p in ps}),
                "matrix": matrix,
            }
        return out

    return {
        "all_layers": block(pairs),
        "chosen_layer": block([p for p in pairs if layer is not None and p["layer"] == layer]),
        "layer": layer,
    }


def load_profiles(out: str | Path) -> dict[tuple[str, str | None], dict[str, np.ndarray]]:
    """Arrays of `profiles.jsonl` keyed by (name, tuned) (tuned None: the base's singular values)."""
    prof: dict[tuple[str, str | None], dict[str, np.ndarray]] = defaultdict(dict)
    for r in read_jsonl(Path(out) / "profiles.jsonl"):
        key = (r.pop("name"), r.pop("tuned"))
        prof[key].update({k: np.asarray(v, np.float64) for k, v in r.items()})
    return dict(prof)


def _write_npz(out: Path, tuned: list[str]) -> None:
    arrays = {}
    for (name, key), d in load_profiles(out).items():
        tag = "base" if key is None else f"tuned{tuned.index(key)}" if key in tuned else None
        if tag is None:
            continue
        for field, arr in d.items():
            arrays[f"{name}/{tag}/{field}"] = arr
    save_npz(out / "update_ratios.npz", **arrays)
    cons = {}
    if len(tuned) < 2:  # one run: its "consensus" is its update mask, already in consensus/*.npz
        return
    for p in sorted((out / "consensus").glob("*.npz")) if (out / "consensus").exists() else []:
        with np.load(p) as z:
            cons[p.stem] = z["count"] / int(z["runs"])
    if cons:
        save_npz(out / "consensus.npz", **cons)


def summarize(out: str | Path) -> dict:
    """Build `summary.json` (and the side `.npz` files) from the run folder `out`; returns the summary."""
    out = Path(out)
    run = json.loads((out / "run.json").read_text())
    tuned = run["tuned"]
    # stream order first, so the sums below do not depend on the order the lines were written in
    tensors = sorted(read_jsonl(out / "tensors.jsonl"), key=tensor_order(tuned))
    recs = _last_by_key(tensors, ("name", "tuned"))
    pairs = sorted(read_jsonl(out / "pairs.jsonl"), key=pair_order)
    pairs = _last_by_key(pairs, ("name", "tuned_a", "tuned_b"))
    summary: dict = {"base": run["base"], "tuned": tuned, "settings": run, "per_tuned": {}}
    table1 = []
    for key in tuned:
        mine = [r for r in recs if r["tuned"] == key]
        s_all, n_all, ex_all = _sparsity(mine)
        s_lin, n_lin, _ = _sparsity([r for r in mine if _is_linear(r)])
        by_type = {}
        for t in sorted({r["layer_type"] for r in mine}):
            by_type[t] = _type_stats([r for r in mine if r["layer_type"] == t])
        linear = _type_stats([r for r in mine if _is_linear(r)])
        matrices = [r for r in mine if len(r["shape"]) == 2]
        nonfinite = [r["name"] for r in mine if sum(r["nonfinite"].values())]
        summary["per_tuned"][key] = {
            "tensors": len(mine),
            "sparsity_all": s_all,
            "sparsity_linear": s_lin,
            "numel_all": n_all,
            "numel_linear": n_lin,
            "numel_excluded_nonfinite": ex_all,
            "nonfinite_tensors": nonfinite,
            "numel_all_matrices": _sparsity(matrices)[1],
            "linear": linear,
            "all_matrices": _type_stats(matrices),
            "by_type": by_type,
        }
        lin = [r for r in mine if _is_linear(r)]
        summary["per_tuned"][key]["by_layer"] = [
            {"layer": layer, **_type_stats([r for r in lin if r.get("layer") == layer])}
            for layer in sorted({r["layer"] for r in lin if r.get("layer") is not None})
        ]
        experts = _by_expert(mine)
        if experts:
            summary["per_tuned"][key]["by_expert"] = experts
        table1.append(
            {"base": run["base"], "tuned": key, "sparsity": s_all, "sparsity_linear": s_lin}
        )
    summary["table1"] = table1
    summary["warnings"] = list(run.get("warnings", []))
    if len(tuned) >= 2:
        summary["table2"] = _table2(pairs, tuned, run.get("layer"))
    _write_npz(out, tuned)
    (out / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=1) + "\n")
    return summary


def _fmt(x, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def format_summary(summary: dict) -> str:
    """A short plain-text table of the summary (one row per tuned checkpoint; Table 2 when present)."""
    head = (
        f"{'tuned':<28} {'sparsity':>9} {'linear':>9} {'ov_princ':>9} {'(rand)':>7} {'ov_low':>7} "
        f"{'(rand)':>7} {'maxang°':>8} {'NSS':>9} {'weyl':>6} {'wedin':>6}"
    )
    lines = [f"base: {summary['base']}", head]
    for key, s in summary["per_tuned"].items():
        lin = s["linear"]
        lines.append(
            f"{Path(key).name[:28]:<28} {_fmt(s['sparsity_all'])!s:>9} {_fmt(s['sparsity_linear'])!s:>9} "
            f"{_fmt(lin['overlap_principal'])!s:>9} {_fmt(lin['overlap_principal_random'], '.3f')!s:>7} "
            f"{_fmt(lin['overlap_low'], '.3f')!s:>7} {_fmt(lin['overlap_low_random'], '.3f')!s:>7} "
            f"{_fmt(lin['max_angle_deg_mean'], '.3f')!s:>8} {_fmt(lin['spectral_shift_mean'], '.2e')!s:>9} "
            f"{_fmt(lin['weyl_ratio_max'], '.3f')!s:>6} {_fmt(lin['wedin_ratio_max'], '.3f')!s:>6}"
        )
        lines.append(
            f"  all matrices: sparsity {_fmt(s['all_matrices']['sparsity'])} over "
            f"{s['numel_all_matrices']} entries; linear {_fmt(s['sparsity_linear'])} over "
            f"{s['numel_linear']}"
        )
        if s["nonfinite_tensors"]:
            lines.append(
                f"  non-finite values (metrics null): {', '.join(s['nonfinite_tensors'][:5])}"
            )
    t2 = summary.get("table2")
    if t2:
        lines.append(
            "Table 2 (mean off-diagonal Jaccard of update masks vs Bernoulli baseline, all layers):"
        )
        for t, row in t2["all_layers"].items():
            lines.append(
                f"  {t:<10} J={_fmt(row['jaccard'], '.3f')} random={_fmt(row['random'], '.3f')} "
                f"ratio={_fmt(row['ratio'], '.2f')}"
            )
    return "\n".join(lines)
